"""Helpers for the book *Transfer learning with pretrained models in PyTorch*.

One module per concept; import what a chapter needs explicitly, e.g.
``from tlhelpers import zoo, data``.  Importing the package does nothing else.
"""

__version__ = "0.2.0"
