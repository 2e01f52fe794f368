"""benchmarks/report.py: the result-file format, the budget verdicts and the Markdown, from fabricated results.

No timing is measured or asserted here: ``make bench`` measures, on a quiet machine.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load_report():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = _load_report()


def fabricated(device: str = "cpu", quick: bool = False) -> dict:
    """A complete, well-formed result with made-up numbers."""
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
    result = {
        "format": report.FORMAT,
        "tag": report.machine_tag(machine),
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
            "runs": [
                {"notebook": f"0{i}_chapter", "seconds": 100.0 + i, "passed": True, "summary": "20 passed"}
                for i in range(1, 5)
            ],
            "complete": not quick,
            "total_seconds": 410.0,
        },
        "extraction": {
            "images": 128,
            "size": 224,
            "batch_size": 32,
            "weights": "Random weights.",
            "runs": [
                {"model": m, "seconds": 10.0, "images_per_s": 12.8} for m in ("resnet18", "vgg16", "efficientnet_lite0")
            ],
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
            "runs": [
                {"model": m, "seconds": 20.0, "images_per_s": 6.4} for m in ("resnet18", "vgg16", "efficientnet_lite0")
            ],
        },
    }
    result["budgets"] = report.budgets(result)
    return result


def verdicts(result: dict) -> list[str]:
    return [b["verdict"] for b in result["budgets"]]


# --------------------------------------------------------------------------- #
# Format
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_fabricated_result_is_well_formed_and_survives_json(device):
    result = fabricated(device)
    assert report.validate(result) == []
    assert report.validate(json.loads(json.dumps(result))) == []


def test_skipped_measurements_are_null():
    result = fabricated()
    result["notebooks"] = result["finetune"] = None
    result["budgets"] = report.budgets(result)
    assert report.validate(result) == []
    assert verdicts(result)[0] == "not checked"


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda r: r.pop("machine"), "machine is missing"),
        (lambda r: r.update(format=99), "format"),
        (lambda r: r.update(date="2 January 2026"), "date"),
        (lambda r: r.update(tag="laptop"), "does not match"),
        (lambda r: r.pop("extraction"), "extraction is missing"),
        (lambda r: r["frozen_head"].update(speedup="fast"), "frozen_head.speedup"),
        (lambda r: r["notebooks"]["runs"][0].update(passed="yes"), "notebooks.runs[0].passed"),
        (lambda r: r["notebooks"]["feature_cache"].update(state="lukewarm"), "feature_cache.state"),
        (lambda r: r["machine"].update(cpu_cores=True), "machine.cpu_cores"),
        (lambda r: r["budgets"][0].update(verdict="ok"), "verdict"),
    ],
)
def test_malformed_results_are_named(breakage, message):
    result = fabricated()
    breakage(result)
    problems = report.validate(result)
    assert problems and any(message in p for p in problems), problems


def test_machine_tags():
    assert report.machine_tag(fabricated()["machine"]) == "cpu-2cores"
    assert report.machine_tag(fabricated("cuda")["machine"]) == "cuda-nvidia-h100"
    gpu = dict(fabricated("cuda")["machine"])
    for name, tag in [
        ("Tesla T4", "cuda-tesla-t4"),
        ("NVIDIA A100-SXM4-40GB", "cuda-nvidia-a100"),
        ("NVIDIA GeForce RTX 4090", "cuda-nvidia-geforce-rtx-4090"),
    ]:
        gpu["gpu"] = name
        assert report.machine_tag(gpu) == tag
    assert all(re.fullmatch(r"[a-z0-9-]+", report.machine_tag(m)) for m in (gpu, fabricated()["machine"]))


def test_write_gives_json_markdown_and_index(tmp_path):
    result = fabricated()
    json_path, md_path, index_path = report.write(result, tmp_path)
    assert (json_path.name, md_path.name, index_path.name) == ("cpu-2cores.json", "cpu-2cores.md", "index.md")
    assert json.loads(json_path.read_text()) == result
    assert md_path.read_text() == report.render_markdown(result)
    with pytest.raises(ValueError, match="malformed"):
        report.write({**result, "tag": "x"}, tmp_path)


# --------------------------------------------------------------------------- #
# Budgets
# --------------------------------------------------------------------------- #


def test_budgets_met():
    assert verdicts(fabricated()) == ["met", "met"]


def test_budgets_not_met():
    result = fabricated()
    result["notebooks"]["total_seconds"] = 601.0
    result["frozen_head"]["speedup"] = 9.9
    assert verdicts({**result, "budgets": report.budgets(result)}) == ["not met", "not met"]


def test_a_failed_chapter_fails_the_notebook_budget():
    result = fabricated()
    result["notebooks"]["runs"][2]["passed"] = False
    budget = report.budgets(result)[0]
    assert budget["verdict"] == "not met" and "03_chapter" in budget["note"]


def test_a_chapter_over_two_minutes_fails_the_notebook_budget():
    result = fabricated()
    result["notebooks"]["runs"][2]["seconds"] = 121.0
    budget = report.budgets(result)[0]
    assert budget["verdict"] == "not met" and budget["note"] == "over 2 minutes: 03_chapter"


def test_quick_runs_check_no_budget():
    assert verdicts(fabricated(quick=True)) == ["not checked", "not checked"]


def test_other_machines_are_told_apart_from_the_reference():
    budget = fabricated("cuda")["budgets"][0]
    assert budget["verdict"] == "met" and "2 CPU cores" in budget["note"] and "16 cores" in budget["note"]


# --------------------------------------------------------------------------- #
# The real-path run (tools/run_real_path.py)
# --------------------------------------------------------------------------- #


def with_real_path(quick: bool = False, seconds: float = 30.0) -> dict:
    """A fabricated result with the real-path entry (every chapter, both budgets)."""
    result = fabricated(quick=quick)
    runs = [
        {"notebook": f"0{i}_chapter", "budget": budget, "seconds": seconds, "passed": True, "notes": i}
        for budget in ("cpu", "full")
        for i in range(1, 5)
    ]
    result["real_path"] = {
        "command": "python tools/run_real_path.py --budget both",
        "photos_per_class": 16,
        "budgets": ["cpu", "full"],
        "setup_seconds": 5.0,
        "runs": runs,
        "complete": not quick,
        "total_seconds": 5.0 + seconds * len(runs),
    }
    result["budgets"] = report.budgets(result)
    return result


def test_a_result_with_the_real_path_is_well_formed():
    result = with_real_path()
    assert report.validate(result) == []
    assert report.validate(json.loads(json.dumps(result))) == []
    result["real_path"]["runs"][0].pop("budget")
    assert any("real_path.runs[0].budget" in p for p in report.validate(result))


def test_results_from_before_the_real_path_stay_well_formed():
    result = fabricated()
    assert "real_path" not in result and report.validate(result) == []
    assert len(result["budgets"]) == 2


def test_real_path_budget():
    result = with_real_path(seconds=25.0)  # 5 s + 8 runs × 25 s = 205 s
    budget = result["budgets"][2]
    assert budget["verdict"] == "met" and budget["limit"] == "≤ 4 minutes on 2 CPU cores"
    assert "8 runs" in budget["measured"]
    assert with_real_path(seconds=30.0)["budgets"][2]["verdict"] == "not met"  # 245 s


def test_a_chapter_failing_on_the_real_path_fails_its_budget():
    result = with_real_path(seconds=1.0)
    result["real_path"]["runs"][5]["passed"] = False
    budget = report.budgets(result)[2]
    assert budget["verdict"] == "not met" and "02_chapter [full]" in budget["note"]


def test_real_path_not_checked_when_quick_partial_or_skipped():
    assert with_real_path(quick=True)["budgets"][2]["verdict"] == "not checked"
    partial = with_real_path(seconds=1.0)
    partial["real_path"]["complete"] = False
    assert report.budgets(partial)[2]["verdict"] == "not checked"
    skipped = {**fabricated(), "real_path": None}
    assert report.budgets(skipped)[2]["verdict"] == "not checked"
    assert report.validate({**skipped, "budgets": report.budgets(skipped)}) == []


def test_markdown_of_the_real_path():
    text = report.render_markdown(with_real_path(seconds=20.0))
    assert "\n## Chapters on the real path\n" in text
    table = _tables(text)[3]  # after the machine, the budgets and the chapters under nbval
    assert table[0] == ["Chapter", "Budget", "Wall time", "Result"]
    assert table[1] == ["`01_chapter`", "cpu", "20.0 s", "passed (1 note)"]
    assert table[-1] == ["**Whole run**", "", "**2 min 45 s**", ""]
    assert "16 photos per class" in text and "random weights" in text
    budgets = {row[0]: row for row in _tables(text)[1][1:]}
    assert budgets["All chapters on the real path (stand-in weights, both budgets)"][3] == "**met**"
    assert "## Chapters on the real path" not in report.render_markdown(fabricated())


# --------------------------------------------------------------------------- #
# Markdown
# --------------------------------------------------------------------------- #


def _tables(markdown: str) -> list[list[list[str]]]:
    """Every pipe table as rows of cells (the separator row left out)."""
    tables, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(re.fullmatch(r"-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def test_markdown_has_every_section_and_well_formed_tables():
    text = report.render_markdown(fabricated())
    assert text.startswith("# Benchmarks on `cpu-2cores`\n")
    for heading in (
        "## Machine",
        "## Budgets",
        "## Chapters under `pytest --nbval`",
        "## Feature extraction",
        "## Frozen backbone, trained head: two ways",
        "## Full fine-tuning",
    ):
        assert f"\n{heading}\n" in text
    tables = _tables(text)
    assert len(tables) == 6
    for table in tables:
        assert len({len(row) for row in table}) == 1, table
    assert not re.search(r"^#{3,} ", text, re.M), "deeper headings would pass H6 inside the book page"


def test_markdown_states_hardware_budgets_and_cache_plainly():
    text = report.render_markdown(fabricated())
    assert "Example CPU @ 2.0GHz, 2 cores" in text and "PyTorch 2.9.0" in text and "2026-01-02" in text
    budgets = {row[0]: row for row in _tables(text)[1][1:]}
    assert budgets["All chapters under pytest --nbval"][1:] == [
        "≤ 10 minutes on 2 CPU cores, ≤ 2 minutes each",
        "6 min 50 s (410 s) for 4 chapters",
        "**met**",
    ]
    assert budgets["Frozen head: cached features vs. the classic loop"][3] == "**met**"
    assert "14.9×" in budgets["Frozen head: cached features vs. the classic loop"][2]
    assert "**warm**" in text and "no cache file was written" in text
    assert "| VGG16 | 12.8 | 10.0 |" in text
    assert "112 px (chapter 3's CPU setting)" in text
    assert "float32" in text and "random weights" in text.lower()


def test_markdown_of_a_gpu_result_names_the_gpu_and_mixed_precision():
    text = report.render_markdown(fabricated("cuda"))
    assert "NVIDIA H100 80GB HBM3, 79 GiB (CUDA 12.8)" in text
    assert "float16 autocast" in text and "channels-last" in text


def test_markdown_says_not_met_and_quick():
    result = fabricated(quick=True)
    assert "**Quick run**" in report.render_markdown(result)
    result = fabricated()
    result["frozen_head"]["speedup"] = 3.0
    result["budgets"] = report.budgets(result)
    assert "| **not met** |" in report.render_markdown(result)


@pytest.mark.parametrize(
    "cache, words",
    [
        ({"files_before": 0, "files_written": 4, "state": "cold"}, "**cold**"),
        ({"files_before": 3, "files_written": 2, "state": "partly warm"}, "**partly warm**"),
    ],
)
def test_markdown_states_a_cold_cache(cache, words):
    result = fabricated()
    result["notebooks"]["feature_cache"].update(cache)
    assert words in report.render_markdown(result)


# --------------------------------------------------------------------------- #
# index.md and the book page
# --------------------------------------------------------------------------- #


def test_index_without_results_says_nothing_was_recorded():
    text = report.render_index([])
    assert "No CPU measurement has been recorded yet" in text
    assert "No GPU measurement has been recorded yet" in text
    assert "{include}" not in text


def test_index_includes_the_latest_result_per_device(tmp_path):
    older = fabricated()
    newer = copy.deepcopy(older)
    newer["machine"]["cpu_cores"] = 8
    newer["tag"] = report.machine_tag(newer["machine"])
    newer["date"] = "2026-02-01T00:00:00Z"
    for result in (newer, older):
        report.write(result, tmp_path)
    (tmp_path / "broken.json").write_text("{")
    text = (tmp_path / "index.md").read_text()
    cpu = text.split(report.MARKERS["cpu"][0])[1].split(report.MARKERS["cpu"][1])[0]
    assert "{include} " in cpu and "/cpu-8cores.md" in cpu and ":heading-offset: 2" in cpu
    assert "`cpu-2cores`" in text  # listed as an older result
    assert "No GPU measurement has been recorded yet" in text

    report.write(fabricated("cuda"), tmp_path)
    gpu = (tmp_path / "index.md").read_text().split(report.MARKERS["gpu"][0])[1]
    assert "/cuda-nvidia-h100.md" in gpu.split(report.MARKERS["gpu"][1])[0]


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


def test_committed_results_are_well_formed():
    """The files in benchmarks/results/ (when there are any) follow the format, and index.md is up to date."""
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        assert report.validate(result) == [], path.name
        assert path.stem == result["tag"]
        assert (RESULTS / f"{path.stem}.md").read_text() == report.render_markdown(result), (
            f"{path.stem}.md differs from its JSON: run `python benchmarks/run.py --render-only` after editing"
        )
    assert (RESULTS / "index.md").read_text() == report.render_index(report.load_results(RESULTS)), (
        "benchmarks/results/index.md is stale: run `python benchmarks/run.py --render-only`"
    )


# --------------------------------------------------------------------------- #
# Vector search (chapter 6's scaling sweep at larger sizes)
# --------------------------------------------------------------------------- #


def with_vector_search(result: dict) -> dict:
    result = copy.deepcopy(result)
    result["vector_search"] = {
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
                "recall": 0.99,
            }
            for n in (1000, 1000000)
        ],
    }
    return result


def test_a_result_with_vector_search_is_well_formed_and_rendered():
    result = with_vector_search(fabricated())
    assert report.validate(result) == []
    text = report.render_markdown(result)
    assert "## Searching many feature vectors" in text
    table = [t for t in _tables(text) if t[0][0] == "Vectors"][0]
    assert table[2][0] == "1,000,000" and table[2][-1] == "0.990"
    assert "## Searching many feature vectors" not in report.render_markdown(fabricated())  # optional section


def test_a_malformed_vector_search_run_is_named():
    result = with_vector_search(fabricated())
    del result["vector_search"]["runs"][1]["recall"]
    assert report.validate(result) == ["vector_search.runs[1].recall is missing"]


def _load_run():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vector_search_leaves_out_sizes_that_do_not_fit(monkeypatch):
    run = _load_run()
    logged = []
    monkeypatch.setattr(run, "log", logged.append)
    monkeypatch.setattr(run, "SEARCH", {"dim": 8, "queries": 5, "k": 3, "nprobe": 2})
    monkeypatch.setattr(run, "available_memory_bytes", lambda: 3 * 4 * 8 * 1000)  # room for 999 vectors
    section = run.time_vector_search([300, 600, 5000])
    assert [r["n"] for r in section["runs"]] == [300, 600]
    assert any("N=5,000 left out" in line for line in logged)
    result = fabricated()
    result["vector_search"] = section
    assert report.validate(result) == []


def test_chapter_7_inference_table_is_optional_validated_and_rendered():
    result = fabricated()
    assert "inference" not in result and report.validate(result) == []  # results from before it stay valid
    result["inference"] = {
        "photos": 64,
        "calibration_photos": 30,
        "threads": 1,
        "batch_size": 32,
        "weights": "Random weights.",
        "runs": [
            {"model": "efficientnet_lite0", "variant": variant, "size_mb": size, "latency_ms": ms, "images_per_s": rate}
            for variant, size, ms, rate in (
                ("PyTorch", 13.8, 48.9, 16.3),
                ("ONNX fp32", 13.5, 19.6, 39.0),
                ("ONNX dynamic int8", 3.5, 50.9, 15.7),
                ("ONNX static int8", 3.6, 8.3, 108.1),
            )
        ],
    }
    assert report.validate(result) == []
    text = report.render_markdown(result)
    assert "## Shipping: PyTorch, ONNX and int8 (chapter 7)" in text
    assert "| EfficientNet-Lite0 | ONNX static int8 | 3.6 | 8.3 | 108.1 |" in text
    result["inference"]["runs"][0]["latency_ms"] = "fast"
    assert report.validate(result) == ["inference.runs[0].latency_ms should be int or float, not str"]


# --------------------------------------------------------------------------- #
# The book's pages answering a photo (onnxruntime-web in Chromium)
# --------------------------------------------------------------------------- #


PAGE_TASKS = [
    ("01_pretrained_inference", "imagenet", 85.0),
    ("04_cats_dogs_pandas", "animals-cam", 120.0),
    ("06_features_without_training", "search", 140.0),
    ("07_shipping_the_model", "classifier", 40.0),
]


def with_pages(quick: bool = False, slowest_ms: float = 140.0, failed: tuple[str, ...] = ()) -> dict:
    """A fabricated result with the pages entry: one run per in-page task."""
    result = fabricated(quick=quick)
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
    result["pages"] = {
        "browser": "Chromium 140.0",
        "backbone": "ResNet-18",
        "photos": 2 if quick else 10,
        "runtime_bytes": 11_200_000,
        "failed": list(failed),
        "runs": runs,
    }
    result["budgets"] = report.budgets(result)
    return result


def test_a_result_with_the_pages_is_well_formed():
    result = with_pages()
    assert report.validate(result) == []
    assert report.validate(json.loads(json.dumps(result))) == []
    old = fabricated()  # results from before the pages were measured stay well formed
    assert "pages" not in old and report.validate(old) == [] and len(old["budgets"]) == 2
    skipped = {**fabricated(), "pages": None}
    assert report.validate({**skipped, "budgets": report.budgets(skipped)}) == []


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda p: p["runs"][1].pop("answer_ms"), "pages.runs[1].answer_ms is missing"),
        (lambda p: p["runs"][0].update(bytes="6.6 MB"), "pages.runs[0].bytes should be int, not str"),
        (lambda p: p.update(runtime_bytes=1.5), "pages.runtime_bytes should be int, not float"),
        (lambda p: p.update(failed=[{"task": "search"}]), "pages.failed[0] should be str, not dict"),
        (lambda p: p.pop("browser"), "pages.browser is missing"),
    ],
)
def test_a_malformed_pages_entry_is_named(breakage, message):
    result = with_pages()
    breakage(result["pages"])
    assert report.validate(result) == [message]


def _pages_budget(result: dict) -> dict:
    budgets = [b for b in result["budgets"] if b["name"].startswith("A page answers")]
    assert len(budgets) == 1, result["budgets"]
    return budgets[0]


def test_page_budget_takes_the_slowest_task():
    budget = _pages_budget(with_pages(slowest_ms=140.0))
    assert budget["verdict"] == "met" and budget["limit"] == "≤ 300 ms after its model loaded"
    assert budget["measured"] == "140 ms for the slowest task (search, median of 10 photos), 4 tasks"
    assert _pages_budget(with_pages(slowest_ms=300.0))["verdict"] == "met"
    slow = _pages_budget(with_pages(slowest_ms=312.4))
    assert slow["verdict"] == "not met" and "312 ms" in slow["measured"]


def test_page_budget_not_met_when_a_page_did_not_answer():
    budget = _pages_budget(with_pages(failed=("04_cats_dogs_pandas (animals-cam): cats.jpg: is truncated",)))
    assert budget["verdict"] == "not met" and "animals-cam" in budget["note"]


def test_page_budget_not_checked_when_quick_or_skipped():
    quick = _pages_budget(with_pages(quick=True, slowest_ms=10.0))
    assert quick["verdict"] == "not checked" and quick["note"] == "quick run: 2 photos per page"
    skipped = {**fabricated(), "pages": None}
    budget = _pages_budget({**skipped, "budgets": report.budgets(skipped)})
    assert budget["verdict"] == "not checked" and budget["measured"] == "not measured"


def test_markdown_of_the_pages():
    text = report.render_markdown(with_pages())
    assert "\n## The book's pages answering a photo\n" in text
    assert "Chromium 140.0" in text and "11.2 MB for the runtime" in text and "10 photos of the test split" in text
    table = [t for t in _tables(text) if t[0][0] == "Chapter" and "What runs" in t[0]][0]
    assert table[0] == ["Chapter", "What runs", "Download", "Model load", "First photo", "One photo (median of 10)"]
    assert table[1] == ["`01_pretrained_inference`", "what imagenet does", "6.6 MB", "1.5 s", "1.8 s", "85 ms"]
    assert len(table) == 1 + len(PAGE_TASKS)
    budgets = {row[0]: row for row in _tables(text)[1][1:]}
    assert budgets["A page answers an uploaded photo (in the browser)"][3] == "**met**"
    assert "**Not answered**" not in text
    failed = with_pages(failed=("07_shipping_the_model (classifier): the file input stayed disabled",))
    assert "**Not answered**: 07_shipping_the_model (classifier)" in report.render_markdown(failed)
    assert "answering a photo" not in report.render_markdown(fabricated())  # optional section


def test_run_finds_the_upload_explorers_of_the_built_pages(tmp_path, monkeypatch):
    run = _load_run()
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
    run = _load_run()
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


# --------------------------------------------------------------------------- #
# Chapter 4's teaching tool (in the pages section)
# --------------------------------------------------------------------------- #


TEACH_BUDGET_NAME = "Chapter 4's page learns 15 photos and answers (in the browser)"


def with_teach(
    quick: bool = False, last_photo_ms: float = 180.0, first_answer_ms: float = 240.0, failed: tuple[str, ...] = ()
) -> dict:
    """A fabricated result whose pages entry has the teaching tool's timings (None when it failed)."""
    result = with_pages(quick=quick, failed=failed)
    teach = {
        "load_ms": 1400.0,
        "photos": 15,
        "last_photo_ms": last_photo_ms,
        "first_answer_ms": first_answer_ms,
        "seconds": round((last_photo_ms + first_answer_ms) / 1e3, 3),
    }
    result["pages"]["teach"] = None if any("(teaching tool)" in f for f in failed) else teach
    result["budgets"] = report.budgets(result)
    return result


def _teach_budget(result: dict) -> dict:
    budgets = [b for b in result["budgets"] if b["name"] == TEACH_BUDGET_NAME]
    assert len(budgets) == 1, result["budgets"]
    return budgets[0]


def test_a_result_with_the_teaching_tool_is_well_formed():
    result = with_teach()
    assert report.validate(result) == []
    assert report.validate(json.loads(json.dumps(result))) == []
    missing = with_teach(failed=("04_cats_dogs_pandas (teaching tool): the controls stayed disabled",))
    assert missing["pages"]["teach"] is None and report.validate(missing) == []
    older = with_pages()  # pages measured before the teaching tool: still well formed, no budget for it
    assert "teach" not in older["pages"] and report.validate(older) == []
    assert all(b["name"] != TEACH_BUDGET_NAME for b in older["budgets"])
    assert len(older["budgets"]) == 3


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda t: t.pop("seconds"), "pages.teach.seconds is missing"),
        (lambda t: t.update(photos=15.0), "pages.teach.photos should be int, not float"),
        (lambda t: t.update(last_photo_ms="fast"), "pages.teach.last_photo_ms should be int or float, not str"),
    ],
)
def test_a_malformed_teach_entry_is_named(breakage, message):
    result = with_teach()
    breakage(result["pages"]["teach"])
    assert report.validate(result) == [message]


def test_teach_budget():
    budget = _teach_budget(with_teach(last_photo_ms=180.0, first_answer_ms=240.0))
    assert budget["verdict"] == "met" and budget["limit"] == "≤ 1 s from the last photo added to the first answer"
    assert budget["measured"] == (
        "0.42 s (photo 15 learnt in 180 ms, first answer in 240 ms; backbone loaded in 1.4 s)"
    )
    assert _teach_budget(with_teach(last_photo_ms=400.0, first_answer_ms=600.0))["verdict"] == "met"
    slow = _teach_budget(with_teach(last_photo_ms=700.0, first_answer_ms=450.0))
    assert slow["verdict"] == "not met" and slow["measured"].startswith("1.1 s")
    assert _pages_budget(with_teach(last_photo_ms=700.0, first_answer_ms=450.0))["verdict"] == "met"


def test_teach_budget_not_met_when_the_tool_did_not_answer_and_apart_from_the_uploads():
    result = with_teach(failed=("04_cats_dogs_pandas (teaching tool): adding 5 photo(s) to 'cats': unreadable",))
    budget = _teach_budget(result)
    assert budget["verdict"] == "not met" and "adding 5 photo(s)" in budget["note"]
    assert budget["measured"] == "not measured"
    assert _pages_budget(result)["verdict"] == "met"  # the upload explorers all answered
    upload_failed = with_teach(failed=("07_shipping_the_model (classifier): the file input stayed disabled",))
    assert _pages_budget(upload_failed)["verdict"] == "not met"
    assert _teach_budget(upload_failed)["verdict"] == "met"


def test_teach_budget_not_checked_when_quick_or_skipped():
    quick = _teach_budget(with_teach(quick=True, last_photo_ms=10.0, first_answer_ms=10.0))
    assert quick["verdict"] == "not checked" and quick["note"] == "quick run" and quick["measured"] != "not measured"
    skipped = {**fabricated(), "pages": None}
    budget = _teach_budget({**skipped, "budgets": report.budgets(skipped)})
    assert budget["verdict"] == "not checked" and budget["measured"] == "not measured"


def test_markdown_of_the_teaching_tool():
    text = report.render_markdown(with_teach())
    section = text.split("\n## The book's pages answering a photo\n")[1].split("\n## ")[0]
    assert "*Chapter 4's teaching tool*" in section
    assert "Photo 15, added on its own, took 180 ms" in section and "a first test photo 240 ms" in section
    assert "**0.42 s** from the last photo added to the first answer" in section
    budgets = {row[0]: row for row in _tables(text)[1][1:]}
    assert budgets[TEACH_BUDGET_NAME][3] == "**met**"
    assert "teaching tool" not in report.render_markdown(with_pages())
    failed = with_teach(failed=("04_cats_dogs_pandas (teaching tool): the controls stayed disabled",))
    text = report.render_markdown(failed)
    assert "*Chapter 4's teaching tool*" not in text
    assert "**Not answered**: 04_cats_dogs_pandas (teaching tool)" in text


def test_run_reads_the_teaching_tools_timings():
    run = _load_run()
    timings = [
        {"photos": 5, "ms": 900.0},
        {"photos": 10, "ms": 800.0},
        {"photos": 14, "ms": 700.0},
        {"photos": 15, "ms": 181.04},
        {"query": True, "ms": 239.96},
    ]
    assert run.teach_numbers(timings, 1432.11, 15) == {
        "load_ms": 1432.1,
        "photos": 15,
        "last_photo_ms": 181.0,
        "first_answer_ms": 240.0,
        "seconds": 0.421,
    }
    with pytest.raises(run.PageProblem, match="0 entries for 15 photos"):
        run.teach_numbers(timings[:3] + timings[4:], 1432.11, 15)
    with pytest.raises(run.PageProblem, match="0 answer"):
        run.teach_numbers(timings[:4], 1432.11, 15)
    with pytest.raises(run.PageProblem, match="no backbone load"):
        run.teach_numbers(timings, None, 15)
