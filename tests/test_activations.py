import copy

import pytest
import timm
import torch
from torch import nn
from torchvision import models

from tlhelpers import explain, surgery


def resnet():
    torch.manual_seed(0)
    net = models.resnet18(weights=None, num_classes=3)
    return net.eval()


def lite0():
    torch.manual_seed(0)
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=3).eval()


@pytest.mark.parametrize(
    "build, k, start",
    [(resnet, 1, "layer4"), (resnet, 2, "layer3"), (resnet, 0, "fc"), (lite0, 1, "conv_head"), (lite0, 2, "blocks.6")],
)
@pytest.mark.slow
def test_the_top_on_cached_activations_gives_the_network_s_outputs(build, k, start):
    net = build()
    x = torch.randn(4, 3, 64, 64)
    assert explain.split_point(net, k) == start
    top = explain.top_model(net, k, x[:1])
    cached = explain.activations(net, [(x[:2], torch.tensor([0, 1])), None, (x[2:], torch.tensor([2, 0]))], k)
    assert cached.tensors[1].tolist() == [0, 1, 2, 0]
    with torch.inference_mode():
        assert torch.allclose(top(cached.tensors[0]), net(x), atol=1e-4)
    trainable = {name for name, p in top.named_parameters() if p.requires_grad}
    expected = copy.deepcopy(net)
    surgery.unfreeze_last(expected, k)
    assert trainable == {name for name, p in expected.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in top.named_parameters()}  # nothing frozen is left in the top


def test_the_model_is_not_changed_and_merge_copies_the_trained_top_back():
    net = resnet()
    before = copy.deepcopy(net.state_dict())
    top = explain.top_model(net, 1, torch.randn(1, 3, 64, 64))
    assert all(torch.equal(before[key], value) for key, value in net.state_dict().items())
    with torch.no_grad():
        top.fc.weight.add_(1.0)
    merged = explain.merge(net, top)
    assert merged is net and torch.equal(net.fc.weight, top.fc.weight)
    assert torch.equal(net.layer1[0].conv1.weight, before["layer1.0.conv1.weight"])


def test_top_model_leaves_the_callers_model_in_its_mode():
    net = resnet().train()
    explain.top_model(net, 1, torch.randn(1, 3, 64, 64))
    assert net.training and all(module.training for module in net.modules())


def test_a_network_that_a_split_would_change_is_refused():
    class Twice(nn.Module):  # one Tanh module called before the split and again after it
        def __init__(self):
            super().__init__()
            self.layer1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
            self.act = nn.Tanh()
            self.layer2 = nn.Sequential(nn.Conv2d(4, 4, 1))
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            x = self.layer2(self.act(self.layer1(x)))
            return self.fc(self.act(x).mean((2, 3)))

    net = Twice()
    assert explain.split_point(net, 1) == "layer2"
    with pytest.raises(ValueError, match="does not reproduce"):
        explain.top_model(net, 1, torch.randn(1, 3, 8, 8))


def test_bad_k_is_refused():
    net = resnet()
    with pytest.raises(ValueError, match="k must be"):
        explain.top_blocks(net, -1)
    with pytest.raises(ValueError, match="only 5 blocks"):
        explain.top_blocks(net, 6)
