"""The explorers of the built book, used as a reader uses them, with no kernel (`make check-book`).

Every explorer a chapter stores (``tlhelpers.pages``) is found in the
notebooks, then used on its page in Chromium:

- every menu entry and slider position shows the view the notebook stored for
  it (compared by its summary text), by mouse and by keyboard, and every
  control has a label;
- every upload takes photos through the real file input: one of each class,
  one of no class, a portrait JPEG with an EXIF rotation, a PNG with
  transparency and a greyscale photo; the page's numbers must equal the
  Python reference (``tlhelpers.pages.PageModels``, i.e.
  ``onnx_inference``'s preprocessing on the same files) within 1e-3;
- a non-image file, a truncated JPEG, a 40-megapixel photo and an SVG each
  get one clear line, and the page keeps working;
- no request leaves the book, and the console shows no error;
- the pages also work opened from disk (file://); without JavaScript the
  stored first view stays and each control says why it is inactive; dark
  mode keeps the text legible.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
from pathlib import Path

import pytest

if os.environ.get("TLBOOK_BROWSER") != "1":
    pytest.skip("the browser check runs with `make check-book` (or TLBOOK_BROWSER=1)", allow_module_level=True)

from browsing import HTML, ROOT, SCREENSHOTS, Visit, console_filtered  # noqa: E402
from PIL import Image  # noqa: E402

from tlhelpers import data, pages  # noqa: E402

ASSETS = ROOT / ".page-assets" / "build"  # tools/build_page_assets.py
TOLERANCE = 1e-3
EXPLORER = re.compile(r'<div class="tlbook-live" id="[^"]+" data-live="([^"]+)"')
VIEW = re.compile(
    r'<div class="tlbook-view" data-value="([^"]*)"(?: hidden)?><div class="tlbook-result" '
    r'data-summary="([^"]*)"'
)
BAD_INPUTS = {  # file name -> what the page must say about it
    "notes.txt": "is not a picture the page can read",
    "truncated.jpg": "is truncated",
    "huge.jpg": "megapixels",
    "drawing.svg": "is an SVG drawing, not a photo",
}


def _explorers(file: str) -> list[dict]:
    """The explorers a chapter stores, in page order: their config and each value's summary."""
    notebook = json.loads((ROOT / f"{file}.ipynb").read_text())
    found = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/html", "")
            text = "".join(text) if isinstance(text, list) else text
            for match in EXPLORER.finditer(text):
                views = {html.unescape(v): html.unescape(s) for v, s in VIEW.findall(text[match.start() :])}
                found.append({"config": json.loads(html.unescape(match.group(1))), "views": views})
    return found


CHAPTERS = [
    str(p.relative_to(ROOT).with_suffix(""))
    for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if _explorers(str(p.relative_to(ROOT).with_suffix("")))
]
UPLOADS = [
    (file, index, explorer["config"]["upload"])
    for file in CHAPTERS
    for index, explorer in enumerate(_explorers(file))
    if explorer["config"].get("upload")
]


def _ready(page) -> None:
    page.wait_for_function("window.tlbookLive && window.tlbookLive.ready", timeout=20_000)
    page.evaluate("window.tlbookLive.ready")


def _visible_summary(root) -> str:
    view = root.locator(":scope > .tlbook-view:not([hidden])")
    assert view.count() == 1, f"{view.count()} views visible"
    return view.locator(".tlbook-result").first.get_attribute("data-summary")


def _problems(v: Visit) -> list[str]:
    return (
        [f"external request: {url}" for url in v.external]
        + [f"failed request: {f}" for f in v.failed]
        + [f"console error: {m}" for m in console_filtered(v.console_errors)]
    )


PAGE_BUDGET_BYTES = 15_000_000  # each page's own download; the runtime is shared by all pages


def test_each_page_downloads_at_most_15_mb(reference):
    manifest = json.loads((ASSETS / "raw" / "manifest.json").read_text())
    too_big = {task: entry["bytes"] for task, entry in manifest["tasks"].items() if entry["bytes"] > PAGE_BUDGET_BYTES}
    assert not too_big, too_big
    assert manifest["runtime"]["bytes"] > 0, "the runtime's size is unknown (tools/fetch_book_js.py ran first?)"


def test_the_chapters_store_live_explorers():
    tasks = {task for _, _, task in UPLOADS}
    assert len(CHAPTERS) >= 5 and tasks == set(pages.UPLOAD_TASKS), (CHAPTERS, tasks)


@pytest.mark.parametrize("file", CHAPTERS)
def test_every_choice_shows_what_the_notebook_stored(visit, file):
    v = visit(f"{file}.html")
    page = v.page
    _ready(page)
    stored = _explorers(file)
    roots = page.locator(".tlbook-live:not(.tlbook-teach)")
    assert roots.count() == len(stored)
    for index, explorer in enumerate(stored):
        root, config, views = roots.nth(index), explorer["config"], explorer["views"]
        assert "tlbook-ready" in root.get_attribute("class")
        for control in root.locator("select, input").all():
            assert control.is_enabled(), "a control stayed disabled"
            assert control.evaluate("el => el.labels.length") >= 1, "a control without a label"
        if config["control"] == "menu":
            menu = root.locator("select")
            for value, summary in views.items():
                menu.select_option(value)
                assert _visible_summary(root) == summary, f"{file}: menu entry {value!r}"
            menu.select_option(list(views)[0])
            menu.focus()
            page.keyboard.press("ArrowDown")  # the keyboard moves through the menu too
            assert _visible_summary(root) == views[list(views)[1]]
        elif config["control"] == "slider":
            slider = root.locator("input[type=range]")
            slider.focus()
            page.keyboard.press("Home")
            values = sorted(views, key=int)
            for position, value in enumerate(values):
                if position:
                    page.keyboard.press("ArrowRight")
                assert root.locator("output").inner_text() == value
                assert _visible_summary(root) == views[value], f"{file}: slider at {value}"
    assert not _problems(v), _problems(v)


# --------------------------------------------------------------------------- #
# Uploads
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """Photos to upload: one per class (test split), one of no class, three awkward ones, four bad inputs."""
    from skimage import data as skdata

    folder = tmp_path_factory.mktemp("uploads")
    animals = data.scan(data.locate())
    test = data.split(animals, val=0.15, test=0.15, seed=0)["test"]
    sample = data.per_class(test, 1, seed=7)
    chosen = {f"{animals.classes[label]}.jpg": path for path, label in zip(sample.files, sample.labels)}
    result = {}
    for name, path in chosen.items():
        result[name] = folder / name
        result[name].write_bytes(Path(path).read_bytes())
    Image.fromarray(skdata.rocket()).save(folder / "rocket.jpg", quality=90)
    result["rocket.jpg"] = folder / "rocket.jpg"
    landscape = data.load_rgb(chosen["dogs.jpg"])
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated by 90°, i.e. as a portrait
    landscape.save(folder / "portrait-exif.jpg", quality=92, exif=exif)
    result["portrait-exif.jpg"] = folder / "portrait-exif.jpg"
    rgba = data.load_rgb(chosen["panda.jpg"]).convert("RGBA")
    alpha = Image.linear_gradient("L").resize(rgba.size)
    rgba.putalpha(alpha)
    rgba.save(folder / "transparent.png")
    result["transparent.png"] = folder / "transparent.png"
    data.load_rgb(chosen["cats.jpg"]).convert("L").save(folder / "greyscale.jpg", quality=92)
    result["greyscale.jpg"] = folder / "greyscale.jpg"
    (folder / "notes.txt").write_text("not a picture\n")
    jpeg = Path(chosen["cats.jpg"]).read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    buffer = io.BytesIO()
    Image.new("RGB", (7300, 5500), (90, 120, 60)).save(buffer, format="JPEG", quality=50)
    (folder / "huge.jpg").write_bytes(buffer.getvalue())
    (folder / "drawing.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="red"/></svg>'
    )
    for name in BAD_INPUTS:
        result[name] = folder / name
    return result


@pytest.fixture(scope="module")
def reference() -> pages.PageModels:
    if not (ASSETS / "raw" / "manifest.json").is_file():
        pytest.fail(f"{ASSETS} holds no page assets: run `make book` first")
    return pages.PageModels(ASSETS)


def _upload(page, root, path: Path) -> tuple[str, str]:
    """Upload one file through the explorer's file input; (status class, status text) once it answered."""
    status = root.locator(".tlbook-status")
    status.evaluate("el => { el.className = 'tlbook-status'; }")
    root.locator("input[type=file]").set_input_files(str(path))
    page.wait_for_function(
        "el => /tlbook-(done|error)/.test(el.className)", arg=status.element_handle(), timeout=60_000
    )
    return status.get_attribute("class"), status.inner_text()


def _compare(task: str, result, reference: pages.PageModels, path: Path) -> list[str]:
    """Where the page's answer differs from the Python reference for ``path``."""
    if task == "search":
        page_matches = json.loads(result.get_attribute("data-matches"))
        python = reference.search(path)
        gaps = [abs(a[1] - b[1]) for a, b in zip(page_matches, python)]
        same = all(a[0] == b[0] for a, b in zip(page_matches, python) if abs(a[1] - b[1]) < TOLERANCE)
        return [] if max(gaps) < TOLERANCE and same else [f"page {page_matches} != Python {python}"]
    page_rows = {label: p for label, p in json.loads(result.get_attribute("data-probabilities"))}
    if task == "imagenet":
        python = dict(reference.imagenet(path))
    elif task == "animals-cam":
        python = dict(zip(reference.classes, reference.animals(path)["probabilities"].tolist()))
    else:
        python = dict(reference.classify([path])[0])
    top_page, top_python = max(page_rows, key=page_rows.get), max(python, key=python.get)
    gap = max(abs(page_rows[label] - python.get(label, 0.0)) for label in page_rows)
    if top_page != top_python or gap >= TOLERANCE:
        return [f"page {top_page} vs Python {top_python}, largest probability gap {gap:.1e}"]
    return []


@pytest.mark.parametrize("file,index,task", UPLOADS, ids=[f"{t}" for _, _, t in UPLOADS])
def test_uploads_are_answered_as_python_does(visit, file, index, task, photos, reference):
    v = visit(f"{file}.html")
    page = v.page
    _ready(page)
    root = page.locator(".tlbook-live:not(.tlbook-teach)").nth(index)
    problems = []
    good = [name for name in photos if name not in BAD_INPUTS]
    for name in good:
        kind, text = _upload(page, root, photos[name])
        if "tlbook-done" not in kind:
            problems.append(f"{name}: {text}")
            continue
        result = root.locator(":scope > .tlbook-view:not([hidden]) .tlbook-result")
        problems += [f"{name}: {p}" for p in _compare(task, result, reference, photos[name])]
    for name, message in BAD_INPUTS.items():
        kind, text = _upload(page, root, photos[name])
        if "tlbook-error" not in kind or message not in text or "\n" in text.strip():
            problems.append(f"{name}: expected one line with {message!r}, got {kind}: {text!r}")
    kind, text = _upload(page, root, photos[good[0]])  # still working after the bad inputs
    if "tlbook-done" not in kind:
        problems.append(f"after the bad inputs: {text}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    root.screenshot(path=str(SCREENSHOTS / f"upload-{task}.png"))
    problems += _problems(v)
    assert not problems, f"{file}.html, {task}:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------- #
# From disk, without JavaScript, in dark mode
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("file", CHAPTERS)
def test_pages_work_from_disk(browser, file, photos, reference):
    context = browser.new_context()
    page = context.new_page()
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    try:
        page.goto((HTML / f"{file}.html").as_uri(), wait_until="load")
        _ready(page)
        stored = _explorers(file)
        roots = page.locator(".tlbook-live:not(.tlbook-teach)")
        for index, explorer in enumerate(stored):
            root = roots.nth(index)
            if explorer["config"]["control"] == "menu":
                last = list(explorer["views"])[-1]
                root.locator("select").select_option(last)
                assert _visible_summary(root) == explorer["views"][last]
            task = explorer["config"].get("upload")
            if task:
                kind, text = _upload(page, root, photos["panda.jpg"])
                assert "tlbook-done" in kind, text
                result = root.locator(":scope > .tlbook-view:not([hidden]) .tlbook-result")
                assert not _compare(task, result, reference, photos["panda.jpg"])
    finally:
        context.close()
    outside = [url for url in requests if not url.startswith(("file://", "data:", "blob:"))]
    assert not outside, f"requests that leave the book: {outside}"
    assert not console_filtered(errors), errors


def test_without_javascript_the_stored_view_stays_and_says_why(browser):
    file = CHAPTERS[0]
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto((HTML / f"{file}.html").as_uri())
        root = page.locator(".tlbook-live:not(.tlbook-teach)").first
        assert root.locator("select, input").first.is_disabled()
        assert pages.NO_SCRIPT in root.locator(".tlbook-status").inner_text()
        assert root.locator(":scope > .tlbook-view:not([hidden])").count() == 1
    finally:
        context.close()


CONTRAST = """root => {
  const rgb = c => c.match(/[0-9.]+/g).slice(0, 3).map(Number);
  const channel = x => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; };
  const lum = c => { const v = rgb(c).map(channel); return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  const opaque = c => c !== 'transparent' && !/rgba\\(.*, 0\\)$/.test(c);
  const background = el => {
    for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      if (opaque(c)) return c;
    }
    return 'rgb(255, 255, 255)';
  };
  const texts = 'label, .tlbook-bar-label, .tlbook-bar-value, figcaption, .tlbook-status, pre';
  return Array.from(root.querySelectorAll(texts))
    .filter(el => el.offsetParent !== null && el.textContent.trim())
    .map(el => { const a = lum(getComputedStyle(el).color), b = lum(background(el));
                 return [el.className || el.tagName, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]; });
}"""


def test_dark_mode_is_legible(browser):
    file = CHAPTERS[0]
    context = browser.new_context(color_scheme="dark")
    page = context.new_page()
    try:
        page.goto((HTML / f"{file}.html").as_uri())
        _ready(page)
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        root = page.locator(".tlbook-live:not(.tlbook-teach)").first
        root.scroll_into_view_if_needed()
        root.screenshot(path=str(SCREENSHOTS / "explorer-dark.png"))
        ratios = root.evaluate(CONTRAST)
        assert ratios and all(ratio >= 4.5 for _, ratio in ratios), ratios
    finally:
        context.close()


# --------------------------------------------------------------------------- #
# Chapter 4's teaching tool
# --------------------------------------------------------------------------- #

TEACH_PAGE = "notebooks/04_cats_dogs_pandas"


@pytest.fixture(scope="module")
def teaching() -> dict:
    """5 training photos per class of the book's photos, and 2 held-out test photos per class."""
    animals = data.scan(data.locate())
    splits = data.split(animals, val=0.15, test=0.15, seed=0)
    train = data.per_class(splits["train"], 5, seed=3)
    held_out = data.per_class(splits["test"], 2, seed=3)
    return {"classes": animals.classes, "train": train, "held_out": held_out}


def _python_prototype_head(reference, teaching):
    """What tlhelpers computes from the page's own features: heads.imprint and heads.leave_one_out."""
    import torch

    from tlhelpers import features, heads

    train = teaching["train"]
    fs = features.FeatureSet(
        torch.from_numpy(reference.features(train.files)),
        torch.as_tensor(train.labels),
        [str(p) for p in train.files],
        list(teaching["classes"]),
    )
    head = heads.imprint(fs)
    held = teaching["held_out"]
    with torch.inference_mode():
        probabilities = head(torch.from_numpy(reference.features(held.files))).softmax(1).numpy()
    return heads.leave_one_out(fs), probabilities


def _teach(page, root, teaching) -> None:
    """Name three classes and give each its five photos, as a reader does."""
    while root.locator(".tlbook-class").count() < len(teaching["classes"]):
        root.locator(".tlbook-add-class").click()
    for index, name in enumerate(teaching["classes"]):
        row = root.locator(".tlbook-class").nth(index)
        row.locator("input[type=text]").fill(name)
        row.locator("input[type=text]").press("Tab")
        paths = [str(p) for p, label in zip(teaching["train"].files, teaching["train"].labels) if label == index]
        _wait_for_status(
            page,
            root,
            lambda: (
                root.locator(".tlbook-class").nth(index).locator("input.tlbook-class-photos").set_input_files(paths)
            ),
        )
        assert root.locator(".tlbook-class").nth(index).locator(".tlbook-count").inner_text() == "5 photos"


def _wait_for_status(page, root, action) -> tuple[str, str]:
    status = root.locator(".tlbook-status")
    status.evaluate("el => { el.className = 'tlbook-status'; }")
    action()
    page.wait_for_function(
        "el => /tlbook-(done|error)/.test(el.className)", arg=status.element_handle(), timeout=60_000
    )
    return status.get_attribute("class"), status.inner_text()


def _classify(page, root, path) -> tuple[str, str]:
    return _wait_for_status(page, root, lambda: root.locator("input.tlbook-query").set_input_files(str(path)))


def test_the_page_learns_classes_as_python_does(visit, teaching, reference, photos, tmp_path):
    import subprocess
    import sys

    v = visit(f"{TEACH_PAGE}.html")
    page = v.page
    _ready(page)
    root = page.locator(".tlbook-teach")
    assert root.count() == 1
    assert "tlbook-ready" in root.get_attribute("class")
    _teach(page, root, teaching)

    (correct, counted), python = _python_prototype_head(reference, teaching)
    loo = root.locator(".tlbook-loo")
    assert (int(loo.get_attribute("data-correct")), int(loo.get_attribute("data-counted"))) == (correct, counted)
    classes = list(teaching["classes"])
    shown = []
    for i, path in enumerate(teaching["held_out"].files):
        kind, text = _classify(page, root, path)
        assert "tlbook-done" in kind, text
        result = root.locator(":scope > .tlbook-view .tlbook-result")
        rows = dict(json.loads(result.get_attribute("data-probabilities")))
        page_probs = [rows[name] for name in classes]
        assert classes[int(python[i].argmax())] == max(rows, key=rows.get), (path, rows, python[i])
        assert max(abs(a - b) for a, b in zip(page_probs, python[i])) < TOLERANCE, (path, rows, python[i])
        shown.append(max(rows, key=rows.get))

    # Bad input: one clear line each, nothing lost.
    row = root.locator(".tlbook-class").nth(1)
    kind, text = _wait_for_status(
        page, root, lambda: row.locator("input.tlbook-class-photos").set_input_files(str(photos["notes.txt"]))
    )
    assert "tlbook-error" in kind and "is not a picture" in text, text
    first_cat = str(teaching["train"].files[0])
    kind, text = _wait_for_status(
        page, root, lambda: row.locator("input.tlbook-class-photos").set_input_files(first_cat)
    )
    assert "tlbook-error" in kind and "is already in class 'cats'" in text, text
    root.locator(".tlbook-add-class").click()
    kind, text = _classify(page, root, teaching["held_out"].files[0])
    assert "tlbook-error" in kind and "has no photos yet" in text, text
    assert [root.locator(".tlbook-count").nth(i).inner_text() for i in range(3)] == ["5 photos"] * 3
    root.locator(".tlbook-class").nth(3).locator(".tlbook-remove").click()

    # A reload keeps the classes (this tab's sessionStorage) and says so.
    page.reload()
    _ready(page)
    root = page.locator(".tlbook-teach")
    assert "Restored from this tab: 3 classes and 15 photos" in root.locator(".tlbook-status").inner_text()
    assert int(root.locator(".tlbook-loo").get_attribute("data-correct")) == correct

    # The downloaded head is a classifier file that the command line reads.
    with page.expect_download() as download:
        root.locator(".tlbook-download").click()
    head_file = tmp_path / "my-classes.json"
    download.value.save_as(head_file)
    env = {**os.environ, "TLHELPERS_FORCE_FALLBACK": "1", "TLHELPERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "tlhelpers", "predict", str(head_file), *map(str, teaching["held_out"].files)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    predicted = [
        line.split(": ", 1)[1].split()[0]
        for line in result.stdout.splitlines()
        if ": " in line and line.split(":")[0].endswith(".jpg")
    ]
    assert predicted == shown, result.stdout
    assert not _problems(v), _problems(v)


def test_from_disk_two_new_classes_from_five_photos_each(browser, teaching):
    context = browser.new_context()
    page = context.new_page()
    requests = []
    page.on("request", lambda request: requests.append((request.method, request.url)))
    try:
        page.goto((HTML / f"{TEACH_PAGE}.html").as_uri(), wait_until="load")
        _ready(page)
        root = page.locator(".tlbook-teach")
        two = {"classes": teaching["classes"][1:], "train": teaching["train"]}
        for index, name in enumerate(two["classes"]):
            row = root.locator(".tlbook-class").nth(index)
            row.locator("input[type=text]").fill(name)
            row.locator("input[type=text]").press("Tab")
            paths = [
                str(p) for p, label in zip(teaching["train"].files, teaching["train"].labels) if label == index + 1
            ]
            _wait_for_status(
                page, root, lambda row=row, paths=paths: row.locator("input.tlbook-class-photos").set_input_files(paths)
            )
        sixth = next(p for p, label in zip(teaching["held_out"].files, teaching["held_out"].labels) if label == 2)
        kind, text = _classify(page, root, sixth)
        assert "tlbook-done" in kind and text.split(": ")[1].startswith("panda"), text
    finally:
        context.close()
    assert all(method == "GET" and url.startswith(("file://", "data:", "blob:")) for method, url in requests), requests
