"""Interactive explorers built with ipywidgets (chapters 1, 3, 4 and 6).

Each function returns a widget to display; the figures inside are drawn into
``Output`` widgets, so a notebook saved with its widget state shows the first
view even in the static HTML book.

Works with ipywidgets 7.7 (what Google Colab ships) and 8: the only API that
differs between them here is ``FileUpload.value``, read by :func:`uploaded_files`.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as w
import matplotlib.pyplot as plt

from tlhelpers import plots

Prediction = Sequence[tuple[str, float]]


def uploaded_files(value: Any) -> list[tuple[str, bytes]]:
    """``[(file name, content), ...]`` from a ``FileUpload.value`` of ipywidgets 7 or 8 (chapters 1 and 4, indirectly).

    ipywidgets 8 gives a tuple of dicts, ``{"name": ..., "content": memoryview, ...}``;
    ipywidgets 7 (Google Colab) a dict ``{name: {"metadata": {"name": ...}, "content": bytes}}``.
    """
    if not value:
        return []
    if isinstance(value, Mapping):  # ipywidgets 7
        return [(str(item.get("metadata", {}).get("name", name)), bytes(item["content"]))
                for name, item in value.items()]
    return [(str(item["name"]), bytes(item["content"])) for item in value]  # ipywidgets 8


def prediction_explorer(photos: Mapping[str, object], predict: Callable[[object], Prediction],
                        title: str = "", allow_upload: bool = True) -> w.Widget:
    """Pick a photo (or upload one) and see its top-k predictions as bars (chapters 1 and 4).

    ``photos`` maps a display name to a PIL image; ``predict(image)`` returns
    ``[(label, probability), ...]``, best first.  Chapter 1 passes ImageNet
    top-5, chapter 4 the three animal classes.
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

    return _photo_explorer(photos, draw, allow_upload)


def search_explorer(photos: Mapping[str, object], search: Callable[[object], Sequence[tuple[object, str]]],
                    title: str = "", allow_upload: bool = True) -> w.Widget:
    """Pick a photo (or upload one) and see the most similar photos of a collection (chapter 6).

    ``photos`` maps a display name to a PIL image; ``search(image)`` returns
    ``[(photo, caption), ...]``, most similar first, drawn in one row after
    the query.
    """
    def draw(name: str, image) -> None:
        matches = list(search(image))
        fig = plots.image_grid([image, *(photo for photo, _ in matches)], [name, *(text for _, text in matches)],
                               ncols=len(matches) + 1, size=2.0, suptitle=title or None)
        fig.axes[0].title.set_fontweight("bold")
        plt.show()

    return _photo_explorer(photos, draw, allow_upload)


def _photo_explorer(photos: Mapping[str, object], draw: Callable[[str, object], None],
                    allow_upload: bool) -> w.Widget:
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



def unfreeze_explorer(model, head_name: str | None = None) -> w.Widget:
    """A slider for how many blocks to unfreeze, showing which train and how many parameters (chapter 3).

    It only reads the model's structure (:func:`tlhelpers.surgery.blocks`, the
    same split that :func:`tlhelpers.surgery.unfreeze_last` uses); nothing is
    frozen or unfrozen.
    """
    from tlhelpers import surgery

    all_blocks = surgery.blocks(model, head_name=head_name)
    sizes = {block.name: sum(p.numel() for n, p in model.named_parameters() if block.owns(n)) for block in all_blocks}
    total = sum(sizes.values())
    slider = w.IntSlider(value=1, min=0, max=len(all_blocks) - 1, description="Unfreeze:",
                         style={"description_width": "initial"})
    out = w.Output()

    def show(k: int) -> None:
        trainable = {block.name for block in all_blocks[len(all_blocks) - 1 - k:]}
        out.clear_output(wait=True)
        with out:
            print(f"the head and the last {k} block(s) train:")
            for block in all_blocks:
                mark = "train " if block.name in trainable else "frozen"
                print(f"  {mark}  {block.name:16s} {sizes[block.name]:>12,d}")
            count = sum(sizes[name] for name in trainable)
            print(f"  trainable: {count:,} of {total:,} parameters ({count / total:.1%})")

    slider.observe(lambda change: show(change["new"]), names="value")
    show(slider.value)
    return w.VBox([slider, out])
