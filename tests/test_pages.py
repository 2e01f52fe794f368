"""Tests of tlhelpers.pages (the explorers' HTML for the book) and the pure parts of tlhelpers.pages.

The pages themselves are used in Chromium by tests/browser/test_live.py.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from tlhelpers import pages, zoo


def test_a_menu_stores_every_view_and_starts_inactive():
    explorer = pages.menu_explorer(
        {"a": pages.text_view("first\nmore"), "b <&>": pages.text_view("second")}, upload="imagenet"
    )
    page = explorer.html
    assert page.count('class="tlbook-view"') == 2 and page.count(" hidden>") == 1  # only the first is shown
    assert 'data-value="b &lt;&amp;&gt;"' in page  # values are escaped
    assert page.count("disabled") == 2 and pages.NO_SCRIPT in page  # menu and upload wait for the script
    config = json.loads(re.search(r'data-live="([^"]+)"', page).group(1).replace("&quot;", '"'))
    assert config == {"control": "menu", "upload": "imagenet"}
    assert explorer._repr_mimebundle_()["text/html"] == page  # no widget: the HTML only


def test_an_unknown_upload_task_and_a_gappy_slider_are_refused():
    with pytest.raises(ValueError, match="unknown in-page task"):
        pages.menu_explorer({"a": ""}, upload="video")
    with pytest.raises(ValueError, match="consecutive integers"):
        pages.slider_explorer({0: "", 2: ""}, "k", 0)
    with pytest.raises(ValueError, match="at least one view"):
        pages.menu_explorer({})


def test_a_prediction_view_is_identified_by_its_summary():
    view = pages.prediction_view("chelsea", Image.new("RGB", (300, 200)), [("tabby", 0.6234), ("lynx", 0.1)])
    assert 'data-summary="tabby 62.3%, lynx 10.0%"' in view
    assert "data:image/jpeg;base64," in view and "--p:0.6234" in view


def test_image_uri_shrinks_large_pictures():
    import base64
    import io

    uri = pages.image_uri(np.zeros((600, 400, 3)), size=100)
    picture = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert max(picture.size) == 100


def test_the_teaching_tool_waits_for_the_script_and_shows_the_example():
    page = pages.teach_explorer("<p>example</p>").html
    assert '"control": "teach"' in page.replace("&quot;", '"') and "<p>example</p>" in page
    assert page.count("disabled") == 4


def test_rows_quantized_to_int8_keep_cosine_similarities():
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(50, 64)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    q, scale = pages.quantize_rows(unit)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    approx = q.astype(np.float32) * scale[:, None]
    assert np.abs(approx @ unit[0] - unit @ unit[0]).max() < 0.01


def test_page_network_gives_logits_pooled_features_and_maps_of_a_torchvision_model():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    backbone = zoo.Backbone(
        name="resnet18",
        requested="resnet18",
        model=model,
        transforms=None,
        categories=[],
        source="random weights",
        head_name="fc",
    )
    network = pages.page_network(backbone)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        logits, pooled, maps = network(x)
        expected = model(x)
    assert maps.shape == (1, 512, 7, 7) and pooled.shape == (1, 512)
    assert torch.allclose(logits, expected, atol=1e-5) and torch.allclose(pooled, maps.mean((2, 3)), atol=1e-5)
    assert model.training is False and next(model.parameters()).requires_grad  # the zoo model is not changed


@pytest.mark.slow
def test_page_network_refuses_vgg16():
    model = torchvision.models.vgg16(weights=None).eval()
    backbone = zoo.Backbone(
        name="vgg16",
        requested="vgg16",
        model=model,
        transforms=None,
        categories=[],
        source="random weights",
        head_name="classifier.6",
    )
    with pytest.raises(ValueError, match="global average pooling|spatial mean"):
        pages.page_network(backbone)


def test_an_asset_is_one_classic_script(tmp_path):
    path = pages.write_asset(tmp_path, "demo", {"b": 2, "a": [1.5]})
    text = path.read_text()
    assert (
        text.splitlines()[1] == '(globalThis.tlbookAssets = globalThis.tlbookAssets || {})["demo"] = {"a":[1.5],"b":2};'
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.js"]
