"""Tests of ``python -m tlhelpers export MODEL --onnx OUT [--int8]`` and ``predict OUT.onnx``."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from test_classifier import CLASSES, noise_picture, random_head
from test_data import make_dataset

from tlhelpers import cli, onnx_inference, zoo
from tlhelpers.heads import Classifier

LINE = re.compile(r"^(?P<path>.+): (?P<best>\w+) \((?P<p>[\d.]+)%\)(; (?P<others>.*))?$")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "animals.pt"
    return Classifier(zoo.load("efficientnet_lite0"), random_head(), CLASSES).save(path)


@pytest.fixture(scope="module")
def fp32_file(model_file):
    out = model_file.parent / "animals.onnx"
    assert cli.main(["export", str(model_file), "--onnx", str(out)]) == 0
    return out


@pytest.fixture
def photos(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"photo_{i}.png")
        noise_picture(20 + i, size=(90, 70)).save(paths[-1])
    return paths


def predictions(argv, capsys) -> tuple[str, dict[str, str]]:
    assert cli.main(["predict", *map(str, argv)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return lines[0], {LINE.match(line)["path"]: LINE.match(line)["best"] for line in lines[1:]}


@pytest.mark.slow
def test_predict_with_the_onnx_file_agrees_with_the_pytorch_file(model_file, fp32_file, photos, capsys):
    header, from_onnx = predictions([fp32_file, *photos], capsys)
    assert header == f"Backbone: {zoo.load('efficientnet_lite0').source} [ONNX, fp32]"
    _, from_torch = predictions([model_file, *photos], capsys)
    assert from_onnx == from_torch and len(from_onnx) == len(photos)
    probabilities = onnx_inference.OnnxClassifier(fp32_file).rank(photos)
    expected = Classifier.load(model_file).rank(photos)
    for ours, theirs in zip(probabilities, expected):
        assert [n for n, _ in ours] == [n for n, _ in theirs]
        assert max(abs(p - q) for (_, p), (_, q) in zip(ours, theirs)) < 1e-4


@pytest.mark.slow
def test_export_int8_dynamic_and_static(model_file, fp32_file, photos, tmp_path, capsys):
    dynamic, static = tmp_path / "dynamic.onnx", tmp_path / "static.onnx"
    assert cli.main(["export", str(model_file), "--onnx", str(dynamic), "--int8"]) == 0
    assert "dynamic int8" in capsys.readouterr().out
    folder = make_dataset(tmp_path / "train", {"cats": 2, "dogs": 2, "panda": 2})
    assert (
        cli.main(
            [
                "export",
                str(model_file),
                "--onnx",
                str(static),
                "--int8",
                "--calibration",
                str(folder),
                "--calibration-size",
                "3",
            ]
        )
        == 0
    )
    assert "static int8, calibrated on 3 photos" in capsys.readouterr().out
    for path, variant in ((dynamic, "dynamic int8"), (static, "static int8")):
        assert onnx_inference.OnnxClassifier(path).variant == variant
        assert path.stat().st_size < fp32_file.stat().st_size / 3
        header, _ = predictions([path, *photos], capsys)
        assert header.endswith(f"[ONNX, {variant}]")


def test_export_refuses_to_replace_a_file_it_did_not_write(model_file, tmp_path, capsys):
    notes = tmp_path / "notes.onnx"
    notes.write_text("my notes")
    assert cli.main(["export", str(model_file), "--onnx", str(notes)]) == 2
    assert "was not written by tlhelpers; pass --overwrite" in capsys.readouterr().err
    assert notes.read_text() == "my notes"


def test_export_bad_input_exits_2_with_one_line(model_file, tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"garbage")
    assert cli.main(["export", str(garbage), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert (
        cli.main(["export", str(model_file), "--onnx", str(tmp_path / "m.onnx"), "--calibration", str(tmp_path)]) == 2
    )
    assert (
        cli.main(
            [
                "export",
                str(model_file),
                "--onnx",
                str(tmp_path / "m.onnx"),
                "--int8",
                "--calibration",
                str(tmp_path / "nowhere"),
            ]
        )
        == 2
    )
    assert cli.main(["export", str(model_file), "--onnx", str(tmp_path / "missing" / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert "--calibration is for --int8" in err[1] and "no calibration photos" in err[2]
    assert not (tmp_path / "m.onnx").exists()


def test_predict_unusable_onnx_file_exits_2(tmp_path, photos, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    assert cli.main(["predict", str(bad), str(photos[0])]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and str(bad) in captured.err


@pytest.mark.slow
def test_python_dash_m_predict_onnx_smoke(fp32_file, photos):
    result = subprocess.run(
        [sys.executable, "-m", "tlhelpers", "predict", str(fp32_file), str(photos[0]), "--top", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    match = LINE.match(result.stdout.splitlines()[1])
    assert match and match["best"] in CLASSES and match["others"] is None


def test_export_without_the_onnx_packages_says_what_to_install(model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now raises ImportError
    assert cli.main(["export", str(model_file), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: exporting needs onnx, onnxscript and onnxruntime") and "tlhelpers[onnx]" in err


def test_calibration_uses_the_training_runs_split_and_only_readable_photos(tmp_path):
    from test_data import make_good_jpeg

    from tlhelpers import cli, data

    folder = tmp_path / "photos"
    for index, name in enumerate(("cats", "dogs")):
        (folder / name).mkdir(parents=True)
        for i in range(20):
            make_good_jpeg(folder / name / f"{name}_{i:02d}.jpg", seed=50 * index + i)
    (folder / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    split = {"seed": 3, "val": 0.15, "test": 0.15}
    photos = cli._calibration_photos(str(folder), 64, split)
    usable = data.scan(folder).subset([i for i, p in enumerate(data.scan(folder).files) if p.name != "broken.jpg"])
    training = set(data.split(usable, val=0.15, test=0.15, seed=3)["train"].files)
    assert photos and set(photos) <= training  # never a test photo of the seed-3 run
    assert all(p.name != "broken.jpg" for p in photos)
    seed_0_training = set(data.split(usable, val=0.15, test=0.15, seed=0)["train"].files)
    assert not set(photos) <= seed_0_training  # the stored split, not the default one, decides


def test_an_unreadable_calibration_photo_is_named_not_reported_as_a_write_error(tmp_path):
    from tlhelpers import export

    class Reader(export.PhotoCalibration):
        def __init__(self, photos):  # no model file needed to read photos
            self.preprocessing = {"resize_size": [8], "crop_size": [8], "mean": [0.5] * 3, "std": [0.5] * 3}
            self.photos, self.batch_size = photos, 8
            self.rewind()

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a photo")
    with pytest.raises(export.CalibrationPhotoError, match="calibration photo .*bad.jpg cannot be read"):
        Reader([bad]).get_next()
