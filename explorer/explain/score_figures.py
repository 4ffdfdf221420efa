"""Figures and table rows of a :class:`~explorer.explain.scorecard.Scorecard`: which map to trust, drawn.

* :func:`curves_figure`: the deletion and insertion curves side by side, one line per method (the mean
  over the images), the random-order chance curve dashed, each line's area under the curve in its legend;
* :func:`cascade_figure`: the cascading randomization picture (Adebayo et al., 2018): a row per method,
  the original map of the first image then its map after each stage of re-initialization, all on ONE
  colour range (each map in units of its own mean |value|, as ``scale_maps(scale="shared")`` does), the
  mean rank correlation with the original under each re-initialized map;
* :func:`scorecard_rows`: plain rows for a table: a method per row, a measure per column with its
  direction in the header, the mean (± the spread over the images), the best of each column marked,
  and the chance row for deletion and insertion.

No Streamlit here: the app, the CLI and the tests draw the same figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from explorer.explain.base import get_method
from explorer.explain.errors import ExplainError
from explorer.explain.views import COLORSCALES, scale_maps

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from explorer.explain.scorecard import Scorecard

BEST = "★"
ARROWS = {"lower": "↓", "higher": "↑"}
CHANCE_LABEL = "random order (chance)"
CHANCE_COLOUR = "#7f7f7f"
METHOD_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
CASCADE_SIDE = 96  # a cascade cell is drawn at most this many pixels a side (block means): light to send
NO_MAP = "no map"


def method_title(method: str) -> str:
    """A method's name as people read it (``ig`` → ``Integrated Gradients``)."""
    return get_method(method).title


def column(metric: str) -> str:
    """A measure's column header with the direction that is better: ``deletion ↓``, ``insertion ↑``."""
    from explorer.explain.scorecard import METRICS

    return f"{metric.replace('_', ' ')} {ARROWS[METRICS[metric].direction]}"


def number(value: float) -> str:
    """Three significant digits: ``0.139``, ``0.0304``, ``1.2e-05``."""
    return f"{value:.3g}"


def _colour(card: Scorecard, method: str) -> str:
    return METHOD_COLOURS[list(card.methods).index(method) % len(METHOD_COLOURS)]


# -- the table ---------------------------------------------------------------------------------------


def scorecard_rows(card: Scorecard) -> list[dict[str, str]]:
    """One dict per method (``method``: its title, then a column per measure, see :func:`column`) holding
    ``mean ± spread`` (the spread, a standard deviation over the images, only when more than one image
    counted), ``–`` where the measure has no value, and :data:`BEST` after the best of each column
    (:meth:`Scorecard.best`); then a chance row (random pixel orders) when deletion or insertion was measured."""
    best = {metric: card.best(metric) for metric in card.metrics}
    rows: list[dict[str, str]] = []
    for method in card.methods:
        entry = {"method": method_title(method)}
        for metric in card.metrics:
            row = card.row(method, metric)
            if not row.n:
                text = "–"
            else:
                text = number(row.mean) + (f" ± {number(row.spread)}" if row.n > 1 else "")
                if best[metric] == method:
                    text += f" {BEST}"
            entry[column(metric)] = text
        rows.append(entry)
    chance = {metric: value for metric, value in card.chance.items() if metric in card.metrics}
    if chance:
        entry = {"method": CHANCE_LABEL}
        for metric in card.metrics:
            entry[column(metric)] = number(chance[metric]) if metric in chance and np.isfinite(chance[metric]) else ""
        rows.append(entry)
    return rows


# -- the curves --------------------------------------------------------------------------------------

def _fractions(card, points: int) -> np.ndarray:
    """The curve's x: the fraction of pixels after each step (even steps if the card does not say)."""
    if card.fractions is not None and len(card.fractions) == points:
        return np.asarray(card.fractions, dtype=float)
    return np.linspace(0.0, 1.0, points)


_CURVE_TEXT = {"deletion": ("Deletion", "fraction of pixels removed"),
               "insertion": ("Insertion", "fraction of pixels inserted")}


def curves_figure(card: Scorecard, *, height: int | None = None) -> go.Figure:
    """The deletion and insertion curves side by side (the measures the card has of the two): x the
    fraction of pixels removed (inserted) in the map's order, y the probability of the target class, the
    mean over the images; a line per method with its AUC in the panel's own legend (the best marked), the
    chance curve of random orders dashed."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from explorer.explain.scorecard import METRICS

    panels = [metric for metric in ("deletion", "insertion") if metric in card.metrics]
    if not panels:
        raise ExplainError("the scorecard has neither deletion nor insertion: no curves to draw")
    titles = [f"{_CURVE_TEXT[m][0]} ({METRICS[m].direction} AUC is better)" for m in panels]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles, horizontal_spacing=0.1)
    entries = 0
    for col, metric in enumerate(panels, start=1):
        legend = "legend" if col == 1 else f"legend{col}"
        best = card.best(metric)
        count = 0
        for method in card.methods:
            curve = card.curves.get(metric, {}).get(method)
            if curve is None:
                continue
            auc = card.row(method, metric).mean
            mark = f" {BEST}" if method == best else ""
            fig.add_trace(go.Scatter(
                x=_fractions(card, len(curve)), y=np.asarray(curve, dtype=float), mode="lines",
                name=f"{method_title(method)} · AUC {number(auc)}{mark}", legend=legend, legendgroup=method,
                line={"color": _colour(card, method), "width": 2},
                hovertemplate=f"{method_title(method)}: %{{y:.1%}} at %{{x:.0%}}<extra></extra>"),
                row=1, col=col)
            count += 1
        chance = card.chance_curves.get(metric)
        if chance is not None:
            fig.add_trace(go.Scatter(
                x=_fractions(card, len(chance)), y=np.asarray(chance, dtype=float), mode="lines",
                name=f"{CHANCE_LABEL} · AUC {number(card.chance[metric])}", legend=legend,
                line={"color": CHANCE_COLOUR, "width": 2, "dash": "dash"},
                hovertemplate="random order: %{y:.1%} at %{x:.0%}<extra></extra>"), row=1, col=col)
            count += 1
        entries = max(entries, count)
        fig.update_xaxes(title_text=_CURVE_TEXT[metric][1], range=[0, 1], tickformat=".0%", row=1, col=col)
        fig.update_yaxes(title_text="probability of the target class" if col == 1 else None, range=[0, 1.02],
                         tickformat=".0%", row=1, col=col)
    # each panel's legend under it: its AUCs are that panel's
    for col in range(1, len(panels) + 1):
        domain = fig.layout[f"xaxis{'' if col == 1 else col}"].domain
        fig.update_layout({("legend" if col == 1 else f"legend{col}"): {
            "x": domain[0], "xanchor": "left", "y": -0.22, "yanchor": "top", "orientation": "v",
            "font": {"size": 11}}})
    fig.update_layout(height=height or 380 + 20 * entries, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      showlegend=True)
    return fig


# -- the cascade -------------------------------------------------------------------------------------


def _shrink(values: np.ndarray, side: int = CASCADE_SIDE) -> np.ndarray:
    """A map at most ``side`` pixels a side, by block means (what a cell that size shows anyway)."""
    h, w = values.shape
    if max(h, w) <= side:
        return values
    from PIL import Image

    ratio = side / max(h, w)
    size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
    return np.asarray(Image.fromarray(values.astype(np.float32)).resize(size, Image.BOX), dtype=np.float64)


def cascade_figure(card: Scorecard, *, cell_px: int = 150) -> go.Figure:
    """The cascading randomization picture: a row per method, a column per map (the original, then one
    per stage of re-initialization from the top flow down), the first image's |map| on ONE colour range
    for every cell (each map in units of its own mean |value|, then one range: the 99.5th percentile of
    them all), and under each re-initialized map the mean rank correlation with the original over the
    images. A map that is missing (a flat original, a method that could not run) shows a short text."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    methods = [m for m in card.methods if m in card.cascade_maps]
    if not methods:
        raise ExplainError("the scorecard has no cascading randomization: no maps to draw")
    columns = ["original", *card.stages]
    cells = {(r, c): (card.cascade_maps[m][c] if c < len(card.cascade_maps[m]) else None)
             for r, m in enumerate(methods) for c in range(len(columns))}
    present = [key for key, v in cells.items() if v is not None]
    scaled = dict(zip(present, scale_maps([np.asarray(cells[k], dtype=np.float64) for k in present],
                                          scale="shared", sign="absolute"))) if present else {}
    top = next((s.vmax for s in scaled.values() if not s.empty), 1.0)
    fig = make_subplots(rows=len(methods), cols=len(columns), column_titles=columns,
                        row_titles=[method_title(m) for m in methods], horizontal_spacing=0.02,
                        vertical_spacing=0.12 if len(methods) > 1 else 0.02)
    for r, c in cells:
        axis = r * len(columns) + c + 1
        axis = "" if axis == 1 else str(axis)
        s = scaled.get((r, c))
        message = NO_MAP if s is None else s.empty
        if message:
            fig.add_annotation(text=message, x=0.5, y=0.5, xref=f"x{axis} domain", yref=f"y{axis} domain",
                               showarrow=False, font={"size": 11, "color": "#555"})
            fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="markers", marker={"opacity": 0}, showlegend=False,
                                     hoverinfo="skip"), row=r + 1, col=c + 1)
        else:
            fig.add_trace(go.Heatmap(z=_shrink(s.values * top), coloraxis="coloraxis",
                                     hovertemplate="%{z:.2f}× mean<extra></extra>"), row=r + 1, col=c + 1)
        if c > 0:
            rho = card.cascade.get(methods[r], [])
            caption = f"ρ {rho[c - 1]:.2f}" if c - 1 < len(rho) and np.isfinite(rho[c - 1]) else "ρ –"
            fig.add_annotation(text=caption, x=0.5, y=0.0, xref=f"x{axis} domain", yref=f"y{axis} domain",
                               yanchor="top", showarrow=False, font={"size": 11, "color": "#333"})
        fig.update_xaxes(visible=False, row=r + 1, col=c + 1)
        fig.update_yaxes(visible=False, autorange="reversed", scaleanchor=f"x{axis}", row=r + 1, col=c + 1)
    fig.update_layout(
        coloraxis={"colorscale": COLORSCALES["absolute"], "cmin": 0.0, "cmax": top,
                   "colorbar": {"title": {"text": "|attribution|, × mean of each map, one scale", "side": "top"},
                                "orientation": "h", "x": 0.5, "xanchor": "center", "y": -0.04, "yanchor": "top",
                                "len": 0.8, "thickness": 12}},
        height=max(260, cell_px * len(methods) + 150), margin={"l": 10, "r": 30, "t": 40, "b": 80},
        plot_bgcolor="white")
    return fig


def cascade_caption(card: Scorecard) -> str:
    """How to read :func:`cascade_figure`, in one sentence."""
    image = card.images[0] if card.images else "the first image"
    return (f"The maps of {image} as the network's flows are re-initialized from the top down, on one colour "
            "range. ρ: the mean rank correlation with the original map over the images. A map that keeps its "
            "look (ρ near 1) while the weights are random does not depend on what the network learned.")

