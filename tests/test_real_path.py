"""tools/run_real_path.py, piece by piece: stand-in checkpoints, reduced photos, kernel environment,
reading executed notebooks, and one tiny notebook executed with papermill.

The real run (every chapter, twice) is `make real-path`, which `make test` runs.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from PIL import Image

from tlhelpers import checks, data, runtime, zoo

ROOT = Path(__file__).resolve().parents[1]


def _load_runner():
    spec = importlib.util.spec_from_file_location("run_real_path", ROOT / "tools" / "run_real_path.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


rp = _load_runner()


@pytest.fixture
def real_path_env(tmp_path, monkeypatch):
    """This process as the kernels see it: TORCH_HOME in tmp_path, offline, fallback not forced."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(runtime.OFFLINE_ENV, "1")
    monkeypatch.delenv(runtime.FORCE_FALLBACK_ENV, raising=False)
    return tmp_path / "torch"


# --------------------------------------------------------------------------- #
# Stand-in checkpoints
# --------------------------------------------------------------------------- #


def test_resnet18_standin_is_where_torchvision_looks_and_loads_without_fallback(real_path_env):
    written = rp.write_standin_checkpoints(real_path_env, names=("resnet18",))
    assert written == {"resnet18": zoo.checkpoint_path("resnet18")}
    assert written["resnet18"].name == "resnet18-f37072fd.pth"
    assert written["resnet18"].parent == real_path_env / "hub" / "checkpoints"

    backbone = zoo.load("resnet18", fallback=zoo.FALLBACK)
    assert not backbone.is_fallback and backbone.name == "resnet18"
    assert "torchvision ResNet18_Weights" in backbone.source and not backbone.is_fallback
    saved = torch.load(written["resnet18"], weights_only=True)
    assert torch.equal(backbone.model.state_dict()["fc.weight"], saved["fc.weight"])


@pytest.mark.slow
def test_vgg16_standin_is_float16_on_disk_and_float32_when_loaded(real_path_env):
    path = rp.write_standin_checkpoints(real_path_env, names=("vgg16",))["vgg16"]
    assert path == zoo.checkpoint_path("vgg16") and path.name == "vgg16-397923af.pth"
    saved = torch.load(path, weights_only=True)
    assert {tensor.dtype for tensor in saved.values()} == {torch.float16}
    assert path.stat().st_size < 300 * 2**20  # half of the 528 MB a float32 file takes

    backbone = zoo.load("vgg16")
    assert not backbone.is_fallback and "VGG16_Weights" in backbone.source
    assert {p.dtype for p in backbone.model.parameters()} == {torch.float32}
    assert torch.equal(backbone.model.classifier[6].weight, saved["classifier.6.weight"].float())


def test_coco_detector_standin_loads_with_torchvisions_plain_call(real_path_env):
    from torchvision.models.detection import (
        FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
        fasterrcnn_mobilenet_v3_large_320_fpn,
    )

    from tlhelpers import detection

    path = rp.write_standin_checkpoints(real_path_env, names=(rp.COCO_DETECTOR,))[rp.COCO_DETECTOR]
    assert rp.COCO_DETECTOR == detection.COCO_DETECTOR
    assert path == detection.coco_checkpoint_path()
    assert path.name == "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"
    assert detection.coco_weights_reachable()
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.DEFAULT)
    saved = torch.load(path, weights_only=True)
    key = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(model.roi_heads.box_predictor.cls_score.weight, saved[key].float())
    with torch.inference_mode():
        found = model.eval()([torch.rand(3, 64, 80)])[0]
    assert set(found) == {"boxes", "labels", "scores"}


def test_standins_are_the_same_every_time(tmp_path):
    first = rp.write_standin_checkpoints(tmp_path / "a", names=("resnet18",))["resnet18"]
    second = rp.write_standin_checkpoints(tmp_path / "b", names=("resnet18",))["resnet18"]
    assert first.read_bytes() == second.read_bytes()


# --------------------------------------------------------------------------- #
# Reduced photo folder
# --------------------------------------------------------------------------- #


@pytest.fixture
def source_photos(tmp_path):
    """A small dataset: 3 classes of 5 tiny JPEGs (and a README, as the real folder has)."""
    root = tmp_path / "source" / "animals"
    for k, name in enumerate(("cats", "dogs", "panda")):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (8, 8), (40 * k, 20 * i, 0)).save(root / name / f"{name}_{i:05d}.jpg")
    (root / "README.md").write_text("photos")
    return root


def test_reduced_folder_links_n_photos_per_class(tmp_path, source_photos, monkeypatch):
    before = sorted(p.relative_to(source_photos) for p in source_photos.rglob("*"))
    target = rp.make_reduced_photos(tmp_path / "reduced", per_class=3, source=source_photos)
    links = sorted((target / "animals").rglob("*.jpg"))
    assert len(links) == 9
    for link in links:
        assert link.is_symlink(), f"{link} is a copy, not a link"
        assert link.resolve().parent.parent == source_photos.resolve()
        assert link.resolve().name == link.name and link.resolve().parent.name == link.parent.name
    assert sorted(p.relative_to(source_photos) for p in source_photos.rglob("*")) == before

    monkeypatch.setenv(data.DATA_ENV, str(target))  # as the kernels get it
    found = data.locate()
    assert found == (target / "animals").resolve()
    assert data.scan(found).counts() == {"cats": 3, "dogs": 3, "panda": 3}


def test_reduced_folder_refuses_more_photos_than_a_class_has(tmp_path, source_photos):
    with pytest.raises(ValueError, match="Cannot draw 6 images per class"):
        rp.make_reduced_photos(tmp_path / "reduced", per_class=6, source=source_photos)


# --------------------------------------------------------------------------- #
# The kernels' environment
# --------------------------------------------------------------------------- #


def test_kernel_env_drops_the_pinned_fallback_and_points_into_scratch(tmp_path):
    base = {
        "PATH": "/usr/bin",
        "TLHELPERS_FORCE_FALLBACK": "1",
        "TLHELPERS_STRICT_CHECKS": "1",
        "TLHELPERS_DATA": "/elsewhere",
        "TLHELPERS_CACHE": "/home/me/.cache",
        "TORCH_HOME": "/home/me/torch",
    }
    env = rp.kernel_env(tmp_path, base)
    assert "TLHELPERS_FORCE_FALLBACK" not in env and runtime.STRICT_ENV not in env
    assert env["TLHELPERS_OFFLINE"] == "1" and env["TLHELPERS_NO_FALLBACK"] == "1" and env["PATH"] == "/usr/bin"
    for key in ("TORCH_HOME", "TLHELPERS_DATA", "TLHELPERS_CACHE", "TMPDIR"):
        assert Path(env[key]).parent == tmp_path, key
    assert base["TLHELPERS_FORCE_FALLBACK"] == "1", "the caller's environment is left alone"


# --------------------------------------------------------------------------- #
# Reading executed notebooks (no kernel)
# --------------------------------------------------------------------------- #


def _cell(source: str, *printed: str, tags=()) -> nbformat.NotebookNode:
    cell = new_code_cell(source, metadata={"tags": list(tags)} if tags else {})
    cell.outputs = [new_output("stream", name="stdout", text=text) for text in printed]
    return cell


def test_notes_are_collected_and_errors_named():
    good = new_notebook(
        cells=[
            new_markdown_cell("# A chapter"),
            _cell(
                "print(backbone.source)", "torchvision ResNet18_Weights.IMAGENET1K_V1 (ImageNet-1k), from the cache\n"
            ),
            _cell(
                "checks.expect(...)",
                f"{checks.NOTE_PREFIX} the coffee is an espresso (the book saw 95%; this run saw 3%).\n"
                "an ordinary line\n",
            ),
        ]
    )
    failures, notes = rp.check_executed(good, completed=True)
    assert failures == []
    assert notes == [f"{checks.NOTE_PREFIX} the coffee is an espresso (the book saw 95%; this run saw 3%)."]


def test_no_fallback_switch_makes_the_fallback_an_error(real_path_env, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))  # no checkpoint there
    monkeypatch.setenv(runtime.NO_FALLBACK_ENV, "1")
    with pytest.raises(zoo.WeightsUnavailable):
        zoo.load("resnet18", fallback="efficientnet_lite0")
    monkeypatch.setenv(runtime.FORCE_FALLBACK_ENV, "1")
    with pytest.raises(ValueError, match="contradict"):
        zoo.load("resnet18", fallback="efficientnet_lite0")
    monkeypatch.delenv(runtime.NO_FALLBACK_ENV)
    assert zoo.load("resnet18", fallback="efficientnet_lite0").is_fallback


def test_the_runner_and_the_book_agree_on_the_note_prefix():
    assert rp.NOTE_PREFIX == checks.NOTE_PREFIX


def test_cell_indices_are_those_of_the_source_notebook():
    executed = new_notebook(
        cells=[
            new_markdown_cell("papermill's error banner", metadata={"tags": ["papermill-error-cell-tag"]}),
            _cell("FULL_BUDGET = False", tags=["parameters"]),
            _cell("# Parameters\nFULL_BUDGET = True", tags=["injected-parameters"]),
            _cell("x = 1"),
        ]
    )
    executed.cells[3].outputs = [
        new_output(
            "error",
            ename="NameError",
            evalue="name 'y' is not defined",
            traceback=["\x1b[0;31mNameError\x1b[0m", "----> 1 x = y"],
        )
    ]
    assert [str(f) for f in rp.cell_errors(executed)] == ["cell 1: NameError: name 'y' is not defined  [line 1: x = y]"]


@pytest.mark.parametrize(
    "cells, problem",
    [
        ([_cell("FULL_BUDGET = False\nQUICK_RUN = False", tags=["parameters"])], None),
        ([_cell("QUICK_RUN = False", tags=["parameters"])], None),  # FULL_BUDGET unused: injected, harmless
        ([_cell("x = 1")], None),  # a chapter without knobs
        ([_cell("FULL_BUDGET = False\nQUICK_RUN = False")], "FULL_BUDGET, QUICK_RUN is assigned outside"),
        (
            [_cell("QUICK_RUN = False", tags=["parameters"]), _cell("FULL_BUDGET = True")],
            "FULL_BUDGET is assigned outside",
        ),
    ],
)
def test_the_parameters_cell_contract(cells, problem):
    found = rp.parameters_problem(new_notebook(cells=cells))
    assert found == problem if problem is None else problem in found


@pytest.mark.parametrize(
    "cells, reads",
    [
        ([_cell("FULL_BUDGET = False", tags=["parameters"]), _cell("n = 10 if FULL_BUDGET else 2")], True),
        ([_cell("QUICK_RUN = False", tags=["parameters"]), _cell("x = 1")], False),
        ([new_markdown_cell("Set `FULL_BUDGET = True` on a GPU."), _cell("x = 1")], False),  # prose is not code
    ],
)
def test_the_full_run_is_skipped_only_where_it_would_repeat_the_cpu_run(cells, reads):
    assert rp.reads_full_budget(new_notebook(cells=cells)) is reads


def test_the_chapters_with_a_full_budget_knob_get_their_full_run():
    chapter3 = nbformat.read(ROOT / "notebooks" / "03_freeze_vs_finetune.ipynb", as_version=4)
    assert rp.reads_full_budget(chapter3)


# --------------------------------------------------------------------------- #
# One tiny notebook, executed with papermill in the runner's environment
# --------------------------------------------------------------------------- #


@pytest.mark.slow
def test_a_cell_that_raises_fails_the_run_and_is_named(tmp_path):
    assert os.environ.get("TLHELPERS_FORCE_FALLBACK") == "1", "conftest pins the fallback in this process"
    notebook = tmp_path / "chapter" / "09_tiny.ipynb"
    notebook.parent.mkdir()
    nbformat.write(
        new_notebook(
            cells=[
                new_markdown_cell("# Tiny"),
                new_code_cell("FULL_BUDGET = False\nQUICK_RUN = False", metadata={"tags": ["parameters"]}),
                new_code_cell(
                    "import os\n"
                    "print('knobs', FULL_BUDGET, QUICK_RUN)\n"
                    "print('env', os.environ.get('TLHELPERS_FORCE_FALLBACK'),"
                    " os.environ.get('TLHELPERS_STRICT_CHECKS'),"
                    " os.environ['TLHELPERS_OFFLINE'])\n"
                    f"print({checks.NOTE_PREFIX!r}, 'something else happened')"
                ),
                new_code_cell("raise ValueError('Cannot draw 30 images per class')"),
                new_code_cell("print('never reached')"),
            ],
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        ),
        notebook,
    )
    stored = notebook.read_bytes()
    scratch = tmp_path / "scratch"
    (scratch / "tmp").mkdir(parents=True)
    output = tmp_path / "out" / "09_tiny.full.ipynb"
    output.parent.mkdir()

    run = rp.execute(notebook, output, "full", rp.kernel_env(scratch), timeout=60)

    assert not run.passed and run.chapter == "09_tiny" and run.budget == "full" and run.seconds > 0
    assert [f.cell for f in run.failures] == [3]
    assert run.failures[0].error.startswith("ValueError: Cannot draw 30 images per class")
    assert "raise ValueError" in run.failures[0].error
    assert run.notes == [f"{checks.NOTE_PREFIX} something else happened"]
    printed = {index: rp.output_lines(cell) for index, cell in rp.original_cells(nbformat.read(output, as_version=4))}
    assert printed[2][:2] == ["knobs True True", "env None None 1"]
    assert printed[4] == []
    assert notebook.read_bytes() == stored, "the source notebook is never written"


@pytest.mark.slow
def test_a_cell_past_the_timeout_fails_the_run(tmp_path):
    notebook = tmp_path / "10_slow.ipynb"
    nbformat.write(
        new_notebook(
            cells=[
                new_code_cell("FULL_BUDGET = False\nQUICK_RUN = False", metadata={"tags": ["parameters"]}),
                new_code_cell("import time\ntime.sleep(60)"),
            ]
        ),
        notebook,
    )
    run = rp.execute(notebook, tmp_path / "10_slow.cpu.ipynb", "cpu", rp.kernel_env(tmp_path / "scratch"), timeout=2)
    assert [f.cell for f in run.failures] == [1] and run.failures[0].error.startswith("timed out after 2 s")
    assert run.seconds < 30


def test_patient_channel_reads_a_reply_it_was_not_woken_for(monkeypatch):
    """A message already queued is read at the next one-second poll, not when the whole timeout ends."""
    import asyncio
    from queue import Empty

    from jupyter_client.channels import AsyncZMQSocketChannel

    polls = []

    async def get_msg(self, timeout=None):  # the socket misses its wake-up twice, then sees the reply
        polls.append(timeout)
        if len(polls) < 3:
            raise Empty
        return {"msg_type": "execute_reply"}

    patient_kernel = sys.modules[rp.patient_kernel_manager.__module__]  # tools/patient_kernel.py
    monkeypatch.setattr(AsyncZMQSocketChannel, "get_msg", get_msg)
    channel_class = rp.patient_kernel_manager()().client_factory.shell_channel_class.default_value
    channel = channel_class.__new__(channel_class)
    assert asyncio.run(channel.get_msg(timeout=600)) == {"msg_type": "execute_reply"}
    assert len(polls) == 3 and max(polls) <= patient_kernel.POLL_S

    polls.clear()
    monkeypatch.setattr(patient_kernel, "POLL_S", 0.01)
    monkeypatch.setattr(AsyncZMQSocketChannel, "get_msg", lambda self, timeout=None: _empty(polls, timeout))
    with pytest.raises(Empty):
        asyncio.run(channel.get_msg(timeout=0.05))
    assert len(polls) >= 2


async def _empty(polls, timeout):
    from queue import Empty

    polls.append(timeout)
    await __import__("asyncio").sleep(timeout)
    raise Empty


def test_ipywidgets_go_first_on_the_kernels_path_and_their_version_is_checked(tmp_path, monkeypatch):
    calls = []

    def fake_run(command, **kwargs):
        calls.append((command, kwargs.get("env")))
        return subprocess.CompletedProcess(command, 0, stdout="7.7.1\n" if "-c" in command else "")

    monkeypatch.setattr(rp.subprocess, "run", fake_run)
    env = rp.install_ipywidgets(tmp_path / "w", "7.7.1", {"PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"] == os.pathsep.join([str(tmp_path / "w"), "/elsewhere"])
    install = calls[0][0]
    assert "--no-deps" in install and "ipywidgets==7.7.1" in install and "ipython_genutils==0.2.0" in install
    assert calls[1][1]["PYTHONPATH"] == env["PYTHONPATH"]
    with pytest.raises(SystemExit, match="ipywidgets 7.7.1, not 7.6.5"):
        rp.install_ipywidgets(tmp_path / "w", "7.6.5", {})
