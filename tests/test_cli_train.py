"""Tests of ``python -m tlhelpers train FOLDER`` and of :mod:`tlhelpers.recipe` behind it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
from test_data import BAD_MAKERS, PETS, make_dataset

from tlhelpers import cli, recipe, tables, zoo
from tlhelpers.heads import Classifier


def train(*argv) -> int:
    return cli.main(["train", *map(str, argv), "--no-progress"])


def test_train_end_to_end_writes_a_classifier_that_predict_reads(folder, cache, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert train(folder, "-o", out) == 0
    printed = capsys.readouterr().out
    assert "Usable: 3 classes, 18 images." in printed  # check-data's report
    assert f"Backbone: {zoo.load('resnet18', fallback=zoo.FALLBACK).source}" in printed
    assert "Split (seed 0): train 12, val 3, test 3 photos" in printed
    assert re.search(r"^validation accuracy: \d+\.\d% on 3 photos$", printed, re.MULTILINE)
    assert re.search(r"^test accuracy: \d+\.\d% on 3 photos$", printed, re.MULTILINE)
    matrix = printed.split("Confusion matrix, test photos")[1].splitlines()[1:5]
    assert matrix[0].split()[-3:] == ["cats", "dogs", "panda"]
    assert sum(int(v) for row in matrix[1:] for v in row.split()[1:]) == 3
    assert f"Saved {out}" in printed

    loaded = Classifier.load(out)
    assert loaded.classes == ["cats", "dogs", "panda"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    photo = next((folder / "dogs").iterdir())
    assert cli.main(["predict", str(out), str(photo)]) == 0
    assert str(photo) in capsys.readouterr().out


def test_train_is_deterministic_and_reuses_the_feature_cache(folder, cache, tmp_path, capsys):
    assert train(folder, "-o", tmp_path / "a.pt") == 0
    first = capsys.readouterr().out
    assert train(folder, "-o", tmp_path / "b.pt") == 0
    second = capsys.readouterr().out
    assert "(features read from the cache)" in second and "(features read from the cache)" not in first
    heads = [torch.load(tmp_path / name, weights_only=True)["head"] for name in ("a.pt", "b.pt")]
    assert torch.equal(heads[0]["weight"], heads[1]["weight"])
    keep = lambda text: [line for line in text.splitlines() if "accuracy" in line]  # noqa: E731
    assert keep(first) == keep(second)


def test_recipe_split_leaves_out_unreadable_files(tmp_path, cache):
    folder = make_dataset(tmp_path / "pets", {"cats": 4, "dogs": 4}, bad={"cats": ["corrupt.jpg", "text.jpg"]})
    result = recipe.train_on_folder(folder, progress=False)
    assert sum(sum(part.values()) for part in result.counts.values()) == 8
    assert result.skipped == {}
    assert result.classifier.classes == ["cats", "dogs"]
    assert result.confusion["test"].sum() == sum(result.counts["test"].values())


@pytest.mark.slow
def test_tiny_classes_have_no_held_out_photos(tmp_path, cache, capsys):
    folder = make_dataset(tmp_path / "pets", {"cats": 1, "dogs": 2})
    assert train(folder, "-o", tmp_path / "m.pt") == 0
    printed = capsys.readouterr().out
    assert "validation accuracy: no validation photos" in printed
    assert "test accuracy: no test photos" in printed
    assert "Confusion matrix" not in printed


@pytest.mark.parametrize(
    "per_class, bad, reason",
    [
        ({"cats": 3}, None, "need at least 2 class subfolders, found 1 (cats)"),
        ({"cats": 3, "dogs": 0}, None, "no usable image in class dogs"),
        ({"cats": 3}, {"dogs": ["corrupt.jpg", "empty.jpg"]}, "no usable image in class dogs"),
        ({}, {"cats": ["text.jpg"], "dogs": ["truncated.jpg"]}, "no usable image in class cats, dogs"),
    ],
)
def test_unusable_folder_exits_1_with_one_line(tmp_path, capsys, per_class, bad, reason):
    folder = make_dataset(tmp_path / "pets", per_class, bad=bad)
    out = tmp_path / "model.pt"
    assert train(folder, "-o", out) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: {folder} cannot be trained on: {reason}.\n"
    assert "Not usable" in captured.out
    assert not out.exists()


def test_missing_folder_exits_1(tmp_path, capsys):
    assert train(tmp_path / "nowhere", "-o", tmp_path / "m.pt") == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_output_in_a_missing_folder_exits_2_before_any_work(folder, tmp_path, capsys):
    assert train(folder, "-o", tmp_path / "no" / "such" / "m.pt") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == f"error: the folder {tmp_path / 'no' / 'such'} does not exist"


def test_unwritable_output_folder_exits_2_as_root_too(folder, tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(recipe.tempfile, "NamedTemporaryFile", refuse)
    assert train(folder, "-o", tmp_path / "m.pt") == 2
    assert capsys.readouterr().err.strip() == f"error: cannot write to the folder {tmp_path} (Permission denied)"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions that bind")
def test_unwritable_output_folder_exits_2(folder, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert train(folder, "-o", locked / "m.pt") == 2
    finally:
        locked.chmod(0o700)
    assert capsys.readouterr().err.startswith(f"error: cannot write to the folder {locked}")


def test_never_overwrites_a_file_it_did_not_write(folder, cache, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    assert train(folder, "-o", notes) == 2
    assert "was not written by tlhelpers; pass --overwrite" in capsys.readouterr().err
    assert notes.read_text() == "my notes"
    assert train(folder, "-o", notes, "--overwrite") == 0
    assert Classifier.load(notes).classes == list(PETS)


def test_replaces_its_own_classifier_file(folder, cache, tmp_path):
    out = tmp_path / "model.pt"
    assert train(folder, "-o", out) == 0
    assert train(folder, "-o", out, "--seed", "1") == 0
    assert Classifier.load(out).classes == list(PETS)
    assert Classifier.load(out).split == {"seed": 1, "val": 0.15, "test": 0.15}  # export --calibration uses it


def test_output_that_is_a_folder_exits_2(folder, tmp_path, capsys):
    assert train(folder, "-o", tmp_path) == 2
    assert "is a folder" in capsys.readouterr().err


def test_unknown_backbone_and_bad_fractions(folder, tmp_path, capsys):
    assert train(folder, "--backbone", "alexnet", "-o", tmp_path / "m.pt") == 2
    assert "unknown backbone 'alexnet'" in capsys.readouterr().err
    assert train(folder, "--val", "0.5", "--test", "0.5", "-o", tmp_path / "m.pt") == 2
    with pytest.raises(SystemExit) as exit_info:
        train(folder, "--val", "1.5")
    assert exit_info.value.code == 2


def test_help_names_every_backbone_of_the_zoo():
    assert tuple(cli.BACKBONES) == zoo.NAMES
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for option in ("--output", "--overwrite", "--backbone", "--seed", "--val", "--test", "--no-cache", "--no-progress"):
        assert option in help_text


def test_confusion_matrix_and_its_table():
    matrix = tables.confusion_counts(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 2]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    table = tables.confusion_text(matrix, ["cats", "dogs", "panda"]).splitlines()
    assert table[0].split()[-3:] == ["cats", "dogs", "panda"]
    assert table[1].split() == ["cats", "1", "1", "0"]


@pytest.mark.slow
def test_python_dash_m_train_smoke(tmp_path):
    folder = make_dataset(tmp_path / "pets", {"cats": 2})
    (folder / "dogs").mkdir()
    BAD_MAKERS["empty.jpg"](folder / "dogs" / "empty.jpg")
    result = subprocess.run(
        [sys.executable, "-m", "tlhelpers", "train", str(folder), "-o", str(tmp_path / "m.pt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    expected = f"error: {folder} cannot be trained on: no usable image in class dogs."
    assert result.stderr.strip().splitlines() == [expected]
    assert "Traceback" not in result.stderr


def test_unwritable_feature_cache_exits_2_and_suggests_no_cache(folder, tmp_path, monkeypatch, capsys):
    def read_only_cache(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "cache" / "features.pt"))

    monkeypatch.setattr(recipe.features, "extract", read_only_cache)
    assert train(folder, "-o", tmp_path / "m.pt") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Permission denied: ") and err.endswith("(try --no-cache)")
    assert not (tmp_path / "m.pt").exists()


def test_recipe_refuses_an_unusable_folder_with_its_report(tmp_path):
    folder = make_dataset(tmp_path / "pets", {"cats": 2})
    with pytest.raises(recipe.FolderNotUsable, match="pets cannot be trained on: need at least 2 class") as caught:
        recipe.train_on_folder(folder, progress=False)
    assert not caught.value.report.usable and caught.value.report.classes == ["cats"]
