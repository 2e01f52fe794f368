"""Tests of tlhelpers.heads.Classifier: predicting, and the save → load round trip of a trained head."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tlhelpers import data, zoo
from tlhelpers.heads import FORMAT_VERSION, Classifier, ClassifierFileError
from tlhelpers.surgery import evaluating

CLASSES = ["cats", "dogs", "panda"]


def noise_picture(seed: int, size=(64, 48)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def random_head(seed: int = 0) -> nn.Linear:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(1280, len(CLASSES)).eval()


@pytest.fixture(scope="module")
def backbone() -> zoo.Backbone:
    """The packaged EfficientNet-Lite0 (real ImageNet weights, offline, about a second)."""
    return zoo.load("efficientnet_lite0")


@pytest.fixture
def classifier(backbone) -> Classifier:
    return Classifier(backbone, random_head(), CLASSES)


def rewrite(path, **changes):
    """Load a saved classifier file, change some entries and write it back."""
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


# --------------------------------------------------------------------------- #
# Building and predicting
# --------------------------------------------------------------------------- #


def test_predict_gives_sorted_probabilities_for_every_class(classifier):
    results = classifier.rank([noise_picture(0), noise_picture(1)])
    assert len(results) == 2
    for ranked in results:
        assert sorted(name for name, _ in ranked) == sorted(CLASSES)
        probabilities = [p for _, p in ranked]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)


def test_predict_matches_the_assembled_model(classifier, backbone):
    pictures = [noise_picture(2), noise_picture(3)]
    model = classifier.model()
    assert model is not backbone.model
    assert model.get_submodule(backbone.head_name).out_features == 3
    assert backbone.model.get_submodule(backbone.head_name).out_features == 1000  # the backbone is untouched
    with torch.no_grad():
        expected = model(torch.stack([backbone.transforms(p) for p in pictures])).softmax(1)
    for ranked, row in zip(classifier.rank(pictures), expected):
        assert dict(ranked) == pytest.approx({name: row[i].item() for i, name in enumerate(CLASSES)}, abs=1e-6)


def test_predict_top_k_paths_and_single_image(classifier, tmp_path):
    path = tmp_path / "photo.png"
    noise_picture(4).save(path)
    from_path, from_picture = classifier.rank([str(path), noise_picture(4)], k=2)
    assert len(from_path) == 2 and dict(from_path) == pytest.approx(dict(from_picture), abs=1e-6)
    single = classifier.rank(path, k=10)  # a single path is a list of one; k caps at the classes
    assert len(single) == 1 and len(single[0]) == 3
    with pytest.raises(ValueError, match="at least 1"):
        classifier.rank(path, k=0)


def test_predict_unreadable_path_raises(classifier, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    with pytest.raises(data.UnreadableImage, match="bad.jpg"):
        classifier.rank([bad])


def test_predict_restores_training_modes(classifier, backbone):
    backbone.model.train()
    backbone.model.bn1.eval()
    try:
        classifier.rank([noise_picture(5)])
        assert backbone.model.training and not backbone.model.bn1.training
    finally:
        backbone.model.eval()


def test_evaluating_restores_each_module():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).train()
    model[1].eval()
    with evaluating(model):
        assert not any(module.training for module in model.modules())
    assert model.training and model[0].training and not model[1].training


def test_head_must_fit_classes_and_backbone(backbone):
    with pytest.raises(ValueError, match="3 outputs for 2 classes"):
        Classifier(backbone, random_head(), ["cats", "dogs"])
    with pytest.raises(ValueError, match="512 features"):
        Classifier(backbone, nn.Linear(512, 3), CLASSES)
    with pytest.raises(ValueError, match="unique"):
        Classifier(backbone, random_head(), ["cats", "cats", "dogs"])


def test_repr_is_short(classifier):
    assert repr(classifier) == "Classifier(EfficientNet-Lite0: cats, dogs, panda)"


# --------------------------------------------------------------------------- #
# Saving and loading
# --------------------------------------------------------------------------- #


def test_round_trip_gives_identical_predictions(classifier, tmp_path):
    pictures = [noise_picture(6), noise_picture(7)]
    path = classifier.save(tmp_path / "animals.pt")
    assert path.stat().st_size < 100_000
    loaded = Classifier.load(path)
    assert loaded.classes == CLASSES
    assert (loaded.backbone.name, loaded.backbone.requested) == ("efficientnet_lite0", "efficientnet_lite0")
    assert torch.equal(loaded.head.weight, classifier.head.weight)
    assert loaded.rank(pictures) == classifier.rank(pictures)


def test_file_is_plain_data(classifier, tmp_path):
    path = classifier.save(tmp_path / "animals.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["backbone"] == "efficientnet_lite0" and payload["classes"] == CLASSES
    assert payload["preprocessing"] == {
        "crop_size": [224],
        "resize_size": [256],
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "interpolation": "bilinear",
    }
    assert set(payload["head"]) == {"weight", "bias"}
    assert not any(isinstance(value, nn.Module) for value in payload.values())


def test_fallback_file_names_the_model_that_ran(backbone, tmp_path):
    stand_in = zoo.Backbone(
        name=backbone.name,
        requested="resnet18",
        model=backbone.model,
        transforms=backbone.transforms,
        categories=backbone.categories,
        source="fallback",
        head_name=backbone.head_name,
    )
    path = Classifier(stand_in, random_head(), CLASSES).save(tmp_path / "fallback.pt")
    payload = torch.load(path, weights_only=True)
    assert (payload["backbone"], payload["requested"]) == ("efficientnet_lite0", "resnet18")
    assert Classifier.load(path).backbone.name == "efficientnet_lite0"


def test_save_is_atomic(classifier, tmp_path, monkeypatch):
    path = classifier.save(tmp_path / "models" / "animals.pt")
    before = path.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["animals.pt"]

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        Classifier(classifier.backbone, random_head(seed=1), CLASSES).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["animals.pt"]


def test_load_missing_file(tmp_path):
    with pytest.raises(ClassifierFileError, match="not found.*missing.pt"):
        Classifier.load(tmp_path / "missing.pt")


def test_load_truncated_file(classifier, tmp_path):
    path = classifier.save(tmp_path / "animals.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ClassifierFileError, match="animals.pt.*truncated"):
        Classifier.load(path)


def test_load_garbage_file(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ClassifierFileError, match="garbage.pt"):
        Classifier.load(path)


def test_load_other_torch_file(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(nn.Linear(1280, 3).state_dict(), path)
    with pytest.raises(ClassifierFileError, match="weights.pt is not a classifier file"):
        Classifier.load(path)


def test_load_other_format_version(classifier, tmp_path):
    path = classifier.save(tmp_path / "animals.pt")
    rewrite(path, format_version=FORMAT_VERSION + 1)
    with pytest.raises(ClassifierFileError, match=f"animals.pt has classifier format version {FORMAT_VERSION + 1}"):
        Classifier.load(path)


def test_load_inconsistent_file(classifier, tmp_path):
    path = classifier.save(tmp_path / "animals.pt")
    rewrite(path, classes=["cats", "dogs"])
    with pytest.raises(ClassifierFileError, match="2 classes for a head with 3 outputs"):
        Classifier.load(path)


def test_load_refuses_other_preprocessing(classifier, tmp_path):
    path = classifier.save(tmp_path / "animals.pt")
    payload = torch.load(path, weights_only=True)
    rewrite(path, preprocessing={**payload["preprocessing"], "mean": [0.485, 0.456, 0.406]})
    with pytest.raises(ClassifierFileError, match="preprocessing"):
        Classifier.load(path)


def test_load_refuses_other_backbone_weights(classifier, tmp_path):
    path = classifier.save(tmp_path / "animals.pt")
    rewrite(path, backbone_sha256="0" * 64)
    with pytest.raises(ClassifierFileError, match="not those the head in .*animals.pt was trained on"):
        Classifier.load(path)


def test_load_refuses_fallback_for_another_backbone(classifier, tmp_path):
    # The test suite forces the fallback, so "resnet18" would come back as EfficientNet-Lite0.
    path = classifier.save(tmp_path / "animals.pt")
    rewrite(path, backbone="resnet18", requested="resnet18")
    with pytest.raises(zoo.WeightsUnavailable, match="animals.pt holds a head trained on ResNet-18"):
        Classifier.load(path)


def test_saved_file_is_a_zip_without_pickled_modules(classifier, tmp_path):
    path = classifier.save(tmp_path / "animals.pt")
    with zipfile.ZipFile(path) as archive:
        pickled = next(archive.read(name) for name in archive.namelist() if name.endswith("data.pkl"))
    assert b"torch.nn" not in pickled and b"timm" not in pickled


def _as_json(classifier, path):
    """The classifier file's fields as the book's page writes them: JSON, the head as lists."""
    from tlhelpers import features
    from tlhelpers.heads import preprocessing

    payload = {
        "format": "tlhelpers.classifier",
        "format_version": 1,
        "backbone": classifier.backbone.name,
        "requested": classifier.backbone.requested,
        "backbone_sha256": features.model_fingerprint(classifier.backbone.model, skip=classifier.backbone.head_name),
        "head": {"weight": classifier.head.weight.tolist(), "bias": classifier.head.bias.tolist()},
        "classes": list(classifier.classes),
        "preprocessing": preprocessing(classifier.backbone.transforms),
    }
    path.write_text(json.dumps(payload))
    return path


def test_a_json_classifier_file_from_the_page_loads_and_predicts_alike(classifier, tmp_path):
    loaded = Classifier.load(_as_json(classifier, tmp_path / "my-classes.json"))
    pictures = [noise_picture(8), noise_picture(9)]
    assert loaded.classes == CLASSES
    assert [[c for c, _ in r] for r in loaded.rank(pictures)] == [[c for c, _ in r] for r in classifier.rank(pictures)]


@pytest.mark.parametrize(
    "text,message",
    [
        ("{not json", "is not a JSON classifier file"),
        ('{"format": "something else"}', "without the 'tlhelpers.classifier' marker"),
        ('{"format": "tlhelpers.classifier", "format_version": 1, "head": {"weight": "abc"}}', "not a matrix"),
        ('{"format": "tlhelpers.classifier", "format_version": 2}', "format version 2"),
    ],
)
def test_a_broken_json_classifier_file_is_refused_clearly(tmp_path, text, message):
    path = tmp_path / "my-classes.json"
    path.write_text(text)
    with pytest.raises(ClassifierFileError, match=message):
        Classifier.load(path)


def test_the_training_split_travels_with_the_file(classifier, tmp_path):
    classifier.split = {"seed": 3, "val": 0.2, "test": 0.1}
    assert Classifier.load(classifier.save(tmp_path / "split.pt")).split == {"seed": 3, "val": 0.2, "test": 0.1}
    classifier.split = None
    assert Classifier.load(classifier.save(tmp_path / "none.pt")).split is None  # older files: unknown


def test_an_unreadable_file_says_permission_denied_and_keeps_the_cause(classifier, tmp_path, monkeypatch):
    path = classifier.save(tmp_path / "model.pt")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "load", denied)
    with pytest.raises(ClassifierFileError, match="permission denied") as caught:
        Classifier.load(path)
    assert isinstance(caught.value.__cause__, PermissionError)


def test_a_file_that_cannot_be_read_is_not_called_foreign(classifier, tmp_path, monkeypatch):
    from tlhelpers import recipe

    path = classifier.save(tmp_path / "model.pt")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "load", denied)
    problem = recipe.writable_output(path)
    assert "cannot be read (Permission denied)" in problem and "not written by tlhelpers" not in problem


def test_garbage_keeps_its_cause(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(ClassifierFileError) as caught:
        Classifier.load(path)
    assert caught.value.__cause__ is not None
