"""tlhelpers.detection: scenes with exact boxes, detectors on both zoo architectures, training, metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tlhelpers import data, detection, runtime, surgery, zoo


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three classes of 10 small photos each, every photo one flat colour (so its pixels are findable)."""
    root = tmp_path_factory.mktemp("photos") / "animals"
    for k, name in enumerate(("cats", "dogs", "panda")):
        (root / name).mkdir(parents=True)
        for i in range(10):
            size = (40, 30) if i % 2 else (30, 40)
            Image.new("RGB", size, (255, 25 * i, 80 * k)).save(root / name / f"{name}_{i:05d}.png")
    return data.scan(root)


def test_every_box_is_exactly_where_its_photo_was_pasted(photos):
    scenes = detection.make_scenes(photos, 12, size=96, seed=3)
    assert len(scenes) == 12 and scenes.objects() >= 12
    for scene in scenes.scenes:
        assert 1 <= len(scene.boxes) <= 3 and len(scene.boxes) == len(scene.labels) == len(scene.photos)
        pixels = np.asarray(scene.image)
        for box, label, path in zip(scene.boxes, scene.labels, scene.photos):
            assert photos.classes[label - 1] == path.parent.name
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96
            # The photo's flat colour fills the box's middle row and column up to every edge.
            colour = np.asarray(Image.open(path).convert("RGB"))[0, 0]
            row, column = pixels[(y0 + y1) // 2, x0:x1], pixels[y0:y1, (x0 + x1) // 2]
            assert np.abs(row.astype(int) - colour).max() <= 2 and np.abs(column.astype(int) - colour).max() <= 2
        for i, a in enumerate(scene.boxes):  # no photo hides another
            assert not any(detection._overlap(a, b) for b in scene.boxes[i + 1 :])


def test_scenes_hold_only_their_splits_photos_and_repeat_with_the_seed(photos):
    splits = data.split(photos, val=0.2, test=0.2, seed=0)
    built = {name: detection.make_scenes(part, 8, size=64, seed=0) for name, part in splits.items()}
    for name, scenes in built.items():
        assert scenes.photos() <= set(splits[name].files)
    assert not built["train"].photos() & built["val"].photos()
    assert not built["train"].photos() & built["test"].photos()
    assert not built["val"].photos() & built["test"].photos()
    again = detection.make_scenes(splits["train"], 8, size=64, seed=0)
    assert [s.boxes for s in again.scenes] == [s.boxes for s in built["train"].scenes]
    assert np.array_equal(np.asarray(again[0].image), np.asarray(built["train"][0].image))


def test_every_photo_is_used_once_before_any_is_used_again(photos):
    scenes = detection.make_scenes(photos, 10, size=96, seed=1, max_animals=1)
    assert len({path for s in scenes.scenes for path in s.photos}) == 10


def test_scene_set_tensors_and_targets(photos):
    scenes = detection.make_scenes(photos, 4, size=64, seed=0)
    pixels = scenes.pixels()
    assert pixels.shape == (4, 3, 64, 64) and pixels.dtype == torch.float32 and 0 <= pixels.min() <= pixels.max() <= 1
    target = scenes.targets()[0]
    assert target["boxes"].shape == (len(scenes[0].boxes), 4) and target["labels"].dtype == torch.int64
    assert repr(scenes).startswith(f"SceneSet(4 × 64 px: {scenes.objects()} animals, cats=")


def test_anchors_follow_the_boxes(photos):
    scenes = detection.make_scenes(photos, 20, size=128, seed=0, scale=(0.3, 0.6))
    sizes, ratios = detection.anchors_for(scenes)
    assert len(sizes) == len(ratios) == 2
    assert sizes[0][0] <= sizes[0][1] <= sizes[1][0] <= sizes[1][1]
    assert 0.3 * 128 * 0.7 <= sizes[0][0] and sizes[1][1] <= 0.6 * 128
    assert min(ratios[0]) < 1 < max(ratios[0])  # portrait and landscape photos


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18"])
def test_a_detector_builds_on_each_architecture_and_trains_one_step(photos, name):
    scenes = detection.make_scenes(photos, 4, size=64, seed=0)
    with runtime.seeded(0):
        detector = detection.build(
            zoo.architecture(name),
            name,
            3,
            64,
            (0.5,) * 3,
            (0.5,) * 3,
            detection.anchors_for(scenes),
            frozen_batchnorm=False,
        )
    before = {k: v.clone() for k, v in detector.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in detector.parameters() if p.requires_grad], lr=1e-3)
    history = detection.fit(detector, scenes, epochs=1, optimizer=optimizer, batch_size=4, progress=False, device="cpu")
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(history[0])
    changed = [k for k, v in detector.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.body.") for k in changed) and any(k.startswith("roi_heads.") for k in changed)
    found = detection.predict(detector, scenes)
    assert len(found) == 4 and set(found[0]) == {"boxes", "scores", "labels"}


def test_a_frozen_body_stays_frozen_and_its_cached_maps_give_the_same_losses(photos):
    scenes = detection.make_scenes(photos, 4, size=64, seed=0)
    name = "efficientnet_lite0"
    with runtime.seeded(0):
        detector = detection.build(
            zoo.architecture(name), name, 3, 64, (0.5,) * 3, (0.5,) * 3, detection.anchors_for(scenes), freeze_body=True
        )
    counts = detection.trainable_counts(detector)
    assert counts["body"] == 0 and counts["body total"] > 0 and counts["rest"] > 0
    body_before = {k: v.clone() for k, v in detector.backbone.body.state_dict().items()}
    cached = detection.body_features(detector, scenes)
    assert set(cached) == {"0", "1"} and cached["0"].shape[-1] == 64 // 16 and cached["1"].shape[-1] == 64 // 32
    detection._train_mode(detector)
    index = torch.arange(4)
    with runtime.seeded(1):
        direct = detection.loss(detector, scenes.pixels(), scenes.targets())
    with runtime.seeded(1):
        from_cache = detection.loss(detector, scenes.pixels(), scenes.targets(), cached, index)
    for key in direct:
        assert torch.allclose(direct[key], from_cache[key], atol=1e-5), key
    optimizer = torch.optim.SGD([p for p in detector.parameters() if p.requires_grad], lr=1e-2)
    detection.fit(
        detector, scenes, epochs=1, optimizer=optimizer, batch_size=2, body=cached, progress=False, device="cpu"
    )
    after = detector.backbone.body.state_dict()
    assert all(torch.equal(body_before[k], after[k]) for k in body_before)  # BatchNorm statistics too


def test_param_groups_give_the_body_its_own_learning_rate(photos):
    scenes = detection.make_scenes(photos, 2, size=64, seed=0)
    anchors = detection.anchors_for(scenes)
    for freeze, expected in ((False, [1e-4, 1e-3]), (True, [1e-3])):
        detector = detection.build(
            zoo.architecture("resnet18"), "resnet18", 3, 64, (0.5,) * 3, (0.5,) * 3, anchors, freeze_body=freeze
        )
        groups = surgery.param_groups(detector, head_lr=1e-3, body_lr=1e-4, body="backbone.body")
        assert [g["lr"] for g in groups] == expected
        trainable = sum(p.numel() for p in detector.parameters() if p.requires_grad)
        assert sum(p.numel() for g in groups for p in g["params"]) == trainable


def test_perfect_predictions_score_one_and_outcomes_sort_mistakes(photos):
    scenes = detection.make_scenes(photos, 6, size=96, seed=0)
    perfect = [
        {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))} for t in scenes.targets()
    ]
    result = detection.evaluate(perfect, scenes)
    assert result["map_50"] == pytest.approx(1.0) and result["map"] == pytest.approx(1.0)
    assert all(v["ap_50"] == pytest.approx(1.0) for v in result["per_class"].values())
    recall, precision = next(iter(result["pr_curve"].values()))
    assert recall[-1] == pytest.approx(1.0) and precision.min() == pytest.approx(1.0)

    scene, truth = scenes[0], scenes.targets()[0]
    wrong = truth["labels"].clone()
    wrong[0] = wrong[0] % 3 + 1
    stray = torch.tensor([[0.0, 0.0, 5.0, 5.0]])
    prediction = {
        "boxes": torch.cat([truth["boxes"][:1], stray]),
        "labels": torch.cat([wrong[:1], wrong[:1]]),
        "scores": torch.tensor([0.9, 0.8]),
    }
    found = detection.outcomes(prediction, scene, threshold=0.5)
    assert len(found["wrong class"]) == 1 and len(found["false alarm"]) == 1 and not found["hit"]
    assert len(found["missed"]) == len(scene.boxes) - 1
    assert detection.outcomes(prediction, scene, threshold=0.95)["missed"].__len__() == len(scene.boxes)


def test_scenes_with_a_single_class_are_scored_too(photos):
    one_class = photos.subset([i for i, label in enumerate(photos.labels) if label == 1])
    scenes = detection.make_scenes(one_class, 2, size=96, seed=0)
    perfect = [
        {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))} for t in scenes.targets()
    ]
    result = detection.evaluate(perfect, scenes)
    assert list(result["per_class"]) == ["dogs"] and result["map_50"] == pytest.approx(1.0)


def test_best_threshold_is_one_of_the_candidates(photos):
    scenes = detection.make_scenes(photos, 3, size=96, seed=0)
    predictions = [
        {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.full((len(t["labels"]),), 0.6)}
        for t in scenes.targets()
    ]
    assert detection.best_threshold(predictions, scenes, [0.3, 0.5, 0.7]) == 0.5


def test_the_coco_detector_is_not_reachable_while_the_fallback_is_pinned(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert detection.coco_checkpoint_path().name == "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"
    monkeypatch.setenv(runtime.FORCE_FALLBACK_ENV, "1")
    assert not detection.coco_weights_reachable()
    monkeypatch.setenv(runtime.FORCE_FALLBACK_ENV, "0")
    monkeypatch.setenv(runtime.OFFLINE_ENV, "1")
    assert not detection.coco_weights_reachable()
    detection.coco_checkpoint_path().parent.mkdir(parents=True)
    detection.coco_checkpoint_path().write_bytes(b"")
    assert detection.coco_weights_reachable()
    categories = detection.coco_weights().meta["categories"]
    assert {"cat", "dog", "bear", "teddy bear"} <= set(categories) and "panda" not in categories
