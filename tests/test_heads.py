"""tlhelpers.heads: linear heads trained, imprinted and scored on stored features."""

import pytest
import torch
from torch import nn

from tlhelpers import heads, train
from tlhelpers.features import FeatureSet


def separable(n_per_class: int = 30, dim: int = 16, seed: int = 0) -> FeatureSet:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, dim, generator=generator) * 3
    labels = torch.arange(3).repeat_interleave(n_per_class)
    x = centres[labels] + torch.randn(len(labels), dim, generator=generator)
    return FeatureSet(x, labels, [f"{i}.png" for i in range(len(labels))], ["a", "b", "c"])


def test_fit_linear_separates_and_repeats():
    train_set, val_set = separable(seed=0), separable(seed=0).subset(list(range(0, 90, 3)))
    head, history = heads.fit_linear(train_set, val_set, epochs=15, lr=0.05, seed=1)
    assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (16, 3)
    assert heads.evaluate(head, train_set)["acc"] >= 0.95
    assert history[-1]["val_acc"] >= 0.95 and len(history) == 15
    preds, probs = heads.predict(head, val_set)
    assert preds.shape == (30,) and torch.allclose(probs.sum(1), torch.ones(30))

    state = torch.get_rng_state()
    again, history_again = heads.fit_linear(train_set, val_set, epochs=15, lr=0.05, seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # the global random stream is untouched
    assert torch.equal(head.weight, again.weight)
    assert history.column("train_loss") == history_again.column("train_loss")
    other, _ = heads.fit_linear(train_set, epochs=15, lr=0.05, seed=2)
    assert not torch.equal(head.weight, other.weight)
    sgd, _ = heads.fit_linear(train_set, epochs=15, lr=0.05, optimizer="sgd")
    assert heads.evaluate(sgd, train_set)["acc"] >= 0.95


def test_imprint_is_the_nearest_class_mean_rule():
    torch.manual_seed(0)
    centers = torch.randn(3, 16) * 3
    labels = torch.arange(3).repeat_interleave(10)
    x = centers[labels] + torch.randn(30, 16)
    fs = FeatureSet(features=x, labels=labels, files=[f"{i}.png" for i in range(30)], classes=["a", "b", "c"])
    head = heads.imprint(fs)
    mean = x.mean(0)
    unit = torch.nn.functional.normalize(x - mean, dim=1)
    prototypes = torch.nn.functional.normalize(torch.stack([unit[labels == k].mean(0) for k in range(3)]), dim=1)
    cosine_rule = (unit @ prototypes.T).argmax(1)
    assert torch.equal(head(x).argmax(1), cosine_rule)
    assert heads.evaluate(head, fs)["acc"] == 1.0


def test_imprint_needs_every_class():
    fs = FeatureSet(
        features=torch.randn(4, 8),
        labels=torch.tensor([0, 0, 1, 1]),
        files=["a", "b", "c", "d"],
        classes=["a", "b", "c"],
    )
    with pytest.raises(ValueError, match="no training features for class"):
        heads.imprint(fs)


def test_fit_linear_is_plain_minibatch_training_with_a_seeded_order():
    """The same head as the obvious loop: seeded init, one seeded permutation per epoch, Adam."""
    train_set = separable(n_per_class=25, seed=3)
    head, history = heads.fit_linear(train_set, epochs=4, lr=0.01, batch_size=16, seed=5)

    x, y = train_set.features, train_set.labels
    torch.manual_seed(5)
    reference = nn.Linear(x.shape[1], 3)
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(5)
    for _ in range(4):
        order = torch.randperm(len(y), generator=generator)
        for begin in range(0, len(y), 16):
            index = order[begin : begin + 16]
            loss = nn.functional.cross_entropy(reference(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert torch.equal(head.weight, reference.weight) and torch.equal(head.bias, reference.bias)
    assert isinstance(history, train.History) and history.column("epoch") == [1, 2, 3, 4]


def test_evaluate_and_predict_agree():
    fs = separable(seed=4)
    head = heads.imprint(fs)
    labels, probabilities = heads.predict(head, fs)
    scores = heads.evaluate(head, fs)
    assert scores["n"] == len(fs) and probabilities.shape == (len(fs), 3)
    assert scores["acc"] == pytest.approx((labels == fs.labels).float().mean().item())
    with pytest.raises(ValueError, match="no features"):
        heads.evaluate(head, fs.subset([]))


def test_leave_one_out_classifies_each_photo_by_the_others():
    corners = torch.eye(3)
    x = torch.stack([corners[0], corners[0] * 0.9, corners[1], corners[1] * 0.9, corners[2], corners[2] * 0.9])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    fs = FeatureSet(x, labels, [str(i) for i in range(6)], ["a", "b", "c"])
    assert heads.leave_one_out(fs) == (6, 6)
    # Photo 1 (a corner-0 photo) labelled "b" is wrong when left out; photo 0 is then alone in "a",
    # so it is not counted (no prototype of "a" would be left).
    fs = FeatureSet(x, torch.tensor([0, 1, 1, 1, 2, 2]), [str(i) for i in range(6)], ["a", "b", "c"])
    assert heads.leave_one_out(fs) == (4, 5)


def test_a_head_refuses_features_of_another_width_clearly():
    head = nn.Linear(4, 2)
    fs = FeatureSet(torch.randn(3, 5), torch.tensor([0, 1, 0]), ["a", "b", "c"], ["x", "y"])
    for call in (heads.predict, heads.evaluate):
        with pytest.raises(ValueError, match="the head takes 4 features, but these have 5"):
            call(head, fs)
