"""Files the package writes and paths it shows (chapters 2–4, through features and classifier).

:func:`save_atomically` writes a ``torch.save`` payload to a temporary file
beside the target and renames it, so a crash never leaves half a file;
:func:`shown_path` gives the path relative to a root, as notebooks print it
(outputs must not show where a machine keeps its files).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def save_atomically(payload, path: str | os.PathLike) -> Path:
    """``torch.save(payload)`` to ``path`` through a temporary file and a rename; returns the path."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def shown_path(path: str | os.PathLike, root: str | os.PathLike | None) -> str:
    """``path`` relative to ``root`` with ``/`` separators, or the whole path when it lies elsewhere."""
    path = Path(path)
    if root is not None:
        with contextlib.suppress(ValueError):
            return path.relative_to(root).as_posix()
    return path.as_posix()
