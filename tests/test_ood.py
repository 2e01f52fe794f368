import pytest
import torch

from tlhelpers import ood


def test_max_softmax_is_high_when_the_head_doubts():
    scores = ood.max_softmax(torch.tensor([[0.98, 0.01, 0.01], [0.4, 0.3, 0.3]]))
    assert scores.tolist() == pytest.approx([0.02, 0.6])
    with pytest.raises(ValueError, match="2-D"):
        ood.max_softmax(torch.tensor([0.5, 0.5]))


def test_knn_distance_is_high_far_from_the_training_photos():
    train = torch.tensor([[1.0, 0.0], [0.95, 0.05], [0.9, 0.1]])
    scores = ood.knn_distance(train, torch.tensor([[1.0, 0.02], [0.0, 1.0]]), k=2)
    assert scores[0] < 0.01 and scores[1] > 0.5
    assert ood.knn_distance(train, train[:1], k=50).shape == (1,)  # k reduced to the photos there are
    own = ood.knn_distance(train, train, k=1, exclude_self=True)
    assert (own > 0).all()


def test_auroc():
    assert ood.auroc([0.1, 0.2], [0.8, 0.9]) == 1.0
    assert ood.auroc([0.8, 0.9], [0.1, 0.2]) == 0.0
    assert ood.auroc(torch.tensor([0.1, 0.5]), torch.tensor([0.5, 0.9])) == pytest.approx(0.875)
    with pytest.raises(ValueError, match="both kinds"):
        ood.auroc([], [0.3])
