import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tlhelpers import plots  # noqa: E402
from tlhelpers.train import History  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def run(accuracies):
    return History([{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "val_acc": acc} for i, acc in enumerate(accuracies)])


def test_learning_curves_draw_a_mean_and_band_per_strategy():
    histories = {"frozen": [run([0.5, 0.7, 0.8]), run([0.6, 0.8, 0.9])], "full": run([0.4, 0.9])}
    fig = plots.learning_curves(histories)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["frozen (n=2)", "full (n=1)"]
    assert np.allclose(ax.get_lines()[0].get_ydata(), [0.55, 0.75, 0.85])
    assert len(ax.collections) == 1  # a band only where there are several seeds
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "validation accuracy (%)"
    _, ax2 = plt.subplots()
    assert plots.learning_curves(histories, metric="train_loss", ax=ax2, band="std") is ax2.figure
    assert "nats" in ax2.get_ylabel()


def test_results_table_gives_mean_and_std_per_group():
    rows = [
        {"strategy": "frozen", "seed": 0, "test_acc": 0.90, "seconds": 3.0},
        {"strategy": "frozen", "seed": 1, "test_acc": 0.94, "seconds": 5.0},
        {"strategy": "full", "seed": 0, "test_acc": 0.975, "seconds": None},
    ]
    assert plots.results_table(rows, metrics=("test_acc", "seconds")) == "\n".join(
        [
            "| strategy | runs | test_acc (%) |   seconds |",
            "|:---------|-----:|-------------:|----------:|",
            "| frozen   |    2 |   92.0 ± 2.8 | 4.0 ± 1.4 |",
            "| full     |    1 |         97.5 |         – |",
        ]
    )


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    fig = plots.confusion_matrix(torch.tensor([0, 0, 1, 2, 2, 2]), [0, 1, 1, 2, 2, 0], ["cats", "dogs", "panda"])
    assert isinstance(fig, Figure)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[:3] == ["1\n50%", "1\n50%", "0\n0%"]
    assert texts[-1] == "2\n67%"
    assert "6 images" in fig.axes[0].get_title()


def test_prediction_grid_marks_wrong_predictions_in_red():
    images = [torch.rand(3, 8, 8) for _ in range(3)]
    fig = plots.prediction_grid(images, [0, 1, 1], [0, 1, 0], ["cats", "dogs"], ncols=3, mean=[0.5] * 3, std=[0.25] * 3)
    titles = [(ax.get_title(), ax.title.get_color()) for ax in fig.axes]
    assert titles == [("cats / cats", "black"), ("dogs / dogs", "black"), ("dogs / cats", "red")]


def test_results_table_shows_a_constant_count_once():
    rows = [{"strategy": "frozen", "seed": s, "test_acc": 0.9 + s / 100, "trainable": 3843} for s in range(3)]
    table = plots.results_table(rows, metrics=("test_acc", "trainable"))
    assert "3,843" in table and "3843.0" not in table
    assert "91.0 ± 1.0" in table
