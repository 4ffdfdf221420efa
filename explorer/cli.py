"""``python -m explorer ...``: the explorer's features from the command line.

Every subcommand lives in a module with ``register(subparsers)`` (see
``COMMANDS``); its handler
takes the parsed arguments and returns an exit code. An :class:`ExplorerError`
(bad spec, knob, image, checkpoint) is printed as one line on stderr with exit
code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import NoReturn, Sequence

from explorer.errors import ExplorerError, for_flags
from explorer.spec import dump_yaml, list_presets, load_spec
from explorer.spec.arguments import add_spec_arguments, resolve_spec

# The flag that carries each argument of the library's functions, where the names differ
# (a UsageError names the argument; the command line says the flag).
FLAGS: dict[str, str] = {"assignments": "--set", "vary": "--vary", "batch": "--batch", "by": "--by",
                         "dtype": "--dtype"}

# Each command and the module whose ``register`` adds it, in the order ``--help`` lists them.
# Only the module of the command being run is imported, so ``costs`` never loads torch.
COMMANDS: dict[str, str] = {
    "presets": "explorer.cli",
    "show": "explorer.cli",
    "limits": "explorer.cli",
    "costs": "explorer.cost.cli",
    "diff": "explorer.cost.cli",
    "whatif": "explorer.cost.cli",
    "graph": "explorer.graph.cli",
    "weights": "explorer.weights.cli",
    "classify": "explorer.infer.cli",
    "explain": "explorer.explain.cli",
    "score": "explorer.explain.score_cli",
    "train": "explorer.lab.cli",
    "ablate": "explorer.lab.cli",
    "profile": "explorer.measure.cli",
    "ceilings": "explorer.measure.cli",
}


def _presets(args: argparse.Namespace) -> int:
    for name in list_presets():
        spec = load_spec(name)
        print(f"{name:16s} {spec.description}")
    return 0


def _show(args: argparse.Namespace) -> int:
    spec = resolve_spec(args.spec, args.overrides)
    if args.format == "json":
        print(json.dumps(spec.model_dump(mode="json"), indent=2))
    else:
        print(dump_yaml(spec), end="")
    return 0


def _limits(args: argparse.Namespace) -> int:
    from explorer import resources

    rows = []
    for name, entry in resources.LIMITS.items():
        value, source = resources.setting(name)
        rows.append({"name": name, "value": value, "shown": entry.format(value), "from": source,
                     "variable": entry.env, "bounds": entry.help})
    if args.json:
        print(json.dumps([{k: v for k, v in row.items() if k != "shown"} for row in rows], indent=2))
        return 0
    width = max(len(row["name"]) for row in rows)
    shown = max(len(row["shown"]) for row in rows)
    for row in rows:
        print(f"{row['name']:{width}s}  {row['shown']:>{shown}s}  ({row['from']})  {row['bounds']}")
    print(f"\nSet one with its variable (EXPLORER_<NAME>=...) or under [limits] in {resources.config_path()}.")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list the preset specs")
    p.set_defaults(handler=_presets)
    p = sub.add_parser("limits", help="the resource limits now, where each comes from and what it bounds")
    p.add_argument("--json", action="store_true", help="as JSON (values in bytes, counts, pixels)")
    p.set_defaults(handler=_limits)
    p = sub.add_parser("show", help="print a spec with its overrides applied")
    add_spec_arguments(p)
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.set_defaults(handler=_show)


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument said as one line (``error: argument --seed: ...``), exit code 2,
    like every other user error; ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def make_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser for ``argv``: with a known command, only that command's module is loaded."""
    parser = _Parser(
        prog="python -m explorer",
        description="Xception Explorer: build, cost, draw, classify and explain depthwise separable networks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = make_parser(argv).parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ExplorerError as exc:
        print(f"error: {for_flags(exc, FLAGS)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `... | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
