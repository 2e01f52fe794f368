"""How fast the book runs on this machine (``make bench``).

Measures, on the current machine:

1. the wall time of each chapter under ``pytest --nbval``, as ``make test``
   runs it (same options and environment; one pytest process per chapter),
   and whether the feature cache was warm;
2. the second run of every chapter on the real torchvision path that
   ``make test`` does after it (``tools/run_real_path.py``: stand-in
   checkpoints, reduced photos, both budgets), whole and per chapter;
3. the feature-extraction throughput of each zoo backbone at 224 px on real
   photos, JPEG decoding included;
4. a frozen-backbone head trained for 15 epochs two ways: ``train.fit`` re-running
   the backbone every epoch (the classic tutorial loop) and cached features
   (``features.extract`` once + ``heads.fit_linear``);
5. the training throughput of full fine-tuning of each zoo backbone at
   chapter 3's resolution (112 px on a CPU, 224 px on a GPU);
6. chapter 6's vector search at growing N (up to a million vectors, as many
   as fit in memory): exact search in torch against a faiss IVF index, query
   time and recall@10 (``tlhelpers.neighbours.scaling_sweep``);
7. chapter 7's latency table: ResNet-18 and EfficientNet-Lite0 classifiers
   run by PyTorch and, exported, by onnxruntime in float32, dynamic int8 and
   static int8 (CPU, one thread, as the chapter measures them);
8. the built book's pages answering an uploaded photo with onnxruntime-web,
   in headless Chromium (needs ``make book`` first; left out otherwise): for
   each in-page task, the bytes it downloads, the model load, the first photo
   (load included) and the median answer once the model is loaded; and
   chapter 4's teaching tool (three classes of the training photos): the time
   to learn the 15th photo plus the time to answer a first test photo.

and writes ``benchmarks/results/<machine-tag>.json`` and ``.md`` and
regenerates ``benchmarks/results/index.md`` (the book's "How long things
take" page includes it).  ``--quick`` runs everything tiny (chapter 1 only,
a few photos, batches and epochs) into ``benchmarks/out/`` to test the script.

Run it on a quiet machine: anything else running makes every number wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime as dt
import functools
import html.parser
import http.server
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402  (benchmarks/report.py: format, budgets, Markdown)

RESULTS = ROOT / "benchmarks" / "results"
QUICK_RESULTS = ROOT / "benchmarks" / "out"  # ignored by git and by the book
SHARED_DATA = ROOT.parent / "shared" / "data"
NBVAL_OPTIONS = ["--nbval", "--nbval-current-env", "--nbval-sanitize-with", "notebooks/nbval_sanitize.cfg"]
SECTIONS = ("notebooks", "real_path", "extraction", "frozen_head", "finetune", "vector_search", "inference", "pages")
REAL_PATH_SCRIPT = "tools/run_real_path.py"
SEED = 0

FULL = {
    "extract_images": 128,
    "extract_batch": None,  # the package's own default for the device (features.extraction_batch_size)
    "head_per_class": 30,
    "head_epochs": 15,
    "head_batch": 32,
    "finetune_batch": 16,
    "finetune_warmup": 2,
    "finetune_batches": {"cpu": 8, "gpu": 20},
    "inference_photos": 64,
    "calibration_photos": 30,
    "latency_runs": 10,
    "search_sizes": (10**3, 10**4, 10**5, 10**6),
    "page_photos": 10,
}
QUICK = {
    "extract_images": 32,
    "extract_batch": 32,
    "head_per_class": 4,
    "head_epochs": 2,
    "head_batch": 32,
    "finetune_batch": 16,
    "finetune_warmup": 1,
    "finetune_batches": {"cpu": 1, "gpu": 2},
    "inference_photos": 8,
    "calibration_photos": 3,
    "latency_runs": 2,
    "search_sizes": (10**3, 5 * 10**3),
    "page_photos": 2,
}
SEARCH = {"dim": 512, "queries": 100, "k": 10, "nprobe": 8}  # 512: ResNet-18's feature size
RANDOM_WEIGHTS = (
    "Backbones built by `zoo.architecture` with random weights (the torchvision ImageNet weights "
    "cannot be downloaded everywhere; speed does not depend on the weight values)."
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- #
# The machine
# --------------------------------------------------------------------------- #


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                return re.sub(r"\s+", " ", value.strip())
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def describe_machine(device) -> report.Machine:
    import timm
    import torch
    import torchvision

    gpu = memory = cuda = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        gpu, memory, cuda = props.name, round(props.total_memory / 2**30, 1), torch.version.cuda
    elif device.type == "mps":
        gpu = "Apple " + (platform.machine() or "GPU")
    return report.Machine(
        device=device.type,
        cpu_model=cpu_model(),
        cpu_cores=cpu_cores(),
        torch_threads=torch.get_num_threads(),
        gpu=gpu,
        gpu_memory_gib=memory,
        cuda=cuda,
        torch=torch.__version__,
        torchvision=torchvision.__version__,
        timm=timm.__version__,
        python=platform.python_version(),
        platform=platform.platform(terse=True),
    )


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(run, device) -> tuple[object, float]:
    """What ``run()`` returns and its seconds (``runtime.seconds``), the work it queued on ``device`` included."""
    from tlhelpers import runtime

    returned = []
    synchronize(device)
    seconds = runtime.seconds(lambda: (returned.append(run()), synchronize(device)), repeats=1)
    return returned[0], seconds


# --------------------------------------------------------------------------- #
# 1. The chapters under pytest --nbval
# --------------------------------------------------------------------------- #


def chapters() -> list[str]:
    """The chapter notebooks, as ``make test`` finds them (leftover ``*.failed.ipynb`` copies excluded)."""
    return sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if "." not in p.stem)


def _cache_files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.pt")} if folder.is_dir() else {}


def time_notebooks(names: list[str], complete: bool, cold_cache: bool) -> report.Notebooks:
    from tlhelpers import features

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if "TLHELPERS_DATA" not in env and (SHARED_DATA / "animals").is_dir():
        env["TLHELPERS_DATA"] = str(SHARED_DATA)  # as the Makefile does
    scratch = None
    if cold_cache:
        scratch = tempfile.TemporaryDirectory(prefix="tlbench-cache-")
        env[features.CACHE_ENV] = scratch.name
        where = "a fresh, empty folder (--cold-cache)"
    elif os.environ.get(features.CACHE_ENV):
        where = f"${features.CACHE_ENV}"
    else:
        where = "the default user cache"
    cache_dir = Path(env[features.CACHE_ENV]) if env.get(features.CACHE_ENV) else features.resolve_cache_dir()
    before = _cache_files(cache_dir)

    runs = []
    try:
        for name in names:
            command = [sys.executable, "-m", "pytest", "-q", *NBVAL_OPTIONS, f"notebooks/{name}"]
            log(f"  {name} …")
            start = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            output = (done.stdout + done.stderr).strip().splitlines()
            summary = next(
                (line.strip("= ") for line in reversed(output) if re.search(r"\b(passed|failed|error)", line)), ""
            )
            summary = re.sub(r"\s+in\s+[\d.]+s.*$", "", summary)  # pytest's own timing: not comparable
            runs.append(report.ChapterRun(Path(name).stem, round(seconds, 2), done.returncode == 0, summary))
            log(f"  {name}: {report.duration(seconds)} ({summary or 'rc ' + str(done.returncode)})")
            if done.returncode != 0:
                log("\n".join(output[-30:]))
        after = _cache_files(cache_dir)
    finally:
        if scratch is not None:
            scratch.cleanup()
    written = sum(1 for name, mtime in after.items() if before.get(name) != mtime)
    if written == 0:
        state = "warm" if before else "cold"
    else:
        state = "cold" if not before else "partly warm"
    return report.Notebooks(
        command="python -m pytest -q " + " ".join(NBVAL_OPTIONS) + " notebooks/<chapter>.ipynb",
        feature_cache=report.FeatureCache(where, len(before), written, state),
        runs=runs,
        complete=complete,
        total_seconds=round(sum(r.seconds for r in runs), 2),
    )


def time_real_path(names: list[str] | None, budget: str) -> report.RealPath | None:
    """``make real-path`` as ``make test`` runs it, timed as a whole; the script's own per-run times."""
    command = [sys.executable, REAL_PATH_SCRIPT, "--budget", budget]
    if names is not None:
        command += ["--chapters", *(Path(name).stem for name in names)]
    with tempfile.TemporaryDirectory(prefix="tlbench-real-path-") as scratch:
        summary_path = Path(scratch) / "summary.json"
        start = time.perf_counter()
        # The script builds its kernels' environment itself (fallback not forced, its own caches).
        done = subprocess.run(
            [*command, "--json", str(summary_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        seconds = time.perf_counter() - start
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    if summary is None:
        log(f"  {REAL_PATH_SCRIPT} ran no chapter (rc {done.returncode}):")
        log("\n".join((done.stdout + done.stderr).strip().splitlines()[-15:]))
        return None
    runs = [
        report.RealPathRun(r["chapter"], r["budget"], r["seconds"], r["passed"], r["notes"]) for r in summary["runs"]
    ]
    for run in runs:
        log(f"  {run.notebook} [{run.budget}]: {report.duration(run.seconds)}" + ("" if run.passed else " (failed)"))
    log(f"  whole run: {report.duration(seconds)}")
    if done.returncode != 0:  # the script's own list of what failed
        log(
            done.stdout[done.stdout.rfind("\nFAILED:") :].strip() if "\nFAILED:" in done.stdout else done.stdout[-2000:]
        )
    return report.RealPath(
        command="python " + " ".join(command[1:]),
        photos_per_class=summary["photos_per_class"],
        budgets=summary["budgets"],
        setup_seconds=summary["setup_seconds"],
        runs=runs,
        complete=names is None and budget == "both",
        total_seconds=round(seconds, 2),
    )


# --------------------------------------------------------------------------- #
# 3–5. The in-process measurements
# --------------------------------------------------------------------------- #


def transform_for(name: str, size: int = 224):
    """The model's own preprocessing at ``size`` (resize to size·256/224, center-crop ``size``)."""
    from tlhelpers import zoo

    reference = zoo.imagenet_weights(name).transforms() if name in zoo.TORCHVISION_MODELS else zoo.fallback_transforms()
    return zoo.at_size(reference, size)


def time_extraction(photos, device, batch_size: int | None) -> report.Extraction:
    """Throughput of ``features.extract`` itself (float32, no cache) for each zoo architecture."""
    from tlhelpers import features, zoo

    batch_size = batch_size or features.extraction_batch_size(device)
    runs = []
    for name in zoo.NAMES:
        model, transform = zoo.architecture(name), transform_for(name)
        options = {"name": name, "cache": False, "device": device, "batch_size": batch_size, "progress": False}
        features.extract(model, photos.subset(range(min(4, len(photos)))), transform, **options)  # warm-up
        extracted, seconds = timed(functools.partial(features.extract, model, photos, transform, **options), device)
        seen = len(extracted)
        runs.append(report.ModelRun(name, round(seconds, 3), round(seen / seconds, 2)))
        log(f"  {name}: {seen / seconds:.1f} images/s")
        del model
    return report.Extraction(images=len(photos), size=224, batch_size=batch_size, weights=RANDOM_WEIGHTS, runs=runs)


def time_frozen_head(train_set, device, epochs: int, batch_size: int, per_class: int) -> report.FrozenHead:
    import torch

    from tlhelpers import data, features, heads, surgery, train, zoo

    backbone = zoo.load(zoo.FALLBACK)  # real packaged ImageNet weights: no download needed
    torch.manual_seed(SEED)

    # Classic: the frozen backbone runs on freshly decoded photos every epoch.
    model = copy.deepcopy(backbone.model)
    surgery.replace_head(model, len(train_set.classes), head_name=backbone.head_name)
    surgery.freeze_all_but_head(model, backbone.head_name)
    loader = data.loader(train_set, backbone.transforms, batch_size=batch_size, shuffle=True, seed=SEED)
    options = {"epochs": epochs, "lr": 1e-3, "device": device, "progress": False}
    _, classic = timed(functools.partial(train.fit, model, loader, **options), device)
    log(f"  classic: {report.duration(classic)}")
    del model

    with tempfile.TemporaryDirectory(prefix="tlbench-features-") as cache_dir:
        times = []
        for attempt in ("cold", "warm"):
            start = time.perf_counter()
            fs = features.extract(
                backbone, train_set, cache_dir=cache_dir, batch_size=batch_size, device=device, progress=False
            )
            extracted = time.perf_counter()
            heads.fit_linear(fs, epochs=epochs, lr=1e-3, batch_size=batch_size, seed=SEED)
            done = time.perf_counter()
            assert fs.from_cache == (attempt == "warm"), "the feature cache did not behave as expected"
            times.append((extracted - start, done - extracted, done - start))
    (extract_s, head_s, cached), (_, _, warm) = times
    log(
        f"  cached: {report.duration(cached)} (extraction {report.duration(extract_s)}), "
        f"warm cache: {report.duration(warm)}"
    )
    return report.FrozenHead(
        model=backbone.name,
        per_class=per_class,
        images=len(train_set),
        epochs=epochs,
        batch_size=batch_size,
        size=224,
        classic_seconds=round(classic, 3),
        extract_seconds=round(extract_s, 3),
        head_seconds=round(head_s, 3),
        cached_seconds=round(cached, 3),
        warm_cache_seconds=round(warm, 4),
        speedup=round(classic / cached, 2),
        warm_speedup=round(classic / warm, 1),
    )


def time_finetune(photos, device, size: int, batch_size: int, warmup: int, batches: int) -> report.Finetune:
    """Training throughput of ``train.fit`` (its own AMP and memory-layout choices) for each zoo architecture."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from tlhelpers import data, surgery, train, zoo

    needed = batch_size * (warmup + batches)
    runs = []
    for name in zoo.NAMES:
        # Decoded once, as chapter 3 does (its training loop runs on tensors).
        x_all, y_all = zip(*data.loader(photos, transform_for(name, size), batch_size=64))
        x_all, y_all = torch.cat(x_all), torch.cat(y_all)
        repeat = math.ceil(needed / len(y_all))
        x_all, y_all = x_all.repeat(repeat, 1, 1, 1)[:needed], y_all.repeat(repeat)[:needed]
        cut = warmup * batch_size

        def loader(begin: int, end: int) -> DataLoader:
            return DataLoader(TensorDataset(x_all[begin:end], y_all[begin:end]), batch_size=batch_size)

        torch.manual_seed(SEED)
        model = zoo.architecture(name)
        surgery.replace_head(model, 3)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        options = {"epochs": 1, "optimizer": optimizer, "device": device, "progress": False}
        train.fit(model, loader(0, cut), **options)  # warm-up
        _, seconds = timed(functools.partial(train.fit, model, loader(cut, needed), **options), device)
        runs.append(report.ModelRun(name, round(seconds, 3), round(batches * batch_size / seconds, 2)))
        log(f"  {name}: {batches * batch_size / seconds:.1f} training images/s")
        del model, optimizer
    note = (
        "chapter 3's GPU setting, FULL_BUDGET = True"
        if size == 224 and device.type != "cpu"
        else "chapter 3's CPU setting"
        if size == 112
        else "set with --finetune-size"
    )
    return report.Finetune(
        size=size,
        batch_size=batch_size,
        warmup_batches=warmup,
        batches=batches,
        size_note=note,
        weights=RANDOM_WEIGHTS,
        runs=runs,
    )


# --------------------------------------------------------------------------- #
# 6. Vector search at growing N
# --------------------------------------------------------------------------- #


def available_memory_bytes() -> int | None:
    """Memory the system can still give (Linux ``MemAvailable``), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def time_vector_search(sizes) -> report.VectorSearch:
    """Chapter 6's scaling sweep at every size whose vectors fit in memory three times over."""
    from tlhelpers import neighbours

    free = available_memory_bytes()
    # The vectors, the index's copy of them and the generator's working memory.
    fitting = [n for n in sizes if free is None or 3 * 4 * n * SEARCH["dim"] < free]
    for n in sorted(set(sizes) - set(fitting)):
        log(f"  N={n:,} left out: {3 * 4 * n * SEARCH['dim'] / 2**30:.1f} GiB needed, {free / 2**30:.1f} GiB available")
    rows = neighbours.scaling_sweep(
        fitting,
        dim=SEARCH["dim"],
        queries=SEARCH["queries"],
        k=SEARCH["k"],
        nprobe=SEARCH["nprobe"],
        seed=SEED,
        log=log,
    )
    columns = [f.name for f in dataclasses.fields(report.SearchRun)]
    return report.VectorSearch(
        **SEARCH,
        data="synthetic unit-length vectors around N/100 random centres (`neighbours.synthetic_features`)",
        runs=[report.SearchRun(**{key: row[key] for key in columns}) for row in rows],
    )


# --------------------------------------------------------------------------- #
# 7. Chapter 7's latency table
# --------------------------------------------------------------------------- #


# VGG16 (528 MB of weights) is left out: too large a file to ship to an app, and slow to export.
INFERENCE_MODELS = ("resnet18", "efficientnet_lite0")


def time_inference(photos, calibration, runs: int) -> report.Inference:
    """Chapter 7's table for each shippable backbone: PyTorch, ONNX fp32, dynamic and static int8."""
    import numpy as np
    import torch
    from torch import nn

    from tlhelpers import export, heads, onnx_inference, runtime, surgery, zoo

    results = []
    with tempfile.TemporaryDirectory() as folder:
        for name in INFERENCE_MODELS:
            architecture = zoo.architecture(name).eval()
            head_name = surgery.find_head_name(architecture)
            backbone = zoo.Backbone(
                name=name,
                requested=name,
                model=architecture,
                transforms=transform_for(name),
                categories=[],
                source=f"{name} with random weights",
                head_name=head_name,
            )
            head = nn.Linear(architecture.get_submodule(head_name).in_features, 3).eval()
            trained = heads.Classifier(backbone, head, ["cats", "dogs", "panda"])
            files = {"fp32": export.to_onnx(trained, Path(folder) / f"{name}.onnx")}
            files["dynamic int8"] = export.quantize(files["fp32"], Path(folder) / f"{name}-dynamic.onnx", "dynamic")
            files["static int8"] = export.quantize(
                files["fp32"], Path(folder) / f"{name}-static.onnx", "static", calibration_photos=calibration.files
            )
            batch = onnx_inference.OnnxClassifier(files["fp32"]).batch(photos.files)
            model = trained.model()
            state = Path(folder) / f"{name}.pt"
            torch.save(model.state_dict(), state)

            def torch_logits(x, model=model):
                with torch.inference_mode():
                    return model(torch.from_numpy(x)).numpy()

            runners = {"PyTorch": (state, torch_logits)}
            runners.update(
                {
                    f"ONNX {variant}": (path, onnx_inference.OnnxClassifier(path, threads=1).logits)
                    for variant, path in files.items()
                }
            )
            with runtime.threads(1):
                for variant, (path, logits) in runners.items():
                    _, per_second = runtime.run_in_batches(logits, np.asarray(batch), batch_size=32)
                    latency = runtime.latency(logits, batch[:1], repeats=runs)
                    size_mb = round(path.stat().st_size / 1e6, 2)
                    results.append(
                        report.InferenceRun(name, variant, size_mb, round(1e3 * latency, 2), round(per_second, 2))
                    )
                    log(f"  {name} {variant}: {1e3 * latency:.1f} ms at batch 1, {per_second:.1f} images/s")
    return report.Inference(
        photos=len(photos),
        calibration_photos=len(calibration),
        threads=1,
        batch_size=32,
        weights=RANDOM_WEIGHTS.replace("speed does not", "speed and size do not"),
        runs=results,
    )


# --------------------------------------------------------------------------- #
# 8. The book's pages answering a photo (onnxruntime-web in Chromium)
# --------------------------------------------------------------------------- #


BOOK_HTML = ROOT / "_build" / "html"
PAGE_MANIFEST = BOOK_HTML / "_static" / "page-assets" / "manifest.js"  # tools/build_page_assets.py
CHROMIUM = os.environ.get("TLBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]  # as tests/browser
PAGE_TIMEOUT_MS = 120_000  # one photo, the model load included
TEACH_PER_CLASS = 5  # chapter 4's teaching tool: photos per class (15 for the three animals)
# Installed on the explorer before its first photo: the time from the file input's change event
# (the reader has chosen the photo) to the status saying the answer is on the page.
WATCH_FIRST_ANSWER = """root => {
  const status = root.querySelector('.tlbook-status');
  const watch = window.tlbookBench = {start: null, end: null};
  document.addEventListener('change', () => { if (watch.start === null) watch.start = performance.now(); },
                            {capture: true});
  new MutationObserver((records, observer) => {
    if (/tlbook-(done|error)/.test(status.className)) { watch.end = performance.now(); observer.disconnect(); }
  }).observe(status, {attributes: true, attributeFilter: ['class']});
}"""


class PageProblem(Exception):
    """A page that did not answer a photo (its status line, or what was missing)."""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve(folder: Path):
    """``folder`` served on 127.0.0.1 (a free port) from a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _LiveExplorers(html.parser.HTMLParser):
    """The ``data-live`` configs of a page's explorers (``.tlbook-live``), in page order (None if unreadable)."""

    def __init__(self):
        super().__init__()
        self.configs: list[dict | None] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "tlbook-live" not in (attrs.get("class") or "").split():
            return
        try:
            config = json.loads(attrs.get("data-live") or "")  # the parser has unescaped the attribute
        except json.JSONDecodeError:
            config = None
        self.configs.append(config if isinstance(config, dict) else None)


def explorers(html_root: Path = BOOK_HTML):
    """``(chapter, page path, explorer index, config)`` of every explorer of the chapter pages, in order."""
    for name in chapters():
        stem = Path(name).stem
        page = html_root / "notebooks" / f"{stem}.html"
        if not page.is_file():
            page = next(iter(sorted(html_root.rglob(f"{stem}.html"))), None)
        if page is None:
            continue
        parser = _LiveExplorers()
        parser.feed(page.read_text(encoding="utf-8"))
        for index, config in enumerate(parser.configs):
            yield stem, page.relative_to(html_root).as_posix(), index, config or {}


def page_uploads(html_root: Path = BOOK_HTML) -> list[tuple[str, str, int, str]]:
    """``(chapter, page path, explorer index, task)`` of the explorers that answer an upload, first one per task.

    The teaching tool is left out: it has its own measurement (:func:`time_teach`).
    """
    found = {}
    for stem, path, index, config in explorers(html_root):
        task = config.get("upload")
        if task and config.get("control") != "teach" and task not in found:
            found[task] = (stem, path, index, task)
    return list(found.values())


def page_teach(html_root: Path = BOOK_HTML) -> tuple[str, str, int] | None:
    """``(chapter, page path, explorer index)`` of the first chapter page's teaching tool (chapter 4), or None."""
    for stem, path, index, config in explorers(html_root):
        if config.get("control") == "teach":
            return stem, path, index
    return None


def read_page_manifest(path: Path = PAGE_MANIFEST) -> dict:
    """``manifest.js`` (``globalThis.tlbookManifest = {...};``) as a dict."""
    match = re.search(r"globalThis\.tlbookManifest\s*=\s*(\{.*\})\s*;?\s*$", path.read_text(encoding="utf-8"), re.S)
    if not match:
        raise ValueError(f"{_shown(path)} does not set globalThis.tlbookManifest")
    return json.loads(match.group(1))


def _act(page, root, action, what: str, timeout_ms: int = PAGE_TIMEOUT_MS) -> None:
    """``action()`` on an explorer; returns once its status line says done (or raises with what it said)."""
    status = root.locator(".tlbook-status")
    status.evaluate("el => { el.className = 'tlbook-status'; }")
    action()
    page.wait_for_function(
        "el => /tlbook-(done|error)/.test(el.className)", arg=status.element_handle(), timeout=timeout_ms
    )
    if "tlbook-done" not in (status.get_attribute("class") or ""):
        raise PageProblem(f"{what}: {status.inner_text().strip()}")


def _upload(page, root, photo: Path) -> None:
    """One photo through the explorer's real file input; returns once the page has answered it."""
    _act(page, root, lambda: root.locator("input[type=file]").set_input_files(str(photo)), photo.name)


@contextlib.contextmanager
def _fresh_page(browser, base: str, path: str):
    """The page in a fresh browser context (nothing cached, nothing kept), once ``window.tlbookLive`` is ready."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    outside, errors = [], []
    try:
        page = context.new_page()
        page.on(
            "request",
            lambda request: (
                outside.append(request.url) if not request.url.startswith((base, "data:", "blob:")) else None
            ),
        )
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{base}/{path}", wait_until="load")
        page.wait_for_function("window.tlbookLive && window.tlbookLive.ready", timeout=30_000)
        page.evaluate("window.tlbookLive.ready")
        yield page
    finally:
        context.close()
        if outside:
            log(f"  {path} made {len(outside)} request(s) outside the book, e.g. {outside[0]}")
        if errors:
            log(f"  {path}: uncaught error in the page: {errors[0]}")


def time_page_task(browser, base: str, path: str, index: int, task: str, photos: list[Path]) -> dict:
    """One task's explorer in a fresh browser context (nothing cached): photos[0] first, then every photo."""
    with _fresh_page(browser, base, path) as page:
        root = page.locator(".tlbook-live").nth(index)
        if not root.locator("input[type=file]").is_enabled():
            raise PageProblem("the file input stayed disabled: " + root.locator(".tlbook-status").inner_text().strip())
        root.evaluate(WATCH_FIRST_ANSWER)
        start = time.perf_counter()
        _upload(page, root, photos[0])
        wall_ms = 1e3 * (time.perf_counter() - start)
        watch = page.evaluate("window.tlbookBench")
        for photo in photos:
            _upload(page, root, photo)
        live = page.evaluate("({loads: window.tlbookLive.loads, timings: window.tlbookLive.timings})")
    timings = [t["ms"] for t in live["timings"] if t["task"] == task]
    if len(timings) != 1 + len(photos) or task not in live["loads"]:
        raise PageProblem(
            f"tlbookLive recorded {len(timings)} answers for {1 + len(photos)} photos "
            f"and loads of {sorted(live['loads'])}"
        )
    # In the page: from the change event to the answer on the page; Playwright's own wait only as a fallback.
    first = watch["end"] - watch["start"] if watch and watch.get("start") is not None and watch.get("end") else wall_ms
    return {
        "load_ms": round(live["loads"][task], 1),
        "first_answer_ms": round(first, 1),
        "first_answer_after_load_ms": round(timings[0], 1),
        "answer_ms": round(statistics.median(timings[1:]), 1),
    }


def teach_numbers(timings: list[dict], load_ms: float | None, photos: int) -> report.Teach:
    """The teaching tool's entry from ``window.tlbookLive``: the ``photos``-th photo's and the first query's timings.

    ``timings`` is ``tlbookLive.teach.timings`` (``{photos, ms}`` after photos were added, ``{query: true, ms}``
    after a photo was classified), ``load_ms`` ``tlbookLive.loads.backbone``.
    """
    added = [t["ms"] for t in timings if t.get("photos") == photos and "ms" in t]
    queries = [t["ms"] for t in timings if t.get("query") and "ms" in t]
    if len(added) != 1 or not queries or load_ms is None:
        raise PageProblem(
            f"tlbookLive.teach recorded {len(added)} entries for {photos} photos and "
            f"{len(queries)} answer(s)" + ("" if load_ms is not None else ", and no backbone load")
        )
    last, first = round(added[0], 1), round(queries[0], 1)
    return report.Teach(round(load_ms, 1), photos, last, first, round((last + first) / 1e3, 3))


def time_teach(browser, base: str, path: str, index: int, lessons: dict[str, list[Path]], query: Path) -> report.Teach:
    """Chapter 4's teaching tool in a fresh browser context: a class per entry of ``lessons``, named after its key.

    Every class but the last gets all its photos at once and the last all but one; then its last photo alone
    (the one timed) and ``query``, classified (the first answer, timed).
    """
    names = list(lessons)
    total = sum(len(files) for files in lessons.values())
    with _fresh_page(browser, base, path) as page:
        root = page.locator(".tlbook-live").nth(index)
        if "tlbook-teach" not in (root.get_attribute("class") or "").split():
            raise PageProblem(f"explorer {index} of the page is not the teaching tool")
        add_class = root.locator(".tlbook-add-class")
        if not add_class.is_enabled():
            raise PageProblem("the controls stayed disabled: " + root.locator(".tlbook-status").inner_text().strip())
        rows = root.locator(".tlbook-class")
        while rows.count() < len(names):
            before = rows.count()
            _act(page, root, add_class.click, "adding a class")
            if rows.count() != before + 1:
                raise PageProblem(f"adding a class left {rows.count()} classes")
        for i, name in enumerate(names):
            field = rows.nth(i).locator("input[type=text]")

            def rename(field=field, name=name):
                field.fill(name)
                field.press("Tab")  # leaving the field fires its change event

            _act(page, root, rename, f"naming class {i + 1} {name!r}")
        batches = [(i, files) for i, files in enumerate(lessons.values())]
        last_class, last_files = batches[-1]
        batches = batches[:-1] + [(last_class, last_files[:-1]), (last_class, last_files[-1:])]
        for i, files in batches:
            if not files:
                continue
            chooser = rows.nth(i).locator("input.tlbook-class-photos")
            _act(
                page,
                root,
                lambda chooser=chooser, files=files: chooser.set_input_files([str(f) for f in files]),
                f"adding {len(files)} photo(s) to {names[i]!r}",
                PAGE_TIMEOUT_MS * len(files),
            )
        _act(
            page,
            root,
            lambda: root.locator("input.tlbook-query").set_input_files(str(query)),
            f"classifying {query.name}",
        )
        live = page.evaluate(
            "({load: window.tlbookLive.loads.backbone ?? null, timings: (window.tlbookLive.teach || {}).timings || []})"
        )
    return teach_numbers(live["timings"], live["load"], total)


def time_pages(photos: list[Path], lessons: dict[str, list[Path]] | None = None) -> report.Pages | None:
    """Each in-page task of the built book answering ``photos`` in headless Chromium; None without a built book.

    With ``lessons`` (class name → training photos), chapter 4's teaching tool learns them and answers
    ``photos[0]``: the entry ``teach`` (None when no page has the tool).
    """
    missing = [p for p in (BOOK_HTML / "index.html", PAGE_MANIFEST) if not p.is_file()]
    if missing:
        log(f"  {', '.join(_shown(p) for p in missing)} missing: run `make book` first; the pages are left out")
        return None
    if not Path(CHROMIUM).exists():
        log(f"  {CHROMIUM} is missing (set TLBOOK_CHROMIUM to a Chromium); the pages are left out")
        return None
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        log("  the playwright package is missing (pip install playwright); the pages are left out")
        return None
    from tlhelpers import pages

    manifest = read_page_manifest()
    uploads = page_uploads()
    teacher = page_teach() if lessons else None
    if not uploads and not teacher:
        log(f"  no chapter page in {_shown(BOOK_HTML)} has an explorer that answers a photo; the pages are left out")
        return None
    if lessons and not teacher:
        log(f"  no chapter page in {_shown(BOOK_HTML)} has the teaching tool; it is left out")
    teach = None
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")  # Debian's Chromium, never Playwright's own
    runs, failed = [], []
    with serve(BOOK_HTML) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            version = browser.version
            for chapter, path, index, task in uploads:
                try:
                    if task not in manifest.get("tasks", {}):
                        raise PageProblem(f"the manifest has no task {task!r}")
                    measured = time_page_task(browser, base, path, index, task, photos)
                except (PageProblem, PlaywrightError) as error:
                    failed.append(f"{chapter} ({task}): {str(error).strip().splitlines()[0]}")
                    log(f"  {chapter} ({task}): no answer: {failed[-1]}")
                    continue
                what = pages.UPLOAD_TASKS.get(task, task).split(": ", 1)[-1]
                times = (measured["load_ms"], measured["first_answer_ms"], measured["answer_ms"])
                runs.append(report.PageRun(chapter, task, what, pages.page_bytes(manifest, task), *times))
                after_load = measured["first_answer_after_load_ms"]
                log(
                    f"  {chapter} ({task}): model loaded in {measured['load_ms']:.0f} ms, first photo "
                    f"{measured['first_answer_ms']:.0f} ms with the load ({after_load:.0f} ms after it), "
                    f"then {measured['answer_ms']:.0f} ms per photo (median of {len(photos)})"
                )
            if teacher:
                chapter, path, index = teacher
                try:
                    teach = time_teach(browser, base, path, index, lessons, photos[0])
                except (PageProblem, PlaywrightError) as error:
                    failed.append(f"{chapter} ({report.TEACH_LABEL}): {str(error).strip().splitlines()[0]}")
                    log(f"  {failed[-1]}")
                else:
                    log(
                        f"  {chapter} ({report.TEACH_LABEL}): backbone loaded in {teach.load_ms:.0f} ms; photo "
                        f"{teach.photos} learnt in {teach.last_photo_ms:.0f} ms, first answer in "
                        f"{teach.first_answer_ms:.0f} ms: {teach.seconds:.2f} s from the last photo added "
                        f"to the first answer"
                    )
        finally:
            browser.close()
    return report.Pages(
        browser=f"Chromium {version}",
        backbone=manifest["backbone"]["label"],
        photos=len(photos),
        runtime_bytes=manifest["runtime"]["bytes"],
        failed=failed,
        runs=runs,
        teach=teach,
    )


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #


def _shown(path: Path) -> str:
    from tlhelpers import runtime

    return runtime.shown_path(path.resolve(), ROOT)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Results: benchmarks/results/<machine-tag>.{json,md} and index.md.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny run to test the script: chapter 1 only, a few photos, batches and epochs; "
        "written to benchmarks/out/ unless --out is given",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for the result files (default: benchmarks/results, or benchmarks/out with --quick)",
    )
    parser.add_argument(
        "--skip", action="append", default=[], choices=SECTIONS, help="leave a measurement out (repeatable)"
    )
    parser.add_argument(
        "--notebooks",
        nargs="+",
        metavar="NB",
        help="time only these chapters (e.g. 01_pretrained_inference); the notebook budget is then not checked",
    )
    parser.add_argument(
        "--cold-cache",
        action="store_true",
        help="run the chapters with a fresh, empty feature cache instead of the default one",
    )
    parser.add_argument("--device", help="torch device to measure on (default: the one the book picks)")
    parser.add_argument(
        "--finetune-size",
        type=int,
        help="fine-tuning resolution (default: 112 px on a CPU, 224 px on a GPU, as chapter 3)",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing; re-render every <tag>.md and index.md from the JSON files in the folder",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    if args.render_only:
        for path in report.render_folder(out):
            log(f"wrote {_shown(path)}")
        return 0

    import torch

    from tlhelpers import data, runtime

    if "TLHELPERS_DATA" not in os.environ and (SHARED_DATA / "animals").is_dir():
        os.environ["TLHELPERS_DATA"] = str(SHARED_DATA)
    device = torch.device(args.device) if args.device else runtime.pick_device()
    sizes = QUICK if args.quick else FULL
    kind = "cpu" if device.type == "cpu" else "gpu"
    machine = describe_machine(device)
    tag = report.machine_tag(machine)
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    gpu = f", {machine.gpu}" if machine.gpu else ""
    log(
        f"Benchmarking on {tag} ({machine.cpu_model}, {machine.cpu_cores} cores{gpu}), "
        f"{'quick' if args.quick else 'full'} run"
    )
    measured = dict.fromkeys(SECTIONS)
    wanted = None  # the chapters to run, None for all of them
    if args.notebooks:
        wanted = [n if n.endswith(".ipynb") else n + ".ipynb" for n in args.notebooks]
        unknown = sorted(set(wanted) - set(chapters()))
        if unknown:
            raise SystemExit(f"unknown chapter(s): {', '.join(unknown)}; choose from {', '.join(chapters())}")
    elif args.quick:
        wanted = chapters()[:1]

    if "notebooks" not in args.skip:
        names = wanted or chapters()
        log(f"[1/8] chapters under pytest --nbval ({len(names)})")
        complete = names == chapters() and not args.quick
        measured["notebooks"] = time_notebooks(names, complete=complete, cold_cache=args.cold_cache)

    if "real_path" not in args.skip:
        budget = "cpu" if args.quick else "both"
        log(
            f"[2/8] chapters on the real path ({REAL_PATH_SCRIPT}, {'all' if wanted is None else len(wanted)}"
            f" chapter(s), budget {budget})"
        )
        measured["real_path"] = time_real_path(wanted, budget)

    animals = data.scan(data.locate())
    split = data.split(animals, val=0.15, test=0.15, seed=SEED)

    def per_class(photos, n: int):
        """``n`` photos of ``photos``, as many of each class."""
        return data.per_class(photos, math.ceil(n / len(animals.classes)), seed=SEED).subset(range(n))

    if "extraction" not in args.skip or "finetune" not in args.skip:
        photos = per_class(animals, sizes["extract_images"])
    if "extraction" not in args.skip:
        log(f"[3/8] feature extraction, {len(photos)} photos")
        measured["extraction"] = time_extraction(photos, device, sizes["extract_batch"])
    if "frozen_head" not in args.skip:
        train_set = data.per_class(split["train"], sizes["head_per_class"], seed=SEED)
        log(f"[4/8] frozen head, {sizes['head_epochs']} epochs on {len(train_set)} photos, two ways")
        measured["frozen_head"] = time_frozen_head(
            train_set, device, sizes["head_epochs"], sizes["head_batch"], sizes["head_per_class"]
        )
    if "finetune" not in args.skip:
        size = args.finetune_size or (112 if device.type == "cpu" else 224)
        log(f"[5/8] full fine-tuning at {size} px")
        measured["finetune"] = time_finetune(
            photos, device, size, sizes["finetune_batch"], sizes["finetune_warmup"], sizes["finetune_batches"][kind]
        )

    if "vector_search" not in args.skip:
        log(f"[6/8] vector search, exact against faiss IVF, {SEARCH['dim']} features")
        measured["vector_search"] = time_vector_search(sizes["search_sizes"])

    if "inference" not in args.skip:
        n = len(animals.classes)
        test = data.per_class(split["test"], math.ceil(sizes["inference_photos"] / n), seed=SEED)
        calibration = data.per_class(split["train"], math.ceil(sizes["calibration_photos"] / n), seed=SEED)
        log(f"[7/8] chapter 7's table: PyTorch, ONNX fp32, dynamic and static int8, {len(test)} photos")
        measured["inference"] = time_inference(test, calibration, sizes["latency_runs"])

    if "pages" not in args.skip:
        chosen = per_class(split["test"], sizes["page_photos"])
        taught = data.per_class(split["train"], TEACH_PER_CLASS, seed=SEED)
        lessons = {
            name: [Path(f) for f, label in zip(taught.files, taught.labels) if label == c]
            for c, name in enumerate(taught.classes)
        }
        log(
            f"[8/8] the book's pages answering a photo in Chromium (onnxruntime-web), {len(chosen)} photos per page, "
            f"and chapter 4's teaching tool learning {len(taught)} photos"
        )
        measured["pages"] = time_pages([Path(f) for f in chosen.files], lessons)

    result = report.Result(
        format=report.FORMAT,
        tag=tag,
        quick=args.quick,
        date=started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        command="benchmarks/run.py" + "".join(" " + a for a in (argv if argv is not None else sys.argv[1:])),
        machine=machine,
        settings=report.Settings(amp=device.type == "cuda", channels_last=device.type == "cuda"),
        **measured,
        budgets=[],
    )
    result.budgets = report.budgets(result)
    paths = report.write(result, out)
    for budget in result.budgets:
        log(f"{budget.name}: {budget.measured} — {budget.verdict}" + (f" ({budget.note})" if budget.note else ""))
    log("wrote " + ", ".join(_shown(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
