"""The ``SPEC [--set KNOB=VALUE ...]`` arguments every command takes, and the spec they name.

Here, below every feature, so that each command's module (``explorer.cost.cli``,
``explorer.infer.cli``, ...) can use them without importing the top-level
command line that lists the commands.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from explorer.spec.io import list_presets, load_spec
from explorer.spec.knobs import KNOB_HELP, parse_assignments
from explorer.spec.schema import Spec


def add_spec_arguments(parser: argparse.ArgumentParser, *, positional: bool = True) -> None:
    """The common ``SPEC [--set k=v ...]`` arguments."""
    if positional:
        parser.add_argument("spec", metavar="SPEC", help=f"a preset ({', '.join(list_presets())}) or a YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KNOB=VALUE",
                        help="apply a knob; repeatable. Knobs: " +
                             "; ".join(f"{k}: {v}" for k, v in KNOB_HELP.items()))


def resolve_spec(name: str, overrides: Sequence[str]) -> Spec:
    """Load a spec and apply ``--set`` overrides."""
    spec = load_spec(name)
    knobs = parse_assignments(list(overrides))
    return spec.with_overrides(**knobs) if knobs else spec
