"""Tests of tlhelpers.export (ONNX export, int8) and tlhelpers.onnx_inference (running it without torch)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from test_classifier import noise_picture
from torch import nn

from tlhelpers import export, onnx_inference, runtime, zoo
from tlhelpers.heads import Classifier

CLASSES = ["cats", "dogs", "panda"]


def tiny_classifier(seed: int = 0) -> Classifier:
    """A small network in a zoo.Backbone: exports in a second or two, unlike a real backbone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU6(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU6(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 1000),
        ).eval()
        head = nn.Linear(32, len(CLASSES)).eval()
    backbone = zoo.Backbone(
        name="tiny",
        requested="tiny",
        model=model,
        head_name="7",
        categories=[],
        transforms=zoo.preset(32, 36, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)),
        source="a tiny test network",
    )
    return Classifier(backbone, head, CLASSES)


def pictures(count: int = 4) -> list[Image.Image]:
    sizes = [(64, 48), (40, 90), (37, 36), (120, 80)]
    return [noise_picture(i, size=sizes[i % len(sizes)]) for i in range(count)]


@pytest.fixture(scope="module")
def tiny():
    return tiny_classifier()


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    return export.to_onnx(tiny, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def torch_logits(clf: Classifier, images) -> np.ndarray:
    with torch.no_grad():
        batch = torch.stack([clf.backbone.transforms(image) for image in images])
        return clf.model()(batch).numpy()


# --------------------------------------------------------------------------- #
# Export
# --------------------------------------------------------------------------- #


def test_export_is_valid_onnx_with_the_metadata(exported, tiny):
    model = onnx.load(str(exported))
    onnx.checker.check_model(model, full_check=True)
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert props["tlhelpers.format"] == onnx_inference.FORMAT
    assert json.loads(props["tlhelpers.classes"]) == CLASSES
    assert json.loads(props["tlhelpers.preprocessing"]) == {
        "crop_size": [32],
        "resize_size": [36],
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.25, 0.3],
        "interpolation": "bilinear",
    }
    assert props["tlhelpers.variant"] == "fp32" and props["tlhelpers.backbone"] == "tiny"
    assert [i.name for i in model.graph.input] == [export.INPUT]
    assert [o.name for o in model.graph.output] == [export.OUTPUT]
    assert not [p.name for p in exported.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("count", [1, 3])
def test_onnxruntime_matches_pytorch_for_any_batch_size(exported, tiny, count):
    model = onnx_inference.OnnxClassifier(exported)
    images = pictures(count)
    np.testing.assert_allclose(model.logits(model.batch(images)), torch_logits(tiny, images), atol=1e-5)


def test_export_leaves_the_classifier_untouched_and_in_eval_mode(tiny, tmp_path):
    tiny.backbone.model.train()
    try:
        export.to_onnx(tiny, tmp_path / "m.onnx")
        assert tiny.backbone.model.training  # the export worked on a copy
    finally:
        tiny.backbone.model.eval()
    onnx_model = onnx_inference.OnnxClassifier(tmp_path / "m.onnx")
    images = pictures(2)
    np.testing.assert_allclose(onnx_model.logits(onnx_model.batch(images)), torch_logits(tiny, images), atol=1e-5)


def test_a_failed_export_leaves_nothing_behind(tiny, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export.to_onnx(tiny, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- #
# The reference predictor
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("size", [(64, 48), (48, 64), (36, 36), (301, 97), (20, 10)])
def test_numpy_preprocessing_is_torchvisions(tiny, size):
    image = noise_picture(7, size=size)
    settings = json.loads(export.metadata(tiny)["tlhelpers.preprocessing"])
    if size == (20, 10):  # smaller than the crop after resizing: padded with zeros, like torchvision
        settings["resize_size"] = [20]
        transforms = zoo.preset(32, 20, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    else:
        transforms = tiny.backbone.transforms
    np.testing.assert_allclose(onnx_inference.preprocess(image, settings), transforms(image).numpy(), atol=1e-6)


def test_reference_predictor_ranks_every_class(exported, tiny):
    images = pictures(3)
    onnx_ranked = onnx_inference.OnnxClassifier(exported, threads=1).rank(images)
    torch_ranked = tiny.rank(images)
    for ours, theirs in zip(onnx_ranked, torch_ranked):
        assert [name for name, _ in ours] == [name for name, _ in theirs]
        np.testing.assert_allclose([p for _, p in ours], [p for _, p in theirs], atol=1e-5)
    assert [len(r) for r in onnx_inference.OnnxClassifier(exported).rank(images, k=1)] == [1, 1, 1]


def test_reference_predictor_reads_files_and_never_imports_torch(exported, tmp_path):
    photo = tmp_path / "photo.png"
    noise_picture(3).save(photo)
    script = textwrap.dedent(f"""
        import sys
        from tlhelpers import onnx_inference
        model = onnx_inference.OnnxClassifier({str(exported)!r})
        ranked = model.rank([{str(photo)!r}])
        assert sorted(name for name, _ in ranked[0]) == {sorted(CLASSES)!r}
        assert "torch" not in sys.modules, "the reference predictor imported torch"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_files_that_are_not_exported_classifiers(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not onnx")
    with pytest.raises(onnx_inference.OnnxFileError, match="cannot be read as an ONNX model"):
        onnx_inference.OnnxClassifier(garbage)
    with pytest.raises(onnx_inference.OnnxFileError, match="not found"):
        onnx_inference.OnnxClassifier(tmp_path / "missing.onnx")
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(nn.Linear(2, 2).eval(), (torch.zeros(1, 2),), str(plain), dynamo=True, verbose=False)
    with pytest.raises(onnx_inference.OnnxFileError, match="without the metadata"):
        onnx_inference.OnnxClassifier(plain)
    assert not export.is_exported_file(plain) and not export.is_exported_file(garbage)


# --------------------------------------------------------------------------- #
# Quantization
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("mode", ["dynamic", "static", "weights"])
def test_int8_copies_keep_the_metadata_and_roughly_the_outputs(exported, tmp_path, mode):
    calibration = pictures(4) if mode == "static" else None
    path = export.quantize(exported, tmp_path / f"{mode}.onnx", mode=mode, calibration_photos=calibration)
    onnx.checker.check_model(onnx.load(str(path)))
    model, reference = onnx_inference.OnnxClassifier(path), onnx_inference.OnnxClassifier(exported)
    assert model.variant == ("int8 weights" if mode == "weights" else f"{mode} int8") and model.classes == CLASSES
    assert model.preprocessing == reference.preprocessing and model.source == reference.source
    images = pictures(4)
    ours = onnx_inference.softmax(model.logits(model.batch(images)))
    theirs = onnx_inference.softmax(reference.logits(reference.batch(images)))
    assert np.abs(ours - theirs).max() < 0.05
    assert export.is_exported_file(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{mode}.onnx"]  # no intermediate files


def test_static_quantization_needs_photos(exported, tmp_path):
    with pytest.raises(ValueError, match="at least one calibration photo"):
        export.quantize(exported, tmp_path / "s.onnx", mode="static")
    with pytest.raises(ValueError, match="mode must be"):
        export.quantize(exported, tmp_path / "s.onnx", mode="int4")
    assert list(tmp_path.iterdir()) == []


def test_calibration_reader_gives_batches_then_none(exported):
    reader = export.PhotoCalibration(exported, pictures(3), batch_size=2)
    shapes = []
    while (batch := reader.get_next()) is not None:
        shapes.append(batch[export.INPUT].shape)
    assert shapes == [(2, 3, 32, 32), (1, 3, 32, 32)]
    reader.rewind()
    assert reader.get_next()[export.INPUT].dtype == np.float32


# --------------------------------------------------------------------------- #
# Timing
# --------------------------------------------------------------------------- #


def test_speed_measures_calls_and_batches():
    calls = []

    def predict(batch):
        calls.append(len(batch))
        return np.ones((len(batch), 2))

    photos = np.zeros((70, 3))
    assert runtime.latency(predict, photos[:1], repeats=3, warmup=2) >= 0 and calls == [1] * 5
    assert runtime.throughput(predict, photos[:8], repeats=2) > 0 and calls[5:] == [8] * 3
    outputs, rate = runtime.run_in_batches(predict, photos, batch_size=32)
    assert outputs.shape == (70, 2) and rate > 0 and calls[8:] == [32, 32, 6]
    assert runtime.run_in_batches(predict, photos[:5], batch_size=32)[0].shape == (5, 2)
    with pytest.raises(ValueError):
        runtime.latency(predict, photos[:1], repeats=0)


def test_seconds_summarises_the_timed_calls_only(monkeypatch):
    ticks = iter([0.0, 1.0, 1.0, 4.0, 4.0, 6.0])  # three timed calls: 1 s, 3 s, 2 s
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: next(ticks))
    calls = []
    assert runtime.seconds(lambda: calls.append(1), repeats=3, warmup=2, summary=min) == 1.0
    assert len(calls) == 5  # the warm-up calls are not timed


def test_int8_weights_store_every_weight_in_8_bits_and_compute_in_float32(exported, tmp_path):
    path = export.quantize(exported, tmp_path / "weights.onnx", mode="weights")
    graph = onnx.load(str(path)).graph
    conv_weights = {node.input[1] for node in graph.node if node.op_type in ("Conv", "Gemm")}
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    assert conv_weights <= dequantized  # every weight comes from int8 values and a scale per channel
    assert not [node for node in graph.node if node.op_type == "QuantizeLinear"]  # activations stay float32
    model, reference = onnx_inference.OnnxClassifier(path), onnx_inference.OnnxClassifier(exported)
    images = pictures(4)
    ours = onnx_inference.softmax(model.logits(model.batch(images)))
    theirs = onnx_inference.softmax(reference.logits(reference.batch(images)))
    assert np.abs(ours - theirs).max() < 0.01


def test_quantize_refuses_an_unknown_mode(exported, tmp_path):
    with pytest.raises(ValueError, match="mode must be one of"):
        export.quantize(exported, tmp_path / "x.onnx", mode="float16")
    assert not list(tmp_path.iterdir())


def test_the_onnx_path_decodes_photos_as_the_pytorch_path_does(tmp_path):
    from PIL import Image

    from tlhelpers import data

    sixteen_bit = tmp_path / "deep.png"
    Image.fromarray((np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)).save(sixteen_bit)
    assert np.array_equal(np.asarray(onnx_inference.read_rgb(sixteen_bit)), np.asarray(data.load_rgb(sixteen_bit)))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(data.UnreadableImage, match="broken.jpg"):
        onnx_inference.read_rgb(broken)
