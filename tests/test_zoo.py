"""tlhelpers.zoo: the torchvision path, its errors, and the packaged fallback."""

import pytest
import torch
import torchvision
from PIL import Image
from skimage import data as skdata

from tlhelpers import runtime, zoo


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache, no download, no forced fallback."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv(runtime.OFFLINE_ENV, "1")
    monkeypatch.delenv(runtime.FORCE_FALLBACK_ENV, raising=False)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    return tmp_path


def _put_checkpoint(name, state_dict=None):
    path = zoo.checkpoint_path(name)
    torch.manual_seed(0)
    state_dict = state_dict if state_dict is not None else zoo.architecture(name).state_dict()
    torch.save(state_dict, path)
    return path, state_dict


def test_checkpoint_path_uses_torchvision_file_name(torch_home):
    path = zoo.checkpoint_path("resnet18")
    assert path.parent == torch_home / "hub" / "checkpoints"
    assert path.name == "resnet18-f37072fd.pth"
    assert zoo.checkpoint_path("vgg16").name == "vgg16-397923af.pth"


def test_torchvision_path_loads_the_cached_checkpoint(torch_home):
    path, state_dict = _put_checkpoint("resnet18")
    backbone = zoo.load("resnet18", fallback=zoo.FALLBACK)
    assert backbone.name == backbone.requested == "resnet18"
    assert not backbone.is_fallback
    assert isinstance(backbone.model, torchvision.models.ResNet)
    assert not backbone.model.training
    assert torch.equal(backbone.model.fc.weight, state_dict["fc.weight"])
    assert str(path) in backbone.source and "ResNet18_Weights.IMAGENET1K_V1" in backbone.source
    assert len(backbone.categories) == 1000 and backbone.head_name == "fc"
    assert backbone.transforms.crop_size == [224]


def test_vgg16_head_name_on_the_meta_device():
    with torch.device("meta"):
        vgg = zoo.architecture("vgg16")  # no 528 MB of weights are allocated
    head_name = zoo.TORCHVISION_MODELS["vgg16"][1]
    assert head_name == "classifier.6" and vgg.get_submodule(head_name).out_features == 1000


def test_fallback_preprocessing_follows_timms_configuration():
    transforms = zoo.fallback_transforms()
    assert (transforms.crop_size, transforms.resize_size) == ([224], [256])  # crop_pct 0.875
    assert transforms.mean == [0.5] * 3 and transforms.std == [0.5] * 3
    assert transforms.interpolation == torchvision.transforms.InterpolationMode.BILINEAR
    smaller = zoo.at_size(transforms, 112)
    assert (smaller.crop_size, smaller.resize_size, smaller.mean) == ([112], [128], transforms.mean)


def test_missing_weights_error_names_file_folder_and_fallback(torch_home):
    with pytest.raises(zoo.WeightsUnavailable) as info:
        zoo.load("resnet18")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message
    assert str(torch_home / "hub" / "checkpoints") in message
    assert "fallback='efficientnet_lite0'" in message


def test_failed_download_is_reported_not_raised_raw(torch_home, monkeypatch):
    monkeypatch.delenv(runtime.OFFLINE_ENV)

    def no_network(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_network)
    with pytest.raises(zoo.WeightsUnavailable, match="download failed: no route to host"):
        zoo.load("vgg16")


def test_fallback_stands_in_and_says_so(torch_home):
    backbone = zoo.load("resnet18", fallback="efficientnet_lite0")
    assert backbone.name == "efficientnet_lite0" and backbone.requested == "resnet18"
    assert backbone.is_fallback
    assert "EfficientNet-Lite0" in backbone.source and "ResNet-18" in backbone.source
    assert "stands in for" in backbone.source
    assert backbone.weights is None  # no torchvision weights entry describes the model that runs
    assert backbone.head_name == "classifier"


def test_forced_fallback_wins_even_with_a_cached_checkpoint(torch_home, monkeypatch):
    _put_checkpoint("resnet18")
    monkeypatch.setenv(runtime.FORCE_FALLBACK_ENV, "1")
    backbone = zoo.load("resnet18")
    assert backbone.name == "efficientnet_lite0"
    assert zoo.FORCED_REASON in backbone.source and "ResNet-18" in backbone.source
    assert all(len(line) <= 80 for line in backbone.source.splitlines())  # fits the book's code column
    monkeypatch.setenv(runtime.FORCE_FALLBACK_ENV, "0")
    assert zoo.load("resnet18").name == "resnet18"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_corrupt_checkpoint_gives_a_clear_error(torch_home, damage):
    path, _ = _put_checkpoint("resnet18")
    content = path.read_bytes()
    path.write_bytes(
        {"truncate": content[: len(content) // 2], "garbage": b"\x80not a checkpoint" * 50, "empty": b""}[damage]
    )
    with pytest.raises(zoo.CorruptCheckpoint) as info:
        zoo.load("resnet18", fallback=None)
    assert str(path) in str(info.value)
    assert "Traceback" not in str(info.value)


def test_checkpoint_of_the_wrong_model_is_reported(torch_home):
    path, _ = _put_checkpoint("resnet18", state_dict={"weight": torch.zeros(3)})
    with pytest.raises(zoo.CorruptCheckpoint, match="does not hold ResNet-18 weights"):
        zoo.load("resnet18")


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown model"):
        zoo.load("resnet1800")
    with pytest.raises(ValueError, match="fallback must be"):
        zoo.load("resnet18", fallback="resnet50")


@pytest.fixture(scope="module")
def lite0():
    return zoo.load("efficientnet_lite0")


def _top1(backbone, image):
    with torch.inference_mode():
        logits = backbone.model(backbone.transforms(Image.fromarray(image)).unsqueeze(0))
    return int(logits.argmax())


def test_packaged_model_knows_chelsea_is_a_cat(lite0):
    assert lite0.source.startswith("EfficientNet-Lite0 ImageNet-1k weights")
    assert 281 <= _top1(lite0, skdata.chelsea()) <= 285


def test_packaged_model_knows_coffee_is_espresso(lite0):
    assert lite0.categories[_top1(lite0, skdata.coffee())] == "espresso"


@pytest.mark.parametrize("damage", ["truncate", "wrong model"])
def test_corrupt_checkpoint_never_becomes_the_fallback(torch_home, damage):
    path, _ = _put_checkpoint("resnet18")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(zoo.CorruptCheckpoint) as info:
        zoo.load("resnet18", fallback=zoo.FALLBACK)
    assert str(path) in str(info.value) and "Delete" in str(info.value)
    assert path.exists(), "the damaged file is the user's to delete"


def test_weights_reachable(torch_home, monkeypatch):
    assert not zoo.weights_reachable("resnet18")  # offline, nothing cached
    _put_checkpoint("resnet18")
    assert zoo.weights_reachable("resnet18")
    monkeypatch.setenv(runtime.FORCE_FALLBACK_ENV, "1")
    assert not zoo.weights_reachable("resnet18")
    monkeypatch.delenv(runtime.FORCE_FALLBACK_ENV)
    monkeypatch.delenv(runtime.OFFLINE_ENV)
    assert zoo.weights_reachable("vgg16")  # a download may be tried
