"""Write book/helpers.md: which helper of the package each chapter calls, read off the notebooks.

The chapters' code cells are parsed (never run): every ``from tlhelpers import
module`` and every ``module.name`` or imported name that is a function or a
class of the package counts.  The page lists the helpers chapter by chapter,
then the modules with the chapters that call each of their helpers, so a
reader of the code can find where the book teaches it.  ``tests/test_helper_index.py``
fails when the committed page differs from what this script writes.

    python tools/helper_index.py          # rewrite book/helpers.md
    python tools/helper_index.py --check  # exit status 1 if it is out of date
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "helpers.md"


def chapter_titles() -> dict[int, tuple[str, str]]:
    """Chapter number -> (notebook stem, title from its first heading)."""
    titles = {}
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        heading = next(
            line[2:].strip()
            for cell in cells
            if cell["cell_type"] == "markdown"
            for line in "".join(cell["source"]).splitlines()
            if line.startswith("# ")
        )
        titles[int(notebook.name[:2])] = (notebook.stem, heading)
    return titles


def _code(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join(
        line
        for cell in cells
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if not line.lstrip().startswith(("%", "!"))
    )


def used_helpers() -> dict[object, set[int]]:
    """Each tlhelpers function or class that a chapter's code names -> the chapters."""
    used = defaultdict(set)
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        chapter = int(notebook.name[:2])
        tree = ast.parse(_code(notebook))
        modules, names = {}, {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "tlhelpers":
                for alias in node.names:
                    modules[alias.asname or alias.name] = importlib.import_module(f"tlhelpers.{alias.name}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tlhelpers."):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    names[alias.asname or alias.name] = getattr(module, alias.name)
        found = [names[node.id] for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id in names]
        found += [
            getattr(modules[node.value.id], node.attr, None)
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
        ]
        for thing in found:
            if (inspect.isfunction(thing) or inspect.isclass(thing)) and thing.__module__.startswith("tlhelpers"):
                used[thing].add(chapter)
    return used


def _name(thing) -> str:
    return f"{thing.__module__.removeprefix('tlhelpers.')}.{thing.__qualname__}"


def _summary(thing) -> str:
    """The docstring's first paragraph, its reST roles and literals as Markdown code."""
    doc = " ".join((inspect.getdoc(thing) or "").split("\n\n")[0].split())
    doc = re.sub(r":(?:class|func|mod|data|meth|attr|exc):`~?([^`]+)`", r"`\1`", doc)
    return doc.replace("``", "`").replace("|", "\\|")


def _chapters(numbers: set[int]) -> str:
    return ", ".join(f"{{ref}}`{n} <helpers-chapter-{n}>`" for n in sorted(numbers))


def render() -> str:
    used = used_helpers()
    titles = chapter_titles()
    by_chapter = defaultdict(list)
    for thing, chapters in used.items():
        for chapter in chapters:
            by_chapter[chapter].append(thing)
    lines = [
        "# The helpers, chapter by chapter",
        "",
        "Every chapter draws on the book's helper package, `tlhelpers` (its",
        "[source](https://github.com/tlbook/transfer-learning-pytorch/tree/main/src/tlhelpers)).",
        "This page lists which helpers each chapter calls, with the first sentence",
        "of each one's documentation, and then which chapters call each module.",
        "It is written by `tools/helper_index.py` from the chapters' code, and a",
        "test fails when it is out of date.",
        "",
    ]
    for chapter in sorted(titles):
        stem, title = titles[chapter]
        lines += [
            f"(helpers-chapter-{chapter})=",
            f"## Chapter {chapter}",
            "",
            f"{{doc}}`{title} </notebooks/{stem}>`",
            "",
        ]
        things = sorted(by_chapter.get(chapter, []), key=_name)
        if not things:
            lines += ["This chapter calls no helper of the package directly.", ""]
            continue
        lines += ["| helper | what it does |", "|---|---|"]
        lines += [f"| `{_name(thing)}` | {_summary(thing)} |" for thing in things]
        lines.append("")
    modules = defaultdict(set)
    for thing, chapters in used.items():
        modules[thing.__module__.removeprefix("tlhelpers.")] |= chapters
    lines += ["## Modules", "", "| module | chapters that call it |", "|---|---|"]
    lines += [f"| `{module}` | {_chapters(chapters)} |" for module, chapters in sorted(modules.items())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether book/helpers.md is up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if PAGE.exists() and PAGE.read_text() == text:
            return 0
        print(f"{PAGE.relative_to(ROOT)} is out of date: run python tools/helper_index.py", file=sys.stderr)
        return 1
    PAGE.write_text(text)
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
