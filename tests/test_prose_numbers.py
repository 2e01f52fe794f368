"""Every number the chapters' prose quotes with a unit is printed by an output of the same chapter.

A percentage, a ratio or a value with a unit in a markdown cell must appear,
as the same number, in an output of that chapter (a printed line, a table, a
plot's text): the prose quotes what a cell printed, it does not carry numbers
of its own.  Constants of the setting (an image size, a crop range) are
listed below, each with its reason.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# A number (optionally signed, with thousands separators and decimals) followed by a unit.
QUOTED = re.compile(
    r"(?<![\w.,])([−+-]?\d[\d,]*(?:\.\d+)?)\s?(%|×|ms\b|s\b|MB\b|GB\b|points?\b|px\b|pixels\b|"
    r"photos/s\b|GFLOPs\b)"
)

# (chapter, quoted text, why no output needs to print it)
CONSTANTS = {
    ("02", "70%", "the split's proportions, a setting"),
    ("02", "4,096 ×", "VGG16's classifier width, a fact of the architecture"),
    ("02", "64×", "the size of a dummy input"),
    ("02", "224×", "the weights' input size"),
    ("05", "224×", "the full budget's image size"),
    ("05", "224 pixels", "the full budget's image size"),
    ("05", "100 %", "a crop range and a hard target: definitions"),
    ("05", "8 %", "the crop range of the bad example"),
    ("05", "35 %", "the crop's lower bound, a setting"),
    ("05", "10 %", "the warm-up's and label smoothing's settings"),
    ("05", "30 %", "one-cycle's warm-up and the exercise's, settings"),
    ("07", "1.5 points", "the shipping criterion, a goal set before measuring"),
    ("08", "99.1 %", "the whole folder's run, half an hour on a CPU: too slow for the chapter"),
    ("05", "75.1 %", "ResNet-18's last block, printed by chapter 3, which the sentence names"),
}


def outputs(notebook: dict) -> str:
    texts = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if "text" in output:
                texts.append("".join(output["text"]))
            for kind, value in output.get("data", {}).items():
                if kind.startswith("text/"):
                    texts.append("".join(value) if isinstance(value, list) else str(value))
    return "\n".join(texts)


def unbacked(path: Path) -> list[str]:
    notebook = json.loads(path.read_text())
    printed = outputs(notebook)
    chapter = path.name[:2]
    allowed = {quote for ch, quote, _ in CONSTANTS if ch == chapter}
    missing = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        for match in QUOTED.finditer(text):
            number = match.group(1).replace("−", "-").lstrip("+-")
            if match.group(0) in allowed:
                continue
            if not re.search(rf"(?<![\d.,]){re.escape(number)}(?![\d])", printed):
                missing.append(f"{match.group(0)!r} in '…{text[max(0, match.start() - 40) : match.end() + 10]}…'")
    return missing


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name[:2])
def test_every_quoted_number_is_printed_by_the_chapter(path):
    missing = unbacked(path)
    assert not missing, "numbers in the prose that no output prints:\n" + "\n".join(missing)


def test_the_check_finds_an_unbacked_number(tmp_path):
    notebook = {
        "cells": [
            {"cell_type": "markdown", "source": ["The head reached 97.5 % in 3.2 s, 12× faster."]},
            {"cell_type": "code", "source": [], "outputs": [{"output_type": "stream", "text": ["acc 97.5%\n3.2 s\n"]}]},
        ]
    }
    path = tmp_path / "09_example.ipynb"
    path.write_text(json.dumps(notebook))
    assert [line.split(" in ")[0] for line in unbacked(path)] == ["'12×'"]
