"""Tests of the command line, ``python -m tlhelpers``."""

from __future__ import annotations

import subprocess
import sys

from test_data import BAD_MAKERS, make_dataset

from tlhelpers import cli


def test_check_data_good_folder(tmp_path, capsys):
    root = make_dataset(tmp_path / "set", {"cats": 2, "dogs": 2})
    assert cli.main(["check-data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "cats" in out and "dogs" in out
    assert out.strip().splitlines()[-1] == "Usable: 2 classes, 4 images."


def test_check_data_lists_each_bad_file_and_stays_usable(tmp_path, capsys):
    root = make_dataset(
        tmp_path / "set",
        {"cats": 2, "dogs": 1},
        bad={"cats": ["corrupt.jpg", "truncated.jpg"], "dogs": ["empty.jpg", "text.jpg"]},
    )
    assert cli.main(["check-data", str(root)]) == 0
    out = capsys.readouterr().out
    for name in BAD_MAKERS:
        assert name in out
    assert "Unusable files (4)" in out


def test_check_data_class_of_only_bad_files_is_not_usable(tmp_path, capsys):
    root = make_dataset(tmp_path / "set", {"cats": 2}, bad={"dogs": ["corrupt.jpg", "empty.jpg"]})
    assert cli.main(["check-data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "corrupt.jpg" in out and "empty.jpg" in out
    assert "Not usable: no usable image in class dogs." in out


def test_check_data_missing_folder(tmp_path, capsys):
    assert cli.main(["check-data", str(tmp_path / "nowhere")]) == 1
    out = capsys.readouterr().out
    assert "Folder not found" in out and "Not usable" in out


def test_check_data_without_path_uses_locate(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TLHELPERS_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("TLHELPERS_OFFLINE", "1")
    monkeypatch.setattr("platformdirs.user_cache_dir", lambda appname: str(tmp_path / "cache" / appname))
    assert cli.main(["check-data"]) == 1
    assert "Could not find the 'animals' dataset" in capsys.readouterr().err


def test_python_dash_m_smoke(tmp_path):
    root = make_dataset(tmp_path / "set", {"cats": 1}, bad={"dogs": ["text.jpg"]})
    result = subprocess.run(
        [sys.executable, "-m", "tlhelpers", "check-data", str(root)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "text.jpg: not an image file" in result.stdout
    assert "Traceback" not in result.stderr
