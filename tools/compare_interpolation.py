"""Which resize interpolation suits the fallback: bilinear (the book's) or bicubic (timm's configuration)?

Extracts EfficientNet-Lite0 features of the cats/dogs/pandas training and
validation photos with each interpolation (a cache folder of its own), trains
a linear head on the training photos with five seeds and prints the mean
validation accuracy of each.  The setup page quotes the result.

    python tools/compare_interpolation.py [--cache-dir DIR]
"""

import argparse
import tempfile

from torchvision.transforms import InterpolationMode

from tlhelpers import data, features, heads, zoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", default=tempfile.mkdtemp(prefix="tl-interpolation-"))
    args = parser.parse_args()
    backbone = zoo.load(zoo.FALLBACK)
    splits = data.split(data.scan(data.locate()), val=0.15, test=0.15, seed=0)
    reference = backbone.transforms
    for mode in (InterpolationMode.BILINEAR, InterpolationMode.BICUBIC):
        transform = zoo.preset(reference.crop_size[0], reference.resize_size[0], reference.mean, reference.std, mode)
        train_fs, val_fs = (
            features.extract(backbone, splits[name], transform, cache_dir=args.cache_dir, progress=False)
            for name in ("train", "val")
        )
        accs = [heads.evaluate(heads.fit_linear(train_fs, epochs=30, seed=seed)[0], val_fs)["acc"] for seed in range(5)]
        print(
            f"{mode.value:8s} validation accuracy {sum(accs) / len(accs):.2%} "
            f"(seeds: {', '.join(f'{a:.2%}' for a in accs)}; {len(val_fs)} photos)"
        )


if __name__ == "__main__":
    main()
