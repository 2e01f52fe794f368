"""The built book, as a reader sees it, checked in a real browser (`make check-book`).

`make check-book` builds the book, then runs this module with TLBOOK_BROWSER=1:
it serves `_build/html` on 127.0.0.1 and opens every page of `_toc.yml` in
Debian's Chromium (`/usr/bin/chromium`, driven by the `playwright` package;
Playwright's own browser downloads are never used). For each page it checks that

- the page loads (HTTP 200), with no console errors, no failed or external
  requests (the book must work offline: no CDN) and no broken images;
- a chapter (a page made from `notebooks/*.ipynb`) shows every figure its
  notebook's outputs hold, as loaded images, and no error tracebacks;
- where the notebook was saved with widget state, the widgets render as real
  controls (a dropdown's `<select>`, a slider) with the figures inside them;
- the Colab launch link opens this chapter's notebook in the repository named
  by `_config.yml`;
- cells tagged `remove-cell` (or `remove-input` / `remove-output`) are gone, and
  `hide-cell` / `hide-input` / `hide-output` content stays collapsed until its
  toggle is clicked;

and saves a full-page screenshot of every page under `_build/screenshots/`.
Chapters are found from `_toc.yml`, so new ones are covered when they land.

Run alone:  TLBOOK_BROWSER=1 .venv/bin/pytest -q tests/browser
(TLBOOK_ROOT=/other/book checks another book folder with the same layout.)
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

import pytest
import yaml

if os.environ.get("TLBOOK_BROWSER") != "1":
    pytest.skip("the browser check runs with `make check-book` (or TLBOOK_BROWSER=1)", allow_module_level=True)

from browsing import ROOT, SCREENSHOTS, console_filtered  # noqa: E402

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


# Widget models that render as a control a reader can use, and how to find them in the page.
CONTROLS = {
    "DropdownModel": "select",
    "SelectModel": "select",
    "SelectMultipleModel": "select",
    "IntSliderModel": ".widget-slider",
    "FloatSliderModel": ".widget-slider",
    "FloatLogSliderModel": ".widget-slider",
    "SelectionSliderModel": ".widget-slider",
    "IntRangeSliderModel": ".widget-slider",
    "FloatRangeSliderModel": ".widget-slider",
    "SelectionRangeSliderModel": ".widget-slider",
}


# --------------------------------------------------------------------------- #
# What the book should contain, from _config.yml, _toc.yml and the notebooks
# --------------------------------------------------------------------------- #


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def toc_files() -> list[str]:
    """Every page of the table of contents, root first, as paths without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return [str(Path(f).with_suffix("")) if Path(f).suffix in (".md", ".ipynb") else f for f in files]


def _tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


@functools.cache
def _mime_priority() -> list[str]:
    from myst_nb.core.render import get_mime_priority

    overrides = _config().get("sphinx", {}).get("config", {}).get("nb_mime_priority_overrides", [])
    return get_mime_priority("html", overrides)


def _shown_mime(output: dict) -> str | None:
    """The representation myst-nb renders for one display/execute_result output."""
    data = output.get("data", {})
    return next((mime for mime in _mime_priority() if mime in data), None)


class Chapter:
    """What a notebook's page must show: its kept code cells, in order, and their outputs."""

    def __init__(self, path: Path):
        self.path = path
        self.nb = json.loads(path.read_text())
        self.code = [c for c in self.nb["cells"] if c["cell_type"] == "code"]
        self.kept = [c for c in self.code if "remove-cell" not in _tags(c)]
        self.removed = [c for c in self.code if "remove-cell" in _tags(c)]
        self.state = self.nb["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    @staticmethod
    def source(cell: dict) -> str:
        return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]

    def shown_outputs(self, cell: dict) -> list[tuple[dict, str | None]]:
        if "remove-output" in _tags(cell):
            return []
        shown = []
        for output in cell.get("outputs", []):
            if output["output_type"] in ("display_data", "execute_result"):
                shown.append((output, _shown_mime(output)))
        return shown

    def images(self, cell: dict) -> int:
        return sum(1 for _, mime in self.shown_outputs(cell) if mime and mime.startswith("image/"))

    def widget_views(self) -> list[str]:
        return [
            out["data"][WIDGET_VIEW]["model_id"]
            for cell in self.kept
            for out, mime in self.shown_outputs(cell)
            if mime == WIDGET_VIEW
        ]

    def reachable_models(self, model_ids: list[str]) -> dict[str, dict]:
        """The widget models displayed views are built from (children, outputs, …)."""
        seen: dict[str, dict] = {}
        todo = list(model_ids)
        while todo:
            model_id = todo.pop()
            if model_id in seen or model_id not in self.state:
                continue
            seen[model_id] = self.state[model_id]
            todo += re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(self.state[model_id]["state"]))
        return seen


def chapter_for(file: str) -> Chapter | None:
    path = ROOT / f"{file}.ipynb"
    return Chapter(path) if path.is_file() else None


def _distinctive_line(text: str, elsewhere: str) -> str | None:
    """The longest line of ``text`` that does not occur in ``elsewhere``."""
    lines = sorted({line.strip() for line in text.splitlines() if len(line.strip()) >= 12}, key=len, reverse=True)
    return next((line for line in lines if line not in elsewhere), None)


# --------------------------------------------------------------------------- #
# Fixtures: a local web server and a browser
# --------------------------------------------------------------------------- #


def _screenshot(page, file: str) -> None:
    target = SCREENSHOTS / f"{file}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)


# --------------------------------------------------------------------------- #
# The checks
# --------------------------------------------------------------------------- #

PAGES = toc_files()


def test_the_toc_lists_pages():
    assert PAGES and all((ROOT / f"{f}.md").exists() or (ROOT / f"{f}.ipynb").exists() for f in PAGES), PAGES


def test_index_leads_to_the_root_page(visit):
    v = visit("index.html")
    v.page.wait_for_url(re.compile(re.escape(PAGES[0]) + r"\.html"), timeout=10_000)
    assert v.page.locator("main h1").count() >= 1


@pytest.mark.parametrize("file", PAGES)
def test_page(visit, file):
    chapter = chapter_for(file)
    v = visit(f"{file}.html")
    page = v.page
    problems: list[str] = []

    assert v.response is not None and v.response.status == 200, f"{file}.html: {v.response and v.response.status}"
    assert page.locator("main h1").count() >= 1, f"{file}.html has no title"

    if chapter is not None and chapter.state and chapter.widget_views():
        problems += _check_widgets(page, chapter)
    page.wait_for_load_state("networkidle")
    problems += _check_math(page)
    _screenshot(page, file)

    problems += _check_images_load(page)
    if chapter is not None:
        problems += _check_chapter(page, chapter, file)

    problems += [f"external request (no CDN allowed): {url}" for url in v.external]
    problems += [f"failed request: {entry}" for entry in v.failed]
    problems += [f"console error: {message}" for message in console_filtered(v.console_errors)]
    assert not problems, f"{file}.html:\n  " + "\n  ".join(problems)


def _check_images_load(page) -> list[str]:
    broken = page.eval_on_selector_all(
        "main img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80))"
    )
    return [f"image did not load: {src}" for src in broken]


def _check_math(page) -> list[str]:
    """Formulas typeset by MathJax (served from the book, see tools/fetch_book_js.py)."""
    formulas = page.locator("main .math").count()
    if not formulas:
        return []
    script = (
        "document.querySelectorAll('main .math').length === "
        "document.querySelectorAll('main .math mjx-container').length"
    )
    try:
        page.wait_for_function(script, timeout=20_000)
    except Exception:  # noqa: BLE001 - reported below
        typeset = page.locator("main .math mjx-container").count()
        return [f"{formulas} formulas, {typeset} typeset by MathJax"]
    errors = page.locator("main .math mjx-merror, main .math [data-mjx-error]").count()
    return [f"{errors} formulas with TeX errors"] if errors else []


def _check_widgets(page, chapter: Chapter) -> list[str]:
    """Every displayed widget view rendered by the html-manager, with its controls and figures."""
    views = chapter.widget_views()
    try:
        page.wait_for_function(f"document.querySelectorAll('.widget-subarea').length >= {len(views)}", timeout=30_000)
    except Exception:  # noqa: BLE001 - reported below with what is there
        pass
    problems = []
    rendered = page.locator(".widget-subarea").count()
    if rendered < len(views):
        return [
            f"{len(views)} widget views in the notebook, {rendered} rendered "
            "(is html-manager's embed.js served? see tools/fetch_book_js.py)"
        ]
    models = chapter.reachable_models(views)
    for selector in sorted({CONTROLS[m["model_name"]] for m in models.values() if m["model_name"] in CONTROLS}):
        expected = sum(1 for m in models.values() if CONTROLS.get(m["model_name"]) == selector)
        found = page.locator(f".widget-subarea {selector}").count()
        if found < expected:
            problems.append(f"widget controls {selector!r}: {expected} expected, {found} rendered")
        elif not page.locator(f".widget-subarea {selector}").first.is_visible():
            problems.append(f"widget control {selector!r} is not visible")
    pictures = sum(
        1
        for m in models.values()
        if m["model_name"] == "OutputModel"
        for out in m["state"].get("outputs", [])
        if any(k.startswith("image/") for k in out.get("data", {}))
    )
    if pictures:
        shown = page.eval_on_selector_all(
            ".widget-subarea img", "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length"
        )
        if shown < pictures:
            problems.append(f"widget figures: {pictures} in the saved state, {shown} shown")
    return problems


def _check_chapter(page, chapter: Chapter, file: str) -> list[str]:
    problems = []
    cells = page.locator("main div.cell")
    n_cells = cells.count()
    if n_cells != len(chapter.kept):
        return [f"{len(chapter.kept)} code cells without remove-cell in {chapter.path.name}, {n_cells} on the page"]

    # Figures: every image output of every kept cell, loaded.
    for index, cell in enumerate(chapter.kept):
        expected = chapter.images(cell)
        if expected:
            loaded = (
                cells.nth(index)
                .locator(".cell_output img")
                .evaluate_all("imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length")
            )
            if loaded != expected:
                problems.append(f"cell {index + 1}: {expected} figures in the notebook, {loaded} shown")
    if sum(chapter.images(cell) for cell in chapter.kept) == 0:
        problems.append(f"{chapter.path.name} has no figure outputs (was it executed? `make notebooks`)")
    tracebacks = page.locator("main .output.traceback").count()
    if tracebacks:
        problems.append(f"{tracebacks} error tracebacks in the outputs")

    # Colab: the launch button opens this notebook in the configured repository.
    config = _config()
    repo = config["repository"]["url"].rstrip("/").removeprefix("https://github.com/")
    expected = f"colab.research.google.com/github/{repo}/blob/{config['repository'].get('branch', 'main')}/{file}.ipynb"
    hrefs = page.eval_on_selector_all("a[href*='colab.research.google.com']", "links => links.map(a => a.href)")
    if not hrefs:
        problems.append("no Colab launch link")
    problems += [f"Colab link {href} does not contain {expected}" for href in hrefs if expected not in href]

    # remove-*: gone from the page.
    main_text = page.locator("main").text_content() or ""
    kept_sources = "\n".join(chapter.source(c) for c in chapter.kept)
    for cell in chapter.removed:
        line = _distinctive_line(chapter.source(cell), kept_sources)
        if line and line in main_text:
            problems.append(f"a remove-cell cell is shown: {line!r}")
    for index, cell in enumerate(chapter.kept):
        tags, div = _tags(cell), cells.nth(index)
        if "remove-input" in tags and div.locator(".cell_input").count():
            problems.append(f"cell {index + 1} (remove-input) shows its source")
        if "remove-output" in tags and div.locator(".cell_output").count():
            problems.append(f"cell {index + 1} (remove-output) shows its output")

    # hide-*: collapsed until the toggle is clicked, then shown.
    for index, cell in enumerate(chapter.kept):
        tags, div = _tags(cell), cells.nth(index)
        hidden = []
        if tags & {"hide-cell", "hide-input"}:
            hidden.append(".cell_input")
        if tags & {"hide-cell", "hide-output"} and chapter.shown_outputs(cell) + [
            o for o in cell.get("outputs", []) if o["output_type"] == "stream"
        ]:
            hidden.append(".cell_output")
        if not hidden:
            continue
        name = "/".join(sorted(t for t in tags if t.startswith("hide-")))
        for selector in hidden:
            if div.locator(selector).count() == 0:
                problems.append(f"cell {index + 1} ({name}): no {selector} at all")
            elif div.locator(selector).first.is_visible():
                problems.append(f"cell {index + 1} ({name}): {selector} is visible before its toggle is clicked")
        toggles = div.locator("summary")
        if toggles.count() == 0:
            problems.append(f"cell {index + 1} ({name}): no toggle to show it")
            continue
        for t in range(toggles.count()):
            toggles.nth(t).click()
        for selector in hidden:
            if div.locator(selector).count() and not div.locator(selector).first.is_visible():
                problems.append(f"cell {index + 1} ({name}): {selector} stays hidden after the toggle")
    return problems
