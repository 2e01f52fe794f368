"""``train --fine-tune``, checkpoints and ``--resume``, and torchrun (tlhelpers.recipe, checkpoint, distributed).

The photos are a few generated JPEGs per class, so that each run takes seconds
on a CPU.  Runs in subprocesses use one thread and ``--deterministic``: the
same computation then gives bit-identical weights.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_data import PETS, make_dataset

from tlhelpers import cli, distributed, recipe, surgery, train, zoo
from tlhelpers.heads import Classifier

TINY = ["--epochs", "3", "--batch-size", "4", "--deterministic", "--no-progress"]


def train_cli(*argv) -> int:
    return cli.main(["train", *map(str, argv), "--no-progress"])


def completed(argv, tmp_path) -> subprocess.CompletedProcess:
    """``argv`` run to its end in the subprocesses' environment, output captured."""
    return subprocess.run(argv, env=env(tmp_path), capture_output=True, text=True, timeout=300)


def env(tmp_path) -> dict:
    """The subprocesses' environment: this checkout's package, one thread, the test suite's switches."""
    source = str(Path(cli.__file__).resolve().parents[1])
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "TLHELPERS_CACHE": str(tmp_path / "cache"),
    }


def command(folder, out, *extra) -> list[str]:
    return [sys.executable, "-m", "tlhelpers", "train", str(folder), "-o", str(out), *TINY, *map(str, extra)]


def weights(path) -> dict[str, torch.Tensor]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return {**{f"head.{k}": v for k, v in payload["head"].items()}, **payload.get("backbone_state", {})}


def assert_same(a: dict, b: dict, **tolerance) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if tolerance:
            torch.testing.assert_close(a[name], b[name], **tolerance, msg=name)
        else:
            assert torch.equal(a[name], b[name]), name


# --------------------------------------------------------------------------- #
# Fine-tuning
# --------------------------------------------------------------------------- #


@pytest.mark.slow
def test_fine_tune_last_block_saves_the_backbone_and_predict_uses_it(folder, cache, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert train_cli(folder, "-o", out, "--fine-tune", "last-block", "--epochs", "2", "--batch-size", "4") == 0
    printed = capsys.readouterr().out
    assert "epoch 1/2: train loss " in printed and "epoch 2/2: " in printed
    assert "Best epoch: " in printed and "fine-tuned backbone included" in printed
    assert not recipe.default_checkpoint_path(out).exists(), "the checkpoint goes once the model is written"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left

    loaded = Classifier.load(out)
    assert loaded.fine_tuned and loaded.classes == list(PETS)
    pretrained = zoo.load(loaded.backbone.name).model.state_dict()
    tuned = loaded.backbone.model.state_dict()
    head = loaded.backbone.head_name
    last = [b for b in surgery.blocks(loaded.backbone.model) if b.prefixes != (head,)][-1]
    changed = {
        name for name in pretrained if not name.startswith(head) and not torch.equal(pretrained[name], tuned[name])
    }
    assert changed and all(last.owns(name) for name in changed), "only the last block moved"
    photo = next((folder / "dogs").iterdir())
    assert cli.main(["predict", str(out), str(photo)]) == 0


@pytest.mark.slow
def test_head_mode_stops_early_and_keeps_the_best_epoch(folder, cache, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert train_cli(folder, "-o", out, "--epochs", "40", "--patience", "2", "--lr", "0.5") == 0
    printed = capsys.readouterr().out
    best = int(printed.split("Best epoch: ")[1].split()[0])
    ran = int(printed.split("Best epoch: ")[1].split()[2])
    assert ran <= 40 and (ran == 40 or ran - best == 2)
    assert Classifier.load(out).fine_tuned is False


def test_help_shows_the_new_options():
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for option in (
        "--fine-tune",
        "--epochs",
        "--batch-size",
        "--resume",
        "--checkpoint",
        "--workers",
        "--patience",
        "torchrun",
    ):
        assert option in help_text
    assert cli.FINE_TUNE_MODES == recipe.MODES


# --------------------------------------------------------------------------- #
# Interrupting and resuming
# --------------------------------------------------------------------------- #


def interrupt_in_epoch(monkeypatch, epoch: int) -> None:
    """Ctrl-C during the given epoch (what KeyboardInterrupt does, without a signal)."""
    real, calls = train.one_epoch, []

    def one_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(recipe.train, "one_epoch", one_epoch)


@pytest.fixture
def interrupted(folder, cache, tmp_path, monkeypatch, capsys):
    """A head run of 6 epochs stopped by Ctrl-C in its third epoch: (model path, checkpoint path)."""
    out = tmp_path / "model.pt"
    with monkeypatch.context() as patch:
        interrupt_in_epoch(patch, 3)
        assert train_cli(folder, "-o", out, "--epochs", "6", "--patience", "0") == 130
    err = capsys.readouterr().err
    ckpt = recipe.default_checkpoint_path(out)
    assert f"Interrupted. {ckpt} holds 2 of 6 epochs; continue with:" in err
    assert err.strip().endswith("--resume")
    assert not out.exists() and recipe.load_checkpoint(ckpt)["epoch"] == 2
    return out, ckpt


def test_ctrl_c_then_resume_gives_the_weights_of_an_uninterrupted_run(folder, interrupted, tmp_path, capsys):
    out, ckpt = interrupted
    assert train_cli(folder, "-o", out, "--epochs", "6", "--patience", "0", "--resume") == 0
    assert "Resuming from " in capsys.readouterr().out and not ckpt.exists()
    whole = tmp_path / "whole.pt"
    assert train_cli(folder, "-o", whole, "--epochs", "6", "--patience", "0") == 0
    assert_same(weights(out), weights(whole))


def refused(argv, capsys, status=2) -> str:
    assert train_cli(*argv) == status
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def test_a_checkpoint_is_never_silently_replaced(folder, interrupted, capsys):
    out, ckpt = interrupted
    before = ckpt.read_bytes()
    line = refused([folder, "-o", out, "--epochs", "6"], capsys)
    assert "holds an unfinished run: add --resume to continue it, or --overwrite" in line
    assert ckpt.read_bytes() == before and not out.exists()


def test_resume_without_a_checkpoint_is_refused(folder, tmp_path, capsys):
    line = refused([folder, "-o", tmp_path / "m.pt", "--resume"], capsys)
    assert line == f"error: cannot resume: there is no checkpoint {tmp_path / 'm.ckpt'}"
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    "change, words",
    [
        ("other folder", "was made from the folder"),
        ("other classes", "was made with the classes ['cats', 'dogs', 'panda'], not ['cats', 'panda', 'wolves']"),
        ("other files", "was made from other photos in the folder"),
        ("other backbone", "was made with the backbone resnet18, not efficientnet_lite0"),
        ("other mode", "was made with --fine-tune head, not last-block"),
        ("other epochs", "was made with --epochs 6, not --epochs 7; give the same options to resume"),
    ],
)
def test_resume_from_another_run_is_refused(folder, interrupted, tmp_path, capsys, change, words):
    out, ckpt = interrupted
    argv = [folder, "-o", out, "--epochs", "6", "--resume"]
    if change == "other folder":
        argv[0] = make_dataset(tmp_path / "other", PETS)
    elif change == "other classes":
        (folder / "dogs").rename(folder / "wolves")
    elif change == "other files":
        next((folder / "dogs").iterdir()).unlink()
    elif change == "other backbone":
        state = recipe.load_checkpoint(ckpt)
        state["identity"]["backbone"] = "resnet18"
        recipe.save_checkpoint({k: v for k, v in state.items() if not k.startswith("format")}, ckpt)
    elif change == "other mode":
        argv += ["--fine-tune", "last-block"]
    else:
        argv[4] = "7"
    before = ckpt.read_bytes()
    line = refused(argv, capsys)
    assert line.startswith(f"error: cannot resume: {ckpt} ") and words in line, line
    assert ckpt.read_bytes() == before and not out.exists()


def test_a_file_that_is_not_a_checkpoint_is_refused(folder, tmp_path, capsys):
    notes = tmp_path / "m.ckpt"
    notes.write_text("my notes")
    line = refused([folder, "-o", tmp_path / "m.pt"], capsys)
    assert "m.ckpt exists and was not written by tlhelpers; pass --overwrite" in line
    line = refused([folder, "-o", tmp_path / "m.pt", "--resume"], capsys)
    assert "is not a checkpoint written by 'python -m tlhelpers train'" in line or "cannot be read" in line
    assert notes.read_text() == "my notes" and not (tmp_path / "m.pt").exists()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(folder, tmp_path):
    killed, whole = tmp_path / "killed.pt", tmp_path / "whole.pt"
    ckpt = recipe.default_checkpoint_path(killed)
    run = subprocess.Popen(
        command(folder, killed, "--fine-tune", "last-block", "--batch-size", "2"),
        env=env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and run.poll() is None:
            # The first epoch is done once the checkpoint says so; the second has then begun.
            if ckpt.exists() and recipe.load_checkpoint(ckpt)["epoch"] >= 1:
                run.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == -signal.SIGKILL, run.stderr.read()
    assert not killed.exists() and recipe.load_checkpoint(ckpt)["epoch"] in (1, 2)
    resumed = completed(command(folder, killed, "--fine-tune", "last-block", "--batch-size", "2", "--resume"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from " in resumed.stdout
    plain = completed(command(folder, whole, "--fine-tune", "last-block", "--batch-size", "2"), tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert_same(weights(killed), weights(whole))


# --------------------------------------------------------------------------- #
# Several processes
# --------------------------------------------------------------------------- #


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["last-block", "head"])
def test_two_processes_on_gloo_reach_the_weights_of_one(folder, tmp_path, mode):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    single = completed(command(folder, one, "--fine-tune", mode), tmp_path)
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    double = completed([*torchrun, *command(folder, two, "--fine-tune", mode)[1:]], tmp_path)
    assert double.returncode == 0, double.stderr
    assert "2 processes (cpu)" in double.stdout
    assert double.stdout.count("Saved ") == 1, "only the first process prints"
    accuracy = [line for line in single.stdout.splitlines() if "accuracy" in line]
    assert accuracy == [line for line in double.stdout.splitlines() if "accuracy" in line]
    assert_same(weights(one), weights(two), rtol=1e-4, atol=1e-5)


def test_epoch_sampler_shares_one_batch_out_over_the_processes():
    one = distributed.EpochSampler(12, distributed.Context(), seed=3)
    two = [distributed.EpochSampler(12, distributed.Context(rank=r, world_size=2), seed=3) for r in range(2)]
    for sampler in (one, *two):
        sampler.set_epoch(5)
    order = [i for _, i in one]
    halves = [[i for _, i in s] for s in two]
    for step in range(3):  # global batches of 4 = two batches of 2
        assert sorted(order[4 * step : 4 * step + 4]) == sorted(
            halves[0][2 * step : 2 * step + 2] + halves[1][2 * step : 2 * step + 2]
        )
    assert {epoch for epoch, _ in one} == {5}


def test_seeded_items_draw_the_same_augmentation_anywhere():
    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return torch.rand(3)

    items = distributed.SeededItems(Noise(), seed=1)
    before = torch.get_rng_state()
    first = items[(2, 1)]
    assert torch.equal(torch.get_rng_state(), before), "the global random state is left alone"
    assert torch.equal(first, items[(2, 1)]) and not torch.equal(first, items[(3, 1)])


def test_a_fine_tuned_file_without_its_backbone_is_refused(folder, cache, tmp_path):
    from tlhelpers.heads import ClassifierFileError

    out = tmp_path / "model.pt"
    assert train_cli(folder, "-o", out, "--fine-tune", "last-block", "--epochs", "1", "--batch-size", "4") == 0
    payload = torch.load(out, weights_only=True)
    assert payload["format_version"] == 2
    del payload["backbone_state"]
    torch.save(payload, out)
    with pytest.raises(ClassifierFileError, match="format version 2 but no backbone weights"):
        Classifier.load(out)
