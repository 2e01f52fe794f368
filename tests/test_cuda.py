"""The CUDA paths: mixed precision and channels-last in training, extraction and prediction.

Skipped without a GPU; on a machine with one (Colab, a lent GPU) they check
that the GPU paths run and agree with the CPU.
"""

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlhelpers import data, features, train, zoo
from tlhelpers.heads import Classifier

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def toy_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )


def toy_loader():
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 2
    x = torch.randn(64, 3, 16, 16, generator=generator) + 2.0 * y.view(-1, 1, 1, 1)
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=generator)


def test_fit_uses_amp_and_channels_last_on_cuda_by_default():
    model, loader = toy_cnn(), toy_loader()
    seen = {}

    def record(module, inputs, output):
        seen["channels_last"] = inputs[0].is_contiguous(memory_format=torch.channels_last)
        seen["dtype"] = output.dtype

    model[0].register_forward_hook(record)
    history = train.fit(model, loader, loader, epochs=3, lr=1e-2, progress=False)
    assert next(model.parameters()).device.type == "cuda"
    assert seen == {"channels_last": True, "dtype": torch.float16}
    assert next(model.parameters()).dtype == torch.float32  # the weights stay float32 (gradient scaling)
    assert history[-1]["val_acc"] >= 0.9
    assert np.isfinite(history.column("train_loss")).all()


def test_fit_on_cuda_without_amp_matches_the_cpu():
    loader = toy_loader()
    cpu_model, gpu_model = toy_cnn(), toy_cnn()
    train.fit(cpu_model, loader, epochs=1, device="cpu", progress=False)
    train.fit(gpu_model, toy_loader(), epochs=1, device="cuda", amp=False, channels_last=False, progress=False)
    for a, b in zip(cpu_model.state_dict().values(), gpu_model.state_dict().values()):
        assert torch.allclose(a.float(), b.float().cpu(), atol=1e-4)


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    files, labels = [], []
    for label, name in enumerate(["cats", "dogs"]):
        (tmp_path / name).mkdir()
        for i in range(6):
            path = tmp_path / name / f"{i}.png"
            Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
            files.append(path)
            labels.append(label)
    return data.ImageSet(tmp_path, files, labels, ["cats", "dogs"])


def test_extract_on_cuda_matches_the_cpu(photos):
    backbone = zoo.load("efficientnet_lite0")
    on_cpu = features.extract(backbone, photos, cache=False, device="cpu", progress=False)
    on_gpu = features.extract(backbone, photos, cache=False, device="cuda", progress=False)
    assert on_gpu.features.device.type == "cpu" and on_gpu.features.dtype == torch.float32
    assert torch.allclose(on_cpu.features, on_gpu.features, atol=1e-3, rtol=1e-3)


def test_classifier_predicts_on_cuda_like_on_the_cpu(photos):
    backbone = zoo.load("efficientnet_lite0")
    torch.manual_seed(0)
    head = nn.Linear(1280, 2)
    on_cpu = Classifier(backbone, head, ["cats", "dogs"]).rank(photos.files)
    gpu_backbone = copy.copy(backbone)
    gpu_backbone.model = copy.deepcopy(backbone.model).cuda().to(memory_format=torch.channels_last)
    on_gpu = Classifier(gpu_backbone, head, ["cats", "dogs"]).rank(photos.files)
    for a, b in zip(on_cpu, on_gpu):
        assert [name for name, _ in a] == [name for name, _ in b]
        assert np.allclose([p for _, p in a], [p for _, p in b], atol=1e-3)
