"""Run an exported classifier with onnxruntime, numpy and PIL only — no PyTorch (chapter 7).

A file written by :func:`tlhelpers.export.to_onnx` (or quantized by
:func:`tlhelpers.export.quantize`) carries what an app needs besides the
network, in the ONNX model's metadata (``metadata_props``, all JSON or text):

``tlhelpers.classes``        the class names, in the order of the outputs;
``tlhelpers.preprocessing``  ``resize_size``, ``crop_size``, ``mean``, ``std``,
                             ``interpolation`` (torchvision's ``ImageClassification``);
``tlhelpers.backbone``, ``tlhelpers.source``, ``tlhelpers.variant``
                             what the network is, and ``fp32``, ``dynamic int8``
                             or ``static int8``.

:class:`OnnxClassifier` is the reference implementation of that contract,
written so that it can be read and ported: resize the shorter side with PIL,
crop the centre, scale to [0, 1], normalise, transpose to ``N × 3 × H × W``,
run the network, softmax.  This module never imports torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from tlhelpers import images, optional

FORMAT = "tlhelpers.onnx-classifier"
INTERPOLATION = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


class OnnxFileError(RuntimeError):
    """An ONNX file is missing, unreadable, or lacks the metadata of an exported tlhelpers classifier."""


def read_rgb(item) -> Image.Image:
    """A path or PIL image as an upright RGB picture, decoded as in PyTorch's path.

    Paths go through :func:`tlhelpers.images.load_rgb` (EXIF orientation,
    transparency on white, 16-bit scaled, :class:`~tlhelpers.images.UnreadableImage`
    with a reason); a PIL image is converted with
    :func:`tlhelpers.images.to_rgb`.
    """
    if isinstance(item, Image.Image):
        return images.to_rgb(item)
    return images.load_rgb(item)


def _size(value) -> int:
    return int(value[0]) if isinstance(value, (list, tuple)) else int(value)


def preprocess(image: Image.Image, preprocessing: dict) -> np.ndarray:
    """One RGB picture as the network's float32 ``3 × H × W`` input, as torchvision prepares it.

    Resize so that the shorter side is ``resize_size`` (the longer one is
    scaled and rounded down, as torchvision does), cut the centre
    ``crop_size`` square (padding with zeros if the picture is smaller),
    scale to [0, 1] and normalise with ``mean`` and ``std``.
    """
    short_side, crop = _size(preprocessing["resize_size"]), _size(preprocessing["crop_size"])
    width, height = image.size
    if width <= height:
        size = (short_side, int(short_side * height / width))
    else:
        size = (int(short_side * width / height), short_side)
    if size != image.size:
        image = image.resize(size, INTERPOLATION[preprocessing.get("interpolation", "bilinear")])
    pixels = np.asarray(image, dtype=np.float32) / 255.0  # H × W × 3
    pad_y, pad_x = max(crop - pixels.shape[0], 0), max(crop - pixels.shape[1], 0)
    if pad_y or pad_x:
        pixels = np.pad(pixels, ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)))
    top = int(round((pixels.shape[0] - crop) / 2.0))
    left = int(round((pixels.shape[1] - crop) / 2.0))
    pixels = pixels[top : top + crop, left : left + crop]
    mean = np.asarray(preprocessing["mean"], dtype=np.float32)
    std = np.asarray(preprocessing["std"], dtype=np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1).copy()


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a ``N × classes`` array, computed stably in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def read_metadata(path: str | os.PathLike) -> dict:
    """The tlhelpers metadata of an exported classifier, decoded (``classes`` a list, ``preprocessing`` a dict)."""
    return _metadata(_session(Path(path), threads=1), Path(path))


def _session(path: Path, threads: int | None):
    ort = optional("onnxruntime")

    if not path.is_file():
        raise OnnxFileError(f"ONNX file not found: {path}")
    path.open("rb").close()  # a PermissionError says what it is, not "corrupt"
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's Fail, InvalidProtobuf, InvalidGraph … derive from Exception only
        raise OnnxFileError(
            f"{path} cannot be read as an ONNX model ({type(error).__name__}); "
            "it is truncated, corrupt, or not an ONNX file."
        ) from error


def _metadata(session, path: Path) -> dict:
    props = session.get_modelmeta().custom_metadata_map
    if props.get("tlhelpers.format") != FORMAT:
        raise OnnxFileError(
            f"{path} is an ONNX model without the metadata of a tlhelpers classifier; "
            "export one with python -m tlhelpers export."
        )
    try:
        return {
            "classes": list(json.loads(props["tlhelpers.classes"])),
            "preprocessing": dict(json.loads(props["tlhelpers.preprocessing"])),
            "backbone": props.get("tlhelpers.backbone", "?"),
            "source": props.get("tlhelpers.source", "?"),
            "variant": props.get("tlhelpers.variant", "?"),
        }
    except (KeyError, ValueError, TypeError) as error:
        raise OnnxFileError(f"{path} has incomplete tlhelpers metadata ({error})") from error


class OnnxClassifier:
    """An exported classifier run by onnxruntime on the CPU: the reference predictor.

    ``OnnxClassifier(path).rank(images)`` gives what
    :meth:`tlhelpers.heads.Classifier.rank` gives for the PyTorch model:
    ``[(class, probability), …]`` per image, most likely first.  ``threads``
    limits onnxruntime's threads (default: its own choice).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        self.session = _session(self.path, threads)
        meta = _metadata(self.session, self.path)
        self.classes: list[str] = meta["classes"]
        self.preprocessing: dict = meta["preprocessing"]
        self.backbone: str = meta["backbone"]
        self.source: str = meta["source"]
        self.variant: str = meta["variant"]
        self.input_name = self.session.get_inputs()[0].name

    def __repr__(self) -> str:
        return f"OnnxClassifier({self.path.name}, {self.variant}, {len(self.classes)} classes)"

    def batch(self, pictures) -> np.ndarray:
        """Paths or PIL pictures as one float32 ``N × 3 × H × W`` input array."""
        return np.stack([preprocess(read_rgb(item), self.preprocessing) for item in pictures])

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """The network's class scores for a prepared batch (``N × classes``)."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def rank(self, pictures, k: int | None = None, batch_size: int = 32) -> list[list[tuple[str, float]]]:
        """``[(class, probability), …]`` per image, most likely first: all classes, or the top ``k``."""
        if isinstance(pictures, (str, os.PathLike, Image.Image)):
            pictures = [pictures]
        pictures = list(pictures)
        k = len(self.classes) if k is None else min(k, len(self.classes))
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        results = []
        for start in range(0, len(pictures), batch_size):
            probabilities = softmax(self.logits(self.batch(pictures[start : start + batch_size])))
            for row in probabilities:
                order = np.argsort(-row, kind="stable")[:k]
                results.append([(self.classes[i], float(row[i])) for i in order])
        return results
