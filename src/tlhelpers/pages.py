"""The rendered book's live pages: explorers without a kernel, and the models the pages run (chapters 1, 3, 4, 6 and 7).

A reader of the built HTML book has no Python behind the page, so an
ipywidgets explorer there would be a picture of controls that do nothing.
:class:`LiveExplorer` therefore carries two representations of one explorer:

* the ipywidget, which Jupyter and Colab show as before;
* HTML for the book: the same menu or slider, with the view of **every** value
  computed when the chapter ran and stored with the notebook.  The book's
  script (``book/live/live.js``) switches between the stored views in the
  browser, and — where ``upload`` names an in-page task — answers a photo the
  reader brings with the chapter's model running in the page (onnxruntime-web;
  see :func:`build` below).

The book's configuration (``nb_mime_priority_overrides`` in ``_config.yml``)
renders the HTML; Jupyter renders the widget.  Without JavaScript the stored
first view stays and each control says why it is inactive.

The HTML of a result (photo, probability bars, matches) is written here and,
for a photo the reader uploads, by ``live.js`` with the same classes, so both
look alike and read alike to a screen reader.

**The page assets**: the models and data that the book's pages run in the browser (built by ``make book``).

A reader who uploads a photo on a page gets it answered in the page, by the
chapter's own model running in onnxruntime-web.  :func:`build` makes what the
pages need from this package, with the chapters' own steps:

``backbone``    the book's backbone (``zoo.load("resnet18", fallback=…)``, as
                every chapter loads it) as one ONNX file with three outputs —
                ``logits`` (ImageNet), ``pooled`` (what a head receives) and
                ``maps`` (the last feature maps, for class activation maps) —
                quantized to static int8 with chapter 7's
                :func:`tlhelpers.export.quantize`;
``imagenet``    the ImageNet class names (chapter 1's top-5);
``animals``     chapter 4's "classic" head on the cats/dogs/pandas photos
                (chapter 4's class activation maps);
``search``      chapter 6's search index: the training photos' features,
                centred on their mean and scaled to unit length, stored as
                int8 per row, with a thumbnail of each photo;
``classifier``  chapter 7's exported file: backbone and head by
                :func:`tlhelpers.export.to_onnx`, then static int8,
                calibrated on the same training photos as in chapter 7.

Each asset is written twice into the output folder: as plain files under
``raw/`` (``.onnx``, ``.json``, ``.npy``) for Python, and as one classic
script ``static/page-assets/<name>.js`` that registers it in the page.  A page
opened from disk (``file://``) may not ``fetch()`` a file, but it may load a
``<script>``; so the binary parts travel base64-encoded inside scripts.
``manifest.js`` lists the assets with their sizes and how far the int8 variants are from PyTorch.

:class:`PageModels` is the Python reference of what the page computes: the
same files, :mod:`tlhelpers.onnx_inference`'s preprocessing and numpy.  The
browser tests compare the page's numbers with it.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import io
import itertools
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from tlhelpers import onnx_inference

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# In-page tasks that live.js knows, by the chapter that uses them.
UPLOAD_TASKS = {
    "imagenet": "chapter 1: ImageNet top-5 of the book's backbone",
    "animals-cam": "chapter 4: cats/dogs/pandas head with its class activation map",
    "search": "chapter 6: the most similar training photos",
    "classifier": "chapter 7: the exported cats/dogs/pandas file (static int8)",
}
TEACH_TASK = "learn"  # chapter 4's teaching tool: the backbone's features, a prototype head in the page
NO_SCRIPT = "This control works in the page with JavaScript, which is off here: the stored first view is shown."
_ids = itertools.count(1)


@dataclass
class LiveExplorer:
    """An ipywidget for Jupyter plus stored HTML views for the book.

    Displaying it (the last expression of a cell) shows ``widget`` in Jupyter
    and Colab, and ``html`` in the rendered book.  ``widget`` may be ``None``
    (an explorer that exists only in the page, chapter 7).
    """

    widget: object | None
    html: str

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/plain": "Explorer (interactive in Jupyter and in the book's pages)", "text/html": self.html}
        if self.widget is not None:
            # Written out rather than taken from the widget, so that ipywidgets 7 (Colab) and 8 agree.
            bundle[WIDGET_VIEW] = {"version_major": 2, "version_minor": 0, "model_id": self.widget.model_id}
        return bundle


# --------------------------------------------------------------------------- #
# Pieces of a view
# --------------------------------------------------------------------------- #


def image_uri(image: Image.Image | np.ndarray, size: int | None = 224, quality: int = 85) -> str:
    """A picture as a ``data:image/jpeg`` URI, its longer side at most ``size`` pixels."""
    if isinstance(image, np.ndarray):
        array = image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        image = Image.fromarray(array)
    image = image.convert("RGB")
    if size and max(image.size) > size:
        image = image.copy()
        image.thumbnail((size, size), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def percent(p: float) -> str:
    """A probability as the pages write it, e.g. ``62.1%`` (live.js writes the same)."""
    return f"{100 * p:.1f}%"


def ranked_text(ranked: Sequence[tuple[str, float]]) -> str:
    """``"Egyptian cat 62.1%, tabby 20.3%, …"``: the summary a view is identified by (and a screen reader reads)."""
    return ", ".join(f"{label} {percent(p)}" for label, p in ranked)


def bars(ranked: Sequence[tuple[str, float]], title: str = "") -> str:
    """Probability bars as an HTML list, most likely first."""
    rows = "".join(
        f'<li><span class="tlbook-bar-label">{html.escape(label)}</span>'
        f'<span class="tlbook-bar" style="--p:{p:.4f}"></span>'
        f'<span class="tlbook-bar-value">{percent(p)}</span></li>'
        for label, p in ranked
    )
    heading = f'<p class="tlbook-bars-title">{html.escape(title)}</p>' if title else ""
    return f'{heading}<ol class="tlbook-bars">{rows}</ol>'


def figure(uri: str, caption: str, alt: str = "") -> str:
    """One picture with a caption under it."""
    return (
        f'<figure class="tlbook-photo"><img src="{uri}" alt="{html.escape(alt or caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def prediction_view(
    name: str,
    image: Image.Image,
    ranked: Sequence[tuple[str, float]],
    title: str = "",
    shown: Image.Image | np.ndarray | None = None,
) -> str:
    """A photo (or ``shown``, e.g. its class activation map) beside its ranked classes."""
    summary = ranked_text(ranked)
    return (
        f'<div class="tlbook-result" data-summary="{html.escape(summary)}">'
        f"{figure(image_uri(shown if shown is not None else image), name, alt=f'{name}: {summary}')}"
        f'<div class="tlbook-ranking">{bars(ranked, title)}</div></div>'
    )


def search_view(name: str, image: Image.Image, matches: Sequence[tuple[Image.Image, str]], title: str = "") -> str:
    """A query photo and its most similar photos, each with a caption such as ``0.83 cats``."""
    summary = "; ".join(caption for _, caption in matches)
    items = figure(image_uri(image, 160), f"query: {name}") + "".join(
        figure(image_uri(photo, 160), caption) for photo, caption in matches
    )
    heading = f'<p class="tlbook-bars-title">{html.escape(title)}</p>' if title else ""
    return (
        f'<div class="tlbook-result" data-summary="{html.escape(summary)}">{heading}'
        f'<div class="tlbook-matches">{items}</div></div>'
    )


def text_view(text: str) -> str:
    """Printed text, kept as it was printed."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f'<div class="tlbook-result" data-summary="{html.escape(first)}"><pre>{html.escape(text)}</pre></div>'


# --------------------------------------------------------------------------- #
# Whole explorers
# --------------------------------------------------------------------------- #


def _views(values: Sequence[str], views: Mapping[str, str], selected: str) -> str:
    return "".join(
        f'<div class="tlbook-view" data-value="{html.escape(value)}"{"" if value == selected else " hidden"}>'
        f"{views[value]}</div>"
        for value in values
    )


def _notice() -> str:
    return f'<p class="tlbook-status" role="status" aria-live="polite">{html.escape(NO_SCRIPT)}</p>'


def _upload(uid: str, task: str | None) -> str:
    if task is None:
        return ""
    if task not in UPLOAD_TASKS:
        raise ValueError(f"unknown in-page task {task!r}; known: {', '.join(UPLOAD_TASKS)}")
    return (
        f'<span class="tlbook-upload"><label for="{uid}-file">Your own photo:</label> '
        f'<input type="file" id="{uid}-file" accept="image/*" disabled '
        f'aria-describedby="{uid}-status"></span>'
    )


def menu_explorer(
    views: Mapping[str, str], label: str = "Photo:", upload: str | None = None, widget=None
) -> LiveExplorer:
    """A menu over stored views, plus an optional in-page upload.

    ``views`` maps each menu entry to its HTML (see :func:`prediction_view`,
    :func:`search_view`); the first is shown.  ``upload`` names the in-page
    task that answers a reader's photo (:data:`UPLOAD_TASKS`), ``None`` for
    none.
    """
    if not views:
        raise ValueError("an explorer needs at least one view")
    uid = f"tlbook-live-{next(_ids)}"
    values = list(views)
    options = "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values)
    config = json.dumps({"control": "menu", "upload": upload})
    return LiveExplorer(
        widget,
        (
            f'<div class="tlbook-live" id="{uid}" data-live="{html.escape(config)}">'
            f'<div class="tlbook-controls"><label for="{uid}-menu">{html.escape(label)}</label> '
            f'<select id="{uid}-menu" disabled aria-describedby="{uid}-status">{options}</select>'
            f"{_upload(uid, upload)}</div>"
            f'<div id="{uid}-status">{_notice()}</div>'
            f"{_views(values, views, values[0])}</div>"
        ),
    )


def slider_explorer(views: Mapping[int, str], label: str, value: int, widget=None) -> LiveExplorer:
    """A slider over stored views of consecutive integers, starting at ``value``."""
    keys = sorted(views)
    if keys != list(range(keys[0], keys[-1] + 1)) or value not in views:
        raise ValueError("a slider needs views for consecutive integers, including the starting value")
    uid = f"tlbook-live-{next(_ids)}"
    config = json.dumps({"control": "slider"})
    return LiveExplorer(
        widget,
        (
            f'<div class="tlbook-live" id="{uid}" data-live="{html.escape(config)}">'
            f'<div class="tlbook-controls"><label for="{uid}-slider">{html.escape(label)}</label> '
            f'<input type="range" id="{uid}-slider" min="{keys[0]}" max="{keys[-1]}" step="1" value="{value}" '
            f'disabled aria-describedby="{uid}-status"> <output for="{uid}-slider">{value}</output></div>'
            f'<div id="{uid}-status">{_notice()}</div>'
            f"{_views([str(k) for k in keys], {str(k): v for k, v in views.items()}, str(value))}</div>"
        ),
    )


def teach_explorer(example: str, widget=None) -> LiveExplorer:
    """The page's tool that learns a reader's own classes from a few photos.

    ``book/live/teach.js`` builds the controls: 2 to 5 named classes, photos
    by file chooser, drag and drop or camera, a photo to classify, the
    leave-one-out accuracy, a download of the head.  ``example`` is HTML of
    what the same steps gave when the chapter ran, shown until the reader
    classifies a photo (and without JavaScript).
    """
    uid = f"tlbook-live-{next(_ids)}"
    config = json.dumps({"control": "teach", "upload": TEACH_TASK})
    return LiveExplorer(
        widget,
        (
            f'<div class="tlbook-live tlbook-teach" id="{uid}" data-live="{html.escape(config)}">'
            '<div class="tlbook-classes"></div>'
            '<div class="tlbook-controls">'
            '<button type="button" class="tlbook-add-class" disabled>Add a class</button> '
            f'<label for="{uid}-query">Photo to classify:</label> '
            f'<input type="file" id="{uid}-query" class="tlbook-query" accept="image/*" disabled '
            f'aria-describedby="{uid}-status"> '
            '<button type="button" class="tlbook-download" disabled>Download the head</button> '
            '<button type="button" class="tlbook-forget" disabled>Forget everything</button></div>'
            f'<div id="{uid}-status">{_notice()}</div>'
            '<p class="tlbook-loo" aria-live="polite"></p>'
            f'<div class="tlbook-view" data-value="">{example}</div></div>'
        ),
    )


def views_of(photos: Mapping[str, Image.Image], render: Callable[[str, Image.Image], str]) -> dict[str, str]:
    """``{name: render(name, photo)}`` for every photo of a menu."""
    return {name: render(name, photo) for name, photo in photos.items()}


# --------------------------------------------------------------------------- #
# The page assets
# --------------------------------------------------------------------------- #


OUTPUTS = ("logits", "pooled", "maps")
# Static int8 moves ImageNet top-1 on a quarter of the test photos (measured by build(), in the manifest);
# int8 weights with float32 arithmetic keep the size and stay within rounding of PyTorch.
BACKBONE_MODE = "weights"
TOP_K = 5  # ImageNet classes shown (chapter 1) and photos found (chapter 6)
THUMBNAIL = 64  # pixels, the side of a search result's thumbnail
CALIBRATION_PER_CLASS = 10  # training photos per class: chapter 7's calibration set
CHECK_PER_CLASS = 10  # test photos per class on which int8 is compared with PyTorch
# What each in-page task of live.js downloads (UPLOAD_TASKS; "learn" is chapter 4's few-shot page).
TASK_ASSETS = {
    "imagenet": ("backbone", "imagenet"),
    "animals-cam": ("backbone", "animals"),
    "search": ("backbone", "search"),
    "classifier": ("classifier",),
    "learn": ("backbone",),
}


# --------------------------------------------------------------------------- #
# The backbone with three outputs
# --------------------------------------------------------------------------- #


def page_network(backbone):
    """``image → (ImageNet logits, pooled features, last feature maps)`` of a zoo backbone, as one module.

    A float32 copy on the CPU, read with
    :func:`tlhelpers.features.feature_network`.  The pooled features must be
    the spatial mean of the maps (class activation maps need that), which
    VGG16's are not: it raises ``ValueError`` there.
    """
    import torch
    from torch import nn

    from tlhelpers import features

    model = copy.deepcopy(backbone.model).float().cpu().eval()

    class PageOutputs(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, image):
            out = self.net(image)
            return out["logits"], out["pooled"].flatten(1), out["maps"]

    try:
        network = PageOutputs(features.feature_network(model, ("logits", "pooled", "maps"), backbone.head_name))
    except ValueError as error:
        raise ValueError(f"{backbone.label} has no global average pooling right before its head") from error
    with torch.no_grad():
        logits, pooled, maps = network(torch.zeros(1, 3, 224, 224))
    if maps.ndim != 4 or pooled.shape[1] != maps.shape[1] or not torch.allclose(pooled, maps.mean((2, 3)), atol=1e-4):
        raise ValueError(f"{backbone.label}: the head does not receive the spatial mean of the last feature maps")
    return network.eval()


# --------------------------------------------------------------------------- #
# Writing assets
# --------------------------------------------------------------------------- #


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _float32(array) -> str:
    return _b64(np.ascontiguousarray(array, dtype="<f4").tobytes())


def write_asset(folder: Path, name: str, payload: dict) -> Path:
    """``<folder>/<name>.js``: a classic script that registers ``payload`` as ``tlbookAssets[name]``."""
    target = folder / f"{name}.js"
    text = (
        "// Built by tools/build_page_assets.py (tlhelpers.pages); do not edit.\n"
        f"(globalThis.tlbookAssets = globalThis.tlbookAssets || {{}})[{json.dumps(name)}] = "
        f"{json.dumps(payload, sort_keys=True, separators=(',', ':'))};\n"
    )
    temporary = target.with_suffix(".js.tmp")
    temporary.write_text(text)
    os.replace(temporary, target)
    return target


def _thumbnail(path) -> str:
    from tlhelpers import data

    image = data.load_rgb(path)
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75, optimize=True)
    return "data:image/jpeg;base64," + _b64(buffer.getvalue())


def quantize_rows(unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows as int8 with one float32 scale each: ``row ≈ scale × q``."""
    unit = np.asarray(unit, dtype=np.float32)
    scale = (np.abs(unit).max(1) / 127).astype(np.float32)
    scale[scale == 0] = 1
    q = np.clip(np.rint(unit / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def build(out: str | os.PathLike, root: str | os.PathLike | None = None, runtime_bytes: int = 0, log=print) -> dict:
    """Build every asset of the pages into ``out`` and return the manifest (``make book``).

    Uses the photos that :func:`tlhelpers.data.locate` finds, the split of
    every chapter (stratified, seed 0) and the feature cache.  ``runtime_bytes``
    is the size of onnxruntime-web's scripts, which every page shares (the
    pages state it).  Deterministic:
    the same photos, package and libraries give the same files.
    """
    from tlhelpers import data, export, features, heads, neighbours, zoo

    out = Path(out)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "raw").mkdir(parents=True)
    scripts = staging / "static" / "page-assets"
    scripts.mkdir(parents=True)
    root = data.locate(root)
    animals = data.scan(root)
    splits = data.split(animals, val=0.15, test=0.15, seed=0)
    backbone = zoo.load("resnet18", fallback="efficientnet_lite0")
    log(backbone.source)
    feats = features.extract(backbone, animals, progress=False)
    train_fs = feats.select(splits["train"])
    # Chapter 4's "classic" head (and chapter 7's): SGD on the cached features, seed 0.
    head, _ = heads.fit_linear(train_fs, epochs=25, lr=1e-3, optimizer="sgd", momentum=0.9, batch_size=32, seed=0)
    prep = heads.preprocessing(backbone.transforms)
    calibration = data.per_class(splits["train"], CALIBRATION_PER_CLASS, seed=0).files
    check = data.per_class(splits["test"], CHECK_PER_CLASS, seed=0)
    from tlhelpers import __version__

    # What a classifier file needs to name its backbone (the page writes one for the reader's own classes).
    identity = {
        "name": backbone.name,
        "requested": backbone.requested,
        "label": backbone.label,
        "source": backbone.source,
        "tlhelpers_version": __version__,
        "sha256": features.model_fingerprint(backbone.model, skip=backbone.head_name),
    }
    manifest = {
        "backbone": identity,
        "preprocessing": prep,
        "assets": {},
        "checks": {},
        "runtime": {"bytes": int(runtime_bytes)},
    }

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        log("exporting the backbone (three outputs) and quantizing it to static int8")
        values = {
            "tlhelpers.format": onnx_inference.FORMAT,
            "tlhelpers.classes": json.dumps(backbone.categories),
            "tlhelpers.preprocessing": json.dumps(prep),
            "tlhelpers.backbone": backbone.name,
            "tlhelpers.source": backbone.source,
            "tlhelpers.variant": "fp32",
        }
        fp32 = export.write_onnx(
            page_network(backbone), tmp / "backbone-fp32.onnx", values, prep["crop_size"], output_names=OUTPUTS
        )
        export.quantize(fp32, staging / "raw" / "backbone.onnx", mode=BACKBONE_MODE, calibration_photos=calibration)
        log("exporting chapter 7's classifier and quantizing it to static int8")
        clf = heads.Classifier(backbone, head.eval(), list(animals.classes))
        clf_fp32 = export.to_onnx(clf, tmp / "classifier-fp32.onnx")
        export.quantize(clf_fp32, staging / "raw" / "classifier.onnx", mode="static", calibration_photos=calibration)

    center = train_fs.features.float().mean(0)
    unit = neighbours.normalise(train_fs.features, center).numpy()
    q, scale = quantize_rows(unit)
    np.save(staging / "raw" / "search-q.npy", q)
    np.save(staging / "raw" / "search-scale.npy", scale)
    search_meta = {
        "center": center.tolist(),
        "labels": train_fs.labels.tolist(),
        "classes": list(animals.classes),
        "names": [str(Path(p).relative_to(root)) for p in train_fs.paths],
    }
    (staging / "raw" / "search.json").write_text(json.dumps(search_meta))
    animals_meta = {
        "classes": list(animals.classes),
        "weight": head.weight.detach().tolist(),
        "bias": head.bias.detach().tolist(),
    }
    (staging / "raw" / "animals.json").write_text(json.dumps(animals_meta))
    (staging / "raw" / "imagenet.json").write_text(json.dumps({"categories": backbone.categories}))

    log(f"thumbnails of the {len(train_fs)} training photos")
    thumbnails = [_thumbnail(p) for p in train_fs.paths]
    sizes = {}
    for name, payload in (
        (
            "backbone",
            {
                "model": _b64((staging / "raw" / "backbone.onnx").read_bytes()),
                "outputs": list(OUTPUTS),
                "preprocessing": prep,
            },
        ),
        (
            "classifier",
            {
                "model": _b64((staging / "raw" / "classifier.onnx").read_bytes()),
                "classes": list(animals.classes),
                "preprocessing": prep,
            },
        ),
        ("imagenet", {"categories": backbone.categories}),
        (
            "animals",
            {
                "classes": list(animals.classes),
                "weight": _float32(head.weight.detach().numpy()),
                "bias": _float32(head.bias.detach().numpy()),
                "features": int(head.in_features),
            },
        ),
        (
            "search",
            {
                "classes": list(animals.classes),
                "labels": train_fs.labels.tolist(),
                "center": _float32(center.numpy()),
                "q": _b64(q.tobytes()),
                "scale": _float32(scale),
                "features": int(q.shape[1]),
                "thumbnails": thumbnails,
            },
        ),
    ):
        path = write_asset(scripts, name, payload)
        sizes[name] = path.stat().st_size
        manifest["assets"][name] = {"bytes": sizes[name], "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    log(f"comparing the int8 files with PyTorch on {len(check)} test photos")
    models = PageModels(staging)
    manifest["checks"] = compare_with_pytorch(models, backbone, clf, check.files)
    manifest["tasks"] = {
        task: {"assets": list(names), "bytes": sum(sizes[n] for n in names)} for task, names in TASK_ASSETS.items()
    }
    (staging / "raw" / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    (scripts / "manifest.js").write_text(
        "// Built by tools/build_page_assets.py (tlhelpers.pages); do not edit.\n"
        f"globalThis.tlbookManifest = {json.dumps(manifest, sort_keys=True)};\n"
    )
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return manifest


def compare_with_pytorch(models: PageModels, backbone, clf, photos) -> dict:
    """How far the in-page files are from PyTorch in float32 on ``photos``: largest probability gap, same top class."""
    import torch

    from tlhelpers import data

    pictures = [data.load_rgb(p) for p in photos]
    batch = torch.stack([backbone.transforms(p) for p in pictures])
    with torch.inference_mode():
        imagenet_torch = backbone.model.eval()(batch).softmax(1).numpy()
    animals_torch = np.array(
        [[p for _, p in sorted(r, key=lambda x: clf.classes.index(x[0]))] for r in clf.rank(pictures)]
    )
    imagenet_page = np.stack([onnx_inference.softmax(models.outputs(p)["logits"])[0] for p in pictures])
    animals_page = np.stack([models.animals(p)["probabilities"] for p in pictures])
    classifier_page = np.array(
        [[p for _, p in sorted(r, key=lambda x: clf.classes.index(x[0]))] for r in models.classify(pictures)]
    )
    result = {}
    for name, page, torch_probs in (
        ("backbone (ImageNet)", imagenet_page, imagenet_torch),
        ("backbone + chapter 4's head", animals_page, animals_torch),
        ("classifier (chapter 7)", classifier_page, animals_torch),
    ):
        result[name] = {
            "photos": len(pictures),
            "largest probability gap": float(np.abs(page - torch_probs).max()),
            "same top class": float((page.argmax(1) == torch_probs.argmax(1)).mean()),
        }
    return result


# --------------------------------------------------------------------------- #
# The Python reference of the page's computations
# --------------------------------------------------------------------------- #


class PageModels:
    """What the page computes for a photo, computed in Python from the built files (tests and benchmarks).

    ``folder`` is :func:`build`'s output.  Every method takes a path or a PIL
    image and prepares it with :mod:`tlhelpers.onnx_inference` (EXIF
    orientation, transparency on white, resize, crop, normalise).
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        raw = self.folder / "raw"
        self.backbone = onnx_inference.OnnxClassifier(raw / "backbone.onnx", threads=1)
        self.classifier = onnx_inference.OnnxClassifier(raw / "classifier.onnx", threads=1)
        self.categories = json.loads((raw / "imagenet.json").read_text())["categories"]
        animals = json.loads((raw / "animals.json").read_text())
        self.classes = animals["classes"]
        self.weight = np.asarray(animals["weight"], dtype=np.float32)
        self.bias = np.asarray(animals["bias"], dtype=np.float32)
        search = json.loads((raw / "search.json").read_text())
        self.center = np.asarray(search["center"], dtype=np.float32)
        self.labels = search["labels"]
        self.names = search["names"]
        self.index = np.load(raw / "search-q.npy").astype(np.float32) * np.load(raw / "search-scale.npy")[:, None]

    def features(self, pictures) -> np.ndarray:
        """The pooled features of photos, one row each: what the teaching tool on chapter 4's page extracts."""
        return np.concatenate([self.outputs(image)["pooled"] for image in pictures])

    def outputs(self, image) -> dict[str, np.ndarray]:
        """The backbone's three outputs for one photo (batch of one)."""
        batch = self.backbone.batch([image])
        values = self.backbone.session.run(list(OUTPUTS), {self.backbone.input_name: batch})
        return dict(zip(OUTPUTS, values))

    def imagenet(self, image, k: int = TOP_K) -> list[tuple[str, float]]:
        """Chapter 1's upload: the ``k`` most likely ImageNet classes."""
        return self.backbone.rank([image], k=k)[0]

    def animals(self, image) -> dict:
        """Chapter 4's upload: class probabilities and the class activation map of the top class."""
        out = self.outputs(image)
        logits = out["pooled"] @ self.weight.T + self.bias
        probabilities = onnx_inference.softmax(logits)[0]
        top = int(probabilities.argmax())
        cam = np.maximum(np.tensordot(self.weight[top], out["maps"][0], axes=1), 0)
        return {"probabilities": probabilities, "class": self.classes[top], "cam": cam}

    def search(self, image, k: int = TOP_K) -> list[tuple[int, float]]:
        """Chapter 6's upload: ``(training photo index, cosine similarity)`` of the ``k`` most similar."""
        query = self.outputs(image)["pooled"][0] - self.center
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        sims = self.index @ query
        order = np.argsort(-sims, kind="stable")[:k]
        return [(int(i), float(sims[i])) for i in order]

    def classify(self, pictures) -> list[list[tuple[str, float]]]:
        """Chapter 7's upload: the exported file's ranked classes (``onnx_inference`` itself)."""
        return self.classifier.rank(pictures)


def page_bytes(manifest: dict, task: str) -> int:
    """Bytes a page downloads for ``task``, besides the shared runtime (the manifest's count)."""
    return manifest["tasks"][task]["bytes"]


def megabytes(n: int) -> str:
    """``"6.6 MB"``: sizes as the pages state them."""
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{math.ceil(n / 1e3)} kB"
