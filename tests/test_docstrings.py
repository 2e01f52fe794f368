"""Every helper a chapter calls says so in its docstring, derived from the notebooks so it cannot drift."""

import ast
import importlib
import inspect
import json
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_TAG = re.compile(r"\(chapters? ([0-9][0-9–, and]*)\)")


def _code(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    lines = [
        line
        for cell in cells
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if not line.lstrip().startswith(("%", "!"))
    ]
    return "\n".join(lines)


def used_helpers() -> dict[object, set[int]]:
    """tlhelpers functions and classes each chapter names in its code cells -> the chapters."""
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


def stated_chapters(thing) -> set[int] | None:
    match = CHAPTER_TAG.search(inspect.getdoc(thing) or "")
    if match is None:
        return None
    chapters = set()
    for part in re.split(r",|\band\b", match.group(1)):
        first, _, last = part.strip().partition("–")
        chapters.update(range(int(first), int(last or first) + 1))
    return chapters


def test_the_notebooks_use_the_package():
    assert len(used_helpers()) > 40


def test_docstrings_name_the_chapters_that_use_each_helper():
    wrong = {}
    for thing, chapters in used_helpers().items():
        stated = stated_chapters(thing)
        if stated != chapters:
            wrong[f"{thing.__module__}.{thing.__qualname__}"] = (
                f"says {sorted(stated) if stated else 'nothing'}",
                f"used in {sorted(chapters)}",
            )
    assert not wrong, "docstrings whose '(chapters …)' disagree with the notebooks:\n" + "\n".join(
        f"  {name}: {says}, {used}" for name, (says, used) in sorted(wrong.items())
    )


def test_chapter_tags_are_parsed():
    def f():
        """Does it (chapters 2–4)."""

    def g():
        """Does it (chapters 1 and 3)."""

    assert stated_chapters(f) == {2, 3, 4} and stated_chapters(g) == {1, 3}


def test_no_docstring_claims_a_chapter_that_does_not_call_it():
    import pkgutil

    import tlhelpers

    used = used_helpers()
    claims = []
    for info in pkgutil.iter_modules(tlhelpers.__path__):
        module = importlib.import_module(f"tlhelpers.{info.name}")
        for name, thing in vars(module).items():
            if (
                (inspect.isfunction(thing) or inspect.isclass(thing))
                and thing.__module__ == module.__name__
                and stated_chapters(thing)
                and thing not in used
            ):
                claims.append(f"{module.__name__}.{name}")
    assert not claims, f"say '(chapter N, indirectly)' for helpers the chapters do not call: {claims}"
