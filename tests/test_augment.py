import pytest
import torch
from PIL import Image

from tlhelpers import augment, data

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@pytest.fixture
def photos(tmp_path):
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.new("RGB", (80 + 20 * i, 60), (100 * i, 50, 200)).save(tmp_path / name / f"{i}.jpg")
    (tmp_path / "dogs" / "broken.jpg").write_text("not a photo")
    return data.scan(tmp_path)


def test_decoded_photos_keep_their_aspect_and_skip_unreadable_files(photos):
    with pytest.warns(data.SkippedImageWarning):
        tensors, labels = augment.decoded(photos, 48)
    assert len(tensors) == 4 and labels == [0, 0, 1, 1]
    assert all(t.dtype == torch.uint8 and t.shape[0] == 3 and min(t.shape[1:]) == 48 for t in tensors)
    assert type(tensors[0]) is torch.Tensor


def test_eval_is_deterministic_and_train_is_random():
    photo = torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8)
    evaluate = augment.eval_transform(32, MEAN, STD)
    assert torch.equal(evaluate(photo), evaluate(photo)) and evaluate(photo).shape == (3, 32, 32)
    assert evaluate(photo).dtype == torch.float32 and evaluate(photo).min() >= -1
    for policy in augment.POLICIES:
        train = augment.train_transform(32, MEAN, STD, policy=policy)
        torch.manual_seed(0)
        a, b = train(photo), train(photo)
        assert a.shape == (3, 32, 32) and not torch.equal(a, b)
        torch.manual_seed(0)
        assert torch.equal(train(photo), a)  # seeded: the same draws again


def test_eval_transform_on_a_photo_matches_the_decoded_tensor(photos):
    tensors, _ = augment.decoded(data.per_class(photos, 1), 48)
    from_photo = augment.eval_transform(40, MEAN, STD, resize=48)(data.load_rgb(photos.files[0]))
    assert torch.allclose(augment.eval_transform(40, MEAN, STD)(tensors[0]), from_photo)


def test_transformed_images_and_bad_arguments():
    dataset = augment.TransformedImages([torch.zeros(3, 8, 8, dtype=torch.uint8)], [1], lambda x: x.float())
    x, y = dataset[0]
    assert len(dataset) == 1 and y == 1 and x.dtype == torch.float32
    with pytest.raises(ValueError, match="labels"):
        augment.TransformedImages([], [1], lambda x: x)
    with pytest.raises(ValueError, match="policy"):
        augment.train_transform(32, MEAN, STD, policy="autoaugment")
    with pytest.raises(ValueError, match="scale"):
        augment.train_transform(32, MEAN, STD, scale=(0, 1))
