"""Fixtures shared by the command-line tests (train, fine-tuning)."""

import pytest
from test_data import PETS, make_dataset


@pytest.fixture
def folder(tmp_path):
    """A small dataset folder of generated photos, 6 per class."""
    return make_dataset(tmp_path / "pets", PETS)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A feature cache of the test's own."""
    monkeypatch.setenv("TLHELPERS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
