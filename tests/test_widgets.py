"""Tests of tlhelpers.widgets with both shapes of ``FileUpload.value``: ipywidgets 7 (Colab) and 8."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import ipywidgets as w  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from traitlets import Bunch  # noqa: E402

from tlhelpers import pages, widgets  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def png_bytes(colour="red", size=(6, 4)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def value_v8(files: dict[str, bytes]) -> tuple[dict, ...]:
    """``FileUpload.value`` as ipywidgets 8 sets it: a tuple of dicts, content as memoryview."""
    return tuple(
        {
            "name": name,
            "type": "image/png",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": 1700000000000,
        }
        for name, content in files.items()
    )


def value_v7(files: dict[str, bytes]) -> dict[str, dict]:
    """``FileUpload.value`` as ipywidgets 7.7 (Google Colab) sets it: {name: {"metadata", "content": bytes}}."""
    return {
        name: {
            "metadata": {"name": name, "type": "image/png", "size": len(content), "lastModified": 1700000000000},
            "content": content,
        }
        for name, content in files.items()
    }


@pytest.mark.parametrize("shape", [value_v7, value_v8], ids=["ipywidgets7", "ipywidgets8"])
def test_uploaded_files_reads_both_ipywidgets_shapes(shape):
    files = {"cat.png": png_bytes("red"), "dog.png": png_bytes("blue")}
    got = widgets.uploaded_files(shape(files))
    assert got == list(files.items())
    assert all(type(content) is bytes for _, content in got)


@pytest.mark.parametrize("empty", [(), {}, None])
def test_uploaded_files_of_nothing_is_empty(empty):
    assert widgets.uploaded_files(empty) == []


def find(widget, kind):
    """The first widget of type ``kind`` inside ``widget`` (depth first)."""
    if isinstance(widget, kind):
        return widget
    for child in getattr(widget, "children", ()):
        if (found := find(child, kind)) is not None:
            return found
    return None


@pytest.mark.parametrize("shape", [value_v7, value_v8], ids=["ipywidgets7", "ipywidgets8"])
def test_prediction_explorer_takes_an_upload_in_either_shape(shape):
    seen = []

    def predict(image):
        seen.append(image.size)
        return [("tabby", 0.7), ("tiger cat", 0.2)]

    explorer = widgets.prediction_explorer({"chelsea": Image.new("RGB", (8, 8), "grey")}, predict, title="top-2")
    upload, choice = find(explorer.widget, w.FileUpload), find(explorer.widget, w.Dropdown)
    assert set(seen) == {(8, 8)}  # the widget's first view and the page's stored view
    # What the upload's observers get when a file arrives, whichever ipywidgets sets the value.
    new = shape({"my cat.png": png_bytes(size=(6, 4))})
    upload.notify_change(Bunch(name="value", old=upload.value, new=new, owner=upload, type="change"))
    assert list(choice.options) == ["chelsea", "uploaded: my cat.png"]
    assert choice.value == "uploaded: my cat.png"
    assert seen[-1] == (6, 4)


def test_prediction_explorer_says_why_an_upload_is_unusable(capsys):
    explorer = widgets.prediction_explorer({"chelsea": Image.new("RGB", (8, 8))}, lambda image: [("x", 1.0)])
    upload, choice = find(explorer.widget, w.FileUpload), find(explorer.widget, w.Dropdown)
    capsys.readouterr()
    upload.notify_change(
        Bunch(
            name="value", old=upload.value, new=value_v7({"notes.txt": b"not a picture"}), owner=upload, type="change"
        )
    )
    assert list(choice.options) == ["chelsea"]
    # Outside a kernel the Output widget does not capture: what it would show reaches stdout.
    assert "Cannot use notes.txt: not an image file" in capsys.readouterr().out


@pytest.mark.parametrize("shape", [value_v7, value_v8], ids=["ipywidgets7", "ipywidgets8"])
def test_search_explorer_searches_with_an_upload(shape):
    queries = []

    def search(image):
        queries.append(image.size)
        return [(Image.new("RGB", (5, 5), "blue"), "match 1"), (Image.new("RGB", (5, 5), "red"), "match 2")]

    explorer = widgets.search_explorer({"first": Image.new("RGB", (8, 8), "grey")}, search, title="most similar")
    upload, choice = find(explorer.widget, w.FileUpload), find(explorer.widget, w.Dropdown)
    assert set(queries) == {(8, 8)}
    upload.notify_change(
        Bunch(
            name="value", old=upload.value, new=shape({"mine.png": png_bytes(size=(6, 4))}), owner=upload, type="change"
        )
    )
    assert choice.value == "uploaded: mine.png" and queries[-1] == (6, 4)


def test_explorers_store_every_view_for_the_page():
    photos = {"first": Image.new("RGB", (8, 8), "grey"), "second": Image.new("RGB", (9, 7), "white")}
    ranks = {(8, 8): [("tabby", 0.75), ("lynx", 0.25)], (9, 7): [("rocket", 0.5), ("missile", 0.5)]}
    explorer = widgets.prediction_explorer(photos, lambda image: ranks[image.size], in_page="imagenet")
    bundle = explorer._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id
    page = bundle["text/html"]
    assert 'data-value="first"' in page and 'data-value="second"' in page
    assert 'data-summary="tabby 75.0%, lynx 25.0%"' in page and 'data-summary="rocket 50.0%, missile 50.0%"' in page
    assert '"upload": "imagenet"' in page.replace("&quot;", '"')


def test_the_unfreeze_slider_stores_a_view_per_position():
    import torchvision

    explorer = widgets.unfreeze_explorer(torchvision.models.resnet18(weights=None), head_name="fc")
    slider = find(explorer.widget, w.IntSlider)
    page = explorer.html
    for k in range(slider.min, slider.max + 1):
        assert f'data-value="{k}"' in page and f"the head and the last {k} block(s) train:" in page


def tiny_backbone():
    import torch
    from torch import nn

    from tlhelpers import zoo

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    return zoo.Backbone(
        name="tiny",
        requested="tiny",
        model=model,
        head_name="4",
        categories=[],
        transforms=zoo.preset(16, 18, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        source="tiny",
    )


def test_the_teaching_tool_learns_classes_and_refuses_a_photo_in_two():
    colours = {"reds": ["red", "darkred"], "blues": ["blue", "navy"]}
    example = {name: [Image.new("RGB", (20, 20), c) for c in cs] for name, cs in colours.items()}
    explorer = widgets.teach_explorer(tiny_backbone(), example, ("a red square", Image.new("RGB", (20, 20), "red")))
    assert "from 2 photos each of reds, blues: leave-one-out accuracy" in explorer.html
    assert "a red square" in explorer.html
    names, upload = find(explorer.widget, w.Text), find(explorer.widget, w.FileUpload)
    status = find(explorer.widget, w.HTML)
    names.value = "reds, blues"
    upload.notify_change(
        Bunch(name="value", old=(), new=value_v8({"r.png": png_bytes("red")}), owner=upload, type="change")
    )
    assert "reds: 1, blues: 0" in status.value
    upload.notify_change(
        Bunch(name="value", old=(), new=value_v8({"again.png": png_bytes("red")}), owner=upload, type="change")
    )
    assert "already in class 'reds'" in status.value and "reds: 1" in status.value


def test_upload_photo_runs_the_installed_ipywidgets_upload_path():
    explorer = widgets.prediction_explorer(
        {"red": Image.new("RGB", (6, 4), "red")}, lambda image: [("red", 1.0)], title="t"
    )
    assert widgets.upload_photo(explorer, "mine.png", png_bytes("blue")) == "uploaded: mine.png"
    assert widgets.upload_photo(explorer, "broken.png", b"not an image") == "uploaded: mine.png"
    with pytest.raises(ValueError, match="no upload button"):
        widgets.upload_photo(pages.LiveExplorer(w.VBox([w.Dropdown(options=["a"])]), ""), "a.png", b"")
