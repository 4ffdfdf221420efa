"""Plotly figures of the lab: one training's curves (live or finished) and an ablation's overlaid curves.

Also the words people read for the lab's knobs and variants ("residual off, ReLU mid
activation" rather than ``residual=false, mid_activation=relu``). Accuracy axes stay
within 0–100 % and loss axes are logarithmic with labelled 1-2-5 ticks, at any width.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from explorer.lab.train import METRICS, EpochStats
from explorer.plots import log_axis
from explorer.spec import SpecError
from explorer.spec.knobs import describe_knob

if TYPE_CHECKING:  # pragma: no cover
    from explorer.lab.ablate import AblationResult

COLOURS = ("#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F",
           "#BCBD22", "#17BECF")

KNOB_LABELS: dict[str, str] = {
    "residual": "residual connections",
    "mid_activation": "activation between depthwise and pointwise",
    "middle_repeats": "middle-flow blocks",
    "width": "width multiplier",
    "segments": "segments of the spatial conv",
    "input_size": "input size",
    "num_classes": "classes",
    "aux_logits": "auxiliary head",
}

def knob_phrase(name: str, value: Any) -> str:
    """A knob's value in words, short enough for a legend: ``'residual off'``, ``'ReLU mid activation'``."""
    return describe_knob(name, value, short=True)


def variant_phrase(knobs: Mapping[str, Any]) -> str:
    """A variant in words: ``{"residual": True, "mid_activation": "none"}`` →
    ``'residual on, no mid activation'`` (``'as specified'`` when nothing varies)."""
    return ", ".join(knob_phrase(k, v) for k, v in knobs.items()) or "as specified"


def _rgba(colour: str, alpha: float) -> str:
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


def _xaxis(figure, col: int, epochs: int | None, last: int) -> None:
    span = epochs or last
    figure.update_xaxes(title_text="epoch", row=1, col=col,
                        **({"range": [0.5, epochs + 0.5]} if epochs else {}),
                        **({"tickmode": "linear", "tick0": 1, "dtick": 1} if span and span <= 6 else {}))


def _hover(metric: str) -> str:
    return "epoch %{x}: %{y:.1%}<extra>%{fullData.name}</extra>" if "acc" in metric else \
        "epoch %{x}: %{y:.3f}<extra>%{fullData.name}</extra>"


def _legend_below(figure, entries: int, *, one_per_row: bool, top: int = 70, title: str = "") -> None:
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
                                        hovertemplate=_hover(kind), line={"color": colour, "width": 2}),
                             row=1, col=col)
        _xaxis(figure, col, epochs, len(history))
    figure.update_yaxes(**accuracy_axis(v for h in history for v in (h.train_acc, h.test_acc)), row=1, col=1)
    figure.update_yaxes(**loss_axis(v for h in history for v in (h.train_loss, h.test_loss)), row=1, col=2)
    figure.update_layout(title=title or None, template="plotly_white")
    _legend_below(figure, 2, one_per_row=False)
    return figure


DASHES = ("solid", "dash", "dot", "dashdot")
ABLATION_METRICS = ("test_acc", "test_loss", "train_loss")


def variant_styles(result: "AblationResult") -> dict[str, tuple[str, str]]:
    """(colour, dash) per variant. With two or more varied knobs and at most four values of the
    first, the first knob sets the dash and the others the colour (as in the paper's figures,
    where one switch is compared across the other's settings); else each variant gets a colour."""
    labels = result.variants()
    vary = result.vary
    if len(vary) >= 2 and len(vary[0][1]) <= len(DASHES):
        from explorer.lab.ablate import make_variants

        rest = [v.label for v in make_variants(vary[1:])]
        styles = {}
        for variant in make_variants(vary):
            first, *others = variant.knobs
            dash = DASHES[list(map(repr, vary[0][1])).index(repr(first[1]))]
            colour = COLOURS[rest.index(", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                                                  for k, v in others)) % len(COLOURS)]
            styles[variant.label] = (colour, dash)
        if all(label in styles for label in labels):
            return styles
    return {label: (COLOURS[i % len(COLOURS)], "solid") for i, label in enumerate(labels)}


def ablation_figure(result: "AblationResult", metrics: Sequence[str] = ABLATION_METRICS):
    """One panel per metric, one line style per variant: the mean over seeds as a line, ±1 std as a band.

    The legend names each variant in words with its final test accuracy (mean ± std over its
    seeds). Bands are clipped to 0–100 % on accuracy panels and to a quarter of the mean on
    the logarithmic loss panels (where mean − std can be negative).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    for metric in metrics:
        if metric not in METRICS:
            raise SpecError("metric", f"unknown metric '{metric}' (known: {', '.join(METRICS)})")
    figure = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRICS[m] for m in metrics],
                           horizontal_spacing=0.09)
    summary = {row.variant: row for row in result.summary()}
    styles = variant_styles(result)
    plotted: dict[str, list[float]] = {m: [] for m in metrics}
    last = 0
    for label in (v for v in result.variants() if v in summary):
        colour, dash = styles[label]
        row = summary[label]
        accuracy = (f"{100 * row.test_acc_mean:.1f} ± {100 * row.test_acc_std:.1f} %" if row.seeds > 1
                    else f"{100 * row.test_acc_mean:.1f} %")
        name = f"{variant_phrase(row.knobs) if result.vary else label}: {accuracy}"
        for col, metric in enumerate(metrics, 1):
            epochs, mean, std = result.mean_curve(label, metric)
            last = max(last, len(epochs))
            plotted[metric] += mean
            if row.seeds > 1:
                if "loss" in metric:
                    upper = [m + s for m, s in zip(mean, std)]
                    lower = [max(m - s, m / 4) for m, s in zip(mean, std)]
                else:
                    upper = [min(1.0, m + s) for m, s in zip(mean, std)]
                    lower = [max(0.0, m - s) for m, s in zip(mean, std)]
                plotted[metric] += upper + lower
                figure.add_trace(go.Scatter(x=epochs + epochs[::-1], y=upper + lower[::-1], fill="toself", mode="lines",
                                            fillcolor=_rgba(colour, 0.18), line={"width": 0}, hoverinfo="skip",
                                            legendgroup=label, showlegend=False), row=1, col=col)
            figure.add_trace(go.Scatter(x=epochs, y=mean, mode="lines+markers", name=name, legendgroup=label,
                                        showlegend=col == 1, hovertemplate=_hover(metric),
                                        line={"color": colour, "width": 2, "dash": dash},
                                        marker={"size": 4}), row=1, col=col)
    for col, metric in enumerate(metrics, 1):
        _xaxis(figure, col, None, last)
        axis = loss_axis(plotted[metric]) if "loss" in metric else accuracy_axis(plotted[metric])
        figure.update_yaxes(**axis, row=1, col=col)
    n_seeds = max((row.seeds for row in summary.values()), default=0)
    spread = ", band ±1 std" if n_seeds > 1 else ""
    figure.update_layout(
        title={"text": f"{result.spec_name} on {result.data.split(':')[0]}<br><sup>mean of {n_seeds:,} seed"
                       f"{'s' if n_seeds != 1 else ''}{spread}; loss on a log scale</sup>"},
        template="plotly_white")
    _legend_below(figure, len(summary), one_per_row=True, top=105, title="variant: final test accuracy")
    return figure
