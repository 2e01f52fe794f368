"""Direct tests of small public helpers that the chapters call and no other test named."""

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from tlhelpers import explain, features, neighbours, pages, plots, runtime, zoo  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_class_colours_are_fixed_for_the_book_classes_and_cycle_for_others():
    assert plots.class_color("cats") == plots.class_color("cats", 5)
    assert len({plots.class_color(name) for name in ("cats", "dogs", "panda")}) == 3
    other = plots.class_color("zebra", 1)
    assert other.startswith("#") and other == plots.class_color("zebra", 1)


@pytest.mark.parametrize(
    "picture",
    [Image.new("RGB", (5, 4), (255, 0, 0)), np.zeros((4, 5, 3), np.uint8) + 255, torch.ones(3, 4, 5)],
    ids=["pil", "hwc", "chw"],
)
def test_to_image_gives_hwc_floats_in_unit_range(picture):
    x = plots.to_image(picture)
    assert x.shape == (4, 5, 3) and x.dtype.kind == "f" and 0 <= x.min() and x.max() <= 1


def test_image_grid_has_a_panel_per_photo_and_titles():
    photos = [Image.new("RGB", (8, 8), colour) for colour in ("red", "green", "blue")]
    fig = plots.image_grid(photos, ["a", "b", "c"], ncols=2, suptitle="three")
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == ["a", "b", "c"] and fig._suptitle.get_text() == "three"


def test_topk_bars_and_predictions_figure_draw_one_bar_per_class():
    fig, ax = plt.subplots()
    plots.topk_bars(ax, [0.7, 0.2, 0.1], ["cat", "dog", "fox"], title="top 3")
    assert len(ax.patches) == 3 and ax.get_title() == "top 3"
    fig = plots.predictions_figure([Image.new("RGB", (8, 8))], [[("cat", 0.9), ("dog", 0.1)]], ["photo"])
    assert sum(len(axis.patches) for axis in fig.axes) == 2


def test_page_text_helpers_write_what_the_page_shows():
    ranked = [("Egyptian cat", 0.621), ("tabby", 0.203)]
    assert pages.percent(0.621) == "62.1%"
    assert pages.ranked_text(ranked) == "Egyptian cat 62.1%, tabby 20.3%"
    html = pages.bars(ranked, title="top 2")
    assert html.index("Egyptian cat") < html.index("tabby") and "62.1%" in html and "top 2" in html


def test_views_of_and_search_view_render_every_photo():
    photos = {"red": Image.new("RGB", (8, 8), "red"), "blue": Image.new("RGB", (8, 8), "blue")}
    views = pages.views_of(photos, lambda name, photo: f"<p>{name} {photo.size[0]}</p>")
    assert views == {"red": "<p>red 8</p>", "blue": "<p>blue 8</p>"}
    html = pages.search_view("red", photos["red"], [(photos["blue"], "0.83 cats")], title="nearest")
    assert "0.83 cats" in html and html.count("data:image/jpeg") == 2


def test_imagenet_names_meta_and_weights_need_no_download():
    categories = zoo.imagenet_categories()
    assert len(categories) == 1000 and categories[0] == "tench" and categories[388] == "giant panda"
    meta = zoo.imagenet_meta("resnet18")
    assert meta["acc@1"] == pytest.approx(69.758) and meta["num_params"] == 11_689_512
    assert zoo.imagenet_weights("resnet18").url.endswith("resnet18-f37072fd.pth")


def test_fallback_forced_follows_its_switch(monkeypatch):
    monkeypatch.setenv(runtime.FORCE_FALLBACK_ENV, "1")
    assert zoo.fallback_forced()
    monkeypatch.setenv(runtime.FORCE_FALLBACK_ENV, "0")
    assert not zoo.fallback_forced()


def test_save_atomically_replaces_in_one_step_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "x.pt"
    path.parent.mkdir()
    assert runtime.save_atomically({"a": 1}, path) == path
    runtime.save_atomically({"a": 2}, path)
    assert torch.load(path) == {"a": 2} and os.listdir(path.parent) == ["x.pt"]


def test_shown_path_is_relative_with_slashes_or_whole(tmp_path):
    assert runtime.shown_path(tmp_path / "cats" / "a.jpg", tmp_path) == "cats/a.jpg"
    elsewhere = tmp_path.parent / "other.jpg"
    assert runtime.shown_path(elsewhere, tmp_path) == str(elsewhere)


def test_cache_folder_comes_from_the_argument_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TLHELPERS_CACHE", str(tmp_path / "env"))
    assert features.resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert features.resolve_cache_dir() == tmp_path / "env"
    path = features.cache_path(tmp_path, "efficientnet_lite0", "0123456789abcdef" * 4)
    assert path.parent == tmp_path and "efficientnet_lite0" in path.name and "0123456789" in path.name


def test_normalise_centres_and_scales_rows_to_unit_length():
    x = torch.tensor([[3.0, 4.0], [1.0, 1.0]], dtype=torch.float64)
    unit = neighbours.normalise(x)
    assert unit.dtype == torch.float32 and torch.allclose(unit.norm(dim=1), torch.ones(2))
    centred = neighbours.normalise(x, center=torch.tensor([1.0, 1.0]))
    assert torch.allclose(centred[0], torch.tensor([0.5547, 0.8321]), atol=1e-4)


def test_overlay_image_blends_a_heat_map_into_the_photo():
    photo = Image.new("RGB", (16, 12), "white")
    cam = torch.zeros(12, 16)
    cam[4:8, 6:10] = 1.0
    out = explain.overlay_image(photo, cam)
    with pytest.raises(ValueError, match="model_view"):
        explain.overlay_image(photo, torch.zeros(3, 4))
    assert out.shape == (12, 16, 3) and 0 <= out.min() and out.max() <= 1
    assert not np.allclose(out, 1.0)  # the map changed the picture
