import pytest
import torch

from tlhelpers import neighbours


def test_max_softmax_is_high_when_the_head_doubts():
    scores = neighbours.max_softmax(torch.tensor([[0.98, 0.01, 0.01], [0.4, 0.3, 0.3]]))
    assert scores.tolist() == pytest.approx([0.02, 0.6])
    with pytest.raises(ValueError, match="2-D"):
        neighbours.max_softmax(torch.tensor([0.5, 0.5]))


def test_knn_distance_is_high_far_from_the_training_photos():
    train = torch.tensor([[1.0, 0.0], [0.95, 0.05], [0.9, 0.1]])
    scores = neighbours.knn_distance(queries=torch.tensor([[1.0, 0.02], [0.0, 1.0]]), keys=train, k=2)
    assert scores[0] < 0.01 and scores[1] > 0.5
    assert neighbours.knn_distance(queries=train[:1], keys=train, k=50).shape == (
        1,
    )  # k reduced to the photos there are
    own = neighbours.knn_distance(queries=train, keys=train, k=1, exclude_self=True)
    assert (own > 0).all()


def test_auroc():
    assert neighbours.auroc([0.1, 0.2], [0.8, 0.9]) == 1.0
    assert neighbours.auroc([0.8, 0.9], [0.1, 0.2]) == 0.0
    assert neighbours.auroc(torch.tensor([0.1, 0.5]), torch.tensor([0.5, 0.9])) == pytest.approx(0.875)
    with pytest.raises(ValueError, match="both kinds"):
        neighbours.auroc([], [0.3])
