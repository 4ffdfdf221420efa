"""The ``SPEC [--set KNOB=VALUE ...]`` arguments every command takes, the spec they name, and seeds.

Here, below every feature, so that each command's module (``explorer.cost.cli``,
``explorer.infer.cli``, ...) can use them without importing the top-level
command line that lists the commands.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from explorer.errors import UsageError
from explorer.spec.io import list_presets, load_spec
from explorer.spec.knobs import KNOB_HELP, parse_assignments
from explorer.spec.schema import Spec

MAX_SEED = 2**32 - 1  # what every generator takes (torch's, numpy's), with room for seed + runs
SEED_RANGE = f"a whole number from 0 to {MAX_SEED:,}"


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


def check_seed(seed: object, argument: str = "seed") -> int:
    """``seed`` as an int from 0 to :data:`MAX_SEED`, else a :class:`UsageError` naming ``argument``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        shown = f"a {seed.bit_length():,}-bit number" if isinstance(seed, int) and seed.bit_length() > 256 \
            else repr(seed)
        raise UsageError(argument, f"must be {SEED_RANGE}, got {shown}")
    return int(seed)


def seed_value(text: str) -> int:
    """The argparse type of every ``--seed``: a whole number from 0 to :data:`MAX_SEED`."""
    try:
        value = int(text) if len(text) <= 40 else None
    except ValueError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be {SEED_RANGE}, got '{text[:40]}'")
    return value
