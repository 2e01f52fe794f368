"""Interactive explorers built with ipywidgets (chapters 1, 3, 4, 6 and 7).

Each function returns a :class:`tlhelpers.pages.LiveExplorer` to display:
the ipywidget that Jupyter and Colab show (figures drawn into ``Output``
widgets), and the same explorer for the rendered book, with the view of every
menu entry or slider position computed now and stored with the notebook
(:mod:`tlhelpers.pages`).  ``in_page`` names the model that answers a reader's
own photo in the book's page (:data:`tlhelpers.pages.UPLOAD_TASKS`).

Works with ipywidgets 7.7 (what Google Colab ships) and 8: the only API that
differs between them here is ``FileUpload.value``, read by :func:`uploaded_files`.
"""

from __future__ import annotations

import datetime
import io
import mimetypes
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as w
import matplotlib.pyplot as plt

from tlhelpers import pages, plots

Prediction = Sequence[tuple[str, float]]


def uploaded_files(value: Any) -> list[tuple[str, bytes]]:
    """``[(file name, content), ...]`` from a ``FileUpload.value`` of ipywidgets 7 or 8.

    ipywidgets 8 gives a tuple of dicts, ``{"name": ..., "content": memoryview, ...}``;
    ipywidgets 7 (Google Colab) a dict ``{name: {"metadata": {"name": ...}, "content": bytes}}``.
    """
    if not value:
        return []
    if isinstance(value, Mapping):  # ipywidgets 7
        return [
            (str(item.get("metadata", {}).get("name", name)), bytes(item["content"])) for name, item in value.items()
        ]
    return [(str(item["name"]), bytes(item["content"])) for item in value]  # ipywidgets 8


def prediction_explorer(
    photos: Mapping[str, object],
    predict: Callable[[object], Prediction],
    title: str = "",
    allow_upload: bool = True,
    in_page: str | None = None,
    shown: Callable[[object], object] | None = None,
) -> pages.LiveExplorer:
    """Pick a photo (or upload one) and see its top-k predictions as bars.

    ``photos`` maps a display name to a PIL image; ``predict(image)`` returns
    ``[(label, probability), ...]``, best first.  Chapter 1 passes ImageNet
    top-5, chapter 4 the three animal classes, chapter 7 the exported file's.
    In the book's page, ``shown(image)`` (when given) is the picture shown
    instead of the photo: chapter 4 shows its class activation map.
    """

    def draw(name: str, image) -> None:
        fig, (left, right) = plt.subplots(1, 2, figsize=(8, 2.8), gridspec_kw={"width_ratios": [1, 1.6]})
        left.imshow(plots.to_image(image))
        left.axis("off")
        left.set_title(name, fontsize=9)
        labels, probs = zip(*predict(image))
        plots.topk_bars(right, probs, labels, title=title)
        fig.tight_layout()
        plt.show()

    def view(name: str, image) -> str:
        return pages.prediction_view(name, image, predict(image), title, shown(image) if shown else None)

    return pages.menu_explorer(
        pages.views_of(photos, view),
        upload=in_page if allow_upload else None,
        widget=_photo_explorer(photos, draw, allow_upload),
    )


def search_explorer(
    photos: Mapping[str, object],
    search: Callable[[object], Sequence[tuple[object, str]]],
    title: str = "",
    allow_upload: bool = True,
    in_page: str | None = None,
) -> pages.LiveExplorer:
    """Pick a photo (or upload one) and see the most similar photos of a collection.

    ``photos`` maps a display name to a PIL image; ``search(image)`` returns
    ``[(photo, caption), ...]``, most similar first, drawn in one row after
    the query.
    """

    def draw(name: str, image) -> None:
        matches = list(search(image))
        fig = plots.image_grid(
            [image, *(photo for photo, _ in matches)],
            [name, *(text for _, text in matches)],
            ncols=len(matches) + 1,
            size=2.0,
            suptitle=title or None,
        )
        fig.axes[0].title.set_fontweight("bold")
        plt.show()

    def view(name: str, image) -> str:
        return pages.search_view(name, image, search(image), title)

    return pages.menu_explorer(
        pages.views_of(photos, view),
        upload=in_page if allow_upload else None,
        widget=_photo_explorer(photos, draw, allow_upload),
    )


def upload_photo(explorer: pages.LiveExplorer, filename: str, content: bytes) -> str:
    """Do what a reader's upload does to an explorer's upload button; returns the photo then shown.

    The browser sets ``FileUpload.value`` through the widget's model:
    ipywidgets 8 receives a tuple of file dicts, ipywidgets 7.7 (Colab) the
    lists ``metadata`` and ``data`` and a counter that rebuilds ``value``.
    This does the same with the ipywidgets installed, so the chapters' hidden
    checks run the upload path of either version.
    """
    upload, choice = _first(explorer.widget, w.FileUpload), _first(explorer.widget, w.Dropdown)
    if upload is None or choice is None:
        raise ValueError("this explorer has no upload button")
    info = {"name": filename, "type": mimetypes.guess_type(filename)[0] or "", "size": len(content)}
    if int(w.__version__.split(".")[0]) < 8:
        upload.metadata = [{**info, "lastModified": 0}]
        upload.data = [content]
        upload._counter += 1  # what the browser's model sends last; ipywidgets 7 then sets value
    else:
        upload.value = (
            {**info, "last_modified": datetime.datetime.now(datetime.timezone.utc), "content": memoryview(content)},
        )
    return choice.value


def _first(widget, kind):
    """The first widget of type ``kind`` inside ``widget``, depth first, or None."""
    if isinstance(widget, kind):
        return widget
    for child in getattr(widget, "children", ()):
        if (found := _first(child, kind)) is not None:
            return found
    return None


def _photo_explorer(photos: Mapping[str, object], draw: Callable[[str, object], None], allow_upload: bool) -> w.Widget:
    """A dropdown of ``photos`` and an upload button; ``draw(name, image)`` shows the chosen photo."""
    choice = w.Dropdown(options=list(photos), description="Photo:")
    upload = w.FileUpload(accept="image/*", multiple=False, description="Upload a photo")
    out = w.Output()
    uploaded: dict[str, object] = {}

    def show(name: str) -> None:
        image = uploaded.get(name) or photos[name]
        out.clear_output(wait=True)
        with out:
            draw(name, image)

    def on_upload(change) -> None:
        from tlhelpers import data

        for filename, content in uploaded_files(change["new"]):
            name = f"uploaded: {filename}"
            try:
                uploaded[name] = data.load_rgb(io.BytesIO(content))
            except data.UnreadableImage as err:
                out.clear_output()
                with out:
                    print(f"Cannot use {filename}: {err.reason}")
                return
            choice.options = [*choice.options, name] if name not in choice.options else choice.options
            choice.value = name

    choice.observe(lambda change: show(change["new"]), names="value")
    upload.observe(on_upload, names="value")
    show(choice.value)
    controls = [choice, upload] if allow_upload else [choice]
    return w.VBox([w.HBox(controls), out])


def unfreeze_explorer(model, head_name: str | None = None) -> pages.LiveExplorer:
    """A slider for how many blocks to unfreeze, showing which train and how many parameters.

    It only reads the model's structure (:func:`tlhelpers.surgery.blocks`, the
    same split that :func:`tlhelpers.surgery.unfreeze_last` uses); nothing is
    frozen or unfrozen.
    """
    from tlhelpers import surgery

    all_blocks = surgery.blocks(model, head_name=head_name)
    sizes = {block.name: sum(p.numel() for n, p in model.named_parameters() if block.owns(n)) for block in all_blocks}
    total = sum(sizes.values())
    slider = w.IntSlider(
        value=1, min=0, max=len(all_blocks) - 1, description="Unfreeze:", style={"description_width": "initial"}
    )
    out = w.Output()

    def text(k: int) -> str:
        trainable = {block.name for block in all_blocks[len(all_blocks) - 1 - k :]}
        lines = [f"the head and the last {k} block(s) train:"]
        for block in all_blocks:
            mark = "train " if block.name in trainable else "frozen"
            lines.append(f"  {mark}  {block.name:16s} {sizes[block.name]:>12,d}")
        count = sum(sizes[name] for name in trainable)
        lines.append(f"  trainable: {count:,} of {total:,} parameters ({count / total:.1%})")
        return "\n".join(lines)

    def show(k: int) -> None:
        out.clear_output(wait=True)
        with out:
            print(text(k))

    slider.observe(lambda change: show(change["new"]), names="value")
    show(slider.value)
    views = {k: pages.text_view(text(k)) for k in range(slider.min, slider.max + 1)}
    return pages.slider_explorer(views, "Unfreeze:", slider.value, widget=w.VBox([slider, out]))


def teach_explorer(
    backbone, example_classes: Mapping[str, Sequence[object]], example_query: tuple[str, object]
) -> pages.LiveExplorer:
    """Teach the backbone classes of your own from a few photos: a prototype head, no training.

    In Jupyter: name the classes (comma-separated), add photos to each, and
    classify a photo; the leave-one-out accuracy
    (:func:`tlhelpers.heads.leave_one_out`) is shown as photos arrive.  In the
    book's page the same runs in the browser (``book/live/teach.js``).
    ``example_classes`` (class name → PIL images) and ``example_query`` (name,
    PIL image) are computed now, as the page's stored example.
    """
    import hashlib

    import torch

    from tlhelpers import data, features, heads

    def vector(image) -> torch.Tensor:
        return features.embed(backbone, [image])[0]

    def feature_set(classes: dict[str, list]) -> features.FeatureSet:
        rows = [(v, label) for label, items in enumerate(classes.values()) for _, v in items]
        return features.FeatureSet(
            torch.stack([v for v, _ in rows]),
            torch.tensor([label for _, label in rows]),
            [str(i) for i in range(len(rows))],
            list(classes),
        )

    def answer(classes: dict[str, list], image) -> list[tuple[str, float]]:
        head = heads.imprint(feature_set(classes))
        with torch.inference_mode():
            probabilities = head(vector(image)[None]).softmax(1)[0].tolist()
        return sorted(zip(classes, probabilities), key=lambda row: -row[1])

    def summary(classes: dict[str, list]) -> str:
        counts = ", ".join(f"{name}: {len(items)}" for name, items in classes.items())
        if len(classes) < 2 or any(not items for items in classes.values()):
            return f"{counts}. Give at least two classes a photo each."
        correct, counted = heads.leave_one_out(feature_set(classes))
        accuracy = f"{correct / counted:.1%} ({correct} of {counted})" if counted else "needs 2 photos in a class"
        return f"{counts}. Leave-one-out accuracy: {accuracy}."

    example = {name: [("", vector(image)) for image in images] for name, images in example_classes.items()}
    query_name, query_image = example_query
    correct, counted = heads.leave_one_out(feature_set(example))
    sizes = sorted({len(items) for items in example.values()})
    photos = (
        f"{sizes[0]} photos each of {', '.join(example)}"
        if len(sizes) == 1
        else ", ".join(f"{len(items)} photos of {name}" for name, items in example.items())
    )
    example_html = (
        f'<p class="tlbook-bars-title">Computed when this chapter ran, from {photos}: '
        f"leave-one-out accuracy {correct / counted:.1%} ({correct} of {counted}).</p>"
        + pages.prediction_view(
            query_name, query_image, answer(example, query_image), "the prototype head of those photos"
        )
    )

    names = w.Text(value="class 1, class 2", description="Classes:")
    target = w.Dropdown(options=["class 1", "class 2"], description="Add to:")
    photos = w.FileUpload(accept="image/*", multiple=True, description="Add photos")
    query = w.FileUpload(accept="image/*", multiple=False, description="Classify a photo")
    status, out = w.HTML(), w.Output()
    taught: dict[str, list] = {"class 1": [], "class 2": []}

    def on_names(change) -> None:
        wanted = list(dict.fromkeys(n.strip() for n in change["new"].split(",") if n.strip()))[:5]
        for name in list(taught):
            if name not in wanted:
                del taught[name]
        for name in wanted:
            taught.setdefault(name, [])
        target.options = wanted
        status.value = summary(taught)

    def on_photos(change) -> None:
        notes = []
        for filename, content in uploaded_files(change["new"]):
            digest = hashlib.sha256(content).hexdigest()
            owner = next((n for n, items in taught.items() if any(d == digest for d, _ in items)), None)
            if owner is not None:
                notes.append(f"{filename} is already in class {owner!r}: a photo can be in one class only.")
                continue
            try:
                taught[target.value].append((digest, vector(data.load_rgb(io.BytesIO(content)))))
            except data.UnreadableImage as err:
                notes.append(f"Cannot use {filename}: {err.reason}")
        status.value = " ".join([*notes, summary(taught)])

    def on_query(change) -> None:
        for filename, content in uploaded_files(change["new"]):
            out.clear_output(wait=True)
            with out:
                if len(taught) < 2 or any(not items for items in taught.values()):
                    print("Give at least two classes a photo each first.")
                    return
                try:
                    image = data.load_rgb(io.BytesIO(content))
                except data.UnreadableImage as err:
                    print(f"Cannot use {filename}: {err.reason}")
                    return
                ranked = answer(taught, image)
                fig, (left, right) = plt.subplots(1, 2, figsize=(8, 2.8), gridspec_kw={"width_ratios": [1, 1.6]})
                left.imshow(plots.to_image(image))
                left.axis("off")
                labels, probs = zip(*ranked)
                plots.topk_bars(right, probs, labels, title=filename)
                fig.tight_layout()
                plt.show()

    names.observe(on_names, names="value")
    photos.observe(on_photos, names="value")
    query.observe(on_query, names="value")
    status.value = summary(taught)
    widget = w.VBox([names, w.HBox([target, photos]), status, query, out])
    return pages.teach_explorer(example_html, widget=widget)
