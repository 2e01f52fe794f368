"""Tests of ``python -m tlhelpers predict MODEL IMAGE …``."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from test_classifier import CLASSES, noise_picture, random_head
from test_data import BAD_MAKERS

from tlhelpers import cli, zoo
from tlhelpers.heads import Classifier

LINE = re.compile(r"^(?P<path>.+): (?P<best>\w+) \((?P<p>[\d.]+)%\)(; (?P<others>.*))?$")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "animals.pt"
    return Classifier(zoo.load("efficientnet_lite0"), random_head(), CLASSES).save(path)


@pytest.fixture
def photos(tmp_path):
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"photo_{i}.png")
        noise_picture(10 + i).save(paths[-1])
    return paths


def test_predict_good_images(model_file, photos, capsys):
    assert cli.main(["predict", str(model_file), *map(str, photos)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"Backbone: {zoo.load('efficientnet_lite0').source}"
    assert len(lines) == 3
    for line, path in zip(lines[1:], photos):
        match = LINE.match(line)
        assert match and match["path"] == str(path)
        shown = [match["best"]] + re.findall(r"(\w+) \(", match["others"])
        assert sorted(shown) == sorted(CLASSES)


def test_predict_top_1(model_file, photos, capsys):
    assert cli.main(["predict", str(model_file), str(photos[0]), "--top", "1"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[1]
    match = LINE.match(line)
    assert match and match["others"] is None and match["best"] in CLASSES


def test_predict_names_unreadable_files_and_goes_on(model_file, photos, tmp_path, capsys):
    corrupt = BAD_MAKERS["corrupt.jpg"](tmp_path / "corrupt.jpg")
    missing = tmp_path / "missing.jpg"
    argv = [str(photos[0]), str(corrupt), str(missing), str(photos[1])]
    assert cli.main(["predict", str(model_file), *argv]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert LINE.match(lines[1])["path"] == str(photos[0])
    assert lines[2].startswith(f"{corrupt}: unreadable: ")
    assert lines[3] == f"{missing}: unreadable: file not found"
    assert LINE.match(lines[4])["path"] == str(photos[1])
    assert lines[5] == "2 of 4 images could not be read."


@pytest.mark.parametrize("content", [None, b"garbage", b""])
def test_predict_unusable_model_file_exits_2(tmp_path, photos, capsys, content):
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["predict", str(path), str(photos[0])]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(path) in captured.err and captured.err.startswith("error: ")


def test_predict_rejects_top_0(model_file, photos):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", str(model_file), str(photos[0]), "--top", "0"])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_python_dash_m_predict_smoke(model_file, photos, tmp_path):
    bad = BAD_MAKERS["text.jpg"](tmp_path / "text.jpg")
    result = subprocess.run(
        [sys.executable, "-m", "tlhelpers", "predict", str(model_file), str(photos[0]), str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert f"{bad}: unreadable: not an image file" in result.stdout
    assert LINE.match(result.stdout.splitlines()[1])
    assert "Traceback" not in result.stderr
