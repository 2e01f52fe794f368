import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlhelpers import runtime, surgery, train
from tlhelpers.train import HISTORY_FIELDS, History


def toy_cnn(num_classes: int = 2) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, num_classes),
    )


def toy_loaders(n: int = 32, batch_size: int = 8):
    """Two classes of 8×8 images: class 1 is brighter than class 0."""
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 8, 8, generator=generator) + 2.0 * y.view(-1, 1, 1, 1)
    data = TensorDataset(x, y)
    return (
        DataLoader(data, batch_size=batch_size, shuffle=True, generator=generator),
        DataLoader(data, batch_size=batch_size),
    )


@pytest.fixture(autouse=True)
def restore_determinism():
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_pick_device_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.pick_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.pick_device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.pick_device().type == "cpu"


def test_seeded_repeats_random_numbers_and_restores_everything():
    torch.use_deterministic_algorithms(False)
    torch.manual_seed(123)
    expected = torch.rand(2)
    torch.manual_seed(123)
    with runtime.seeded(3):
        first = (torch.rand(3), random.random(), np.random.rand())
        assert torch.are_deterministic_algorithms_enabled()
    with runtime.seeded(3):
        again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(again[0], first[0]) and again[1:] == first[1:]
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.rand(2), expected), "the global stream goes on as if unseeded"


def test_flags_have_one_meaning(monkeypatch):
    for value, on in (("1", True), ("yes", True), ("ON", True), ("0", False), ("", False), ("false", False)):
        monkeypatch.setenv(runtime.OFFLINE_ENV, value)
        assert runtime.flag(runtime.OFFLINE_ENV) is on
    monkeypatch.setenv(runtime.OFFLINE_ENV, "maybe")
    with pytest.raises(ValueError, match="TLHELPERS_OFFLINE"):
        runtime.offline()


def test_fit_runs_and_records_every_field():
    torch.manual_seed(0)
    model = toy_cnn()
    train_loader, val_loader = toy_loaders()
    history = train.fit(model, train_loader, val_loader, epochs=2, lr=0.05, device="cpu", progress=False)
    assert isinstance(history, History) and len(history) == 2
    assert [row["epoch"] for row in history] == [1, 2]
    for row in history:
        assert tuple(row) == HISTORY_FIELDS
        assert 0 <= row["train_acc"] <= 1 and 0 <= row["val_acc"] <= 1 and row["train_loss"] > 0
    assert history.column("lr") == [0.05, 0.05]
    assert not model.training


def test_fit_learns_the_toy_problem_and_evaluate_agrees():
    torch.manual_seed(0)
    model = toy_cnn()
    train_loader, val_loader = toy_loaders()
    history = train.fit(model, train_loader, val_loader, epochs=8, lr=0.05, device="cpu", progress=False)
    scores = train.evaluate(model, val_loader)
    assert scores["n"] == 32 and scores["acc"] >= 0.9
    assert scores["acc"] == pytest.approx(history[-1]["val_acc"])


def test_frozen_batchnorm_statistics_do_not_move_during_fit():
    torch.manual_seed(0)
    model = toy_cnn()
    surgery.freeze_all_but_head(model)
    stats = {
        name: (m.running_mean.clone(), m.running_var.clone())
        for name, m in model.named_modules()
        if isinstance(m, nn.BatchNorm2d)
    }
    frozen = {name: p.clone() for name, p in model.named_parameters() if not p.requires_grad}
    train.fit(model, toy_loaders()[0], epochs=1, device="cpu", progress=False)
    for name, (mean, var) in stats.items():
        assert torch.equal(model.get_submodule(name).running_mean, mean)
        assert torch.equal(model.get_submodule(name).running_var, var)
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name])

    train.fit(model, toy_loaders()[0], epochs=1, device="cpu", frozen_bn_eval=False, progress=False)
    assert not torch.equal(model[1].running_mean, stats["1"][0])


def test_fit_skips_none_batches_and_steps_the_scheduler():
    torch.manual_seed(0)
    model = toy_cnn()
    batches = [None] + list(toy_loaders()[0]) + [None]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    history = train.fit(
        model, batches, epochs=2, optimizer=optimizer, scheduler=scheduler, device="cpu", progress=False
    )
    assert history.column("lr") == [0.1, 0.05]
    assert history.column("val_acc") == [None, None]


def test_fit_refuses_a_fully_frozen_model():
    model = toy_cnn()
    surgery.freeze(model)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train.fit(model, toy_loaders()[0], epochs=1, device="cpu", progress=False)


def test_threads_sets_the_number_for_the_block_and_restores_it():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with runtime.threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("the block failed")
    assert torch.get_num_threads() == before
