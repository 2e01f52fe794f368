import pytest
import timm
import torch
from torch import nn
from torchvision import models

from tlhelpers import surgery, zoo


class ToyNet(nn.Module):
    """Two conv + BatchNorm layers and a linear head: enough for every surgery rule."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.layer10 = nn.Conv2d(8, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.layer10(self.layer1(torch.relu(self.bn1(self.conv1(x)))))
        return self.fc(self.pool(x).flatten(1))


def on_meta(build):
    """Build a big architecture without allocating or initialising its weights (fast)."""

    def built():
        with torch.device("meta"):
            return build()

    return built


def trainable_names(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


HEADS = [
    ("resnet18", on_meta(lambda: models.resnet18(weights=None)), "fc", 512),
    ("vgg16", on_meta(lambda: models.vgg16(weights=None)), "classifier.6", 4096),
    ("efficientnet_lite0", lambda: zoo.architecture("efficientnet_lite0"), "classifier", 1280),
    ("mobilenet_v3_small", lambda: models.mobilenet_v3_small(weights=None), "classifier.3", 1024),
    ("timm convnext_atto", lambda: timm.create_model("convnext_atto", pretrained=False), "head.fc", 320),
]


@pytest.mark.parametrize("label, build, head, in_features", HEADS, ids=[h[0] for h in HEADS])
def test_replace_head_puts_a_fresh_linear_where_the_head_was(label, build, head, in_features):
    model = build()
    assert surgery.find_head_name(model) == head
    new = surgery.replace_head(model, 3)
    assert model.get_submodule(head) is new
    assert (new.in_features, new.out_features) == (in_features, 3)
    assert surgery.find_head_name(model) == head


def test_zoo_heads_match_find_head_name():
    for name, (_, head_name) in zoo.TORCHVISION_MODELS.items():
        assert surgery.find_head_name(on_meta(lambda: zoo.architecture(name))()) == head_name


def test_replaced_heads_give_new_number_of_scores():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    timm_model = timm.create_model("convnext_atto", pretrained=False)
    for model in (models.mobilenet_v3_small(weights=None), timm_model):
        surgery.replace_head(model, 5)
        assert model.eval()(x).shape == (1, 5)
    assert timm_model.num_classes == 5


def test_replace_head_rejects_a_non_linear_layer():
    with pytest.raises(TypeError, match="not an nn.Linear"):
        surgery.replace_head(ToyNet(), 2, head_name="conv1")


def test_freeze_all_but_head_leaves_exactly_the_head_trainable():
    model = models.resnet18(weights=None)
    surgery.replace_head(model, 3)
    assert surgery.freeze_all_but_head(model) == "fc"
    assert surgery.count_parameters(model, trainable_only=True) == 512 * 3 + 3 == 1539
    assert surgery.count_parameters(model) == 11_689_512 - 513_000 + 1539
    assert trainable_names(model) == {"fc.weight", "fc.bias"}

    vgg = on_meta(lambda: models.vgg16(weights=None))()
    surgery.replace_head(vgg, 3)
    surgery.freeze_all_but_head(vgg)
    assert surgery.count_parameters(vgg, trainable_only=True) == 4096 * 3 + 3


def test_only_the_head_gets_gradients_after_backward():
    torch.manual_seed(0)
    model = ToyNet()
    surgery.freeze_all_but_head(model)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {"fc.weight", "fc.bias"}


def test_prefixes_match_whole_dotted_names_and_typos_raise():
    model = ToyNet()
    surgery.freeze(model, "layer1")
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer10.parameters())
    surgery.freeze(model)
    surgery.unfreeze(model, ["conv1", "fc.bias"])
    assert trainable_names(model) == {"conv1.weight", "conv1.bias", "fc.bias"}
    with pytest.raises(ValueError, match="layer9"):
        surgery.freeze(model, "layer9")


def test_blocks_of_the_three_book_models():
    assert [b.name for b in surgery.blocks(models.resnet18(weights=None))] == [
        "conv1+bn1",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "fc",
    ]
    vgg_blocks = surgery.blocks(on_meta(lambda: models.vgg16(weights=None))())
    assert [b.name for b in vgg_blocks] == [
        "features.0-4",
        "features.5-9",
        "features.10-16",
        "features.17-23",
        "features.24-30",
        "classifier.0-5",
        "classifier.6",
    ]
    assert vgg_blocks[0].prefixes == ("features.0", "features.2")
    assert vgg_blocks[-2].prefixes == ("classifier.0", "classifier.3")
    assert [b.name for b in surgery.blocks(zoo.architecture("efficientnet_lite0"))] == (
        ["conv_stem+bn1"] + [f"blocks.{i}" for i in range(7)] + ["conv_head+bn2", "classifier"]
    )


BLOCK_MODELS = [
    on_meta(lambda: models.resnet18(weights=None)),
    on_meta(lambda: models.vgg16(weights=None)),
    on_meta(lambda: zoo.architecture("efficientnet_lite0")),
    on_meta(lambda: models.mobilenet_v3_small(weights=None)),
    on_meta(lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False)),
    ToyNet,
]


@pytest.mark.parametrize("build", BLOCK_MODELS, ids=["resnet18", "vgg16", "lite0", "mobilenet_v3", "vit", "toy"])
def test_blocks_cover_every_parameter_exactly_once(build):
    model = build()
    found = surgery.blocks(model)
    for name, _ in model.named_parameters():
        assert sum(block.owns(name) for block in found) == 1, name


def test_unfreeze_last_grows_monotonically_from_head_only_to_everything():
    model = models.resnet18(weights=None)
    surgery.replace_head(model, 3)
    counts = []
    for k in range(6):
        names = surgery.unfreeze_last(model, k)
        assert names[-1] == "fc" and len(names) == min(k, 5) + 1
        counts.append(surgery.count_parameters(model, trainable_only=True))
    assert counts[0] == 1539
    assert all(a < b for a, b in zip(counts, counts[1:5]))
    assert counts[5] == surgery.count_parameters(model)
    assert surgery.unfreeze_last(model, 2) == ["layer3", "layer4", "fc"]
    last_two = {n for n, _ in model.named_parameters() if n.startswith(("layer3.", "layer4.", "fc."))}
    assert trainable_names(model) == last_two


def test_train_mode_keeps_frozen_batchnorm_in_eval_mode():
    model = ToyNet()
    surgery.freeze(model, ["conv1", "bn1"])
    surgery.train_mode(model)
    assert surgery.frozen_batchnorms(model) == ["bn1"]
    assert not model.bn1.training
    assert model.training and model.layer1[1].training and model.conv1.training
    surgery.train_mode(model, frozen_bn_eval=False)
    assert model.bn1.training


def test_trainable_summary_rows_and_table():
    model = ToyNet(num_classes=3)
    surgery.freeze_all_but_head(model)
    rows = surgery.trainable_summary(model)
    assert [(r.name, r.trainable, r.total) for r in rows] == [
        ("conv1", 0, 112),
        ("bn1", 0, 8),
        ("layer1", 0, 312),
        ("layer10", 0, 72),
        ("fc", 27, 27),
        ("total", 27, 531),
    ]
    assert surgery.format_summary(rows) == "\n".join(
        [
            "module   trainable  total  trainable %",
            "-------  ---------  -----  -----------",
            "conv1            0    112          0.0",
            "bn1              0      8          0.0",
            "layer1           0    312          0.0",
            "layer10          0     72          0.0",
            "fc              27     27        100.0",
            "-------  ---------  -----  -----------",
            "total           27    531          5.1",
        ]
    )
    table = surgery.format_summary(surgery.trainable_summary(models.resnet18(weights=None)))
    assert table.splitlines()[-1].split() == ["total", "11,689,512", "11,689,512", "100.0"]


def test_param_groups_split_head_and_body_trainable_parameters():
    model = ToyNet()
    surgery.freeze(model, "conv1")
    groups = surgery.param_groups(model, head_lr=1e-2, body_lr=1e-4)
    assert [(g["name"], g["lr"], len(g["params"])) for g in groups] == [("body", 1e-4, 8), ("head", 1e-2, 2)]
    optimizer = torch.optim.SGD(groups)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, 1e-2]
    surgery.freeze_all_but_head(model)
    assert [g["name"] for g in surgery.param_groups(model, 1e-2, 1e-4)] == ["head"]


def test_evaluating_puts_every_mode_and_the_device_back_and_yields_the_device():
    import torch

    from tlhelpers import surgery as s

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.Dropout())
    model.train()
    model[1].eval()  # a frozen BatchNorm, as surgery.train_mode leaves it
    with s.evaluating(model) as device:
        assert device == torch.device("cpu") and not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [True, True, False, True]
    with pytest.raises(RuntimeError), s.evaluating(model, "cpu"):
        raise RuntimeError("an error inside the block")
    assert [m.training for m in model.modules()] == [True, True, False, True]


def test_inference_helpers_leave_the_callers_model_as_it_was():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from tlhelpers import augment, explain, train

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    loader = DataLoader(TensorDataset(torch.randn(6, 3, 8, 8), torch.tensor([0, 1] * 3)), batch_size=3)
    model.train()
    train.evaluate(model, loader)
    augment.flip_predict(model, loader)
    explain.activations(model, loader, 1, head_name="5")
    assert all(m.training for m in model.modules())


def test_graph_nodes_run_in_order_and_input_node_is_what_a_module_receives():
    model = ToyNet().eval()
    nodes = surgery.graph_nodes(model)
    assert nodes[0] == "x" and nodes.index("conv1") < nodes.index("layer1.0") < nodes.index("fc")
    assert surgery.input_node(model, "layer1") == "relu"
    assert surgery.input_node(model, "fc", nodes) == "flatten"
    with pytest.raises(ValueError, match="does not run"):
        surgery.input_node(model, "nowhere")


def test_tap_reads_inside_without_copying_and_keeps_every_mode():
    model = ToyNet().eval()
    model.layer1.train()  # a submodule in a mode of its own, as train_mode leaves frozen BatchNorm
    network = surgery.tap(model, {"flatten": "pooled", "fc": "logits"})
    assert model.layer1.training and not model.training and not model.bn1.training
    assert {id(p) for p in network.parameters()} <= {id(p) for p in model.parameters()}
    x = torch.randn(2, 3, 8, 8)
    model.layer1.eval()
    with torch.no_grad():
        out = network(x)
        assert torch.allclose(out["logits"], model(x))
        assert torch.allclose(model.fc(out["pooled"]), out["logits"])


def test_tap_follows_timm_and_torchvision_models():
    x = torch.randn(1, 3, 64, 64)
    for model, node in ((zoo.architecture("efficientnet_lite0"), "bn2"), (models.resnet18(weights=None), "layer4")):
        model.eval()
        with torch.no_grad():
            maps = surgery.tap(model, {node: "maps"})(x)["maps"]
        assert maps.shape[1] in (1280, 512) and maps.ndim == 4
