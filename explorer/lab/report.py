"""An ablation's results for people and files: its figure, its tables (CSV, Markdown) and the folder
that holds them (``ablation.json``, ``runs.csv``, ``summary.csv``, ``curves.html``, ``curves.png``).

Depends on :mod:`explorer.lab.ablate` (the results as plain data), never the reverse. The figure
is drawn like the paper's Figures 9 and 10: one line style per variant, the mean over seeds as a
line and mean ± standard deviation (sample, ``ddof=1``) as a band. Variants are named in words
("residual off, ReLU mid activation" rather than ``residual=false, mid_activation=relu``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from explorer.errors import UsageError
from explorer.files import atomic_write_bytes, atomic_write_text
from explorer.lab.ablate import AblationError, AblationResult, SummaryRow, Variant, knob_text, make_variants
from explorer.lab.figures import (
    COLOURS,
    accuracy_axis,
    epoch_axis,
    hover_template,
    legend_below,
    loss_axis,
    rgba,
)
from explorer.lab.train import METRICS, EpochStats
from explorer.spec.knobs import describe_knob

FILES = {"json": "ablation.json", "runs": "runs.csv", "summary": "summary.csv",
         "html": "curves.html", "png": "curves.png"}
DASHES = ("solid", "dash", "dot", "dashdot")
ABLATION_METRICS = ("test_acc", "test_loss", "train_loss")


def variant_phrase(knobs: Mapping[str, Any]) -> str:
    """A variant in words, its knobs in the order given: ``{"residual": True, "mid_activation": "none"}`` →
    ``'residual on, no mid activation'`` (``'as specified'`` when nothing varies)."""
    return ", ".join(describe_knob(k, v, short=True) for k, v in knobs.items()) or "as specified"


# -- the figure ------------------------------------------------------------------------------------

def variant_styles(result: AblationResult) -> dict[str, tuple[str, str]]:
    """(colour, dash) per variant. With two or more varied knobs and at most four values of the
    first, the first knob sets the dash and the others the colour (as in the paper's figures,
    where one switch is compared across the other's settings); else each variant gets a colour."""
    labels = result.variants()
    vary = result.vary
    if len(vary) >= 2 and len(vary[0][1]) <= len(DASHES):
        rest = [v.label for v in make_variants(vary[1:])]
        styles = {}
        for variant in make_variants(vary):
            first, *others = variant.knobs
            dash = DASHES[list(map(repr, vary[0][1])).index(repr(first[1]))]
            colour = COLOURS[rest.index(Variant(tuple(others)).label) % len(COLOURS)]
            styles[variant.label] = (colour, dash)
        if all(label in styles for label in labels):
            return styles
    return {label: (COLOURS[i % len(COLOURS)], "solid") for i, label in enumerate(labels)}


def ablation_figure(result: AblationResult, metrics: Sequence[str] = ABLATION_METRICS):
    """One panel per metric, one line style per variant: the mean over seeds as a line, ±1 std as a band.

    The legend names each variant in words with its final test accuracy (mean ± std over its
    seeds). Bands are clipped to 0–100 % on accuracy panels and to a quarter of the mean on
    the logarithmic loss panels (where mean − std can be negative).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    for metric in metrics:
        if metric not in METRICS:
            raise UsageError("metrics", f"unknown metric '{metric}' (known: {', '.join(METRICS)})")
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
                                            fillcolor=rgba(colour, 0.18), line={"width": 0}, hoverinfo="skip",
                                            legendgroup=label, showlegend=False), row=1, col=col)
            figure.add_trace(go.Scatter(x=epochs, y=mean, mode="lines+markers", name=name, legendgroup=label,
                                        showlegend=col == 1, hovertemplate=hover_template(metric),
                                        line={"color": colour, "width": 2, "dash": dash},
                                        marker={"size": 4}), row=1, col=col)
    for col, metric in enumerate(metrics, 1):
        epoch_axis(figure, col, None, last)
        axis = loss_axis(plotted[metric]) if "loss" in metric else accuracy_axis(plotted[metric])
        figure.update_yaxes(**axis, row=1, col=col)
    n_seeds = max((row.seeds for row in summary.values()), default=0)
    spread = ", band ±1 std" if n_seeds > 1 else ""
    figure.update_layout(
        title={"text": f"{result.spec_name} on {result.data.split(':')[0]}<br><sup>mean of {n_seeds:,} seed"
                       f"{'s' if n_seeds != 1 else ''}{spread}; loss on a log scale</sup>"},
        template="plotly_white")
    legend_below(figure, len(summary), one_per_row=True, top=105, title="variant: final test accuracy")
    return figure


# -- the tables ------------------------------------------------------------------------------------

def summary_markdown(result: AblationResult) -> str:
    """The final numbers as a Markdown table (accuracies in %, mean ± std over seeds)."""
    knobs = [k for k, _ in result.vary]
    head = [*(knobs or ["variant"]), "seeds", "epochs", "final test accuracy", "best test accuracy",
            "final test loss", "final train loss", "time per run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result.summary():
        cells = [knob_text(row.knobs[k]) for k in knobs] or [row.variant]
        cells += [str(row.seeds), str(row.epochs), f"{100 * row.test_acc_mean:.2f} ± {100 * row.test_acc_std:.2f} %",
                  f"{100 * row.best_test_acc_mean:.2f} %", f"{row.test_loss_mean:.4f} ± {row.test_loss_std:.4f}",
                  f"{row.train_loss_mean:.4f}", f"{row.seconds_mean:.0f} s"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- the files -------------------------------------------------------------------------------------

def write_tables(result: AblationResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``ablation.json``, ``runs.csv`` (one row per run and epoch) and ``summary.csv``.

    Cheap enough to call after every run: ``run_ablation(..., on_run=lambda r: write_tables(r, out))``.
    Each file is replaced whole (a run stopped while writing leaves the previous version).
    """
    out = Path(out_dir)
    knobs = [k for k, _ in result.vary]
    paths = {key: out / FILES[key] for key in ("json", "runs", "summary")}
    atomic_write_text(paths["json"], json.dumps(result.to_dict(), indent=1), mode=None)
    fields = list(EpochStats.__dataclass_fields__)
    runs = io.StringIO(newline="")
    writer = csv.writer(runs)
    writer.writerow(["variant", *knobs, "seed", *fields])
    for run in result.runs:
        for h in run.history:
            writer.writerow([run.variant, *(knob_text(run.knobs.get(k)) for k in knobs), run.seed,
                             *(getattr(h, name) for name in fields)])
    atomic_write_text(paths["runs"], runs.getvalue(), mode=None)
    summary = io.StringIO(newline="")
    writer = csv.writer(summary)
    columns = [c for c in SummaryRow.__dataclass_fields__ if c not in ("variant", "knobs")]
    writer.writerow(["variant", *knobs, *columns])
    for row in result.summary():
        writer.writerow([row.variant, *(knob_text(row.knobs.get(k)) for k in knobs),
                         *(getattr(row, c) for c in columns)])
    atomic_write_text(paths["summary"], summary.getvalue(), mode=None)
    return paths


def write_results(result: AblationResult, out_dir: str | Path, *, png: bool = True,
                  metrics: Sequence[str] = ABLATION_METRICS) -> tuple[dict[str, Path], list[str]]:
    """Write the tables and the figure (HTML, and PNG through kaleido when it works).

    Returns the paths written and notes (e.g. why no PNG was written).
    """
    paths = write_tables(result, out_dir)
    figure = ablation_figure(result, metrics)
    paths["html"] = atomic_write_text(Path(out_dir) / FILES["html"], figure.to_html(include_plotlyjs="cdn"),
                                      mode=None)
    notes: list[str] = []
    if png:
        try:
            image = figure.to_image(format="png", width=400 + 450 * len(metrics), height=560, scale=2)
        except Exception as exc:  # noqa: BLE001 - kaleido fails in many ways without a browser
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            notes.append(f"no PNG written (plotly's image export failed: {first})")
        else:
            paths["png"] = atomic_write_bytes(Path(out_dir) / FILES["png"], image, mode=None)
    return paths, notes


def load_ablation(path: str | Path) -> AblationResult:
    """Read an ablation's ``ablation.json`` (or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILES["json"]
    if not path.is_file():
        raise AblationError(f"no ablation results at '{path}'")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AblationError(f"cannot read '{path}': {exc}") from None
    return AblationResult.from_dict(data)
