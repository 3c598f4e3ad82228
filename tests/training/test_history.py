"""Loss history file: append, truncate on resume, damaged lines, and the loss-curve PNG."""

from __future__ import annotations

import math

import matplotlib.image
import numpy as np

from napari_medgen.training.history import LossHistory, loss_series, save_loss_plot


def test_append_truncate_and_reload(tmp_path):
    h = LossHistory(tmp_path)
    for step in range(1, 6):
        h.append(step, {"loss": 1.0 / step, "l1": 0.5})
    assert [r["step"] for r in LossHistory(tmp_path).records] == [1, 2, 3, 4, 5]
    h.truncate(3)
    again = LossHistory(tmp_path)
    assert [r["step"] for r in again.records] == [1, 2, 3] and again.records[1] == {"step": 2, "loss": 0.5, "l1": 0.5}


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path):
    h = LossHistory(tmp_path)
    h.append(1, {"loss": 2.0})
    with open(h.path, "a") as f:
        f.write('{"step": 2, "lo')
    assert LossHistory(tmp_path).records == [{"step": 1, "loss": 2.0}]


def test_loss_series_skips_non_finite_values():
    series = loss_series([{"step": 1, "loss": 1.0}, {"step": 2, "loss": math.nan, "kl": 0.1}])
    assert series == {"loss": ([1], [1.0]), "kl": ([2], [0.1])}


def test_loss_plot_is_a_png_with_curves(tmp_path):
    records = [{"step": s, "loss": 1.0 / s, "adv": -0.1 * s} for s in range(1, 50)]
    path = save_loss_plot(records, tmp_path / "m.loss.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)
    blank = save_loss_plot([], tmp_path / "blank.png")
    assert img.shape == matplotlib.image.imread(blank).shape
    assert (img != matplotlib.image.imread(blank)).any()  # the curves were drawn
    assert [p.name for p in tmp_path.iterdir() if ".part" in p.name] == []


def test_tick_labels_avoid_mathtext():
    """The widget's live plot and the worker's PNG may draw at once; mathtext parsing is not thread-safe."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from napari_medgen.training.history import draw_losses

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_losses(ax, [{"step": s, "loss": 0.04 + 0.001 * s} for s in range(1, 20)])
    fig.canvas.draw()
    assert ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_yticklabels(which="both") if t.get_text()]
    assert labels and not any("$" in label for label in labels)


def test_long_curves_get_a_running_mean_over_the_raw_steps():
    """Under 100 values each loss is one line; from 100 on, the raw steps plus a trailing mean of about 2 %."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from napari_medgen.training.history import draw_losses, running_mean, smoothing_window

    assert running_mean([1.0, 3.0, 5.0, 7.0], 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert smoothing_window(99) == 1 and smoothing_window(1000) == 20
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    records = [{"step": s, "loss": 1.0 + (s % 2)} for s in range(1, 201)]
    draw_losses(ax, records)
    raw, mean = ax.get_lines()
    assert len(raw.get_ydata()) == 200 and mean.get_label() == "loss (mean of 4 steps)"
    assert np.allclose(mean.get_ydata()[3:], 1.5)
    draw_losses(ax, records[:50])
    assert len(ax.get_lines()) == 1
