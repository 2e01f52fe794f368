"""benchmarks/report.py (format, budget verdicts, Markdown) and benchmarks/run.py's parts that measure nothing.

No timing is measured or asserted here: ``make bench`` measures, on a quiet machine.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))  # run.py imports report from there: the same module here
report = importlib.import_module("report")
run = importlib.import_module("run")

NOTEBOOKS, NOTEBOOK_GOAL, EXTRACTION, FROZEN_HEAD, REAL_PATH, PAGES, TEACH = range(7)  # the budgets, in order
MODELS = ("resnet18", "vgg16", "efficientnet_lite0")
PAGE_TASKS = [
    ("01_pretrained_inference", "imagenet", 85.0),
    ("04_cats_dogs_pandas", "animals-cam", 120.0),
    ("06_features_without_training", "search", 140.0),
    ("07_shipping_the_model", "classifier", 40.0),
]


def fabricated_data(device: str = "cpu", quick: bool = False) -> dict:
    """A well-formed result with made-up numbers, as its JSON file holds it (the sections of format 1's first files)."""
    machine = {
        "device": device,
        "cpu_model": "Example CPU @ 2.0GHz",
        "cpu_cores": 2,
        "torch_threads": 2,
        "gpu": None,
        "gpu_memory_gib": None,
        "cuda": None,
        "torch": "2.9.0",
        "torchvision": "0.24.0",
        "timm": "1.0.20",
        "python": "3.11.7",
        "platform": "Linux-6.1-x86_64",
    }
    if device == "cuda":
        machine.update(gpu="NVIDIA H100 80GB HBM3", gpu_memory_gib=79.1, cuda="12.8", cpu_cores=16, torch_threads=16)
    chapters = [
        {"notebook": f"0{i}_chapter", "seconds": 100.0 + i, "passed": True, "summary": "20 passed"} for i in range(1, 5)
    ]
    return {
        "format": report.FORMAT,
        "tag": "cuda-nvidia-h100" if device == "cuda" else "cpu-2cores",
        "quick": quick,
        "date": "2026-01-02T03:04:05Z",
        "command": "benchmarks/run.py",
        "machine": machine,
        "notebooks": {
            "command": "python -m pytest -q --nbval notebooks/<chapter>.ipynb",
            "feature_cache": {
                "where": "the default user cache",
                "files_before": 5,
                "files_written": 0,
                "state": "warm",
            },
            "runs": chapters,
            "complete": not quick,
            "total_seconds": 410.0,
        },
        "extraction": {
            "images": 128,
            "size": 224,
            "batch_size": 32,
            "weights": "Random weights.",
            "runs": [{"model": m, "seconds": 10.0, "images_per_s": 12.8} for m in MODELS],
        },
        "frozen_head": {
            "model": "efficientnet_lite0",
            "per_class": 30,
            "images": 90,
            "epochs": 15,
            "batch_size": 32,
            "size": 224,
            "classic_seconds": 120.0,
            "extract_seconds": 8.0,
            "head_seconds": 0.05,
            "cached_seconds": 8.05,
            "warm_cache_seconds": 0.2,
            "speedup": 14.91,
            "warm_speedup": 600.0,
        },
        "finetune": {
            "size": 112,
            "batch_size": 16,
            "warmup_batches": 2,
            "batches": 8,
            "size_note": "chapter 3's CPU setting",
            "weights": "Random weights.",
            "runs": [{"model": m, "seconds": 20.0, "images_per_s": 6.4} for m in MODELS],
        },
        "budgets": [],
    }


def real_path_data(quick: bool = False, seconds: float = 30.0) -> dict:
    """The real-path section: every chapter, both budgets."""
    runs = [
        {"notebook": f"0{i}_chapter", "budget": budget, "seconds": seconds, "passed": True, "notes": i}
        for budget in ("cpu", "full")
        for i in range(1, 5)
    ]
    return {
        "command": "python tools/run_real_path.py --budget both",
        "photos_per_class": 16,
        "budgets": ["cpu", "full"],
        "setup_seconds": 5.0,
        "runs": runs,
        "complete": not quick,
        "total_seconds": 5.0 + seconds * len(runs),
    }


def pages_data(quick: bool = False, slowest_ms: float = 140.0, failed: tuple[str, ...] = ()) -> dict:
    """The pages section: one run per in-page task, ``search`` the slowest; no teaching tool."""
    runs = [
        {
            "chapter": chapter,
            "task": task,
            "what": f"what {task} does",
            "bytes": 6_600_000 + i,
            "load_ms": 1500.0,
            "first_answer_ms": 1800.0,
            "answer_ms": slowest_ms if task == "search" else ms,
        }
        for i, (chapter, task, ms) in enumerate(PAGE_TASKS)
    ]
    return {
        "browser": "Chromium 140.0",
        "backbone": "ResNet-18",
        "photos": 2 if quick else 10,
        "runtime_bytes": 11_200_000,
        "failed": list(failed),
        "runs": runs,
    }


def teach_data(last_photo_ms: float = 180.0, first_answer_ms: float = 240.0, photos: int = 15) -> dict:
    seconds = round((last_photo_ms + first_answer_ms) / 1e3, 3)
    return {
        "load_ms": 1400.0,
        "photos": photos,
        "last_photo_ms": last_photo_ms,
        "first_answer_ms": first_answer_ms,
        "seconds": seconds,
    }


def vector_search_data() -> dict:
    return {
        "dim": 512,
        "queries": 100,
        "k": 10,
        "nprobe": 8,
        "data": "synthetic vectors",
        "runs": [
            {
                "n": n,
                "exact_ms": 0.01 * n**0.5,
                "approx_ms": 0.05,
                "build_s": 1e-5 * n,
                "nlist": int(n**0.5),
                "recall": 1,
            }
            for n in (1000, 1000000)
        ],
    }


def inference_data() -> dict:
    runs = [
        {"model": "efficientnet_lite0", "variant": variant, "size_mb": size, "latency_ms": ms, "images_per_s": rate}
        for variant, size, ms, rate in (("PyTorch", 13.8, 48.9, 16.3), ("ONNX static int8", 3.6, 8.3, 108.1))
    ]
    return {"photos": 64, "calibration_photos": 30, "threads": 1, "batch_size": 32, "weights": "Random.", "runs": runs}


def complete_data(device: str = "cpu", quick: bool = False) -> dict:
    """A result with every section of the format."""
    data = fabricated_data(device, quick)
    pages = pages_data(quick)
    pages["teach"] = teach_data()
    data.update(
        settings={"amp": device == "cuda", "channels_last": device == "cuda"},
        real_path=real_path_data(quick),
        vector_search=vector_search_data(),
        inference=inference_data(),
        pages=pages,
    )
    return data


def result_of(data: dict) -> report.Result:
    """``data`` loaded, with its budgets."""
    result = report.from_dict(copy.deepcopy(data))
    result.budgets = report.budgets(result)
    return result


def fabricated(device: str = "cpu", quick: bool = False, **sections) -> report.Result:
    """A fabricated result, with its budgets; ``sections`` add or replace sections (as JSON data)."""
    return result_of({**fabricated_data(device, quick), **sections})


BUDGET = {"name": "A budget", "limit": "≤ 1 s", "measured": "0.5 s", "verdict": "met", "note": ""}


def verdicts(result: report.Result) -> list[str]:
    return [b.verdict for b in result.budgets]


# --------------------------------------------------------------------------- #
# Format
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("data", [fabricated_data(), fabricated_data("cuda", quick=True), complete_data()])
def test_a_result_round_trips_through_json_and_the_dataclasses(data):
    result = result_of(data)
    stored = json.loads(json.dumps(dataclasses.asdict(result)))
    assert report.from_dict(stored) == result
    assert isinstance(result.notebooks.runs[0], report.ChapterRun)
    assert isinstance(result.machine, report.Machine)


def test_skipped_measurements_are_null_and_later_sections_may_be_absent():
    result = fabricated(notebooks=None, finetune=None, real_path=None, pages=None)
    assert result.notebooks is None and result.finetune is None
    assert verdicts(result)[NOTEBOOKS] == "not checked"
    old = fabricated()  # written before the real path, vector search, chapter 7 and the pages were measured
    assert old.real_path is None and old.vector_search is None and old.inference is None and old.pages is None
    assert fabricated(pages=pages_data()).pages.teach is None  # pages measured before the teaching tool


@pytest.mark.parametrize(
    "breakage, field",
    [
        (lambda d: d.pop("machine"), "result.machine"),
        (lambda d: d.pop("extraction"), "result.extraction"),
        (lambda d: d.update(format=99), "result.format"),
        (lambda d: d.update(date="2 January 2026"), "result.date"),
        (lambda d: d.update(tag="laptop"), "result.tag"),
        (lambda d: d.update(colour="blue"), "result.colour"),
        (lambda d: d.update(notebooks=[]), "result.notebooks"),
        (lambda d: d["machine"].update(cpu_cores=True), "result.machine.cpu_cores"),
        (lambda d: d["machine"].update(cpu_model=None), "result.machine.cpu_model"),
        (lambda d: d["frozen_head"].update(speedup="fast"), "result.frozen_head.speedup"),
        (lambda d: d["notebooks"]["runs"][0].update(passed="yes"), "result.notebooks.runs[0].passed"),
        (lambda d: d["notebooks"]["feature_cache"].update(state="lukewarm"), "result.notebooks.feature_cache.state"),
        (lambda d: d.update(budgets=[{**BUDGET, "verdict": "ok"}]), "result.budgets[0].verdict"),
        (lambda d: d.update(budgets=[{**BUDGET, "note": None}]), "result.budgets[0].note"),
        (lambda d: d["real_path"]["runs"][0].pop("budget"), "result.real_path.runs[0].budget"),
        (lambda d: d["vector_search"]["runs"][1].pop("recall"), "result.vector_search.runs[1].recall"),
        (lambda d: d["inference"]["runs"][0].update(latency_ms="fast"), "result.inference.runs[0].latency_ms"),
        (lambda d: d["pages"]["runs"][1].pop("answer_ms"), "result.pages.runs[1].answer_ms"),
        (lambda d: d["pages"]["runs"][0].update(bytes="6.6 MB"), "result.pages.runs[0].bytes"),
        (lambda d: d["pages"].update(runtime_bytes=1.5), "result.pages.runtime_bytes"),
        (lambda d: d["pages"].update(failed=[{"task": "search"}]), "result.pages.failed[0]"),
        (lambda d: d["pages"].pop("browser"), "result.pages.browser"),
        (lambda d: d["pages"]["teach"].pop("seconds"), "result.pages.teach.seconds"),
        (lambda d: d["pages"]["teach"].update(photos=15.0), "result.pages.teach.photos"),
        (lambda d: d["settings"].update(amp=1), "result.settings.amp"),
    ],
)
def test_a_malformed_result_is_rejected_naming_the_field(breakage, field):
    data = complete_data()
    breakage(data)
    with pytest.raises(report.FormatError) as error:
        report.from_dict(data)
    assert str(error.value).startswith(field + " "), str(error.value)


def test_numbers_may_be_ints_where_floats_are_expected_and_keep_their_form():
    data = complete_data()
    data["pages"]["teach"]["first_answer_ms"] = 79
    result = report.from_dict(copy.deepcopy(data))
    assert result.pages.teach.first_answer_ms == 79
    assert json.dumps(dataclasses.asdict(result), sort_keys=True) == json.dumps(data, sort_keys=True)


def test_machine_tags():
    assert report.machine_tag(fabricated().machine) == "cpu-2cores"
    assert report.machine_tag(fabricated("cuda").machine) == "cuda-nvidia-h100"
    gpu = fabricated("cuda").machine
    for name, tag in [
        ("Tesla T4", "cuda-tesla-t4"),
        ("NVIDIA A100-SXM4-40GB", "cuda-nvidia-a100"),
        ("NVIDIA GeForce RTX 4090", "cuda-nvidia-geforce-rtx-4090"),
    ]:
        gpu.gpu = name
        assert report.machine_tag(gpu) == tag
    apple = dataclasses.replace(gpu, device="mps", gpu="Apple arm64")
    assert report.machine_tag(apple) == "mps-apple-arm64"


def test_write_gives_json_markdown_and_index(tmp_path):
    result = result_of(complete_data())
    json_path, md_path, index_path = report.write(result, tmp_path)
    assert (json_path.name, md_path.name, index_path.name) == ("cpu-2cores.json", "cpu-2cores.md", "index.md")
    assert report.read(json_path) == result
    assert md_path.read_text() == report.render_markdown(result)
    assert "/cpu-2cores.md" in index_path.read_text()
    result.tag = "laptop"  # a file that would not read back is not written
    with pytest.raises(report.FormatError, match="result.tag"):
        report.write(result, tmp_path / "other")
    assert not (tmp_path / "other").exists()


# --------------------------------------------------------------------------- #
# Budgets
# --------------------------------------------------------------------------- #


def test_every_budget_is_listed_and_unmeasured_ones_are_not_checked():
    result = fabricated()
    assert verdicts(result) == ["met", "not met", "not met", "met", "not checked", "not checked", "not checked"]
    assert [b.measured for b in result.budgets][REAL_PATH:] == ["not measured"] * 3


def test_budgets_not_met():
    result = fabricated()
    result.notebooks.total_seconds = 601.0
    result.frozen_head.speedup = 9.9
    budgets = report.budgets(result)
    assert budgets[NOTEBOOKS].verdict == budgets[FROZEN_HEAD].verdict == "not met"


def test_the_goals_for_the_whole_book_and_for_extraction():
    result = fabricated()  # 410 s
    goal = report.budgets(result)[NOTEBOOK_GOAL]
    assert goal.verdict == "not met" and "04_chapter" in goal.note  # the slowest
    result.notebooks.total_seconds = 180.0
    assert report.budgets(result)[NOTEBOOK_GOAL].verdict == "met"
    extraction = report.budgets(result)[EXTRACTION]  # 12.8 photos/s for every model
    assert extraction.verdict == "not met" and "68 % short" in extraction.note
    for run in result.extraction.runs:
        run.images_per_s = 40.0
    assert report.budgets(result)[EXTRACTION].verdict == "met"
    result.extraction.runs = [r for r in result.extraction.runs if r.model != "resnet18"]
    assert report.budgets(result)[EXTRACTION].verdict == "not checked"
    gpu = fabricated("cuda").budgets
    assert gpu[EXTRACTION].verdict == gpu[NOTEBOOK_GOAL].verdict == "not checked"


def test_a_failed_chapter_fails_the_notebook_budget():
    result = fabricated()
    result.notebooks.runs[2].passed = False
    budget = report.budgets(result)[NOTEBOOKS]
    assert budget.verdict == "not met" and "03_chapter" in budget.note


def test_a_chapter_over_two_minutes_fails_the_notebook_budget():
    result = fabricated()
    result.notebooks.runs[2].seconds = 121.0
    budget = report.budgets(result)[NOTEBOOKS]
    assert budget.verdict == "not met" and "03_chapter" in budget.note
    result.notebooks.runs[2].seconds = 120.0
    assert report.budgets(result)[NOTEBOOKS].verdict == "met"


def test_quick_and_partial_runs_check_no_budget():
    quick = fabricated(
        quick=True, real_path=real_path_data(quick=True), pages={**pages_data(quick=True), "teach": teach_data()}
    )
    assert verdicts(quick) == ["not checked"] * 7
    assert all(b.measured != "not measured" for b in quick.budgets)
    partial = fabricated()
    partial.notebooks.complete = False
    assert report.budgets(partial)[NOTEBOOKS].verdict == "not checked"


def test_other_machines_are_told_apart_from_the_reference():
    budget = fabricated("cuda").budgets[NOTEBOOKS]
    assert budget.verdict == "met" and "16" in budget.note
    assert fabricated().budgets[NOTEBOOKS].note == ""


def test_real_path_budget():
    met = fabricated(real_path=real_path_data(seconds=25.0))  # 5 s + 8 runs × 25 s = 205 s
    assert met.budgets[REAL_PATH].verdict == "met"
    assert fabricated(real_path=real_path_data(seconds=30.0)).budgets[REAL_PATH].verdict == "not met"  # 245 s


def test_a_chapter_failing_on_the_real_path_fails_its_budget():
    result = fabricated(real_path=real_path_data(seconds=1.0))
    result.real_path.runs[5].passed = False
    budget = report.budgets(result)[REAL_PATH]
    assert budget.verdict == "not met" and "02_chapter" in budget.note


def test_real_path_not_checked_when_quick_partial_or_skipped():
    assert fabricated(quick=True, real_path=real_path_data(quick=True)).budgets[REAL_PATH].verdict == "not checked"
    partial = fabricated(real_path=real_path_data(seconds=1.0))
    partial.real_path.complete = False
    assert report.budgets(partial)[REAL_PATH].verdict == "not checked"
    assert fabricated(real_path=None).budgets[REAL_PATH].verdict == "not checked"


def test_page_budget_takes_the_slowest_task():
    budget = fabricated(pages=pages_data(slowest_ms=140.0)).budgets[PAGES]
    assert budget.verdict == "met" and "search" in budget.measured
    assert fabricated(pages=pages_data(slowest_ms=300.0)).budgets[PAGES].verdict == "met"
    assert fabricated(pages=pages_data(slowest_ms=312.4)).budgets[PAGES].verdict == "not met"


def test_page_budget_not_met_when_a_page_did_not_answer():
    failed = ("04_cats_dogs_pandas (animals-cam): cats.jpg: is truncated",)
    budget = fabricated(pages=pages_data(failed=failed)).budgets[PAGES]
    assert budget.verdict == "not met" and "animals-cam" in budget.note


def test_page_budget_not_checked_when_quick_or_skipped():
    assert fabricated(quick=True, pages=pages_data(quick=True, slowest_ms=10.0)).budgets[PAGES].verdict == "not checked"
    skipped = fabricated(pages=None).budgets[PAGES]
    assert skipped.verdict == "not checked" and skipped.measured == "not measured"


def with_teach(failed: tuple[str, ...] = (), quick: bool = False, **timings) -> report.Result:
    """A result whose pages have the teaching tool's timings (None when it failed)."""
    pages = pages_data(quick=quick, failed=failed)
    pages["teach"] = None if any(f"({report.TEACH_LABEL})" in f for f in failed) else teach_data(**timings)
    return fabricated(quick=quick, pages=pages)


def test_teach_budget():
    assert with_teach(last_photo_ms=180.0, first_answer_ms=240.0).budgets[TEACH].verdict == "met"
    assert with_teach(last_photo_ms=400.0, first_answer_ms=600.0).budgets[TEACH].verdict == "met"
    slow = with_teach(last_photo_ms=700.0, first_answer_ms=450.0)
    assert slow.budgets[TEACH].verdict == "not met" and slow.budgets[PAGES].verdict == "met"
    assert with_teach(photos=12).budgets[TEACH].verdict == "not checked"  # not the budget's 15 photos


def test_teach_budget_not_met_when_the_tool_did_not_answer_and_apart_from_the_uploads():
    result = with_teach(
        failed=(f"04_cats_dogs_pandas ({report.TEACH_LABEL}): adding 5 photo(s) to 'cats': unreadable",)
    )
    assert result.budgets[TEACH].verdict == "not met" and "adding 5 photo(s)" in result.budgets[TEACH].note
    assert result.budgets[TEACH].measured == "not measured"
    assert result.budgets[PAGES].verdict == "met"  # the upload explorers all answered
    upload_failed = with_teach(failed=("07_shipping_the_model (classifier): the file input stayed disabled",))
    assert upload_failed.budgets[PAGES].verdict == "not met" and upload_failed.budgets[TEACH].verdict == "met"


def test_teach_budget_not_checked_when_quick_or_skipped():
    quick = with_teach(quick=True, last_photo_ms=10.0, first_answer_ms=10.0).budgets[TEACH]
    assert quick.verdict == "not checked" and quick.measured != "not measured"
    skipped = fabricated(pages=None).budgets[TEACH]
    assert skipped.verdict == "not checked" and skipped.measured == "not measured"


# --------------------------------------------------------------------------- #
# Markdown
# --------------------------------------------------------------------------- #


def _tables(markdown: str) -> list[list[list[str]]]:
    """Every pipe table as rows of cells, the separator row checked and left out."""
    tables, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            assert line.endswith("|"), line
            current.append([c.strip() for c in line[1:-1].split("|")])
        elif current:
            assert len(current) >= 2 and all(re.fullmatch(r":?-+:?", c) for c in current[1]), current[:2]
            tables.append([current[0], *current[2:]])
            current = []
    return tables


SECTIONS = ("notebooks", "real_path", "extraction", "frozen_head", "inference", "pages", "finetune", "vector_search")


@pytest.mark.parametrize("data", [fabricated_data(), complete_data(), complete_data("cuda", quick=True)])
def test_markdown_has_a_section_and_well_formed_tables_per_measurement(data):
    result = result_of(data)
    text = report.render_markdown(result)
    assert text.startswith(f"# Benchmarks on `{result.tag}`\n") and text.endswith("\n")
    measured = [getattr(result, name) for name in SECTIONS if getattr(result, name) is not None]
    headings = re.findall(r"^## ", text, re.M)
    assert len(headings) == 2 + len(measured)  # the machine and the budgets first
    assert not re.search(r"^#{3,} ", text, re.M), "deeper headings would pass H6 inside the book page"
    tables = _tables(text)
    assert len(tables) == 2 + len(measured)  # every measurement has one table (the pages when some answered)
    for table in tables:
        assert len({len(row) for row in table}) == 1, table
    machine, budgets, *sections = tables
    assert len(budgets) == 1 + len(result.budgets)
    assert [row[3:] for row in budgets[1:]] == [[f"**{b.verdict}**", b.note] for b in result.budgets]
    for section, table in zip(measured, sections):
        total = 1 if isinstance(section, (report.Notebooks, report.RealPath)) else 0
        rows = 3 if isinstance(section, report.FrozenHead) else len(section.runs) + total
        assert len(table) == 1 + rows, table


def test_markdown_names_what_did_not_answer():
    failed = ("07_shipping_the_model (classifier): the file input stayed disabled",)
    assert failed[0] in report.render_markdown(fabricated(pages=pages_data(failed=failed)))


# --------------------------------------------------------------------------- #
# index.md and the book page
# --------------------------------------------------------------------------- #


def test_index_without_results_includes_nothing():
    text = report.render_index([])
    assert "{include}" not in text
    for start, end in report.MARKERS.values():
        assert text.index(start) < text.index(end)


def test_index_includes_the_latest_result_per_device(tmp_path):
    older = fabricated()
    newer = copy.deepcopy(older)
    newer.machine.cpu_cores = 8
    newer.tag = report.machine_tag(newer.machine)
    newer.date = "2026-02-01T00:00:00Z"
    for result in (newer, older):
        report.write(result, tmp_path)
    (tmp_path / "broken.json").write_text("{")
    text = (tmp_path / "index.md").read_text()
    cpu = text.split(report.MARKERS["cpu"][0])[1].split(report.MARKERS["cpu"][1])[0]
    assert "{include} " in cpu and "/cpu-8cores.md" in cpu and ":heading-offset: 2" in cpu
    assert "`cpu-2cores`" in text  # listed as an older result
    gpu = text.split(report.MARKERS["gpu"][0])[1].split(report.MARKERS["gpu"][1])[0]
    assert "{include}" not in gpu

    report.write(fabricated("cuda"), tmp_path)
    gpu = (tmp_path / "index.md").read_text().split(report.MARKERS["gpu"][0])[1]
    assert "/cuda-nvidia-h100.md" in gpu.split(report.MARKERS["gpu"][1])[0]
    assert [r.tag for r in report.load_results(tmp_path)] == ["cpu-2cores", "cuda-nvidia-h100", "cpu-8cores"]


def test_the_book_page_includes_the_generated_index():
    page = (ROOT / "book" / "timings.md").read_text()
    assert page.startswith("# How long things take\n")
    includes = re.findall(r"```\{include\} (\S+)\n((?::[\w-]+:.*\n)*)```", page)
    assert includes and all(path == "/benchmarks/results/index.md" for path, _ in includes)
    options = "".join(opts for _, opts in includes)
    for kind in report.DEVICE_KINDS:
        start, end = report.MARKERS[kind]
        assert f":start-after: {start}" in options and f":end-before: {end}" in options
    # Every marker the page cuts at is in an index.md as run.py writes it.
    index = report.render_index([fabricated(), fabricated("cuda")])
    for marker in re.findall(r":(?:start-after|end-before): (.+)", page):
        assert marker in index


def test_committed_results_load_and_are_up_to_date():
    """The files in benchmarks/results/ follow the format, and their Markdown and index.md are up to date."""
    for path in sorted(RESULTS.glob("*.json")):
        result = report.read(path)
        assert path.stem == result.tag
        assert json.dumps(dataclasses.asdict(result), indent=2, ensure_ascii=False) + "\n" == path.read_text()
        assert (RESULTS / f"{path.stem}.md").read_text() == report.render_markdown(result), (
            f"{path.stem}.md differs from its JSON: run `python benchmarks/run.py --render-only` after editing"
        )
    assert (RESULTS / "index.md").read_text() == report.render_index(report.load_results(RESULTS)), (
        "benchmarks/results/index.md is stale: run `python benchmarks/run.py --render-only`"
    )


# --------------------------------------------------------------------------- #
# run.py
# --------------------------------------------------------------------------- #


def test_vector_search_leaves_out_sizes_that_do_not_fit(monkeypatch):
    logged = []
    monkeypatch.setattr(run, "log", logged.append)
    monkeypatch.setattr(run, "SEARCH", {"dim": 8, "queries": 5, "k": 3, "nprobe": 2})
    monkeypatch.setattr(run, "available_memory_bytes", lambda: 3 * 4 * 8 * 1000)  # room for 999 vectors
    section = run.time_vector_search([300, 600, 5000])
    assert [r.n for r in section.runs] == [300, 600]
    assert any("N=5,000 left out" in line for line in logged)
    result = fabricated(vector_search=dataclasses.asdict(section))
    assert result.vector_search == section


def test_run_finds_the_upload_explorers_of_the_built_pages(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "chapters", lambda: ["01_a.ipynb", "03_b.ipynb", "04_c.ipynb", "09_missing.ipynb"])
    pages_dir = tmp_path / "notebooks"
    pages_dir.mkdir()

    def explorer(config: dict) -> str:
        escaped = json.dumps(config).replace("&", "&amp;").replace('"', "&quot;")
        return f'<div class="tlbook-live" id="x" data-live="{escaped}"><input type="file"></div>'

    (pages_dir / "01_a.html").write_text(
        explorer({"control": "menu", "upload": None}) + explorer({"control": "upload", "upload": "imagenet"})
    )
    (pages_dir / "03_b.html").write_text("<p>no explorer</p>" + explorer({"control": "slider"}))
    (pages_dir / "04_c.html").write_text(
        explorer({"control": "menu", "upload": "animals-cam"})
        + explorer({"control": "upload", "upload": "imagenet"})
        + explorer({"control": "teach", "upload": "learn"})
    )
    assert run.page_uploads(tmp_path) == [
        ("01_a", "notebooks/01_a.html", 1, "imagenet"),
        ("04_c", "notebooks/04_c.html", 0, "animals-cam"),
    ]
    assert run.page_teach(tmp_path) == ("04_c", "notebooks/04_c.html", 2)  # the teaching tool is timed apart
    (pages_dir / "04_c.html").write_text(explorer({"control": "menu", "upload": "animals-cam"}))
    assert run.page_teach(tmp_path) is None


def test_run_reads_the_page_manifest_and_leaves_the_pages_out_without_a_built_book(tmp_path, monkeypatch):
    manifest = {"runtime": {"bytes": 5}, "tasks": {"search": {"assets": ["backbone", "search"], "bytes": 7}}}
    script = tmp_path / "manifest.js"
    script.write_text(
        f"// Built by tools/build_page_assets.py; do not edit.\nglobalThis.tlbookManifest = {json.dumps(manifest)};\n"
    )
    assert run.read_page_manifest(script) == manifest
    logged = []
    monkeypatch.setattr(run, "log", logged.append)
    monkeypatch.setattr(run, "BOOK_HTML", tmp_path / "html")
    monkeypatch.setattr(run, "PAGE_MANIFEST", tmp_path / "html" / "manifest.js")
    assert run.time_pages([tmp_path / "photo.jpg"]) is None
    assert any("make book" in line for line in logged)
    assert run.parse_args(["--skip", "pages"]).skip == ["pages"] and run.SECTIONS[-1] == "pages"
    sections = {f.name for f in dataclasses.fields(report.Result) if "None" in str(f.type)} - {"settings"}
    assert set(run.SECTIONS) == sections


def test_run_reads_the_teaching_tools_timings():
    timings = [
        {"photos": 5, "ms": 900.0},
        {"photos": 10, "ms": 800.0},
        {"photos": 14, "ms": 700.0},
        {"photos": 15, "ms": 181.04},
        {"query": True, "ms": 239.96},
    ]
    assert run.teach_numbers(timings, 1432.11, 15) == report.Teach(
        load_ms=1432.1, photos=15, last_photo_ms=181.0, first_answer_ms=240.0, seconds=0.421
    )
    with pytest.raises(run.PageProblem, match="0 entries for 15 photos"):
        run.teach_numbers(timings[:3] + timings[4:], 1432.11, 15)
    with pytest.raises(run.PageProblem, match="0 answer"):
        run.teach_numbers(timings[:4], 1432.11, 15)
    with pytest.raises(run.PageProblem, match="no backbone load"):
        run.teach_numbers(timings, None, 15)
