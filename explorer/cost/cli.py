"""``python -m explorer costs | diff | whatif``: the cost model from the command line.

No torch on this path: a cost answer takes the time of Python's start plus
a few milliseconds.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from explorer.cost.counts import DTYPE_BYTES, LEVELS, count_costs
from explorer.cost.diff import diff_specs
from explorer.cost.tables import cost_csv, cost_table, diff_table, whatif_table
from explorer.cost.whatif import what_if
from explorer.errors import UsageError
from explorer.spec import load_spec
from explorer.spec.arguments import add_spec_arguments, resolve_spec

MAX_BATCH = 2**20  # a ceiling on the arithmetic (a batch is held to the memory limits where it runs)


def parse_batch(text: str) -> int:
    """``--batch`` as a whole number from 1 to :data:`MAX_BATCH`, else a one-line :class:`UsageError`."""
    try:
        batch = int(text) if len(text) <= 20 else 0
    except ValueError:
        batch = 0
    if not 1 <= batch <= MAX_BATCH:
        raise UsageError("batch", f"must be a whole number from 1 to {MAX_BATCH:,}, got '{text[:40]}'")
    return batch


def parse_level(text: str) -> str:
    """``--by`` as one of the levels, else a one-line :class:`UsageError`."""
    if text not in LEVELS:
        raise UsageError("by", f"unknown level '{text}' (choose from {', '.join(LEVELS)})")
    return text


def _label(name: str, overrides: Sequence[str]) -> str:
    return name + "".join(f" --set {o}" for o in overrides)


def _costs(args: argparse.Namespace) -> int:
    batch, level = parse_batch(args.batch), parse_level(args.by)
    report = count_costs(resolve_spec(args.spec, args.overrides), batch, args.dtype)
    if args.format == "json":
        data = report.to_dict()
        if level != "layer":
            data["by"], data["groups"] = level, report.by(level)
        print(json.dumps(data, indent=2))
    elif args.format == "csv":
        print(cost_csv(report, level), end="")
    else:
        print(cost_table(report, level))
    return 0


def _diff(args: argparse.Namespace) -> int:
    batch = parse_batch(args.batch)
    spec_a = load_spec(args.spec)
    name_b = args.spec_b or args.spec
    spec_b = resolve_spec(name_b, args.overrides)
    diff = diff_specs(spec_a, spec_b, batch, args.dtype)
    if args.format == "json":
        print(json.dumps(diff.to_dict(), indent=2))
    else:
        print(diff_table(diff, args.spec, _label(name_b, args.overrides)))
    return 0


def _whatif(args: argparse.Namespace) -> int:
    batch = parse_batch(args.batch)
    result = what_if(resolve_spec(args.spec, args.overrides), batch)
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(whatif_table(result))
    return 0


def _common(p: argparse.ArgumentParser, csv: bool = False) -> None:
    # Validated by the handlers, not argparse, so a bad value is one line and exit 2.
    p.add_argument("--batch", default="1", metavar="B", help="batch size (default 1)")
    p.add_argument("--dtype", default="float32", metavar="DTYPE",
                   help=f"element type for memory: {', '.join(DTYPE_BYTES)} (default float32)")
    p.set_defaults(format="table")
    p.add_argument("--json", dest="format", action="store_const", const="json", help="print JSON")
    if csv:
        p.add_argument("--csv", dest="format", action="store_const", const="csv", help="print CSV")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``costs``, ``diff`` and ``whatif`` subcommands."""
    p = sub.add_parser("costs", help="parameters, MACs, element-wise ops and memory per layer, block, flow or kind",
                       description="Costs from the spec alone (no model is built). MACs are multiply-accumulates; "
                                   "FLOPs = 2 x MACs; element-wise ops (batch norm, activations, adds, pooling) "
                                   "are counted apart.")
    add_spec_arguments(p)
    p.add_argument("--by", default="layer", metavar="LEVEL", help=f"rows per {' | '.join(LEVELS)} (default layer)")
    _common(p, csv=True)
    p.set_defaults(handler=_costs)

    p = sub.add_parser("diff", help="per-layer and total cost deltas between two specs (B - A)",
                       description="Compare spec A with spec B (default: A again); --set overrides apply to B.")
    p.add_argument("spec", metavar="SPEC", help="spec A: a preset or a YAML file")
    p.add_argument("spec_b", metavar="SPEC_B", nargs="?", default=None, help="spec B (default: SPEC)")
    add_spec_arguments(p, positional=False)
    _common(p)
    p.set_defaults(handler=_diff)

    p = sub.add_parser("whatif", help="each separable conv against a regular conv, and totals across segments",
                       description="The paper's comparison: separable / regular = 1/N + 1/D_K^2.")
    add_spec_arguments(p)
    _common(p)
    p.set_defaults(handler=_whatif)
