"""The book's pages prepare a photo exactly as the Python reference does, bit for bit.

``book/live/preprocess.js`` is what the pages run in the browser before
onnxruntime-web: a port of :func:`tlhelpers.onnx_inference.read_rgb` and
:func:`tlhelpers.onnx_inference.preprocess`.  One Node process runs it on
random pictures of awkward sizes; every byte of its resizing must equal
Pillow's ``Image.resize`` (bilinear, bicubic, nearest; up, down, one axis
only), its compositing of transparency must equal ``read_rgb``'s, and every
float32 of its network input must equal ``preprocess``'s.  The same photo
then gives the same input, hence the same prediction, on the page and in
Python.
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlhelpers.onnx_inference import INTERPOLATION, preprocess, read_rgb

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the page's JavaScript cannot run")

SCRIPT = Path(__file__).resolve().parents[1] / "book" / "live" / "preprocess.js"

PREPS = [
    {
        "resize_size": [256],
        "crop_size": [224],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bilinear",
    },
    {
        "resize_size": [256],
        "crop_size": [224],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bilinear",
    },
    # Other filters, plain numbers, and a crop larger than the resized picture (zero padding).
    {
        "resize_size": 232,
        "crop_size": 224,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bicubic",
    },
    {"resize_size": 201, "crop_size": 224, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.3, 0.4], "interpolation": "nearest"},
]

# (width, height): landscape, portrait, smaller than the crop, large, exactly the sizes
# that need no resize, odd centring offsets (banker's rounding), one-pixel edges.
TENSOR_SIZES = [
    (640, 480),
    (300, 451),
    (100, 150),
    (100, 151),
    (1000, 700),
    (224, 224),
    (256, 256),
    (256, 300),
    (257, 256),
    (259, 256),
    (3, 500),
    (500, 3),
    (1, 1),
]
RESIZE_SIZES = [(37, 23), (640, 480), (100, 150), (3, 500), (224, 224), (1, 1)]

RUNNER = """
const fs = require("fs");
const path = require("path");
const pre = require(%s);
const dir = process.argv[2];
const jobs = JSON.parse(fs.readFileSync(path.join(dir, "jobs.json"), "utf8"));
const read = (name) => new Uint8ClampedArray(fs.readFileSync(path.join(dir, name)));
const write = (name, view) => fs.writeFileSync(path.join(dir, name),
  Buffer.from(view.buffer, view.byteOffset, view.byteLength));
jobs.forEach((job, i) => {
  let rgba = read(job.input);
  if (job.kind === "resize") {
    write(`out${i}.bin`, pre.resize(rgba, job.width, job.height, job.out[0], job.out[1], job.filter));
  } else if (job.kind === "composite") {
    write(`out${i}.bin`, pre.compositeOnWhite(rgba));
  } else {
    if (job.composite) rgba = pre.compositeOnWhite(rgba);
    write(`out${i}.bin`, pre.toTensor(rgba, job.width, job.height, job.prep).data);
    write(`view${i}.bin`, pre.cropView(rgba, job.width, job.height, job.prep).data);
  }
});
"""


def _rgba(image: Image.Image) -> bytes:
    return np.asarray(image.convert("RGBA")).tobytes()


def _resize_targets(width: int, height: int) -> list[tuple[int, int]]:
    """Enlarging, shrinking, one axis only, and both at once in opposite directions."""
    targets = [
        (2 * width + 1, 3 * height // 2 + 1),
        (max(width // 3, 1), max(height // 2, 1)),
        (width, height // 2 + 1),
        (width // 2 + 1, height),
        (height, width),
        (3 * width + 2, max(height // 3, 1)),
    ]
    return [t for t in dict.fromkeys(targets) if t != (width, height)]


def _cases(tmp_path: Path) -> tuple[list[dict], list]:
    """Jobs for the Node runner, and what Python says each must produce."""
    rng = np.random.default_rng(20240607)
    jobs, expected = [], []

    def picture(width, height, name):
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
        (tmp_path / name).write_bytes(_rgba(image))
        return image

    for width, height in RESIZE_SIZES:
        name = f"resize_{width}x{height}.bin"
        image = picture(width, height, name)
        for out in _resize_targets(width, height):
            for filter_name in ("bilinear", "bicubic", "nearest"):
                jobs.append(
                    {
                        "kind": "resize",
                        "input": name,
                        "width": width,
                        "height": height,
                        "out": out,
                        "filter": filter_name,
                    }
                )
                expected.append(np.asarray(image.resize(out, INTERPOLATION[filter_name])))

    for width, height in TENSOR_SIZES:
        name = f"tensor_{width}x{height}.bin"
        image = picture(width, height, name)
        # The one-pixel edges resize to some 11 million pixels: two dicts suffice for them.
        for prep in PREPS if min(width, height) > 3 else PREPS[::3]:
            jobs.append({"kind": "tensor", "input": name, "width": width, "height": height, "prep": prep})
            expected.append(preprocess(image, prep))

    # Transparency: every alpha value, fully transparent and opaque pixels included.
    alpha = rng.integers(0, 256, (45, 67), dtype=np.uint8)
    alpha[0, :] = 0
    alpha[1, :] = 255
    alpha.flat[:256] = np.arange(256)
    rgba = Image.fromarray(np.dstack([rng.integers(0, 256, (45, 67, 3), dtype=np.uint8), alpha]), "RGBA")
    (tmp_path / "alpha.bin").write_bytes(_rgba(rgba))
    jobs.append({"kind": "composite", "input": "alpha.bin"})
    expected.append(np.asarray(read_rgb(rgba)))
    jobs.append(
        {"kind": "tensor", "input": "alpha.bin", "width": 67, "height": 45, "prep": PREPS[1], "composite": True}
    )
    expected.append(preprocess(read_rgb(rgba), PREPS[1]))
    return jobs, expected


def _crop_view(job: dict, image: np.ndarray) -> np.ndarray:
    """The uint8 crop the network sees, recovered from preprocess with mean 0 and std 1."""
    plain = dict(job["prep"], mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    scaled = preprocess(Image.fromarray(image[..., :3], "RGB"), plain).transpose(1, 2, 0)
    return np.rint(scaled * 255.0).astype(np.uint8)


@pytest.mark.slow
def test_page_preprocessing_is_the_python_reference_bit_for_bit(tmp_path):
    jobs, expected = _cases(tmp_path)
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    (tmp_path / "run.js").write_text(RUNNER % json.dumps(str(SCRIPT)))
    subprocess.run([NODE, str(tmp_path / "run.js"), str(tmp_path)], check=True, timeout=120)

    for i, (job, want) in enumerate(zip(jobs, expected)):
        raw = (tmp_path / f"out{i}.bin").read_bytes()
        if job["kind"] == "tensor":
            got = np.frombuffer(raw, dtype=np.float32).reshape(want.shape)
            assert got.dtype == want.dtype == np.float32
            assert np.array_equal(got, want), f"toTensor differs from preprocess: {job}"
            source = np.frombuffer((tmp_path / job["input"]).read_bytes(), np.uint8)
            source = source.reshape(job["height"], job["width"], 4)
            if job.get("composite"):
                source = np.asarray(read_rgb(Image.fromarray(source, "RGBA")).convert("RGBA"))
            view = np.frombuffer((tmp_path / f"view{i}.bin").read_bytes(), np.uint8).reshape(*want.shape[1:], 4)
            assert np.array_equal(view[..., :3], _crop_view(job, source)), f"cropView differs: {job}"
            assert (view[..., 3] == 255).all()
        else:
            got = np.frombuffer(raw, dtype=np.uint8).reshape(*want.shape[:2], 4)
            assert np.array_equal(got[..., :3], want), f"{job['kind']} differs from Pillow: {job}"
            assert (got[..., 3] == 255).all()
