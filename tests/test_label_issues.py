import pytest
import torch

from tlhelpers import neighbours


def nearest_mean(x, y):
    """A tiny classifier for the tests: softmax over negative distances to the class means."""

    def fit_predict(train_index, held_out):
        means = torch.stack([x[train_index][y[train_index] == k].mean(0) for k in range(int(y.max()) + 1)])
        return (-torch.cdist(x[held_out], means) * 5).softmax(1)

    return fit_predict


def blobs(n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n)
    x = torch.eye(3)[y] * 4 + 0.3 * torch.randn(3 * n, 3, generator=g)
    return x, y


def test_out_of_fold_probabilities_never_see_the_photo():
    x, y = blobs()
    seen = []

    def fit_predict(train_index, held_out):
        assert not set(train_index.tolist()) & set(held_out.tolist())
        seen.extend(held_out.tolist())
        return nearest_mean(x, y)(train_index, held_out)

    probs = neighbours.out_of_fold_probabilities(y, fit_predict, folds=5)
    assert sorted(seen) == list(range(len(y)))
    assert probs.shape == (60, 3) and torch.allclose(probs.sum(1), torch.ones(60))
    assert (probs.argmax(1) == y).float().mean() > 0.95


def test_folds_shrink_to_the_smallest_class_and_need_two():
    y = torch.tensor([0, 0, 1, 1, 1])
    calls = []
    neighbours.out_of_fold_probabilities(y, lambda tr, te: calls.append(1) or torch.full((len(te), 2), 0.5), folds=5)
    assert len(calls) == 2
    with pytest.raises(ValueError, match="at least 2"):
        neighbours.out_of_fold_probabilities(torch.tensor([0, 1, 1]), lambda tr, te: None)


def test_rank_puts_flipped_labels_first():
    x, y = blobs()
    noisy = y.clone()
    noisy[[3, 25, 47]] = torch.tensor([1, 2, 0])
    probs = neighbours.out_of_fold_probabilities(noisy, nearest_mean(x, noisy), folds=5)
    found = neighbours.find(noisy, probs)
    assert set(found[:3].tolist()) == {3, 25, 47}
    with pytest.raises(ValueError, match="one row"):
        neighbours.find(noisy[:5], probs)


def test_a_row_of_zeros_is_refused_clearly():
    from tlhelpers import neighbours

    probs = torch.tensor([[0.9, 0.1], [0.0, 0.0], [0.2, 0.8], [0.1, 0.9]])
    with pytest.raises(ValueError, match=r"sum to 0 \(the first is row 1\)"):
        neighbours.find(torch.tensor([0, 0, 1, 1]), probs)
