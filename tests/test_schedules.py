import math

import pytest
import torch

from tlhelpers import train


@pytest.mark.parametrize("name", list(train.SCHEDULES))
def test_every_schedule_runs_its_steps_without_warnings(name, recwarn):
    curve = train.lr_curve(train.SCHEDULES[name], 50, lr=0.1)
    assert len(curve) == 50 and max(curve) <= 0.1 + 1e-12
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_constant_stays():
    assert train.lr_curve(train.constant, 10, lr=0.3) == [0.3] * 10


def test_warmup_cosine_rises_then_falls_to_zero():
    curve = train.lr_curve(lambda opt, n: train.warmup_cosine(opt, n, warmup=0.1), 100, lr=1.0)
    assert curve[0] == pytest.approx(0.01)
    assert curve.index(max(curve)) == 10 and max(curve) == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(curve[10:], curve[11:]))
    assert curve[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert curve[-1] < 0.001


def test_one_cycle_peaks_at_each_group_s_rate():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([{"params": [a], "lr": 1e-2}, {"params": [b], "lr": 1e-3}])
    scheduler = train.one_cycle(optimizer, 20)
    peaks = [0.0, 0.0]
    for _ in range(20):
        peaks = [max(p, g["lr"]) for p, g in zip(peaks, optimizer.param_groups)]
        optimizer.step()
        scheduler.step()
    assert peaks == pytest.approx([1e-2, 1e-3])


def test_bad_arguments():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="total_steps"):
        train.constant(optimizer, 0)
    with pytest.raises(ValueError, match="warmup"):
        train.warmup_cosine(optimizer, 10, warmup=1.0)
