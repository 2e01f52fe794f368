"""The explorers as the rendered book shows them: live without a kernel (chapters 1, 3, 4, 6 and 7).

A reader of the built HTML book has no Python behind the page, so an
ipywidgets explorer there would be a picture of controls that do nothing.
:class:`LiveExplorer` therefore carries two representations of one explorer:

* the ipywidget, which Jupyter and Colab show as before;
* HTML for the book: the same menu or slider, with the view of **every** value
  computed when the chapter ran and stored with the notebook.  The book's
  script (``book/live/live.js``) switches between the stored views in the
  browser, and — where ``upload`` names an in-page task — answers a photo the
  reader brings with the chapter's model running in the page (onnxruntime-web;
  see :mod:`tlhelpers.page_assets`).

The book's configuration (``nb_mime_priority_overrides`` in ``_config.yml``)
renders the HTML; Jupyter renders the widget.  Without JavaScript the stored
first view stays and each control says why it is inactive.

The HTML of a result (photo, probability bars, matches) is written here and,
for a photo the reader uploads, by ``live.js`` with the same classes, so both
look alike and read alike to a screen reader.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from PIL import Image

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
    """An ipywidget for Jupyter plus stored HTML views for the book (chapters 1, 3, 4, 6 and 7, indirectly).

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
    """A picture as a ``data:image/jpeg`` URI, its longer side at most ``size`` pixels (chapter 1, indirectly)."""
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
    """A photo (or ``shown``, e.g. its class activation map) beside its ranked classes (chapter 1, indirectly)."""
    summary = ranked_text(ranked)
    return (
        f'<div class="tlbook-result" data-summary="{html.escape(summary)}">'
        f"{figure(image_uri(shown if shown is not None else image), name, alt=f'{name}: {summary}')}"
        f'<div class="tlbook-ranking">{bars(ranked, title)}</div></div>'
    )


def search_view(name: str, image: Image.Image, matches: Sequence[tuple[Image.Image, str]], title: str = "") -> str:
    """A query photo and its most similar photos, each with a caption such as ``0.83 cats`` (chapter 6, indirectly)."""
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
    """Printed text, kept as it was printed (chapter 3, indirectly)."""
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
    """A menu over stored views, plus an optional in-page upload (chapter 1, indirectly).

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
    """A slider over stored views of consecutive integers, starting at ``value`` (chapter 3, indirectly)."""
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
    """The page's tool that learns a reader's own classes from a few photos (chapter 4, indirectly).

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
    """``{name: render(name, photo)}`` for every photo of a menu (chapter 1, indirectly)."""
    return {name: render(name, photo) for name, photo in photos.items()}
