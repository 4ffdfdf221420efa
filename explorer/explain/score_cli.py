"""``python -m explorer score IMAGE... --model SPEC``: which attribution map to trust, measured.

Prints one row per method and one column per measure, with the direction that is better (↓ lower,
↑ higher) and the best of each column starred; ``--json`` prints the whole scorecard instead.
"""

from __future__ import annotations

import argparse
import json

from explorer.devices import DEVICE_HELP, DEVICES
from explorer.spec import parse_assignments
from explorer.spec.arguments import seed_value
from explorer.weights.arguments import add_model_arguments


def _split(items: list[str] | None) -> list[str] | None:
    if not items:
        return None
    return [word for item in items for word in item.replace(",", " ").split()]


def _method_options(items: list[str]) -> dict[str, dict[str, str]]:
    """``["ig.steps=8", "occlusion.window=8"]`` → ``{"ig": {"steps": "8"}, "occlusion": {"window": "8"}}``."""
    from explorer.explain.base import get_method
    from explorer.explain.errors import ExplainError

    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, option = key.strip().partition(".")
        if not sep or not dot or not method or not option:
            raise ExplainError(f"option '{item}': expected METHOD.KEY=VALUE, e.g. ig.steps=8")
        out.setdefault(get_method(method).name, {})[option.strip().replace("-", "_")] = value.strip()
    return out


def format_scorecard(card) -> str:
    """The scorecard as a text table (the rows the app shows: :func:`~explorer.explain.score_figures.scorecard_rows`)
    with each measure's direction, the chance level and the notes."""
    from explorer.explain.base import get_method
    from explorer.explain.score_figures import BEST, CHANCE_LABEL, scorecard_rows
    from explorer.explain.scorecard import METRICS

    rows = scorecard_rows(card)
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(row[k]) for row in rows)) for k in keys}
    line = lambda row: "  ".join(  # noqa: E731 - the method left-aligned, the numbers right-aligned
        f"{row[k]:<{widths[k]}s}" if k == "method" else f"{row[k]:>{widths[k]}s}" for k in keys)
    head = line({k: k for k in keys})
    lines = [head, "-" * len(head), *(line(row) for row in rows)]
    lines.append("")
    lines.append(f"↓ lower is better, ↑ higher is better; {BEST} the best of each column; ± the spread over the images")
    for m in card.metrics:
        lines.append(f"  {m}: {METRICS[m].summary} ({METRICS[m].source})")
    if card.chance:
        lines.append(f"  {CHANCE_LABEL}: the same curves with the pixels in a random order (the level a map must beat)")
    for row in card.rows:
        if row.note:
            lines.append(f"note: {get_method(row.method).title} × {row.metric}: {row.note}")
    for method, notes in card.method_notes.items():
        for note in notes:
            lines.append(f"note: {get_method(method).title}: {note}")
    for note in card.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _score(args: argparse.Namespace) -> int:
    from explorer.explain.progress import tqdm_progress
    from explorer.explain.scorecard import score

    knobs = parse_assignments(list(args.overrides))
    progress, close = (None, lambda: None) if args.quiet or args.json else tqdm_progress("scorecard")
    try:
        card = score(args.images, args.model, weights=args.weights, methods=_split(args.methods),
                     metrics=_split(args.metrics), target=args.target, device=args.device, seed=args.seed,
                     progress=progress, steps=args.steps, baseline=args.baseline, samples=args.samples,
                     radius=args.radius, batch=args.batch, options=_method_options(args.options),
                     fold=not args.as_built, knobs=knobs or None)
    finally:
        close()
    if args.json:
        print(json.dumps(card.to_dict(), indent=2))
        return 0
    targets = sorted({label or str(t) for t, label in zip(card.targets, card.target_labels)})
    what = "the predicted class" if args.target is None else f"class {', '.join(targets)}"
    print(f"Scorecard: {card.network}; {len(card.images)} image{'s' if len(card.images) != 1 else ''}, "
          f"explaining {what}; {card.seconds:.1f} s on {card.device}")
    print(format_scorecard(card))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``score`` subcommand."""
    from explorer.explain.scorecard import DEFAULT_BATCH, DEFAULT_RADIUS, DEFAULT_SAMPLES, DEFAULT_STEPS, METRIC_ORDER

    p = sub.add_parser(
        "score", help="which map to trust: every attribution method measured on your images",
        description="Measure attribution methods on IMAGEs: deletion and insertion curves, infidelity, "
                    "max-sensitivity, cascading randomization by flow, random logit and sparseness, with the "
                    "direction that is better. Errors are one line on stderr and exit code 2.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG, PNG, WebP, BMP, GIF or TIFF files")
    add_model_arguments(p)
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help="methods to score (default all: saliency ig smoothgrad guided-backprop gradcam "
                        "guided-gradcam occlusion)")
    p.add_argument("--metrics", nargs="+", default=None, metavar="METRIC",
                   help=f"measures (default all: {' '.join(METRIC_ORDER)})")
    p.add_argument("--target", default=None, metavar="CLASS",
                   help="one class index or name for every image (default: each image's predicted class)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"deletion/insertion steps (default {DEFAULT_STEPS})")
    p.add_argument("--baseline", default=None, choices=("zero", "mean", "blur"),
                   help="what replaces the pixels in deletion/insertion (default zero: the all-zero input)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"noise draws per image for infidelity and sensitivity (default {DEFAULT_SAMPLES})")
    p.add_argument("--radius", type=float, default=DEFAULT_RADIUS,
                   help=f"sensitivity's noise radius in input units (default {DEFAULT_RADIUS})")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                   help=f"perturbed images per forward pass (default {DEFAULT_BATCH})")
    p.add_argument("--option", "-o", dest="options", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a method option, repeatable, e.g. -o ig.steps=8 -o occlusion.window=8")
    p.add_argument("--as-built", action="store_true",
                   help="run Saliency, IG, SmoothGrad and Occlusion on the model as built, not the folded copy")
    p.add_argument("--device", default="auto", choices=DEVICES, help=DEVICE_HELP)
    p.add_argument("--seed", type=seed_value, default=0,
                   help="seed of every random draw and of random weights (default 0)")
    p.add_argument("--json", action="store_true", help="print the whole scorecard as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_score)

