"""Helpers for the book *Transfer learning with pretrained models in PyTorch*.

One module per concept; import what a chapter needs explicitly, e.g.
``from tlhelpers import zoo, data``.  Importing the package does nothing else.

======================  ==================================================
``zoo``                 pretrained backbones by name, with an offline fallback
``data``                finding, checking and loading the photos
``surgery``             the head, freezing, train/eval modes, parameter counts
``features``            backbone features computed once and cached
``heads``               linear heads on stored features
``train``               the one training loop and evaluation
``classifier``          a backbone plus a trained head, saved in one file
``explain``             class activation maps
``detection``           a zoo backbone inside an object detector, COCO's mAP
``plots``, ``widgets``  figures, tables and interactive explorers
``checks``              the book's claims, checked where they are made
``runtime``             environment switches, device, seeded runs
``files``               atomic saving and paths as notebooks show them
======================  ==================================================

Conventions
-----------
* ``fit``/``fit_linear`` train and return a :class:`~tlhelpers.train.History`;
  ``predict`` returns ``(predicted labels, probabilities)``; ``evaluate``
  returns ``{"loss", "acc", "n"}`` with ``acc`` in [0, 1].  Detection keeps
  torchvision's format instead: :func:`tlhelpers.detection.predict` returns
  one ``{"boxes", "scores", "labels"}`` per picture, and
  :func:`tlhelpers.detection.evaluate` COCO's mAPs.
* Training and validation data are passed as ``train_…``/``val_…`` arguments
  (``train_loader``, ``train_features``), never as a bare ``train`` that
  would hide the :mod:`tlhelpers.train` module.
* ``head`` is always a layer (an ``nn.Linear``); ``head_name`` is its dotted
  module name (``"fc"``, ``"classifier.6"``).
* Each function's docstring names the chapters that call it, e.g.
  ``(chapters 2–4)``; a test derives that from the notebooks.
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
    """Import an optional dependency, or say which extra installs it (chapters 5–7, indirectly).

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
