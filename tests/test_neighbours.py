import pytest
import torch

from tlhelpers import neighbours


def test_search_finds_the_most_similar_direction_first():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    sims, idx = neighbours.search(queries=torch.tensor([[2.0, 0.1]]), keys=keys, k=3)
    assert idx.tolist() == [[0, 2, 1]]
    assert sims[0, 0] == pytest.approx(0.99875, abs=1e-4) and (sims[0, :-1] >= sims[0, 1:]).all()


def test_search_can_leave_the_query_itself_out_and_reduces_k():
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    _, idx = neighbours.search(queries=x, keys=x, k=5, exclude_self=True)
    assert idx.shape == (3, 2) and idx[0, 0] == 1 and idx[1, 0] == 0
    assert all(i not in row for i, row in enumerate(idx.tolist()))
    with pytest.raises(ValueError, match="keys themselves"):
        neighbours.search(queries=x[:2], keys=x, exclude_self=True)


def test_search_in_blocks_equals_one_product(monkeypatch):
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    whole = neighbours.search(queries=x, keys=x, k=4, exclude_self=True)
    monkeypatch.setattr(neighbours, "BLOCK", 7)
    blocked = neighbours.search(queries=x, keys=x, k=4, exclude_self=True)
    assert torch.equal(whole[1], blocked[1]) and torch.allclose(whole[0], blocked[0])


def test_centring_changes_the_scale_not_the_order_for_a_shifted_collection():
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(1)) + 10  # all far from the origin
    raw, _ = neighbours.search(queries=x, keys=x, k=1, exclude_self=True)
    centred, _ = neighbours.search(queries=x, keys=x, k=1, exclude_self=True, center=x.mean(0))
    assert raw.min() > 0.99 and centred.min() < 0.9


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="2-D"):
        neighbours.search(queries=torch.zeros(3), keys=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="features"):
        neighbours.search(queries=torch.zeros(1, 3), keys=torch.zeros(4, 2))


def test_knn_votes_by_similarity():
    train = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    preds, scores = neighbours.knn_predict(
        queries=torch.tensor([[1.0, 0.05], [0.05, 1.0]]), keys=train, key_labels=labels, k=3
    )
    assert preds.tolist() == [0, 1]
    assert torch.allclose(scores.sum(1), torch.ones(2)) and scores[0, 0] > 0.5
    _, scores = neighbours.knn_predict(queries=train[:1], keys=train, key_labels=labels, k=2, num_classes=3)
    assert scores.shape == (1, 3) and scores[0, 2] == 0
    with pytest.raises(ValueError, match="labels"):
        neighbours.knn_predict(queries=train, keys=train, key_labels=labels[:2])


def test_nearest_gives_the_best_match():
    sims, idx = neighbours.nearest(queries=torch.tensor([[0.0, 2.0]]), keys=torch.tensor([[1.0, 0.0], [0.1, 1.0]]))
    assert idx.tolist() == [1] and sims.item() == pytest.approx(0.995, abs=1e-3)


def test_duplicate_pairs_within_and_across(monkeypatch):
    x = torch.tensor([[1.0, 0.0, 0.0], [0.99, 0.01, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.02, 1.0]])
    pairs = neighbours.duplicate_pairs(queries=x, threshold=0.99)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (3, 4)]  # most similar first
    assert pairs[0][2] > pairs[1][2] >= 0.99
    monkeypatch.setattr(neighbours, "BLOCK", 2)
    assert neighbours.duplicate_pairs(queries=x, threshold=0.99) == pairs
    across = neighbours.duplicate_pairs(queries=x[:2], keys=x[1:], threshold=0.99)
    assert sorted((i, j) for i, j, _ in across) == [(0, 0), (1, 0)]
    assert neighbours.duplicate_pairs(queries=x, threshold=1.5) == []


def test_recall_at_k():
    exact = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert neighbours.recall_at_k(exact.flip(1), exact) == 1.0
    assert neighbours.recall_at_k(torch.tensor([[1, 9, -1], [-1, -1, -1]]), exact) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="shapes"):
        neighbours.recall_at_k(exact[:, :2], exact)


def test_knn_predict_names_impossible_labels_clearly():
    from tlhelpers import neighbours

    keys = torch.eye(3)
    with pytest.raises(ValueError, match="a label is 5, but num_classes is 3"):
        neighbours.knn_predict(queries=keys, keys=keys, key_labels=torch.tensor([0, 1, 5]), k=1, num_classes=3)
    with pytest.raises(ValueError, match="class indices from 0"):
        neighbours.knn_predict(queries=keys, keys=keys, key_labels=torch.tensor([0, -1, 1]), k=1)
    _, scores = neighbours.knn_predict(queries=keys, keys=keys, key_labels=torch.tensor([0, 1, 1]), k=1, num_classes=4)
    assert scores.shape == (3, 4)  # a class without training photos still has its column


def skimage_photos():
    from PIL import Image
    from skimage import data as skdata

    names = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field")
    return [Image.fromarray(getattr(skdata, name)()).convert("RGB") for name in names]


def test_resaved_copy_is_smaller_reproducible_and_a_jpeg():
    from tlhelpers import augment

    photo = skimage_photos()[0]
    copy = augment.resaved_copy(photo, seed=3)
    again = augment.resaved_copy(photo, seed=3)
    assert copy.size == again.size and copy.tobytes() == again.tobytes()
    width, height = photo.size
    assert 0.95 * 0.8 * width - 1 <= copy.size[0] <= 0.8 * width + 1
    assert 0.95 * 0.8 * height - 1 <= copy.size[1] <= 0.8 * height + 1
    with pytest.raises(ValueError, match="keep and scale"):
        augment.resaved_copy(photo, seed=0, keep=0)


def test_thumbnail_correlation_is_one_for_a_copy_and_lower_for_another_photo():
    first, second = skimage_photos()[:2]
    a = neighbours.thumbnail(first)
    assert a.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert float(a @ neighbours.thumbnail(first.resize((200, 150)))) > 0.98
    assert float(a @ neighbours.thumbnail(second)) < 0.5


@pytest.mark.slow
def test_resaved_and_recropped_copies_are_found_and_other_photos_are_not(tmp_path):
    from tlhelpers import augment, features, zoo

    backbone = zoo.load("efficientnet_lite0")
    photos = skimage_photos()
    center = features.embed(backbone, photos).mean(0)
    rule = neighbours.duplicate_rule(backbone, photos, center)
    assert rule.copy_features.shape == rule.copy_pixels.shape == (len(photos),)
    # each threshold lets 95 % of the 6 copies through: all but at most one
    assert int((rule.copy_features >= rule.features).sum()) >= len(photos) - 1
    assert int((rule.copy_pixels >= rule.pixels).sum()) >= len(photos) - 1
    with pytest.raises(ValueError, match="found"):
        neighbours.duplicate_rule(backbone, photos, center, found=1.0)
    # other copies than those the thresholds came from, as files
    copies = [augment.resaved_copy(photo, seed=100 + i) for i, photo in enumerate(photos)]
    photo_files, copy_files = [], []
    for i, (photo, copy) in enumerate(zip(photos, copies)):
        photo.save(tmp_path / f"photo{i}.png")
        copy.save(tmp_path / f"copy{i}.jpg", quality=95)
        photo_files.append(tmp_path / f"photo{i}.png")
        copy_files.append(tmp_path / f"copy{i}.jpg")
    keys, queries = features.embed(backbone, photos), features.embed(backbone, copies)
    pairs = neighbours.duplicate_pairs(queries=queries, keys=keys, threshold=rule.features, center=center)
    found = neighbours.near_duplicates(pairs, copy_files, photo_files, rule)
    assert all(i == j for i, j, _, _ in found)  # never another photo
    assert len(found) >= len(photos) - 2  # the copies, but for at most one per threshold
