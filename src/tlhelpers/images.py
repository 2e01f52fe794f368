"""Decoding one image file into an upright RGB picture, without torch (chapters 1, 4, 6 and 7).

The one decoder of the package: :mod:`tlhelpers.data` reads the photos of a
folder with it, and :mod:`tlhelpers.onnx_inference`, which must run where
torch is not installed, reads photos with it too.  A file that cannot be
decoded raises :class:`UnreadableImage` with a short reason; an unreadable
EXIF block only warns (:class:`BrokenExifWarning`).
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class UnreadableImage(Exception):
    """An image file that cannot be decoded; ``str()`` names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(path, reason)
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer or float greyscale scaled (not clipped) to 8-bit ``L``."""
    values = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16"):
        full_scale = 65535.0
    else:
        # Modes "I" and "F" do not say their range: guess it from the values.
        peak = float(values.max(initial=0.0))
        if image.mode == "F" and peak <= 1.0:
            full_scale = 1.0
        elif peak <= 255:
            full_scale = 255.0
        elif peak <= 65535:
            full_scale = 65535.0
        else:
            full_scale = peak
    scaled = np.rint(np.clip(values, 0, full_scale) * (255.0 / full_scale))
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """An opened picture of any mode as RGB, as :func:`load_rgb` gives it."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _high_bit_depth_to_l(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


# What Pillow raises for a file it cannot decode; anything else (a TypeError, say) is a bug and propagates.
DECODE_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    SyntaxError,
    struct.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)
EXIF_ERRORS = (OSError, ValueError, KeyError, SyntaxError, struct.error)


class BrokenExifWarning(UserWarning):
    """A photo's EXIF block could not be read; it is used as stored (perhaps lying on its side)."""


def _reason(error: BaseException) -> str:
    """A short human reason for a failed decode."""
    text = str(error)
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, IsADirectoryError):
        return "is a folder, not an image file"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"too many pixels (decompression-bomb guard): {text}"
    if isinstance(error, UnidentifiedImageError):
        return "not an image file (unknown format or corrupt header)"
    if "truncated" in text or isinstance(error, EOFError):
        return "truncated: the file ends before the image data does"
    if "conversion from" in text:
        return f"unsupported colour mode ({text})"
    return f"cannot decode ({type(error).__name__}: {text})" if text else f"cannot decode ({type(error).__name__})"


def load_rgb(path: str | os.PathLike | BinaryIO) -> Image.Image:
    """Open any image file as an upright RGB picture, or raise :class:`UnreadableImage`.

    Every picture of the package is read with it.  Greyscale, palette,
    CMYK and 16-bit images become RGB (16-bit values are scaled, not clipped);
    transparent parts are composited on white; EXIF orientation is applied.
    The pixels are decoded here, so a truncated or corrupt file fails now with
    a short reason, never half-loaded later.  ``path`` may also be an open
    binary file, such as ``io.BytesIO(content)`` of an uploaded photo.
    """
    if hasattr(path, "read"):
        source, path = path, Path(getattr(path, "name", None) or "uploaded image")
    else:
        source = path = Path(path)
    try:
        if source is path and path.is_file() and path.stat().st_size == 0:
            raise UnreadableImage(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                image.load()
                try:
                    image = ImageOps.exif_transpose(image)
                except EXIF_ERRORS as error:  # a broken EXIF block: the pixels are fine, keep them as stored
                    warnings.warn(
                        f"{path.name}: its EXIF block cannot be read ({type(error).__name__}: {error}); "
                        "the picture is used as stored, without turning it upright",
                        BrokenExifWarning,
                        stacklevel=2,
                    )
                return to_rgb(image)
    except UnreadableImage:
        raise
    except DECODE_ERRORS as error:
        raise UnreadableImage(path, _reason(error)) from error
