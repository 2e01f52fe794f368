"""A trained classifier as one ONNX file, and smaller int8 versions of it (chapter 7).

:func:`to_onnx` exports a :class:`tlhelpers.heads.Classifier` — backbone
and head as one module in eval mode — with PyTorch's current exporter
(``torch.onnx.export(..., dynamo=True)``), checks the result with
``onnx.checker`` and writes the class names and preprocessing into the file's
metadata (see :mod:`tlhelpers.onnx_inference`, which runs it without PyTorch).
:func:`quantize` stores the weights as 8-bit integers with
``onnxruntime.quantization``: *dynamic* (activations quantized on the fly,
no data needed) or *static* (activation ranges measured beforehand on
calibration photos, see :class:`PhotoCalibration`).

Every file is written to a temporary file in the target folder and renamed,
so an interrupted export leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from tlhelpers import images, onnx_inference, optional
from tlhelpers.heads import Classifier, preprocessing

INPUT, OUTPUT = "image", "logits"
MODES = ("dynamic", "static", "weights")


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed to ``path`` when the block succeeds, removed when not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def set_metadata(model, values: dict[str, str]) -> None:
    """Write ``values`` into an ONNX model's ``metadata_props``, replacing those keys."""
    kept = [prop for prop in model.metadata_props if prop.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def metadata(clf: Classifier, variant: str = "fp32") -> dict[str, str]:
    """What :mod:`tlhelpers.onnx_inference` needs to run ``clf``, as ONNX metadata."""
    return {
        "tlhelpers.format": onnx_inference.FORMAT,
        "tlhelpers.classes": json.dumps(list(clf.classes)),
        "tlhelpers.preprocessing": json.dumps(preprocessing(clf.backbone.transforms)),
        "tlhelpers.backbone": clf.backbone.name,
        "tlhelpers.source": clf.backbone.source,
        "tlhelpers.variant": variant,
    }


def to_onnx(clf: Classifier, path: str | os.PathLike, opset: int | None = None) -> Path:
    """Export ``clf`` (backbone + head, eval mode, float32, CPU) to ONNX at ``path`` and check it.

    The graph takes a float32 ``N × 3 × H × W`` batch named ``image``
    (normalised as the metadata says; ``N`` may be any size) and returns
    ``logits`` (``N × classes``).  Raises ``onnx.checker.ValidationError``
    when the exported model is not valid ONNX.
    """
    crop = preprocessing(clf.backbone.transforms)["crop_size"]
    return write_onnx(clf.model(), path, metadata(clf), crop, opset=opset)


def write_onnx(
    model: torch.nn.Module,
    path: str | os.PathLike,
    values: dict[str, str],
    crop_size,
    output_names: tuple[str, ...] = (OUTPUT,),
    opset: int | None = None,
) -> Path:
    """Export ``model`` (float32, CPU, eval mode) to ONNX at ``path``, ``values`` as metadata.

    The one export path of the package: :func:`to_onnx` uses it for a
    classifier, :mod:`tlhelpers.pages` for the book's in-page backbone
    (three outputs).  The input is ``image``, ``N × 3 × crop × crop`` with a free ``N``.
    """
    onnx = optional("onnx")

    path = Path(path)
    model = model.float().cpu().eval()
    example = torch.zeros(1, 3, crop_size[0], crop_size[-1])
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=opset,
            verbose=False,
            input_names=[INPUT],
            output_names=list(output_names),
            dynamic_shapes=({0: batch},),
        )
    proto = program.model_proto
    set_metadata(proto, values)
    onnx.checker.check_model(proto, full_check=True)
    with _atomic_target(path) as temporary:
        onnx.save(proto, str(temporary))
    return path


class CalibrationPhotoError(ValueError):
    """A calibration photo cannot be read (its message names it)."""


class PhotoCalibration:
    """Calibration batches for static int8: photos prepared as the metadata says.

    An ``onnxruntime.quantization.CalibrationDataReader``: ``get_next()``
    gives ``{"image": batch}`` for ``batch_size`` photos at a time, then
    ``None``.  Static quantization measures the range of every activation on
    these; photos like those the model will see (training photos, never
    test photos) give the best ranges.
    """

    def __init__(self, model_path: str | os.PathLike, photos, batch_size: int = 8):
        self.preprocessing = onnx_inference.read_metadata(model_path)["preprocessing"]
        self.photos = list(photos)
        if not self.photos:
            raise ValueError("static quantization needs at least one calibration photo")
        self.batch_size = batch_size
        self.rewind()

    def rewind(self) -> None:
        self._start = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._start >= len(self.photos):
            return None
        chunk = self.photos[self._start : self._start + self.batch_size]
        self._start += self.batch_size
        return {INPUT: np.stack([self._prepared(photo) for photo in chunk])}

    def _prepared(self, photo) -> np.ndarray:
        try:
            picture = onnx_inference.read_rgb(photo)
        except images.UnreadableImage as error:  # the shared decoder names the reason
            raise CalibrationPhotoError(f"calibration photo {photo} cannot be read: {error.reason}") from error
        return onnx_inference.preprocess(picture, self.preprocessing)


def quantize(source: str | os.PathLike, path: str | os.PathLike, mode: str = "static", calibration_photos=None) -> Path:
    """An int8 copy of the exported model ``source`` at ``path``, its metadata kept.

    ``mode="dynamic"``: weights stored as 8-bit integers, activations
    quantized at run time (no photos needed).  ``mode="static"``: weights per channel (7 bits
    of the 8, so that every CPU computes the same) and activations with ranges measured on
    ``calibration_photos`` (paths or PIL images), in ONNX's QDQ format.  ``mode="weights"``: only the weights are
    stored as 8-bit integers (per output channel, see :func:`int8_weights`);
    the arithmetic stays float32, so the answers stay within rounding of the
    float32 file — the book's pages use it where static int8 moves them too far.
    All first run onnxruntime's ``quant_pre_process`` (shape inference and
    graph clean-up, batch normalisation folded into the convolutions).
    """
    onnx = optional("onnx")
    from onnxruntime import quantization as q

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, not {mode!r}")
    source, path = Path(source), Path(path)
    info = onnx_inference.read_metadata(source)  # fails clearly for a file that is not an exported classifier
    if mode == "static":
        reader = PhotoCalibration(source, calibration_photos if calibration_photos is not None else [])
    with tempfile.TemporaryDirectory() as folder:
        prepared, quantized = Path(folder) / "prepared.onnx", Path(folder) / "int8.onnx"
        q.quant_pre_process(str(source), str(prepared))
        if mode == "weights":
            model = int8_weights(onnx.load(str(prepared)))
            onnx.save(model, str(quantized))
        elif mode == "dynamic":
            # uint8 weights: onnxruntime's ConvInteger kernel runs several times faster with them
            # on x86 CPUs than with int8 weights (measured on EfficientNet-Lite0).
            q.quantize_dynamic(str(prepared), str(quantized), weight_type=q.QuantType.QUInt8)
        else:
            # reduce_range: weights in 7 bits.  x86 CPUs without VNNI add pairs of uint8 × int8 products
            # in 16 bits, which saturate with 8-bit weights; with 7 bits no sum can, so every CPU and
            # onnxruntime-web (the book's pages) compute the same integers, and the answers agree.
            q.quantize_static(
                str(prepared),
                str(quantized),
                reader,
                quant_format=q.QuantFormat.QDQ,
                per_channel=True,
                reduce_range=True,
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
            )
        model = onnx.load(str(quantized))
    values = {
        key: json.dumps(info[key]) if key in ("classes", "preprocessing") else info[key]
        for key in ("classes", "preprocessing", "backbone", "source")
    }
    set_metadata(
        model,
        {
            "tlhelpers.format": onnx_inference.FORMAT,
            **{f"tlhelpers.{key}": value for key, value in values.items()},
            "tlhelpers.variant": "int8 weights" if mode == "weights" else f"{mode} int8",
        },
    )
    onnx.checker.check_model(model)
    with _atomic_target(path) as temporary:
        onnx.save(model, str(temporary))
    return path


def int8_weights(model):
    """An ONNX ``ModelProto`` with its Conv/Gemm/MatMul weights stored as int8, in place.

    Each weight becomes ``DequantizeLinear(q, scale, axis=output channel)``:
    symmetric, one float32 scale per output channel, ``q`` in [-127, 127].
    Activations are not quantized, so the file is about four times smaller and
    computes in float32 what the float32 file computes, with weights rounded
    to 8 bits.
    """
    from onnx import helper, numpy_helper

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    axes: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in initializers:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axes[node.input[1]] = 0 if node.op_type == "Conv" or (node.op_type == "Gemm" and trans_b) else 1
    dequantize = []
    for name, axis in axes.items():
        weight = numpy_helper.to_array(initializers[name])
        if weight.dtype != np.float32 or weight.ndim < 2:
            continue
        others = tuple(d for d in range(weight.ndim) if d != axis)
        scale = (np.abs(weight).max(axis=others) / 127).astype(np.float32)
        scale[scale == 0] = 1
        shape = [1] * weight.ndim
        shape[axis] = -1
        q = np.clip(np.rint(weight / scale.reshape(shape)), -127, 127).astype(np.int8)
        model.graph.initializer.remove(initializers[name])
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(q, f"{name}_int8"),
                numpy_helper.from_array(scale, f"{name}_scale"),
                numpy_helper.from_array(np.zeros_like(scale, np.int8), f"{name}_zero"),
            ]
        )
        dequantize.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}_int8", f"{name}_scale", f"{name}_zero"],
                [name],
                name=f"{name}_dequantize",
                axis=axis,
            )
        )
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(dequantize + nodes)
    return model


def is_exported_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an ONNX file written by :func:`to_onnx` or :func:`quantize`."""
    try:
        onnx_inference.read_metadata(path)
    except onnx_inference.OnnxFileError:
        return False
    return True
