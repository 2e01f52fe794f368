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

from tlhelpers import widgets  # noqa: E402


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
    return tuple({"name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
                  "last_modified": 1700000000000} for name, content in files.items())


def value_v7(files: dict[str, bytes]) -> dict[str, dict]:
    """``FileUpload.value`` as ipywidgets 7.7 (Google Colab) sets it: {name: {"metadata", "content": bytes}}."""
    return {name: {"metadata": {"name": name, "type": "image/png", "size": len(content),
                                "lastModified": 1700000000000},
                   "content": content}
            for name, content in files.items()}


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
    upload, choice = find(explorer, w.FileUpload), find(explorer, w.Dropdown)
    assert seen == [(8, 8)]
    # What the upload's observers get when a file arrives, whichever ipywidgets sets the value.
    new = shape({"my cat.png": png_bytes(size=(6, 4))})
    upload.notify_change(Bunch(name="value", old=upload.value, new=new, owner=upload, type="change"))
    assert list(choice.options) == ["chelsea", "uploaded: my cat.png"]
    assert choice.value == "uploaded: my cat.png"
    assert seen == [(8, 8), (6, 4)]


def test_prediction_explorer_says_why_an_upload_is_unusable(capsys):
    explorer = widgets.prediction_explorer({"chelsea": Image.new("RGB", (8, 8))}, lambda image: [("x", 1.0)])
    upload, choice = find(explorer, w.FileUpload), find(explorer, w.Dropdown)
    capsys.readouterr()
    upload.notify_change(Bunch(name="value", old=upload.value, new=value_v7({"notes.txt": b"not a picture"}),
                               owner=upload, type="change"))
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
    upload, choice = find(explorer, w.FileUpload), find(explorer, w.Dropdown)
    assert queries == [(8, 8)]
    upload.notify_change(Bunch(name="value", old=upload.value, new=shape({"mine.png": png_bytes(size=(6, 4))}),
                               owner=upload, type="change"))
    assert choice.value == "uploaded: mine.png" and queries == [(8, 8), (6, 4)]
