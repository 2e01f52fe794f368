import torch

from tlhelpers import neighbours


def test_synthetic_features_are_unit_length_and_reproducible():
    a = neighbours.synthetic_features(300, dim=16, clusters=5, seed=3)
    assert a.shape == (300, 16) and torch.allclose(a.norm(dim=1), torch.ones(300))
    assert torch.equal(a, neighbours.synthetic_features(300, dim=16, clusters=5, seed=3))
    assert not torch.equal(a, neighbours.synthetic_features(300, dim=16, clusters=5, seed=4))


def test_ivf_index_agrees_with_exact_search_when_it_visits_every_list():
    x = neighbours.synthetic_features(2000, dim=16, clusters=20)
    index = neighbours.IVFIndex(x, nlist=10, nprobe=10)
    assert len(index) == 2000 and index.nlist == 10
    q = x[:20]
    assert neighbours.recall_at_k(index.search(q, 5), neighbours.search(queries=q, keys=x, k=5)[1]) == 1.0


def test_nlist_is_kept_small_enough_to_train():
    index = neighbours.IVFIndex(neighbours.synthetic_features(100, dim=8, clusters=3), nlist=50, nprobe=99)
    assert index.nlist == 100 // neighbours.TRAINING_POINTS_PER_LIST and index.nprobe == index.nlist


def test_scaling_sweep_rows():
    lines = []
    rows = neighbours.scaling_sweep([500, 1500], dim=16, queries=10, k=5, repeats=1, log=lines.append)
    assert [row["n"] for row in rows] == [500, 1500] and len(lines) == 2
    for row in rows:
        assert set(row) == {"n", "dim", "exact_ms", "approx_ms", "build_s", "nlist", "nprobe", "recall"}
        assert 0 <= row["recall"] <= 1 and row["exact_ms"] > 0 and row["approx_ms"] > 0
