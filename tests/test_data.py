"""Tests of tlhelpers.data: robust loading, scanning, splits, loaders, locate and check."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlhelpers import data, images, runtime

REPO_ROOT = Path(__file__).resolve().parents[1]


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A tiny transform: fixed size, CHW uint8 tensor."""
    return torch.from_numpy(np.array(image.resize((8, 8)))).permute(2, 0, 1)


def noise_jpeg_bytes(size=(64, 48), seed=0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# --------------------------------------------------------------------------- #
# Image files, good and bad, generated per test
# --------------------------------------------------------------------------- #


def make_greyscale(path: Path) -> Path:
    Image.new("L", (10, 6), 77).save(path)
    return path


def make_bilevel(path: Path) -> Path:
    Image.new("1", (10, 6), 1).save(path)
    return path


def make_cmyk_jpeg(path: Path) -> Path:
    Image.new("CMYK", (10, 6), (0, 0, 0, 0)).save(path, "JPEG", quality=95)
    return path


def make_palette_png_with_transparency(path: Path) -> Path:
    image = Image.new("P", (4, 2), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    image.putpixel((0, 0), 1)  # red; index 0 (black) is transparent
    image.save(path, transparency=0)
    return path


def make_rgba_png(path: Path) -> Path:
    image = Image.new("RGBA", (3, 1))
    image.putdata([(255, 0, 0, 255), (255, 0, 0, 0), (255, 0, 0, 128)])
    image.save(path)
    return path


def make_16bit_png(path: Path) -> Path:
    Image.fromarray(np.array([[65535, 32768, 0]], dtype=np.uint16)).save(path)
    return path


def make_exif_rotated_jpeg(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.new("RGB", (40, 20), (0, 128, 255)).save(path, "JPEG", exif=exif.tobytes())
    return path


def make_good_jpeg(path: Path, seed=0) -> Path:
    path.write_bytes(noise_jpeg_bytes(seed=seed))
    return path


def make_corrupt(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    return path


def make_truncated_jpeg(path: Path) -> Path:
    whole = noise_jpeg_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def make_empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def make_text_as_jpeg(path: Path) -> Path:
    path.write_text("this is not a picture\n")
    return path


BAD_MAKERS = {
    "corrupt.jpg": make_corrupt,
    "truncated.jpg": make_truncated_jpeg,
    "empty.jpg": make_empty,
    "text.jpg": make_text_as_jpeg,
}


PETS = {"cats": 6, "dogs": 6, "panda": 6}  # split 15 %/15 %: 12 training, 3 validation and 3 test photos


def make_dataset(root: Path, per_class: dict[str, int], bad: dict[str, list[str]] | None = None) -> Path:
    """root/<class>/<class>_NNN.jpg good files, plus the named bad files in some classes."""
    for class_index, (name, count) in enumerate(per_class.items()):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(count):
            make_good_jpeg(folder / f"{name}_{i:03d}.jpg", seed=100 * class_index + i)
    for name, bad_files in (bad or {}).items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for bad_file in bad_files:
            BAD_MAKERS[bad_file](root / name / bad_file)
    return root


# --------------------------------------------------------------------------- #
# load_rgb
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("maker", [make_greyscale, make_bilevel, make_cmyk_jpeg, make_good_jpeg])
def test_load_rgb_gives_rgb(tmp_path, maker):
    image = data.load_rgb(maker(tmp_path / f"{maker.__name__}.{'png' if 'grey' in maker.__name__ else 'jpg'}"))
    assert image.mode == "RGB"


def test_load_rgb_greyscale_values(tmp_path):
    image = data.load_rgb(make_greyscale(tmp_path / "grey.png"))
    assert image.getpixel((0, 0)) == (77, 77, 77)


def test_load_rgb_cmyk_white(tmp_path):
    image = data.load_rgb(make_cmyk_jpeg(tmp_path / "cmyk.jpg"))
    assert all(channel >= 250 for channel in image.getpixel((5, 3)))


def test_load_rgb_palette_transparency_on_white(tmp_path):
    image = data.load_rgb(make_palette_png_with_transparency(tmp_path / "palette.png"))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 0, 0)
    assert image.getpixel((1, 0)) == (255, 255, 255)


def test_load_rgb_rgba_composited_on_white(tmp_path):
    image = data.load_rgb(make_rgba_png(tmp_path / "rgba.png"))
    opaque, transparent, half = (image.getpixel((x, 0)) for x in range(3))
    assert opaque == (255, 0, 0)
    assert transparent == (255, 255, 255)
    assert half[0] == 255 and 120 <= half[1] <= 135 and half[1] == half[2]


def test_load_rgb_16bit_scaled_not_clipped(tmp_path):
    path = make_16bit_png(tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    image = data.load_rgb(path)
    assert image.mode == "RGB"
    assert [image.getpixel((x, 0))[0] for x in range(3)] == [255, 128, 0]


def test_load_rgb_applies_exif_orientation(tmp_path):
    path = make_exif_rotated_jpeg(tmp_path / "rotated.jpg")
    assert Image.open(path).size == (40, 20)
    assert data.load_rgb(path).size == (20, 40)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("corrupt.jpg", "not an image"),
        ("truncated.jpg", "truncated"),
        ("empty.jpg", "empty"),
        ("text.jpg", "not an image"),
    ],
)
def test_load_rgb_unreadable(tmp_path, name, expected):
    path = BAD_MAKERS[name](tmp_path / name)
    with pytest.raises(data.UnreadableImage) as caught:
        data.load_rgb(path)
    assert caught.value.path == path
    assert expected in caught.value.reason
    assert str(path) in str(caught.value) and caught.value.reason in str(caught.value)


def test_load_rgb_missing_file(tmp_path):
    with pytest.raises(data.UnreadableImage, match="not found"):
        data.load_rgb(tmp_path / "missing.jpg")


def test_load_rgb_decompression_bomb_warning_is_unreadable(tmp_path, monkeypatch):
    path = make_good_jpeg(tmp_path / "big.jpg")  # 64 x 48 = 3072 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # warns above 2000, errors above 4000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the guard must not depend on the caller's filters
        with pytest.raises(data.UnreadableImage, match="decompression-bomb"):
            data.load_rgb(path)


# --------------------------------------------------------------------------- #
# scan, ImageSet
# --------------------------------------------------------------------------- #


def test_scan_classes_files_and_ignores(tmp_path):
    root = make_dataset(tmp_path / "set", {"b_dogs": 2, "a_cats": 3})
    (root / "a_cats" / "UPPER.JPG").write_bytes(noise_jpeg_bytes())
    (root / "a_cats" / ".hidden.jpg").write_bytes(noise_jpeg_bytes())
    (root / "a_cats" / "notes.txt").write_text("x")
    (root / ".cache").mkdir()
    make_good_jpeg(root / ".cache" / "x.jpg")
    images = data.scan(root)
    assert images.classes == ["a_cats", "b_dogs"]
    assert images.counts() == {"a_cats": 4, "b_dogs": 2}
    assert len(images) == 6
    assert images.files[:4] == sorted(images.files[:4])
    assert images.labels == [0, 0, 0, 0, 1, 1]
    assert repr(images) == "ImageSet('set', 6 images: a_cats=4, b_dogs=2)"
    sub = images.subset([0, 5])
    assert sub.counts() == {"a_cats": 1, "b_dogs": 1} and sub.classes == images.classes


@pytest.mark.parametrize(
    "layout, message",
    [
        ("missing", "not found"),
        ("file", "Not a folder"),
        ("no_classes", "No class subfolders"),
        ("no_images", "No images"),
    ],
)
def test_scan_errors(tmp_path, layout, message):
    root = tmp_path / "root"
    if layout == "file":
        root.write_text("x")
    elif layout == "no_classes":
        root.mkdir()
        make_good_jpeg(root / "loose.jpg")
    elif layout == "no_images":
        (root / "cats").mkdir(parents=True)
        (root / "cats" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=message):
        data.scan(root)


# --------------------------------------------------------------------------- #
# split, per_class
# --------------------------------------------------------------------------- #


def synthetic_set(sizes=(40, 20, 30)) -> data.ImageSet:
    files, labels = [], []
    for label, size in enumerate(sizes):
        files += [Path(f"c{label}/{i:03d}.jpg") for i in range(size)]
        labels += [label] * size
    classes = [f"c{i}" for i in range(len(sizes))]
    return data.ImageSet(root=Path("synthetic"), files=files, labels=labels, classes=classes)


def test_split_stratified_disjoint_covering_deterministic():
    images = synthetic_set()
    parts = data.split(images, val=0.2, test=0.1, seed=3)
    assert parts["val"].counts() == {"c0": 8, "c1": 4, "c2": 6}
    assert parts["test"].counts() == {"c0": 4, "c1": 2, "c2": 3}
    assert parts["train"].counts() == {"c0": 28, "c1": 14, "c2": 21}
    file_sets = [set(part.files) for part in parts.values()]
    assert sum(map(len, file_sets)) == len(images)
    assert set.union(*file_sets) == set(images.files)
    again = data.split(images, val=0.2, test=0.1, seed=3)
    assert all(again[name].files == parts[name].files for name in parts)
    other = data.split(images, val=0.2, test=0.1, seed=4)
    assert other["test"].files != parts["test"].files
    for part in parts.values():  # labels still match files
        assert all(f"c{label}/" in str(file) for file, label in zip(part.files, part.labels))


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError):
        data.split(synthetic_set(), val=0.6, test=0.5)


def test_per_class_nested_and_deterministic():
    images = synthetic_set()
    five, ten = data.per_class(images, 5, seed=7), data.per_class(images, 10, seed=7)
    assert five.counts() == {"c0": 5, "c1": 5, "c2": 5}
    assert set(five.files) <= set(ten.files)
    assert data.per_class(images, 5, seed=7).files == five.files
    assert data.per_class(images, 5, seed=8).files != five.files
    assert len(data.per_class(images, None)) == len(images)


def test_per_class_too_few():
    with pytest.raises(ValueError, match="c1 has 20"):
        data.per_class(synthetic_set(), 25)


# --------------------------------------------------------------------------- #
# ImageDataset, loader
# --------------------------------------------------------------------------- #


@pytest.fixture
def set_with_bad_files(tmp_path) -> data.ImageSet:
    root = make_dataset(
        tmp_path / "set",
        {"cats": 3, "dogs": 3},
        bad={"cats": ["corrupt.jpg", "truncated.jpg"], "dogs": ["empty.jpg", "text.jpg"]},
    )
    return data.scan(root)


def test_dataset_skips_bad_files_warning_once_each(set_with_bad_files):
    dataset = data.ImageDataset(set_with_bad_files, to_tensor)
    with pytest.warns(data.SkippedImageWarning) as first_pass:
        items = [dataset[i] for i in range(len(dataset))]
    first_pass = [w for w in first_pass if issubclass(w.category, data.SkippedImageWarning)]
    assert len(first_pass) == 4
    assert {Path(str(w.message).split("Skipping ")[1].split(":")[0]).name for w in first_pass} == set(BAD_MAKERS)
    assert sum(item is None for item in items) == 4
    assert {path.name for path in dataset.skipped} == set(BAD_MAKERS)
    image, label = next(item for item in items if item is not None)
    assert image.shape == (3, 8, 8) and label in (0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second epoch warns no more
        _ = [dataset[i] for i in range(len(dataset))]


def test_collate_skipping():
    assert data.collate_skipping([None, None]) is None
    images, labels = data.collate_skipping([None, (torch.zeros(3), 1), (torch.ones(3), 0)])
    assert images.shape == (2, 3) and labels.tolist() == [1, 0]


def test_loader_completes_an_epoch_over_bad_files(set_with_bad_files):
    with pytest.warns(data.SkippedImageWarning):
        batches = list(data.loader(set_with_bad_files, to_tensor, batch_size=4, shuffle=True, seed=1))
    seen = sum(len(batch[1]) for batch in batches if batch is not None)
    assert seen == 6


def test_loader_shuffle_is_reproducible(tmp_path):
    images = data.scan(make_dataset(tmp_path / "set", {"cats": 4, "dogs": 4}))

    def order():
        return [batch[1].tolist() for batch in data.loader(images, to_tensor, batch_size=2, shuffle=True, seed=5)]

    assert order() == order()
    assert sorted(sum(order(), [])) == [0] * 4 + [1] * 4


# --------------------------------------------------------------------------- #
# locate
# --------------------------------------------------------------------------- #


@pytest.fixture
def isolated_places(tmp_path, monkeypatch) -> Path:
    """No TLHELPERS_DATA, offline, and a user cache dir under tmp_path."""
    cache_root = tmp_path / "user-cache"
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setenv(runtime.OFFLINE_ENV, "1")
    monkeypatch.setattr(data.platformdirs, "user_cache_dir", lambda appname: str(cache_root / appname))
    return cache_root / "tlhelpers"


def test_locate_explicit_path_wins(tmp_path, isolated_places, monkeypatch):
    explicit = make_dataset(tmp_path / "mine", {"a": 1, "b": 1})
    env_root = tmp_path / "env"
    make_dataset(env_root / "animals", {"a": 1, "b": 1})
    monkeypatch.setenv(data.DATA_ENV, str(env_root))
    assert data.locate(explicit) == explicit.resolve()
    assert data.locate(tmp_path / "env") == (env_root / "animals").resolve()  # the parent folder works too


def test_locate_explicit_path_not_a_dataset_is_an_error(tmp_path, isolated_places, monkeypatch):
    env_root = tmp_path / "env"
    make_dataset(env_root / "animals", {"a": 1, "b": 1})
    monkeypatch.setenv(data.DATA_ENV, str(env_root))
    with pytest.raises(data.DataNotFound, match="does not exist"):
        data.locate(tmp_path / "typo")


def test_locate_env_var_parent_or_dataset_itself(tmp_path, isolated_places, monkeypatch):
    dataset = make_dataset(tmp_path / "shared" / "animals", {"a": 1, "b": 1})
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "shared"))
    assert data.locate() == dataset.resolve()
    monkeypatch.setenv(data.DATA_ENV, str(dataset))
    assert data.locate() == dataset.resolve()


def test_locate_user_cache(tmp_path, isolated_places):
    dataset = make_dataset(isolated_places / "animals", {"a": 1, "b": 1})
    assert data.locate() == dataset.resolve()


def test_locate_env_var_before_cache(tmp_path, isolated_places, monkeypatch):
    make_dataset(isolated_places / "animals", {"a": 1, "b": 1})
    from_env = make_dataset(tmp_path / "env" / "animals", {"a": 1, "b": 1})
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "env"))
    assert data.locate() == from_env.resolve()


def test_locate_nothing_found_names_every_place(tmp_path, isolated_places, monkeypatch):
    empty_env = tmp_path / "env"
    (empty_env / "animals" / "cats").mkdir(parents=True)  # a class folder, but no images
    monkeypatch.setenv(data.DATA_ENV, str(empty_env))
    with pytest.raises(data.DataNotFound) as caught:
        data.locate()
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    positions = [
        message.index(part) for part in ("path argument", data.DATA_ENV, str(isolated_places / "animals"), "kagglehub")
    ]
    assert positions == sorted(positions)
    assert str(empty_env / "animals") in message and "no class subfolder with images" in message
    assert f"{runtime.OFFLINE_ENV}=1" in message


def test_locate_unset_env_is_named(isolated_places):
    with pytest.raises(data.DataNotFound, match=f"\\${data.DATA_ENV}: not set"):
        data.locate()


# --------------------------------------------------------------------------- #
# check
# --------------------------------------------------------------------------- #


def test_check_reports_sizes_counts_and_problems(set_with_bad_files):
    report = data.check(set_with_bad_files.root)
    assert report.usable
    assert report.classes == ["cats", "dogs"]
    assert report.counts == {"cats": 3, "dogs": 3}
    assert report.sizes == [(64, 48)] * 6
    assert {path.name for path, _ in report.problems} == set(BAD_MAKERS)
    summary = report.summary()
    for name in BAD_MAKERS:
        assert name in summary
    assert summary.splitlines()[-1] == "Usable: 2 classes, 6 images."


def test_check_class_without_usable_images(tmp_path):
    root = make_dataset(tmp_path / "set", {"cats": 2}, bad={"dogs": ["empty.jpg"]})
    report = data.check(root)
    assert not report.usable
    assert report.empty_classes == ["dogs"]
    assert "no usable image in class dogs" in report.summary().splitlines()[-1]


def test_check_never_raises_for_bad_folders(tmp_path):
    assert not data.check(tmp_path / "missing").usable
    (tmp_path / "flat").mkdir()
    make_good_jpeg(tmp_path / "flat" / "a.jpg")
    report = data.check(tmp_path / "flat")
    assert not report.usable and "1 images lie directly in it" in report.summary()
    one_class = make_dataset(tmp_path / "one", {"cats": 2})
    assert "need at least 2 class subfolders" in data.check(one_class).summary()


# --------------------------------------------------------------------------- #
# The real photos, where they are
# --------------------------------------------------------------------------- #


def real_dataset() -> Path | None:
    candidates = [Path(os.environ[data.DATA_ENV]) / "animals"] if os.environ.get(data.DATA_ENV) else []
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "animals")
    return next((path for path in candidates if path.is_dir()), None)


@pytest.mark.skipif(real_dataset() is None, reason="the animals photos are not beside the checkout")
def test_real_dataset_has_three_classes_of_1000():
    images = data.scan(real_dataset())
    assert images.classes == ["cats", "dogs", "panda"]
    assert images.counts() == {"cats": 1000, "dogs": 1000, "panda": 1000}


def make_kaggle_animals_download(root: Path, per_class: int = 3) -> Path:
    """A stand-in for what ``kagglehub.dataset_download`` of the animals set unpacks, in its real layout.

    The Kaggle dataset (ashishsaxena2209/animal-image-datasetdog-cat-and-panda) holds the
    photos twice, ``animals/{cats,dogs,panda}/cats_00001.jpg …`` and the same again in
    ``animals/animals/``, plus ``images/`` with a few loose sample photos (``images/dog.jpg``).
    """
    for copy in (root / "animals", root / "animals" / "animals"):
        for class_index, name in enumerate(("cats", "dogs", "panda")):
            (copy / name).mkdir(parents=True)
            for i in range(1, per_class + 1):
                make_good_jpeg(copy / name / f"{name}_{i:05d}.jpg", seed=100 * class_index + i)
    (root / "images").mkdir()
    for index, name in enumerate(("cat", "dog", "panda")):
        make_good_jpeg(root / "images" / f"{name}.jpg", seed=900 + index)
    return root


def test_locate_downloads_with_kagglehub_and_links_into_cache(tmp_path, isolated_places, monkeypatch):
    import sys
    import types

    download = make_kaggle_animals_download(tmp_path / "kagglehub" / "versions" / "1")
    calls = []

    def dataset_download(handle):
        calls.append(handle)
        if handle != data.KAGGLE_DATASETS["animals"]:
            raise ValueError(f"no such dataset: {handle}")
        return str(download)

    fake = types.ModuleType("kagglehub")
    fake.dataset_download = dataset_download
    monkeypatch.setitem(sys.modules, "kagglehub", fake)
    monkeypatch.setenv(runtime.OFFLINE_ENV, "1")
    with pytest.raises(data.DataNotFound, match="not tried"):
        data.locate()
    assert calls == []

    monkeypatch.delenv(runtime.OFFLINE_ENV)
    found = data.locate()
    # The clean inner copy: the outer animals/ would make scan() see a fourth class "animals".
    assert found == (download / "animals" / "animals").resolve()
    images = data.scan(found)
    assert images.classes == ["cats", "dogs", "panda"]
    assert images.counts() == {"cats": 3, "dogs": 3, "panda": 3}
    report = data.check(found)
    assert report.usable and report.classes == ["cats", "dogs", "panda"] and not report.problems
    assert calls == [data.KAGGLE_DATASETS["animals"]]

    link = isolated_places / "animals"
    assert link.is_symlink() and link.resolve() == found  # the next call needs no download

    monkeypatch.setitem(sys.modules, "kagglehub", None)  # `import kagglehub` now fails
    again = data.locate()
    assert again == found and calls == [data.KAGGLE_DATASETS["animals"]]
    assert data.scan(again).classes == ["cats", "dogs", "panda"]


def test_an_interrupted_copy_into_the_cache_leaves_nothing_that_locate_accepts(tmp_path, isolated_places, monkeypatch):
    import shutil
    import sys
    import types

    download = make_kaggle_animals_download(tmp_path / "kagglehub" / "versions" / "1")
    fake = types.ModuleType("kagglehub")
    fake.dataset_download = lambda handle: str(download)
    monkeypatch.setitem(sys.modules, "kagglehub", fake)
    monkeypatch.delenv(runtime.OFFLINE_ENV, raising=False)

    def no_links(self, *args, **kwargs):
        raise OSError("links are not allowed here")

    monkeypatch.setattr(Path, "symlink_to", no_links)
    real_copytree = shutil.copytree

    def copy_one_class_then_stop(source, target, **kwargs):
        real_copytree(Path(source) / "cats", Path(target) / "cats", **kwargs)
        raise KeyboardInterrupt  # Ctrl-C in the middle of the copy

    monkeypatch.setattr(shutil, "copytree", copy_one_class_then_stop)
    with pytest.raises(KeyboardInterrupt):
        data.locate()
    assert not (isolated_places / "animals").exists()
    assert list(isolated_places.iterdir()) == []  # nor a half-copied temporary folder

    monkeypatch.setattr(shutil, "copytree", real_copytree)
    found = data.locate()
    assert found == (isolated_places / "animals").resolve() and not found.is_symlink()
    assert data.scan(found).counts() == {"cats": 3, "dogs": 3, "panda": 3}


def test_a_programming_error_is_not_reported_as_an_unreadable_image(tmp_path, monkeypatch):
    photo = make_good_jpeg(tmp_path / "ok.jpg")

    def broken(image):
        raise TypeError("a bug, not a bad photo")

    monkeypatch.setattr(images, "to_rgb", broken)
    with pytest.raises(TypeError, match="a bug"):
        data.load_rgb(photo)


def test_a_broken_exif_block_is_said_not_swallowed(tmp_path, monkeypatch):
    from PIL import ImageOps

    photo = make_good_jpeg(tmp_path / "ok.jpg")

    def bad_exif(image):
        raise SyntaxError("not a TIFF file")

    monkeypatch.setattr(ImageOps, "exif_transpose", bad_exif)
    with pytest.warns(data.BrokenExifWarning, match="ok.jpg: its EXIF block cannot be read"):
        picture = data.load_rgb(photo)
    assert picture.mode == "RGB"  # the pixels are still used


def test_a_corrupt_file_keeps_its_cause(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    with pytest.raises(data.UnreadableImage) as caught:
        data.load_rgb(bad)
    assert caught.value.__cause__ is not None
