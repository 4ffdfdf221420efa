"""Plotly figures of one training's curves (live or finished), and the axes the lab's figures share.

Accuracy axes stay within 0–100 % and loss axes are logarithmic with labelled 1-2-5
ticks, at any width. An ablation's overlaid curves are drawn by
:func:`explorer.lab.report.ablation_figure` with the same axes.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from explorer.lab.train import EpochStats
from explorer.plots import log_axis

COLOURS = ("#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F",
           "#BCBD22", "#17BECF")


def rgba(colour: str, alpha: float) -> str:
    """``"#1F77B4"`` with opacity ``alpha`` as plotly's ``rgba(...)``."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def accuracy_axis(values: Iterable[float]) -> dict[str, Any]:
    """Layout for an accuracy axis (fractions shown as %): the data's span with a little room,
    never below 0 % or above 100 % except a sliver that keeps markers on the edge whole."""
    finite = [min(1.0, max(0.0, v)) for v in _finite(values)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pad = max(0.02, 0.08 * (high - low))
    low, high = max(0.0, low - pad), min(1.0, high + pad)
    edge = 0.015 * (high - low)
    return {"range": [low - edge, high + edge], "tickformat": ".0%" if high - low > 0.06 else ".1%"}


_FINE_STEPS = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)


def loss_axis(values: Iterable[float]) -> dict[str, Any]:
    """Layout for a loss axis: logarithmic, 1-2-5 ticks labelled "0.05", "0.1", "0.2"; finer
    ticks ("2", "2.5") when the data spans less than a factor of 2.5, as a short run's loss does."""
    positive = [v for v in _finite(values) if v > 0]
    axis = log_axis(positive)
    if not positive or max(positive) / min(positive) >= 2.5:
        return axis
    low, high = min(positive), max(positive)
    ticks = [round(m * 10.0 ** e, 12) for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
             for m in _FINE_STEPS]
    chosen = ([t for t in ticks if t < low / 1.0001][-1:] + [t for t in ticks if low / 1.0001 <= t <= high * 1.0001]
              + [t for t in ticks if t > high * 1.0001][:1])
    return {**axis, "tickvals": chosen, "ticktext": [f"{t:g}" for t in chosen],
            "range": [math.log10(chosen[0]), math.log10(chosen[-1])]}


def epoch_axis(figure, col: int, epochs: int | None, last: int) -> None:
    """The epoch axis of panel ``col``: fixed to ``epochs`` when given, a tick per epoch when few."""
    span = epochs or last
    figure.update_xaxes(title_text="epoch", row=1, col=col,
                        **({"range": [0.5, epochs + 0.5]} if epochs else {}),
                        **({"tickmode": "linear", "tick0": 1, "dtick": 1} if span and span <= 6 else {}))


def hover_template(metric: str) -> str:
    """Hover text of a curve: accuracies in %, losses with three decimals."""
    return "epoch %{x}: %{y:.1%}<extra>%{fullData.name}</extra>" if "acc" in metric else \
        "epoch %{x}: %{y:.3f}<extra>%{fullData.name}</extra>"


def legend_below(figure, entries: int, *, one_per_row: bool, top: int = 70, title: str = "") -> None:
    """Put the legend at the foot of the figure, in a margin sized for its rows."""
    # The legend sits at the foot of the figure with room of its own: a legend placed relative
    # to the plots lands on the axis titles once a narrow screen wraps it into more rows.
    rows = (entries if one_per_row else 1) + bool(title)
    bottom = 60 + 21 * rows
    figure.update_layout(
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0, "xanchor": "left",
                **({"entrywidth": 1, "entrywidthmode": "fraction"} if one_per_row else {}),
                **({"title": {"text": title, "side": "top"}} if title else {})},
        margin={"t": top, "b": bottom, "l": 50, "r": 20}, height=300 + top + bottom)


def training_figure(history: Sequence[EpochStats], *, epochs: int | None = None, title: str = ""):
    """Accuracy and loss per epoch, training and test, in two panels.

    ``epochs`` fixes the x axis to the planned run, so live curves do not rescale as they grow.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=["accuracy", "loss (log scale)"],
                           horizontal_spacing=0.12)
    x = [h.epoch for h in history]
    for col, kind in enumerate(("acc", "loss"), 1):
        for part, name, colour in (("train", "training", COLOURS[0]), ("test", "test", COLOURS[1])):
            figure.add_trace(go.Scatter(x=x, y=[getattr(h, f"{part}_{kind}") for h in history],
                                        mode="lines+markers", name=name, legendgroup=part, showlegend=col == 1,
                                        hovertemplate=hover_template(kind), line={"color": colour, "width": 2}),
                             row=1, col=col)
        epoch_axis(figure, col, epochs, len(history))
    figure.update_yaxes(**accuracy_axis(v for h in history for v in (h.train_acc, h.test_acc)), row=1, col=1)
    figure.update_yaxes(**loss_axis(v for h in history for v in (h.train_loss, h.test_loss)), row=1, col=2)
    figure.update_layout(title=title or None, template="plotly_white")
    legend_below(figure, 2, one_per_row=False)
    return figure
