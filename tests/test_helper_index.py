"""The page "The helpers, chapter by chapter" is what the notebooks' code says, and no docstring repeats it."""

import ast
import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("helper_index", ROOT / "tools" / "helper_index.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_notebooks_use_the_package():
    assert len(_tool().used_helpers()) > 40


def test_the_page_is_up_to_date():
    tool = _tool()
    assert tool.PAGE.read_text() == tool.render(), "run: python tools/helper_index.py"


def test_the_page_finds_a_helper_where_a_chapter_calls_it():
    used = {f"{thing.__module__}.{thing.__qualname__}": chapters for thing, chapters in _tool().used_helpers().items()}
    assert used["tlhelpers.detection.make_scenes"] == {9}
    assert used["tlhelpers.checks.expect"] == set(range(1, 10))
    assert 4 in used["tlhelpers.explain.class_activation_map"]


def test_no_function_docstring_carries_its_own_chapter_list():
    tag = re.compile(r"\(chapters? [0-9][^)]*\)")
    tagged = []
    for path in sorted((ROOT / "src" / "tlhelpers").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                summary = (ast.get_docstring(node) or "").split("\n\n")[0]
                if tag.search(summary):
                    tagged.append(f"{path.stem}.{node.name}")
    assert not tagged, f"chapter lists belong on book/helpers.md, not in: {tagged}"
