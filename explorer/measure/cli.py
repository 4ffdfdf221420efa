"""``python -m explorer profile | ceilings``: measured time per layer, and the machine's peak rates.

Torch is imported only when a command runs, so building the parser stays fast.
Every bad value (spec, device, dtype, batch, level, counts) is one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Callable

from explorer.cost.cli import parse_batch, parse_level
from explorer.cost.counts import LEVELS
from explorer.cost.tables import align
from explorer.devices import DEVICE_HELP, DEVICES, DTYPE_NAMES
from explorer.errors import UsageError
from explorer.spec.arguments import add_spec_arguments, resolve_spec

MIB = 2**20


def _count(text: str, flag: str, least: int) -> int:
    """A count typed after ``flag``, at least ``least``, else a one-line :class:`UsageError` naming the flag."""
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise UsageError(flag, f"must be a whole number of at least {least}, got '{text}'")
    return value


class _Bar:
    """A tqdm bar on stderr for a ``progress(fraction)`` callback, made at the first report (so an error
    found before the work starts prints alone), closed on leaving the ``with``."""

    def __init__(self, label: str, quiet: bool) -> None:
        self.label, self.quiet, self.bar = label, quiet, None

    def __call__(self, fraction: float) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=1000, desc=self.label, leave=False, file=sys.stderr,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
        self.bar.update(max(0, round(1000 * fraction) - self.bar.n))

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------- tables


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.3f}"


def _columns(level: str, fast: bool) -> list[tuple[str, Callable[[dict], str]]]:
    """The table's columns at ``level``: a header with its unit and how a row's cell reads."""
    first: list[tuple[str, Callable[[dict], str]]]
    if level == "layer":
        first = [("layer", lambda r: r["name"]), ("kind", lambda r: r["kind"])]
    else:
        first = [(level, lambda r: str(r[level]))] + ([("flow", lambda r: r["flow"])] if level == "block" else [])
        first.append(("layers", lambda r: str(r["layers"])))
    rest: list[tuple[str, Callable[[dict], str]]] = [
        ("time (ms)", lambda r: _ms(r["seconds"])),
        *([("p10–p90 (ms)", lambda r: _ms(r["spread"]))] if level == "layer" else []),
        ("time (%)", lambda r: f"{100 * r['share']:.1f}"),
        ("MACs (%)", lambda r: f"{100 * r['macs_share']:.1f}"),
        ("FLOPs (M)", lambda r: f"{r['flops'] / 1e6:,.3f}"),
        ("bytes (MiB)", lambda r: f"{r['bytes'] / MIB:,.3f}"),
        ("FLOP/byte", lambda r: f"{r['intensity']:,.2f}"),
        ("GFLOP/s", lambda r: f"{r['flops_per_s'] / 1e9:,.2f}"),
        ("GB/s", lambda r: f"{r['bytes_per_s'] / 1e9:,.2f}"),
        ("bound", lambda r: r["bound"]),
    ]
    if level == "layer" and fast:
        rest.append(("absorbed", lambda r: ", ".join(r["absorbed"])))
    return first + rest


def profile_table(profile, level: str = "layer") -> str:
    """A profile as a readable table at ``level`` (layer, block, flow or kind), then the whole forward."""
    rows = profile.by(level)
    columns = _columns(level, profile.fast)
    header = [name for name, _ in columns]
    left = {i for i, name in enumerate(header) if name in ("layer", "kind", "block", "flow", "absorbed", "bound")}
    body = [[cell(r) for _, cell in columns] for r in rows]
    c = profile.ceilings
    title = (f"{profile.spec_name}{' (fast copy)' if profile.fast else ''}: measured time per {level}, batch "
             f"{profile.batch}, {profile.dtype}, {c.device_name} [{profile.device}]; median of {profile.repeats} "
             f"repeats, p10–p90 their spread; FLOPs = 2 × MACs + element-wise ops; bytes = inputs + output + "
             f"weights")
    return "\n".join([title, "", align(header, body, left), "", summary_text(profile)])


def summary_text(profile) -> str:
    """The whole forward against the sum of the layers, the instrumentation's cost, and the ceilings."""
    lines = [
        ("forward, plain (ms, median)", _ms(profile.forward_seconds), ""),
        ("sum of the layers (ms)", _ms(profile.layer_seconds),
         f"{profile.layer_seconds / profile.forward_seconds:.3f} × the plain forward"),
        ("forward, instrumented (ms, median)", _ms(profile.instrumented_seconds),
         f"overhead {100 * profile.overhead:+.1f} %"),
    ] + [(label, value, "") for label, value in ceilings_lines(profile.ceilings)]
    text = "whole network\n" + align(["", "value", ""], [list(x) for x in lines], left=(0, 2))
    if not 0.85 <= profile.layer_seconds / profile.forward_seconds <= 1.15:
        text += ("\nnote: the layers and the forward disagree by more than 15 %: the machine was likely busy "
                 "(a long forward is interrupted more often than a short layer); measure again when it is quiet")
    return text


def ceilings_lines(c) -> list[tuple[str, str]]:
    """The ceilings as (label with unit, value) pairs, the datasheet's beside the measured ones."""
    sheet = c.datasheet_flops is not None or c.datasheet_bandwidth is not None
    lines = [
        ("peak compute, measured (GFLOP/s)", f"{c.peak_flops / 1e9:,.1f}"),
        ("memory bandwidth, measured (GB/s)", f"{c.bandwidth / 1e9:,.1f}"),
        ("ridge (FLOP/byte)", f"{c.ridge:,.2f}"),
    ]
    if sheet:
        lines += [
            ("peak compute, datasheet (GFLOP/s)",
             "–" if c.datasheet_flops is None else f"{c.datasheet_flops / 1e9:,.1f}"),
            ("memory bandwidth, datasheet (GB/s)",
             "–" if c.datasheet_bandwidth is None else f"{c.datasheet_bandwidth / 1e9:,.1f}"),
        ]
    lines.append(("ceilings measured at (UTC)", c.measured_at))
    return lines


def ceilings_table(c) -> str:
    """The ceilings of one device and dtype as a two-column table, with the datasheet's source."""
    title = f"{c.device_name} [{c.device}], {c.dtype}: the machine's ceilings"
    parts = [title, "", align(["", "value"], [list(x) for x in ceilings_lines(c)])]
    if c.datasheet_source:
        parts.append(f"datasheet: {c.datasheet_source}")
    parts.append("measured: compute = the faster of a large matrix product and a large 3×3 convolution; "
                 "bandwidth = a large copy (bytes read + written)")
    return "\n".join(parts)


def profile_csv(profile, level: str = "layer") -> str:
    """A profile's rows at ``level`` as CSV: seconds, bytes and FLOPs unscaled; ``absorbed`` joined by ``;``."""
    rows = profile.by(level)
    if level == "layer":
        fields = ["name", "kind", "flow", "block", "seconds", "spread", "share", "flops", "bytes", "macs",
                  "macs_share", "intensity", "flops_per_s", "bytes_per_s", "bound", "absorbed"]
    else:
        fields = [level] + (["flow"] if level == "block" else []) + [
            "layers", "seconds", "share", "flops", "bytes", "macs", "macs_share", "intensity", "flops_per_s",
            "bytes_per_s", "bound"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, **({"absorbed": ";".join(r["absorbed"])} if "absorbed" in r else {})})
    return out.getvalue()


# ---------------------------------------------------------------- commands


def _profile(args: argparse.Namespace) -> int:
    from explorer.measure.timing import profile

    batch, level = parse_batch(args.batch), parse_level(args.by)
    repeats, warmup = _count(args.repeats, "--repeats", 1), _count(args.warmup, "--warmup", 0)
    spec = resolve_spec(args.spec, args.overrides)
    with _Bar(f"profiling {spec.name}", args.quiet) as bar:
        result = profile(spec, batch=batch, device=args.device, dtype=args.dtype, warmup=warmup,
                         repeats=repeats, fast=args.fast, progress=bar)
    writers = {
        "json": lambda: json.dumps({**result.to_dict(), **({"by": level, "groups": result.by(level)}
                                                          if level != "layer" else {})}, indent=2) + "\n",
        "csv": lambda: profile_csv(result, level),
        "table": lambda: profile_table(result, level) + "\n",
    }
    sys.stdout.write(writers[args.format]())
    return 0


def _ceilings(args: argparse.Namespace) -> int:
    from explorer.measure.machine import ceilings

    with _Bar("measuring", args.quiet) as bar:
        result = ceilings(args.device, args.dtype, remeasure=args.remeasure, progress=bar)
    print(json.dumps(result.to_dict(), indent=2) if args.json else ceilings_table(result))
    return 0


def _device_arguments(p: argparse.ArgumentParser) -> None:
    # Checked by the library, not argparse, so a bad value is one line and exit 2.
    p.add_argument("--device", default="auto", metavar="DEVICE", help=f"{' | '.join(DEVICES)}. {DEVICE_HELP}")
    p.add_argument("--dtype", default="float32", metavar="DTYPE",
                   help=f"the network's element type: {', '.join(DTYPE_NAMES)} (default float32)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``profile`` and ``ceilings`` subcommands."""
    p = sub.add_parser("profile", help="measured time per layer, block, flow or kind, against the machine's ceilings",
                       description="Times every inference layer of a network built with seeded random weights "
                                   "(the median of --repeats forwards, after --warmup), with FLOPs and bytes "
                                   "from the cost model, the achieved rates and whether each layer sits below "
                                   "the ridge (memory-bound) or above it (compute-bound). See docs/profile.md.")
    add_spec_arguments(p)
    p.add_argument("--batch", default="1", metavar="B", help="batch size (default 1)")
    _device_arguments(p)
    p.add_argument("--repeats", default="10", metavar="N", help="timed forwards (default 10)")
    p.add_argument("--warmup", default="2", metavar="N", help="untimed forwards first (default 2)")
    p.add_argument("--by", default="layer", metavar="LEVEL", help=f"rows per {' | '.join(LEVELS)} (default layer)")
    p.add_argument("--fast", action="store_true",
                   help="profile the inference copy (batch norms folded into their convs) that classify runs")
    p.set_defaults(format="table")
    p.add_argument("--json", dest="format", action="store_const", const="json", help="print JSON")
    p.add_argument("--csv", dest="format", action="store_const", const="csv", help="print CSV")
    p.set_defaults(handler=_profile)

    p = sub.add_parser("ceilings", help="the device's measured peak FLOP/s and memory bandwidth (cached)",
                       description="Measures (once per device and dtype, then cached in the user's cache folder) "
                                   "the peak compute rate and the memory bandwidth a roofline reads layers against.")
    _device_arguments(p)
    p.add_argument("--remeasure", action="store_true", help="measure again instead of reading the cache")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_ceilings)
