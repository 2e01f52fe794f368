"""Text and Markdown tables: the one formatter behind every table the package prints (chapters 2–4, indirectly).

:func:`text` gives fixed-width columns for ``print`` (parameter counts in
chapters 2 and 3, the photo check of chapter 4); :func:`markdown` gives a
Markdown table for ``IPython.display.Markdown`` (results of chapters 3 and 4)
and for the benchmark pages.  Cells are strings; ``align`` is one letter per
column, ``"l"`` or ``"r"``.  The same rows give the same text on every
machine, so notebook outputs can be compared exactly.
"""

from __future__ import annotations

from typing import Sequence


def _widths(lines: list[Sequence[str]], min_widths: Sequence[int]) -> list[int]:
    minimum = list(min_widths) + [0] * (len(lines[0]) - len(min_widths))
    return [max(minimum[i], *(len(line[i]) for line in lines)) for i in range(len(lines[0]))]


def _justify(cells: Sequence[str], widths: Sequence[int], align: str) -> list[str]:
    return [cell.rjust(w) if a == "r" else cell.ljust(w) for cell, w, a in zip(cells, widths, align)]


def text(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    align: str | None = None,
    min_widths: Sequence[int] = (),
    header_rule: bool = False,
    rule_before: Sequence[int] = (),
) -> str:
    """Columns separated by two spaces, each as wide as its widest cell (or ``min_widths``).

    ``align`` defaults to the first column left, the others right.  A dashed
    rule follows the header with ``header_rule`` and precedes each body row
    whose index is in ``rule_before`` (a total, say).  Trailing spaces are
    kept, so every line of a table is equally long.
    """
    align = align or "l" + "r" * (len(header) - 1)
    widths = _widths([header, *rows], min_widths)
    rule = "  ".join("-" * w for w in widths)
    lines = ["  ".join(_justify(header, widths, align))] + ([rule] if header_rule else [])
    for index, row in enumerate(rows):
        if index in rule_before:
            lines.append(rule)
        lines.append("  ".join(_justify(row, widths, align)))
    return "\n".join(lines)


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None, pad: bool = True) -> str:
    """A Markdown table; ``pad`` lines the columns up in the source as well.

    ``align`` defaults to all columns left.  A ``|`` inside a cell is escaped.
    """
    align = align or "l" * len(header)
    lines = [[cell.replace("|", "\\|") for cell in row] for row in [header, *rows]]
    if not pad:
        rule = ["---:" if a == "r" else "---" for a in align]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in [lines[0], rule, *lines[1:]])
    widths = _widths(lines, ())
    rule = "|" + "|".join("-" * (w + 1) + ":" if a == "r" else ":" + "-" * (w + 1) for w, a in zip(widths, align)) + "|"
    body = ["| " + " | ".join(_justify(cells, widths, align)) + " |" for cells in lines]
    return "\n".join([body[0], rule, *body[1:]])


def confusion_counts(labels, predictions, n_classes: int):
    """Counts of (true class, predicted class) pairs, ``n_classes × n_classes``, as a tensor.

    scikit-learn's counting (``sklearn.metrics.confusion_matrix``): rows are
    the true classes, columns the predictions.  The command line prints it
    with :func:`confusion_text`; chapter 4 draws it with
    :func:`tlhelpers.plots.confusion_matrix`.
    """
    import numpy as np
    import torch
    from sklearn.metrics import confusion_matrix

    if len(labels) == 0:  # a split without photos (sklearn refuses empty input)
        return torch.zeros(n_classes, n_classes, dtype=torch.long)
    counts = confusion_matrix(np.asarray(labels), np.asarray(predictions), labels=list(range(n_classes)))
    return torch.as_tensor(counts, dtype=torch.long)


def confusion_text(matrix, classes: Sequence[str]) -> str:
    """A confusion matrix as text: a row per true class, a column per prediction."""
    corner = "true \\ predicted"
    first = max(len(corner), *(len(name) for name in classes))
    width = max([len(name) for name in classes] + [len(str(int(v))) for v in matrix.flatten()])
    lines = [f"{corner:<{first}}  " + "  ".join(f"{name:>{width}}" for name in classes)]
    for name, row in zip(classes, matrix.tolist()):
        lines.append(f"{name:<{first}}  " + "  ".join(f"{count:>{width}}" for count in row))
    return "\n".join(lines)
