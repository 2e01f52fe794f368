"""Helpers for the book *Transfer learning with pretrained models in PyTorch*.

One module per concept; import what a chapter needs explicitly, e.g.
``from tlhelpers import zoo, data``.  Importing the package does nothing else.

==================  ======================================================
**Backbones and photos**
--------------------------------------------------------------------------
``zoo``             pretrained backbones by name, with an offline fallback
``images``          the one image decoder (no torch needed): EXIF, RGB
``data``            finding, checking, splitting and loading the photos
``augment``         training and evaluation transforms, test-time flips
**Training**
--------------------------------------------------------------------------
``surgery``         heads, blocks, freezing, modes, taps inside, counts
``features``        backbone features computed once and cached
``heads``           linear heads on features; a classifier in one file
``train``           the one training loop, schedules, gradual unfreezing
``recipe``          training on a folder: what ``train`` runs, checkpoints
``distributed``     torchrun: processes, samplers, gathering
**Using the features**
--------------------------------------------------------------------------
``neighbours``      search, duplicates, unusual photos, label issues
``explain``         class activation maps, cached activations
``detection``       a zoo backbone inside an object detector, COCO's mAP
**Shipping**
--------------------------------------------------------------------------
``export``          ONNX files, float32 and int8
``onnx_inference``  running them with onnxruntime, without torch
``cli``             ``python -m tlhelpers train|export|predict``
**The book**
--------------------------------------------------------------------------
``plots``           figures
``tables``          text and Markdown tables
``widgets``         interactive explorers in Jupyter
``pages``           the same explorers live in the rendered book
``checks``          the book's claims, checked where they are made
``runtime``         switches, device, seeded runs, atomic files, clocks
==================  ======================================================

Conventions
-----------
* ``images`` is always a :class:`~tlhelpers.data.ImageSet` (files, labels,
  classes); a decoded PIL picture is a ``picture`` or a ``photo``.
* ``fit``/``fit_linear`` train and return a :class:`~tlhelpers.train.History`;
  every ``predict`` (and :func:`~tlhelpers.augment.flip_predict`) returns
  ``(predicted labels, probabilities)``; ``evaluate``
  returns ``{"loss", "acc", "n"}`` with ``acc`` in [0, 1].  Detection keeps
  torchvision's format instead: :func:`tlhelpers.detection.predict` returns
  one ``{"boxes", "scores", "labels"}`` per picture, and
  :func:`tlhelpers.detection.evaluate` COCO's mAPs.
* Training and validation data are passed as ``train_…``/``val_…`` arguments
  (``train_loader``, ``train_features``), never as a bare ``train`` that
  would hide the :mod:`tlhelpers.train` module.
* Every search of :mod:`tlhelpers.neighbours` takes ``queries=`` and
  ``keys=`` by keyword (and ``key_labels=`` for a vote): each query is
  looked up among the keys.
* ``head`` is always a layer (an ``nn.Linear``); ``head_name`` is its dotted
  module name (``"fc"``, ``"classifier.6"``).
* Which chapters call each helper is listed on the book's page "The
  helpers, chapter by chapter" (``book/helpers.md``), which
  ``tools/helper_index.py`` writes from the notebooks' code.
* Optional dependencies are imported where they are used, with
  :func:`optional`; a missing one names the extra that installs it
  (``pip install "tlhelpers[chapters]"`` installs every one).
"""

import importlib

__version__ = "0.2.0"

# The extra of pyproject.toml that installs each optional dependency.
EXTRAS = {
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxruntime": "onnx",
    "faiss": "search",
    "cleanlab": "labels",
    "torch_lr_finder": "recipes",
    "skimage": "samples",
    "torchmetrics": "detection",
    "pycocotools": "detection",
}


def optional(module: str):
    """Import an optional dependency, or say which extra installs it.

    A missing one raises ``ModuleNotFoundError`` with the ``pip install``
    line; a dependency that is there but fails to import raises as it is.
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] != top:  # a dependency of it is missing: another problem
            raise
        extra = EXTRAS.get(top, "chapters")
        raise ModuleNotFoundError(
            f'{top} is not installed; it comes with pip install "tlhelpers[{extra}]"', name=top
        ) from error
