import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import models, transforms

from tlhelpers import features, zoo
from tlhelpers.features import FeatureCacheWarning


class Calls(list):
    """Batch sizes seen by forward; shared, not copied, by the extractor's deepcopy."""

    def __deepcopy__(self, memo):
        return self


class CountingNet(nn.Module):
    """A tiny CNN that counts its forward passes (copies share the counter)."""

    def __init__(self, calls: Calls | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 2)
        self.calls = Calls() if calls is None else calls
        counted = self.calls  # a hook, not forward, counts: forward is traced, never run
        self.conv.register_forward_pre_hook(lambda module, args: counted.append(len(args[0])))

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


@pytest.fixture
def images(tmp_path):
    """Two classes of four 12×12 PNGs each: reddish and bluish."""
    from tlhelpers import data

    root = tmp_path / "photos"
    files, labels = [], []
    rng = np.random.default_rng(0)
    for label, name in enumerate(["cats", "dogs"]):
        (root / name).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 80, (12, 12, 3), dtype=np.uint8)
            pixels[..., 0 if label == 0 else 2] += 150
            path = root / name / f"{name}_{i}.png"
            Image.fromarray(pixels).save(path)
            files.append(path)
            labels.append(label)
    return data.ImageSet(root, files, labels, ["cats", "dogs"])


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


TO_TENSOR = transforms.ToTensor()


def test_extract_computes_then_reads_the_cache(images, cache):
    calls = Calls()
    model = CountingNet(calls)
    first = features.extract(model, images, TO_TENSOR, name="toy", cache_dir=cache, batch_size=3, progress=False)
    assert not first.from_cache and sum(calls) == 8
    assert first.features.shape == (8, 6) and first.features.dtype == torch.float32
    assert first.labels.tolist() == images.labels and first.labels.dtype == torch.long
    assert first.files[0] == "cats/cats_0.png" and first.classes == ["cats", "dogs"]
    assert first.cache_file.parent == cache and first.cache_file.exists()
    assert first.paths[0] == images.files[0]

    second = features.extract(model, images, TO_TENSOR, name="toy", cache_dir=cache, progress=False)
    assert second.from_cache and sum(calls) == 8
    assert torch.equal(second.features, first.features) and second.files == first.files
    assert repr(second) == "FeatureSet(8 images × 6 features: cats, dogs; skipped=0)"


def test_features_are_the_model_without_its_head(images, cache):
    model = CountingNet()
    fs = features.extract(model, images, TO_TENSOR, cache_dir=cache, progress=False)
    model.eval()
    x = torch.stack([TO_TENSOR(Image.open(path).convert("RGB")) for path in images.files])
    with torch.no_grad():
        expected = model.pool(torch.relu(model.bn(model.conv(x)))).flatten(1)
        assert torch.allclose(fs.features, expected, atol=1e-6)
        assert torch.allclose(model.fc(fs.features), model(x), atol=1e-6)
    assert isinstance(model.fc, nn.Linear)  # the model itself keeps its head


def test_a_new_head_keeps_the_cache_but_new_weights_do_not(images, cache):
    calls = Calls()
    model = CountingNet(calls)
    features.extract(model, images, TO_TENSOR, cache_dir=cache, progress=False)
    model.fc = nn.Linear(6, 5)
    assert features.extract(model, images, TO_TENSOR, cache_dir=cache, progress=False).from_cache
    with torch.no_grad():
        model.conv.weight[0, 0, 0, 0] += 1e-3
    assert not features.extract(model, images, TO_TENSOR, cache_dir=cache, progress=False).from_cache


def test_changed_file_or_transform_or_extra_key_recomputes(images, cache):
    calls = Calls()
    model = CountingNet(calls)
    kwargs = dict(name="toy", cache_dir=cache, progress=False)
    first = features.extract(model, images, TO_TENSOR, **kwargs)
    stat = os.stat(images.files[2])
    os.utime(images.files[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = features.extract(model, images, TO_TENSOR, **kwargs)
    assert not again.from_cache and again.cache_file != first.cache_file and sum(calls) == 16

    normalized = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    assert not features.extract(model, images, normalized, **kwargs).from_cache
    assert features.extract(model, images, normalized, **kwargs).from_cache
    assert not features.extract(model, images, normalized, key_extra="v2", **kwargs).from_cache


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong key", "wrong shape"])
def test_a_damaged_cache_file_is_recomputed_with_a_warning(images, cache, damage):
    calls = Calls()
    model = CountingNet(calls)
    first = features.extract(model, images, TO_TENSOR, name="toy", cache_dir=cache, progress=False)
    path = first.cache_file
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"not a torch file")
    else:
        payload = torch.load(path, weights_only=True)
        if damage == "wrong key":
            payload["key"] = "0" * 64
        else:
            payload["features"] = payload["features"][:3]
        torch.save(payload, path)
    with pytest.warns(FeatureCacheWarning, match=str(path.name)):
        again = features.extract(model, images, TO_TENSOR, name="toy", cache_dir=cache, progress=False)
    assert not again.from_cache and sum(calls) == 16
    assert torch.equal(again.features, first.features)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert features.extract(model, images, TO_TENSOR, name="toy", cache_dir=cache, progress=False).from_cache


def test_cache_writes_are_atomic(images, cache, monkeypatch):
    model = CountingNet()
    features.extract(model, images, TO_TENSOR, cache_dir=cache, progress=False)
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []

    def failing_save(payload, file):
        file.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        features.extract(model, images, transforms.Compose([TO_TENSOR]), cache_dir=cache, progress=False)
    assert len(list(cache.iterdir())) == 1  # only the first, complete file


def test_cache_folder_comes_from_the_environment(images, tmp_path, monkeypatch):
    monkeypatch.setenv(features.CACHE_ENV, str(tmp_path / "env-cache"))
    fs = features.extract(CountingNet(), images, TO_TENSOR, name="toy", progress=False)
    assert fs.cache_file.parent == tmp_path / "env-cache"
    assert features.clear_cache() == 1
    assert features.extract(CountingNet(), images, TO_TENSOR, cache=False, progress=False).cache_file is None


def test_unreadable_files_are_skipped_and_listed(images, cache):
    from tlhelpers import data

    broken = images.root / "dogs" / "dogs_broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with_broken = data.ImageSet(images.root, images.files + [broken], images.labels + [1], images.classes)
    with pytest.warns(data.SkippedImageWarning):
        fs = features.extract(CountingNet(), with_broken, TO_TENSOR, cache_dir=cache, progress=False)
    assert len(fs) == 8 and list(fs.skipped) == ["dogs/dogs_broken.png"]
    cached = features.extract(CountingNet(), with_broken, TO_TENSOR, cache_dir=cache, progress=False)
    assert cached.from_cache and cached.skipped == fs.skipped


def test_select_takes_the_rows_of_a_subset(images, cache):
    fs = features.extract(CountingNet(), images, TO_TENSOR, cache_dir=cache, progress=False)
    part = fs.select(images.subset([6, 1]))
    assert part.files == ["dogs/dogs_2.png", "cats/cats_1.png"]
    assert torch.equal(part.features, fs.features[[6, 1]]) and part.labels.tolist() == [1, 0]


def test_pooled_features_of_the_book_models():
    x = torch.randn(1, 3, 32, 32)
    for model, dim in ((models.resnet18(weights=None), 512), (zoo.architecture("efficientnet_lite0"), 1280)):
        with torch.no_grad():
            assert features.pooled_features(model.eval(), x).shape == (1, dim)
    with torch.device("meta"):
        vgg = models.vgg16(weights=None)
    assert features.pooled_features(vgg, torch.empty(1, 3, 32, 32, device="meta")).shape == (1, 4096)
    assert isinstance(vgg.classifier[6], nn.Linear)  # the model itself is not changed


def test_a_cache_hit_copies_nothing_and_leaves_the_model_as_it_was(images, cache, monkeypatch):
    import copy

    model = CountingNet().train()
    features.extract(model, images, TO_TENSOR, name="toy", cache_dir=cache, progress=False)
    assert model.training and isinstance(model.fc, nn.Linear)
    monkeypatch.setattr(copy, "deepcopy", lambda *args, **kwargs: pytest.fail("the model was copied"))
    assert features.extract(model, images, TO_TENSOR, name="toy", cache_dir=cache, progress=False).from_cache


def test_cache_key_includes_library_versions_and_antialias(images, monkeypatch):
    model_key = ("toy", "0" * 64)
    plain = features.cache_key(*model_key, transforms.Resize(8), images)
    assert features.cache_key(*model_key, transforms.Resize(8, antialias=False), images) != plain
    real_version = features.importlib.metadata.version
    monkeypatch.setattr(
        features.importlib.metadata, "version", lambda name: "0.0" if name == "pillow" else real_version(name)
    )
    assert features.cache_key(*model_key, transforms.Resize(8), images) != plain


def test_clear_cache_deletes_only_the_cache_files(images, cache):
    fs = features.extract(CountingNet(), images, TO_TENSOR, name="toy", cache_dir=cache, progress=False)
    mine = cache / "my_model.pt"
    torch.save({"weights": 1}, mine)
    (cache / "notes.txt").write_text("keep me")
    (cache / f".{fs.cache_file.name}.abc123.tmp").write_bytes(b"half a file")
    assert features.clear_cache(cache) == 2
    assert sorted(path.name for path in cache.iterdir()) == ["my_model.pt", "notes.txt"]
    assert features.clear_cache(cache / "missing") == 0


def test_extraction_leaves_the_global_random_stream_alone(images, cache):
    model = CountingNet()  # seeds the global stream itself
    torch.rand(1)
    state = torch.get_rng_state()
    features.extract(model, images, TO_TENSOR, name="toy", cache_dir=cache, progress=False)
    assert torch.equal(torch.get_rng_state(), state), "a cold cache would change later random numbers"


def test_a_cpu_extracts_channels_last_in_small_batches_and_leaves_the_layout_as_it_was(images, cache):
    calls = Calls()
    model = CountingNet(calls)
    seen_layouts = []
    model.conv.register_forward_pre_hook(
        lambda module, inputs: seen_layouts.append(
            (
                inputs[0].is_contiguous(memory_format=torch.channels_last),
                module.weight.is_contiguous(memory_format=torch.channels_last),
            )
        )
    )
    fs = features.extract(model, images, TO_TENSOR, cache_dir=cache, device="cpu", progress=False)
    assert features.extraction_batch_size("cpu") == 8 and calls == [8]
    assert seen_layouts == [(True, True)]  # the input and the weights, during the pass
    assert model.conv.weight.is_contiguous()  # and the caller's layout afterwards
    x = torch.stack([TO_TENSOR(Image.open(path).convert("RGB")) for path in images.files])
    with torch.no_grad():
        expected = features.pooled_features(model.eval(), x)
    assert torch.allclose(fs.features, expected, atol=1e-5)  # the same features as the usual layout


def test_a_gpu_gets_large_batches_and_mps_keeps_its_layout():
    from tlhelpers import surgery

    assert features.extraction_batch_size("cuda") == 64 and features.extraction_batch_size(torch.device("cpu")) == 8
    assert surgery.prefers_channels_last("cpu") and surgery.prefers_channels_last("cuda")
    assert not surgery.prefers_channels_last("mps")


def test_feature_network_gives_maps_pooled_and_logits_of_one_pass():
    model = models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = features.feature_network(model, ("maps", "pooled", "logits"))(x)
        assert torch.allclose(out["logits"], model(x), atol=1e-5)
    assert torch.allclose(out["maps"].mean((2, 3)), out["pooled"], atol=1e-5)
    with pytest.raises(ValueError, match="unknown outputs"):
        features.feature_network(model, ("pixels",))
    with pytest.raises(ValueError, match="no global pooling"):
        features.feature_network(CountingNet(), ("maps",))


def test_extract_runs_where_the_model_is_unless_told(images, cache, monkeypatch):
    from tlhelpers import runtime

    monkeypatch.setattr(runtime, "pick_device", lambda: pytest.fail("the model's device is the default"))
    fs = features.extract(CountingNet(), images, TO_TENSOR, cache=False, progress=False)
    assert len(fs) == len(images)


def test_a_models_feature_network_is_built_once_while_its_modules_stay():
    import gc
    import weakref

    model = models.resnet18(weights=None).eval()
    network = features.feature_network(model)
    assert features.feature_network(model) is network
    maps = features.feature_network(model, ("maps", "pooled"))
    assert maps is not network and features.feature_network(model) is network  # both kept
    assert features.feature_network(model, ("maps", "pooled")) is maps
    model.fc = nn.Linear(512, 3)  # another head: traced again
    rebuilt = features.feature_network(model)
    assert rebuilt is not network and features.feature_network(model) is rebuilt
    alive = weakref.ref(model)
    del model, network, rebuilt
    gc.collect()
    assert alive() is None  # the networks do not keep their model alive
