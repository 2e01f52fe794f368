import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlhelpers import augment, train


class Mirror(nn.Module):
    """Scores class 0 by the left half of the image, class 1 by the right half."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        half = x.shape[-1] // 2
        return self.scale * torch.stack([x[..., :half].mean((1, 2, 3)), x[..., half:].mean((1, 2, 3))], 1)


def test_flip_predict_averages_a_photo_and_its_mirror_image():
    x = torch.zeros(2, 1, 2, 4)
    x[0, ..., :2] = 1.0  # bright on the left
    loader = [(x, torch.tensor([0, 1])), None]
    preds, probs = augment.flip_predict(Mirror(), loader)
    assert torch.allclose(probs, torch.full((2, 2), 0.5))  # a flip swaps the evidence: the mean is even
    assert preds.shape == (2,)
    assert Mirror()(x).argmax(1).tolist() == [0, 0]  # without the flip, both look left
    with pytest.raises(ValueError, match="no usable batch"):
        augment.flip_predict(Mirror(), [None])


def toy():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def loaders():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=generator)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=generator)


def test_gradual_fit_keeps_the_body_still_in_its_first_stage():
    model = toy()
    body_before = model[0].weight.detach().clone()
    history = train.gradual_fit(
        model,
        loaders(),
        head_epochs=2,
        epochs=2,
        head_lr=1e-2,
        body_lr=1e-3,
        head_name="2",
        progress=False,
        device="cpu",
    )
    assert len(history) == 2 and torch.equal(model[0].weight, body_before)
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again for what follows
    history = train.gradual_fit(
        model,
        loaders(),
        head_epochs=1,
        epochs=3,
        head_lr=1e-2,
        body_lr=1e-3,
        head_name="2",
        progress=False,
        device="cpu",
    )
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert not torch.equal(model[0].weight, body_before)


def test_an_interrupted_gradual_fit_leaves_the_body_trainable(monkeypatch):
    from tlhelpers import train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    model = toy()
    monkeypatch.setattr(train, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.gradual_fit(
            model,
            loaders(),
            head_epochs=1,
            epochs=2,
            head_lr=1e-2,
            body_lr=1e-3,
            head_name="2",
            progress=False,
            device="cpu",
        )
    assert all(p.requires_grad for p in model.parameters())


def test_gradual_fit_with_a_schedule_and_discriminative_rates():
    from tlhelpers import train

    model = toy()
    history = train.gradual_fit(
        model,
        loaders(),
        head_epochs=1,
        epochs=2,
        head_lr=1e-2,
        body_lr=1e-3,
        head_name="2",
        schedule=train.one_cycle,
        progress=False,
        device="cpu",
    )
    assert len(history) == 2
    groups = train.stage_groups(model, head_name="2")
    assert len(groups["head"]) == 2 and len(groups["body"]) == 2


def test_bad_stages_are_refused():
    with pytest.raises(ValueError, match="head_epochs"):
        train.gradual_fit(toy(), loaders(), head_epochs=3, epochs=2, head_lr=1e-2, body_lr=1e-3, head_name="2")
    model = toy()
    model[2].requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        train.stage_groups(model, head_name="2")
