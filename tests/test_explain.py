"""Tests of tlhelpers.explain: class activation maps on EfficientNet-Lite0 and ResNet-18, refused on VGG16."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402
from torchvision import models  # noqa: E402

from tlhelpers import explain, zoo  # noqa: E402

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
HEADS = {"random_lite0": "classifier", "random_resnet18": "fc"}


@pytest.fixture(scope="module")
def random_lite0() -> nn.Module:
    torch.manual_seed(0)
    return zoo.architecture("efficientnet_lite0").eval()


@pytest.fixture(scope="module")
def random_resnet18() -> nn.Module:
    torch.manual_seed(0)
    return models.resnet18(weights=None).eval()


def random_image(height=96, width=128, seed=0) -> torch.Tensor:
    return torch.randn(3, height, width, generator=torch.Generator().manual_seed(seed))


def assert_is_cam(cam, height, width):
    assert cam.shape == (height, width)
    assert cam.min() >= 0 and cam.max() <= 1
    assert cam.max() == pytest.approx(1.0)


@pytest.mark.parametrize("model_fixture", ["random_lite0", "random_resnet18"])
def test_cam_shape_range_and_default_class(request, model_fixture):
    model = request.getfixturevalue(model_fixture)
    head = model.get_submodule(HEADS[model_fixture])
    image = random_image()
    cam, class_index = explain.class_activation_map(model, head, image)
    assert_is_cam(cam, 96, 128)
    with torch.no_grad():
        assert class_index == model(image[None]).argmax(1).item()


@pytest.mark.parametrize("model_fixture", ["random_lite0", "random_resnet18"])
def test_cam_identity_mean_of_map_plus_bias_is_the_logit(request, model_fixture):
    model = request.getfixturevalue(model_fixture)
    head = model.get_submodule(HEADS[model_fixture])
    image = random_image(seed=1)
    with torch.no_grad():
        logits = model(image[None])[0]
    maps = explain.feature_maps(model, image)
    assert maps.ndim == 3 and maps.shape[0] == head.in_features
    for class_index in (0, 7, int(logits.argmax())):
        raw = explain.class_map(head, maps, class_index)
        assert raw.shape == maps.shape[1:]
        assert (raw.mean() + head.bias[class_index]).item() == pytest.approx(
            logits[class_index].item(), rel=1e-4, abs=1e-4
        )


def test_cam_with_a_trained_head_and_chosen_class(random_lite0):
    head = nn.Linear(1280, 3)
    cam, class_index = explain.class_activation_map(random_lite0, head, random_image(64, 64)[None], class_index=2)
    assert class_index == 2
    assert cam.shape == (64, 64)
    with pytest.raises(IndexError, match="out of range"):
        explain.class_activation_map(random_lite0, head, random_image(64, 64), class_index=3)


def test_head_of_another_backbone_is_refused(random_lite0):
    with pytest.raises(ValueError, match="512 features but the model's last maps have 1280 channels"):
        explain.class_activation_map(random_lite0, nn.Linear(512, 3), random_image(64, 64))


def test_one_image_only(random_resnet18):
    with pytest.raises(ValueError, match="one image"):
        explain.class_activation_map(random_resnet18, random_resnet18.fc, torch.randn(2, 3, 64, 64))


@pytest.mark.slow
def test_vgg16_is_refused():
    vgg = models.vgg16(weights=None).eval()
    with pytest.raises(ValueError, match="CAM needs a linear head right after global average pooling"):
        explain.class_activation_map(vgg, vgg.classifier[6], random_image(64, 64))


def test_model_mode_is_restored(random_resnet18):
    random_resnet18.train()
    try:
        explain.class_activation_map(random_resnet18, random_resnet18.fc, random_image(64, 64))
        assert all(module.training for module in random_resnet18.modules())
    finally:
        random_resnet18.eval()


def test_real_weights_on_chelsea_point_at_the_cat():
    from skimage import data as samples

    backbone = zoo.load("efficientnet_lite0")
    picture = Image.fromarray(samples.chelsea())
    cam, class_index = explain.class_activation_map(
        backbone.model, backbone.model.classifier, backbone.transforms(picture)
    )
    assert class_index in IMAGENET_CATS
    assert_is_cam(cam, 224, 224)

    view = explain.model_view(picture, backbone.transforms)
    assert view.size == (224, 224)
    fig, ax = plt.subplots()
    try:
        heat = explain.overlay(ax, view, cam)
        assert len(ax.images) == 2 and heat is ax.images[1]
        assert not ax.axison
        assert heat.get_cmap().name == "jet"
        assert heat.get_extent() == list(ax.images[0].get_extent())
    finally:
        plt.close(fig)


def test_overlay_stretches_a_smaller_map_over_an_array():
    fig, ax = plt.subplots()
    try:
        pixels = np.zeros((40, 60, 3), dtype=np.uint8)
        heat = explain.overlay(ax, pixels, torch.rand(7, 7), alpha=0.3, cmap="inferno")
        assert heat.get_alpha() == 0.3
        assert heat.get_extent() == [-0.5, 59.5, 39.5, -0.5]
    finally:
        plt.close(fig)
