"""A pretrained backbone inside an object detector (chapter 9).

Three parts, in the order the chapter uses them:

* **Scenes with exact boxes.**  :func:`make_scenes` pastes 1 to 3 photos of
  a split, scaled and flipped, onto generated textures; each pasted photo's
  rectangle is its box, known to the pixel.  A :class:`SceneSet` remembers
  which photo went where, so a test can prove that no photo is in two splits.
* **A torchvision detector on a zoo backbone.**  :func:`build` takes the
  feature maps at strides 16 and 32 out of the classifier with
  :func:`tlhelpers.surgery.tap` (torchvision's ``create_feature_extractor``, timm's wrapper for the packaged
  EfficientNet-Lite0), adds a feature pyramid, and hands it to
  ``torchvision.models.detection.FasterRCNN`` with anchors sized for the
  scenes (:func:`anchors_for`).
* **Training and evaluation.**  :func:`fit` trains with the book's
  conventions (seeded batches, ``tqdm.auto``, frozen BatchNorm in eval mode);
  a frozen body's feature maps can be computed once (:func:`body_features`)
  and reused by every run.  :func:`evaluate` scores predictions with
  torchmetrics' ``MeanAveragePrecision`` (COCO's definitions: mAP@0.5 and
  mAP@[.5:.95], per class, precision–recall curves); :func:`outcomes` sorts
  each box into a hit, a wrong class, a false alarm or a miss.

Labels follow torchvision's detection convention: 0 is the background, class
``classes[i]`` is label ``i + 1``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import nn
from tqdm.auto import tqdm

from tlhelpers import data, runtime, surgery

# Feature maps at strides 16 and 32 of each zoo architecture (node names).
NODES = {
    "resnet18": ("layer3", "layer4"),
    "efficientnet_lite0": ("blocks.4", "blocks.6"),
    "vgg16": ("features.23", "features.30"),
}
COCO_DETECTOR = "fasterrcnn_mobilenet_v3_large_320_fpn"


# --------------------------------------------------------------------------- #
# Scenes
# --------------------------------------------------------------------------- #


@dataclass
class Scene:
    """One picture and its objects: ``boxes[i]`` (x0, y0, x1, y1 in pixels,
    x1 and y1 exclusive) holds a photo of ``classes[labels[i] - 1]``, pasted
    from ``photos[i]``."""

    image: Image.Image
    boxes: list[tuple[int, int, int, int]]
    labels: list[int]
    photos: list[Path]

    def target(self) -> dict[str, torch.Tensor]:
        """The boxes and labels as torchvision's detection models take them."""
        return {
            "boxes": torch.tensor(self.boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(self.labels, dtype=torch.int64),
        }


@dataclass
class SceneSet:
    """Scenes built from one split of the photos (:func:`make_scenes`)."""

    scenes: list[Scene]
    classes: list[str]
    size: int
    _tensor: torch.Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> Scene:
        return self.scenes[index]

    def photos(self) -> set[Path]:
        """Every photo pasted into a scene of this set."""
        return {path for scene in self.scenes for path in scene.photos}

    def objects(self) -> int:
        return sum(len(scene.boxes) for scene in self.scenes)

    def counts(self) -> dict[str, int]:
        """Objects per class name."""
        found = np.bincount([label - 1 for scene in self.scenes for label in scene.labels], minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, found)}

    def pixels(self) -> torch.Tensor:
        """All scenes as one float tensor in [0, 1], N × 3 × size × size (made once)."""
        if self._tensor is None:
            arrays = np.stack([np.asarray(scene.image, dtype=np.uint8) for scene in self.scenes])
            self._tensor = torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div_(255)
        return self._tensor

    def targets(self) -> list[dict[str, torch.Tensor]]:
        return [scene.target() for scene in self.scenes]

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={n}" for name, n in self.counts().items())
        return f"SceneSet({len(self)} × {self.size} px: {self.objects()} animals, {counts})"


def texture(size: int, rng: np.random.Generator) -> Image.Image:
    """A background with no animal in it: smooth colour blobs, stripes and grain.

    Photo regions would do too, but every region of these photos shows part of
    an animal, and an animal without a box teaches the detector that animals
    are background.
    """
    coarse = rng.uniform(40, 215, size=(rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.float32)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, period = rng.uniform(0, math.pi), rng.uniform(6, 30)
    stripes = np.sin((x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period)
    base += rng.uniform(0, 25) * stripes[..., None]
    base += rng.normal(0, rng.uniform(2, 12), size=base.shape)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))


def _mask(width: int, height: int) -> Image.Image:
    """Rounded corners: the photo's edges stay straight, so its box is exact."""
    mask = Image.new("L", (width, height), 0)
    radius = max(1, round(0.25 * min(width, height)))
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, width - 1, height - 1), radius=radius, fill=255)
    return mask


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def make_scenes(
    images: data.ImageSet,
    n: int,
    size: int = 160,
    seed: int = 0,
    max_animals: int = 3,
    scale: tuple[float, float] = (0.3, 0.6),
    progress: bool = False,
) -> SceneSet:
    """``n`` scenes of ``size`` × ``size`` pixels from the photos of ``images``.

    Each scene gets 1 to ``max_animals`` photos on a :func:`texture`: the
    photo's longer side is a fraction ``scale`` of the scene, it is flipped
    left–right with probability ½, and it never overlaps another photo (a
    photo that finds no free place after 50 tries is left out).  The photos
    are taken in a shuffled order and each is used once before any is used
    again, so a split's scenes hold only that split's photos.
    """
    if n < 1 or not 1 <= max_animals:
        raise ValueError(f"need n >= 1 and max_animals >= 1, got n={n}, max_animals={max_animals}")
    rng = np.random.default_rng([seed, n, size])
    order: list[int] = []
    scenes = []
    thumbnails: dict[int, Image.Image] = {}
    for _ in tqdm(range(n), desc="scenes", disable=not progress):
        canvas = texture(size, rng)
        boxes, labels, photos = [], [], []
        for _ in range(int(rng.integers(1, max_animals + 1))):
            if not order:
                order = list(rng.permutation(len(images)))
            index = int(order.pop())
            if index not in thumbnails:
                photo = data.load_rgb(images.files[index])
                photo.thumbnail((size, size))
                thumbnails[index] = photo
            photo = thumbnails[index]
            longer = rng.uniform(*scale) * size
            ratio = longer / max(photo.size)
            width, height = max(8, round(photo.width * ratio)), max(8, round(photo.height * ratio))
            for _ in range(50):
                x0, y0 = int(rng.integers(0, size - width + 1)), int(rng.integers(0, size - height + 1))
                box = (x0, y0, x0 + width, y0 + height)
                if not any(_overlap(box, other) for other in boxes):
                    break
            else:
                continue
            pasted = photo.resize((width, height), Image.BILINEAR)
            if rng.random() < 0.5:
                pasted = pasted.transpose(Image.FLIP_LEFT_RIGHT)
            canvas.paste(pasted, box[:2], _mask(width, height))
            boxes.append(box)
            labels.append(images.labels[index] + 1)
            photos.append(images.files[index])
        scenes.append(Scene(canvas, boxes, labels, photos))
    return SceneSet(scenes, list(images.classes), size)


def anchors_for(scenes: SceneSet, levels: int = 2, ratios: int = 3):
    """Anchor sizes and aspect ratios that match the objects of ``scenes``.

    The boxes' sizes (√area) are split into ``levels`` groups from small to
    large, and each level gets two sizes, the 25th and 75th percentiles of its
    group, smaller objects on the finer map; the aspect ratios (height / width)
    are the percentiles 10, 50 and 90 of all boxes.  Returns
    ``(sizes, aspect_ratios)`` as ``AnchorGenerator`` takes them.
    """
    boxes = np.array([box for scene in scenes.scenes for box in scene.boxes], dtype=np.float64)
    if len(boxes) == 0:
        raise ValueError("the scenes hold no boxes")
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    sides = np.sort(np.sqrt(width * height))
    groups = np.array_split(sides, levels)
    sizes = tuple(tuple(int(round(np.percentile(g if len(g) else sides, q))) for q in (25, 75)) for g in groups)
    quantiles = np.linspace(10, 90, ratios) if ratios > 1 else [50]
    aspect = tuple(round(float(np.percentile(height / width, q)), 2) for q in quantiles)
    return sizes, (aspect,) * levels


# --------------------------------------------------------------------------- #
# The detector
# --------------------------------------------------------------------------- #


def _extractor(model: nn.Module, name: str) -> nn.Module:
    return surgery.tap(model, {node: str(i) for i, node in enumerate(NODES[name])})


class Pyramid(nn.Module):
    """A backbone body's feature maps and a feature pyramid on top, as FasterRCNN takes them.

    ``body`` returns the maps ``"0"`` (stride 16) and ``"1"`` (stride 32);
    ``fpn`` mixes them into ``out_channels`` channels each.  Torchvision's
    ``BackboneWithFPN`` does the same for models whose stages are direct
    children; this one takes any node of any model.
    """

    def __init__(self, body: nn.Module, in_channels: Sequence[int], out_channels: int):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork

        self.body = body
        self.fpn = FeaturePyramidNetwork(list(in_channels), out_channels)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict:
        return self.fpn(self.body(x))


def build(
    model: nn.Module,
    name: str,
    num_classes: int,
    scene_size: int,
    mean,
    std,
    anchors,
    freeze_body: bool = False,
    frozen_batchnorm: bool = True,
    channels: int = 64,
    representation: int = 128,
) -> nn.Module:
    """A Faster R-CNN detector on the classifier ``model`` (a zoo architecture ``name``).

    ``model`` is used as it is (copy it first to keep the original); its
    layers up to the stride-32 stage become the body (:data:`NODES`).
    ``num_classes`` excludes the background.  ``mean``/``std`` are the
    backbone's normalisation; scenes are never resized (``scene_size``).
    ``anchors`` is :func:`anchors_for`'s result.  ``freeze_body`` stops the
    body's weights from training; ``frozen_batchnorm`` freezes the body's
    BatchNorm layers (weights and statistics, as torchvision does for a
    pretrained backbone; :func:`fit` keeps them in eval mode) — ``False``
    for a body with random weights, whose BatchNorm must learn.  The heads
    are small (``channels`` wide, a ``representation``-unit box head, few
    proposals): the
    scenes are small and the CPU budget too.
    """
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    if name not in NODES:
        raise ValueError(f"no detector nodes for {name!r}; known: {', '.join(NODES)}")
    body = _extractor(model, name)
    with torch.no_grad():
        shapes = [t.shape[1] for t in body(torch.zeros(1, 3, 64, 64)).values()]
    for parameter in body.parameters():
        parameter.requires_grad_(not freeze_body)
    if frozen_batchnorm:
        for module in body.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                for parameter in module.parameters():
                    parameter.requires_grad_(False)
    pyramid = Pyramid(body, shapes, channels)
    sizes, ratios = anchors
    generator = AnchorGenerator(sizes=tuple(sizes), aspect_ratios=tuple(ratios))
    pool = MultiScaleRoIAlign(featmap_names=["0", "1"], output_size=7, sampling_ratio=2)
    return FasterRCNN(
        pyramid,
        min_size=scene_size,
        max_size=scene_size,
        image_mean=list(mean),
        image_std=list(std),
        rpn_anchor_generator=generator,
        box_roi_pool=pool,
        box_head=TwoMLPHead(channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, num_classes + 1),
        rpn_pre_nms_top_n_train=300,
        rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=50,
        rpn_batch_size_per_image=64,
        box_batch_size_per_image=32,
        box_detections_per_img=20,
    )


def trainable_counts(detector: nn.Module) -> dict[str, int]:
    """Trainable and total parameters of the body, and trainable ones of everything else."""
    counts = {"body": 0, "body total": 0, "rest": 0}
    for key, parameter in detector.named_parameters():
        where = "body" if key.startswith("backbone.body.") else "rest"
        counts[where] += parameter.numel() if parameter.requires_grad else 0
        if where == "body":
            counts["body total"] += parameter.numel()
    return counts


# --------------------------------------------------------------------------- #
# Training
# --------------------------------------------------------------------------- #


def _features(detector: nn.Module, pixels: torch.Tensor, body: dict | None, index: torch.Tensor | None):
    """The detector's normalised inputs and pyramid maps; a cached body's maps when given."""
    from torchvision.models.detection.image_list import ImageList

    device = surgery.model_device(detector)
    pixels = pixels.to(device)
    normalised = detector.transform.normalize(pixels) if pixels.ndim == 4 else pixels
    image_list = ImageList(normalised, [tuple(pixels.shape[-2:])] * len(pixels))
    if body is not None:
        maps = OrderedDict((key, value[index].to(device)) for key, value in body.items())
        return image_list, detector.backbone.fpn(maps)
    return image_list, detector.backbone(normalised)


def body_features(detector: nn.Module, scenes: SceneSet, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """The body's feature maps of every scene, computed once, for a frozen body.

    A frozen body computes the same maps in every epoch and every run, so
    :func:`fit` and :func:`predict` can take them from here instead.
    """
    body = detector.backbone.body
    device = surgery.model_device(detector)
    was_training = body.training
    body.eval()
    out: dict[str, list] = {}
    with torch.inference_mode():
        for batch in scenes.pixels().split(batch_size):
            maps = body(detector.transform.normalize(batch.to(device)))
            for key, value in maps.items():
                out.setdefault(key, []).append(value.cpu())
    body.train(was_training)
    return {key: torch.cat(values) for key, values in out.items()}


def _train_mode(detector: nn.Module) -> None:
    detector.train()
    for module in detector.modules():  # frozen BatchNorm keeps its statistics (chapter 3)
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()


def loss(detector: nn.Module, pixels: torch.Tensor, targets: list[dict], body=None, index=None) -> dict:
    """The four losses of Faster R-CNN for one batch (the detector in training mode)."""
    image_list, features = _features(detector, pixels, body, index)
    device = image_list.tensors.device
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    proposals, rpn_losses = detector.rpn(image_list, features, targets)
    _, head_losses = detector.roi_heads(features, proposals, image_list.image_sizes, targets)
    return {**rpn_losses, **head_losses}


def fit(
    detector: nn.Module,
    scenes: SceneSet,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    batch_size: int = 8,
    seed: int = 0,
    body: dict | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
) -> list[dict]:
    """Train ``detector`` on ``scenes``; one row per epoch with the mean of each loss.

    The batches are shuffled by ``seed``; ``body`` (from
    :func:`body_features`) replaces a frozen body's forward pass.  Frozen
    BatchNorm layers stay in eval mode.  The detector is left in eval mode.
    """
    device = torch.device(device) if device is not None else runtime.pick_device()
    detector.to(device)
    pixels, targets = scenes.pixels(), scenes.targets()
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in tqdm(range(1, epochs + 1), desc="epochs", disable=not progress):
        _train_mode(detector)
        sums: dict[str, float] = {}
        order = torch.randperm(len(scenes), generator=generator)
        batches = order.split(batch_size)
        for index in tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not progress):
            losses = loss(detector, pixels[index], [targets[i] for i in index], body, index)
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
        row = {"epoch": epoch, **{key: value / len(batches) for key, value in sums.items()}}
        row["loss"] = sum(value for key, value in row.items() if key.startswith("loss_"))
        history.append(row)
    detector.eval()
    return history


@torch.inference_mode()
def predict(
    detector: nn.Module, scenes: SceneSet, batch_size: int = 16, body: dict | None = None
) -> list[dict[str, torch.Tensor]]:
    """Boxes, scores and labels for every scene (on the CPU), as torchvision returns them."""
    detector.eval()
    pixels = scenes.pixels()
    out = []
    for index in torch.arange(len(scenes)).split(batch_size):
        image_list, features = _features(detector, pixels[index], body, index)
        proposals, _ = detector.rpn(image_list, features)
        found, _ = detector.roi_heads(features, proposals, image_list.image_sizes)
        out += [{k: v.cpu() for k, v in d.items()} for d in found]
    return out


# --------------------------------------------------------------------------- #
# Evaluation
# --------------------------------------------------------------------------- #


def evaluate(predictions: list[dict], scenes: SceneSet) -> dict:
    """COCO's box metrics with torchmetrics' ``MeanAveragePrecision``.

    Returns ``map_50`` (mAP at IoU 0.5), ``map`` (mAP averaged over IoU
    0.5:0.05:0.95), ``per_class`` (class name → ``{"ap_50", "ap"}``) and
    ``pr_curve`` (class name → ``(recall, precision)`` arrays at IoU 0.5, the
    101 recall points COCO interpolates at).
    """
    from tlhelpers import optional

    optional("pycocotools")  # torchmetrics' COCO backend
    metrics = optional("torchmetrics.detection")
    metric = metrics.MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, extended_summary=True)
    metric.update([{k: v.detach().cpu() for k, v in p.items()} for p in predictions], scenes.targets())
    result = metric.compute()
    precision = result["precision"]  # IoU × recall × class × area × max detections
    recall_points = np.linspace(0, 1, precision.shape[1])
    present = result["classes"].reshape(-1).tolist()  # a 0-d tensor when one class is present
    per_class, curves = {}, {}
    for k, label in enumerate(present):
        name = scenes.classes[label - 1]
        curve = precision[0, :, k, 0, -1].numpy()  # IoU 0.5, all areas, 100 detections
        valid = curve > -1
        per_class[name] = {
            "ap_50": float(curve[valid].mean()) if valid.any() else 0.0,
            "ap": float(result["map_per_class"].reshape(-1)[k]),
        }
        curves[name] = (recall_points[valid], curve[valid])
    return {"map_50": float(result["map_50"]), "map": float(result["map"]), "per_class": per_class, "pr_curve": curves}


def outcomes(prediction: dict, scene: Scene, threshold: float, iou: float = 0.5) -> dict[str, list]:
    """Sort one scene's boxes:: ``hit``, ``wrong class``, ``false alarm`` (predictions), ``missed`` (truth).

    Predictions scoring at least ``threshold`` are matched to the true boxes
    greedily, best score first, at IoU ≥ ``iou``: a match with the right label
    is a hit, with another label a wrong class; an unmatched prediction is a
    false alarm, and an unmatched true box is missed.  Each entry is
    ``(box, label, score, true_label)``: a false alarm's true label and a
    missed box's score are ``None``.
    """
    from torchvision.ops import box_iou

    keep = prediction["scores"] >= threshold
    boxes, labels, scores = (prediction[k][keep] for k in ("boxes", "labels", "scores"))
    truth = scene.target()
    overlaps = box_iou(boxes, truth["boxes"]) if len(boxes) and len(truth["boxes"]) else None
    taken: set[int] = set()
    result: dict[str, list] = {"hit": [], "wrong class": [], "false alarm": [], "missed": []}
    for i in torch.argsort(scores, descending=True).tolist():
        best, best_iou = None, iou
        for j in range(len(truth["boxes"])):
            if j not in taken and overlaps is not None and overlaps[i, j] >= best_iou:
                best, best_iou = j, float(overlaps[i, j])
        box, label, score = tuple(boxes[i].tolist()), int(labels[i]), float(scores[i])
        if best is None:
            result["false alarm"].append((box, label, score, None))
        else:
            taken.add(best)
            true_label = int(truth["labels"][best])
            result["hit" if true_label == label else "wrong class"].append((box, label, score, true_label))
    for j in range(len(truth["boxes"])):
        if j not in taken:
            label = int(truth["labels"][j])
            result["missed"].append((tuple(truth["boxes"][j].tolist()), label, None, label))
    return result


def best_threshold(predictions: list[dict], scenes: SceneSet, candidates: Iterable[float] | None = None) -> float:
    """The score threshold with the highest F1 (hits against every mistake), for drawing boxes.

    Choose it on validation scenes, never on the test scenes it is used for.
    """
    candidates = list(candidates) if candidates is not None else [i / 20 for i in range(2, 20)]

    def f1(threshold: float) -> float:
        totals = {"hit": 0, "wrong class": 0, "false alarm": 0, "missed": 0}
        for prediction, scene in zip(predictions, scenes.scenes):
            for key, entries in outcomes(prediction, scene, threshold).items():
                totals[key] += len(entries)
        wrong = totals["wrong class"] + totals["false alarm"] + totals["missed"]
        return 2 * totals["hit"] / max(1, 2 * totals["hit"] + wrong)

    return max(candidates, key=lambda t: (f1(t), -abs(t - 0.5)))


# --------------------------------------------------------------------------- #
# Pictures
# --------------------------------------------------------------------------- #

OUTCOME_STYLE = {
    "hit": ("#009E73", "-"),
    "wrong class": ("#D55E00", "-"),
    "false alarm": ("#CC79A7", "--"),
    "missed": ("#E69F00", ":"),
}


def draw(
    ax,
    image,
    boxes=(),
    labels=(),
    classes: Sequence[str] = (),
    scores=None,
    color="#0072B2",
    style="-",
    title: str | None = None,
) -> None:
    """One picture with boxes and their labels (and scores) on a matplotlib axis."""
    from matplotlib.patches import Rectangle

    ax.imshow(image)
    for i, (box, label) in enumerate(zip(boxes, labels)):
        x0, y0, x1, y1 = [float(v) for v in box]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=2, linestyle=style))
        text = classes[int(label) - 1] if classes else str(int(label))
        if scores is not None and scores[i] is not None:
            text += f" {float(scores[i]):.2f}"
        ax.text(
            x0 + 1,
            y0 + 1,
            text,
            color="white",
            fontsize=7,
            va="top",
            bbox={"facecolor": color, "edgecolor": "none", "pad": 1, "alpha": 0.8},
        )
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def draw_outcomes(
    ax, scene: Scene, prediction: dict, classes: Sequence[str], threshold: float, title: str | None = None
) -> dict[str, list]:
    """A scene with its predictions coloured by :func:`outcomes` (misses dotted); returns them."""
    found = outcomes(prediction, scene, threshold)
    ax.imshow(scene.image)
    for kind, entries in found.items():
        color, style = OUTCOME_STYLE[kind]
        if entries:
            boxes, labels, scores, _ = zip(*entries)
            draw(ax, scene.image, boxes, labels, classes, scores, color=color, style=style)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return found


# --------------------------------------------------------------------------- #
# The real thing: a detector trained on COCO
# --------------------------------------------------------------------------- #


def coco_weights():
    """torchvision's COCO weights entry of :data:`COCO_DETECTOR` (no download)."""
    from torchvision.models import get_model_weights

    return get_model_weights(COCO_DETECTOR).DEFAULT


def coco_checkpoint_path() -> Path:
    """Where torch's hub cache keeps the COCO detector's checkpoint."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(coco_weights().url).name


def coco_weights_reachable() -> bool:
    """Whether torchvision can be asked for the COCO detector's weights, cached or downloadable.

    False while ``TLHELPERS_FORCE_FALLBACK`` pins the book's stored outputs,
    as for :func:`tlhelpers.zoo.weights_reachable`.
    """
    if runtime.flag(runtime.FORCE_FALLBACK_ENV):
        return False
    return coco_checkpoint_path().exists() or not runtime.offline()
