"""Plotly figures of the lab: one training's curves (live or finished) and an ablation's overlaid curves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from explorer.lab.train import METRICS, EpochStats
from explorer.spec import SpecError

if TYPE_CHECKING:  # pragma: no cover
    from explorer.lab.ablate import AblationResult

COLOURS = ("#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F",
           "#BCBD22", "#17BECF")


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _axes(figure, metrics: Sequence[str], epochs: int | None) -> None:
    for col, metric in enumerate(metrics, 1):
        figure.update_xaxes(title_text="epoch", row=1, col=col,
                            **({"range": [0.5, epochs + 0.5]} if epochs else {}))
        if "loss" in metric:
            figure.update_yaxes(type="log", dtick="D2", row=1, col=col)
        else:
            figure.update_yaxes(tickformat=".0%", row=1, col=col)


def training_figure(history: Sequence[EpochStats], *, epochs: int | None = None, title: str = ""):
    """Accuracy and loss per epoch, training and test, in two panels.

    ``epochs`` fixes the x axis to the planned run, so live curves do not rescale as they grow.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=["accuracy", "loss"], horizontal_spacing=0.1)
    x = [h.epoch for h in history]
    for col, kind in enumerate(("acc", "loss"), 1):
        for part, colour in (("train", COLOURS[0]), ("test", COLOURS[1])):
            figure.add_trace(go.Scatter(x=x, y=[getattr(h, f"{part}_{kind}") for h in history],
                                        mode="lines+markers", name=part, legendgroup=part, showlegend=col == 1,
                                        line={"color": colour, "width": 2}), row=1, col=col)
    _axes(figure, ("test_acc", "test_loss"), epochs)
    figure.update_layout(title=title or None, template="plotly_white", margin={"t": 60, "b": 40})
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

    The legend gives each variant's final test accuracy, mean ± std over its seeds.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    for metric in metrics:
        if metric not in METRICS:
            raise SpecError("metric", f"unknown metric '{metric}' (known: {', '.join(METRICS)})")
    figure = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRICS[m] for m in metrics],
                           horizontal_spacing=0.08)
    summary = {row.variant: row for row in result.summary()}
    styles = variant_styles(result)
    for label in (v for v in result.variants() if v in summary):
        colour, dash = styles[label]
        row = summary[label]
        name = f"{label}: {100 * row.test_acc_mean:.1f} ± {100 * row.test_acc_std:.1f} %"
        for col, metric in enumerate(metrics, 1):
            epochs, mean, std = result.mean_curve(label, metric)
            if row.seeds > 1:
                upper = [m + s for m, s in zip(mean, std)]
                lower = [max(m - s, 1e-6) if "loss" in metric else m - s for m, s in zip(mean, std)]
                figure.add_trace(go.Scatter(x=epochs + epochs[::-1], y=upper + lower[::-1], fill="toself",
                                            fillcolor=_rgba(colour, 0.18), line={"width": 0}, hoverinfo="skip",
                                            legendgroup=label, showlegend=False), row=1, col=col)
            figure.add_trace(go.Scatter(x=epochs, y=mean, mode="lines+markers", name=name, legendgroup=label,
                                        showlegend=col == 1, line={"color": colour, "width": 2, "dash": dash},
                                        marker={"size": 4}), row=1, col=col)
    _axes(figure, metrics, None)
    n_seeds = max((row.seeds for row in summary.values()), default=0)
    figure.update_layout(
        title=f"{result.spec_name} on {result.data.split(':')[0]}: mean over {n_seeds} seed"
              f"{'s' if n_seeds != 1 else ''} per variant, band = ±1 std (legend: final test accuracy)",
        template="plotly_white", legend={"orientation": "h", "y": -0.2}, margin={"t": 70, "b": 40})
    return figure
