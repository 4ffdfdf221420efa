"""Cost reports as text: aligned tables with the unit on every label, and CSV.

Tables scale each column to one unit named in its header (``MACs (M)`` is
millions of multiply-accumulates, ``output (MiB)`` mebibytes); CSV and JSON
carry exact integers.
"""

from __future__ import annotations

import csv
import io
from typing import Collection, Iterable, Sequence

from explorer.cost.counts import CostReport
from explorer.cost.diff import COST_FIELDS, CostDiff
from explorer.cost.whatif import WhatIf
from explorer.format import mib as _mib
from explorer.format import shape as _shape
from explorer.format import si as _si

MIB = 2**20
TRAIN_MARK = " *"


def _int(n: int) -> str:
    return f"{n:,}"


def _signed(n: int) -> str:
    return f"{n:+,}" if n else "0"


def _scaled(n: int, unit: float, digits: int = 3, signed: bool = False) -> str:
    if not n:
        return "0"
    return f"{n / unit:{'+' if signed else ''},.{digits}f}"


def align(header: Sequence[str], rows: Iterable[Sequence[str]], left: int | Collection[int] = 1) -> str:
    """Rows as aligned text: the columns in ``left`` (or the first ``left``) flush left, the rest flush right."""
    flush_left = set(range(left)) if isinstance(left, int) else set(left)
    rows = [list(header)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for k, row in enumerate(rows):
        cells = [c.ljust(w) if i in flush_left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cost_table(report: CostReport, level: str = "layer") -> str:
    """The report as a readable table at ``level`` (layer, block, flow or kind), then its totals."""
    rows = report.by(level)
    if level == "layer":
        header = ["layer", "kind", "output shape", "params", "MACs (M)", "elem. ops (M)", "output (MiB)"]
        body = [[r["name"] + (TRAIN_MARK if r["train_only"] else ""), r["kind"], _shape(r["out_shape"]),
                 _int(r["params"]), _scaled(r["macs"], 1e6), _scaled(r["elementwise_ops"], 1e6),
                 _scaled(r["activation_bytes"], MIB)] for r in rows]
        left = 3
    else:
        first = [level] + (["flow"] if level == "block" else [])
        header = first + ["layers", "params", "MACs (M)", "MACs %", "elem. ops (M)", "outputs (MiB)"]
        total = report.totals["macs"] or 1
        body = [[str(r[level])] + ([r["flow"]] if level == "block" else []) +
                [str(r["layers"]), _int(r["params"]), _scaled(r["macs"], 1e6), f"{100 * r['macs'] / total:.1f}",
                 _scaled(r["elementwise_ops"], 1e6), _scaled(r["activation_bytes"], MIB)] for r in rows]
        left = len(first)
    title = (f"{report.spec_name}: costs per {level}, batch {report.batch}, {report.dtype} "
             f"(MAC = one multiply-accumulate; FLOPs = 2 × MACs)")
    parts = [title, "", align(header, body, left), "", totals_text(report)]
    aux = [c for c in report.layers if c.train_only]
    if aux:
        where = "marked *" if level == "layer" else "left out of the rows above"
        parts.append(f"training-only layers (auxiliary head, {where}): their {_int(sum(c.params for c in aux))} "
                     "parameters are in the parameter and weight totals; their MACs, element-wise ops and "
                     "memory are not (they do not run in inference)")
    return "\n".join(parts)


def totals_text(report: CostReport) -> str:
    """The totals of a report, exact and scaled, one per line."""
    t = report.totals
    lines = [
        ("parameters", _int(t["params"]), _si(t["params"], "")),
        ("MACs", _int(t["macs"]), _si(t["macs"], "MACs")),
        ("FLOPs (2 × MACs)", _int(t["flops"]), _si(t["flops"], "FLOPs")),
        ("element-wise ops", _int(t["elementwise_ops"]), _si(t["elementwise_ops"], "ops")),
        ("activations (bytes, sum of outputs)", _int(t["activation_bytes"]), _mib(t["activation_bytes"])),
        ("peak activations (bytes)", _int(t["peak_activation_bytes"]), _mib(t["peak_activation_bytes"])),
        ("weights (bytes)", _int(t["weight_bytes"]), _mib(t["weight_bytes"])),
    ]
    return "totals (inference)\n" + align(["", "exact", "scaled"], [list(x) for x in lines])


def cost_csv(report: CostReport, level: str = "layer", only: Collection[str] | None = None) -> str:
    """The report's rows at ``level`` as CSV with exact integers; shapes read ``64x147x147``.

    ``only``: keep the layer rows with these names (a filtered table's download).
    """
    rows = report.by(level)
    if only is not None:
        rows = [r for r in rows if r["name"] in only]
    out = io.StringIO()
    if level == "layer":
        fields = ["name", "kind", "flow", "block", "in_shape", "out_shape", "params", "macs", "flops",
                  "elementwise_ops", "activation_bytes", "weight_bytes", "train_only"]
    else:
        fields = [level] + (["flow"] if level == "block" else []) + [
            "layers", "params", "macs", "flops", "elementwise_ops", "activation_bytes", "weight_bytes"]
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        r = dict(r)
        for key in ("in_shape", "out_shape"):
            if key in r:
                r[key] = _shape(r[key], sep="x")
        writer.writerow(r)
    return out.getvalue()


def diff_table(diff: CostDiff, label_a: str, label_b: str) -> str:
    """The layers that differ (+ added, − removed, ~ changed) and the total deltas, B − A."""
    mark = {"added": "+", "removed": "-", "changed": "~"}
    counts = ", ".join(f"{len(diff.of(s))} {s}" for s in ("added", "removed", "changed"))
    parts = [f"A: {label_a}", f"B: {label_b}", f"layers: {counts} (deltas are B − A)", ""]
    if diff.layers:
        body = []
        for d in diff.layers:
            row = d.row
            shape = _shape(row.out_shape)
            if d.status == "changed" and d.before.out_shape != d.after.out_shape:  # type: ignore[union-attr]
                shape = f"{_shape(d.before.out_shape)} → {shape}"  # type: ignore[union-attr]
            body.append([mark[d.status], d.name, row.kind, shape, _signed(d.delta("params")),
                         _scaled(d.delta("macs"), 1e6, signed=True),
                         _scaled(d.delta("elementwise_ops"), 1e6, signed=True),
                         _scaled(d.delta("activation_bytes"), MIB, signed=True),
                         ", ".join(c for c in d.changes if c not in COST_FIELDS)])
        header = ["", "layer", "kind", "output shape", "Δ params", "Δ MACs (M)", "Δ elem. ops (M)",
                  "Δ output (MiB)", "changed"]
        parts += align(header, body, left=(0, 1, 2, 3, 8)).splitlines()
        parts.append("")
    else:
        parts += ["no layer differs", ""]
    labels = [("params", "parameters", 1, 0), ("macs", "MACs (M)", 1e6, 3), ("flops", "FLOPs (M)", 1e6, 3),
              ("elementwise_ops", "element-wise ops (M)", 1e6, 3),
              ("activation_bytes", "activations (MiB)", MIB, 3),
              ("peak_activation_bytes", "peak activations (MiB)", MIB, 3), ("weight_bytes", "weights (MiB)", MIB, 3)]
    body = []
    for key, label, unit, digits in labels:
        a, b = diff.a.totals[key], diff.b.totals[key]
        pct = "0" if a == b else (f"{100 * (b - a) / a:+.2f}%" if a else "new")
        fmt = (lambda n: f"{n:,}") if unit == 1 else (lambda n: f"{n / unit:,.{digits}f}")
        delta = f"{b - a:+,}" if unit == 1 else f"{(b - a) / unit:+,.{digits}f}"
        body.append([label, fmt(a), fmt(b), delta if b != a else "0", pct])
    parts.append("totals (inference)")
    parts.append(align(["", "A", "B", "Δ", "Δ %"], body))
    return "\n".join(parts)


def whatif_table(w: WhatIf) -> str:
    """Each separable conv against a regular conv, the whole-model totals and the segments spectrum."""
    if not w.separables:
        return f"{w.spec_name} has no separable convolutions: nothing to compare."
    title = (f"{w.spec_name}: each separable conv (spatial D_K×D_K conv in g groups + 1×1 pointwise) against "
             f"a regular D_K×D_K conv with the same input (M channels), output (N) and stride; batch {w.batch}")
    header = ["separable conv", "M", "N", "D_K", "g", "out", "MACs (M)", "regular MACs (M)", "ratio",
              "M/(gN) + 1/D_K²"]
    body = [[s.name, str(s.in_channels), str(s.out_channels), _shape(s.kernel), str(s.groups),
             _shape(s.out_size), _scaled(s.macs, 1e6), _scaled(s.regular_macs, 1e6), f"{s.ratio:.5f}",
             f"{float(s.formula_ratio):.5f}"] for s in w.separables]
    t, r = w.totals, w.regular_totals
    whole = align(["whole model", "params", "MACs", "FLOPs"], [
        ["as specified", _int(t["params"]), _si(t["macs"], "MACs"), _si(t["flops"], "FLOPs")],
        ["every separable conv as a regular conv", _int(r["params"]), _si(r["macs"], "MACs"),
         _si(r["flops"], "FLOPs")],
        ["ratio", f"{t['params'] / r['params']:.4f}", f"{t['macs'] / r['macs']:.4f}", f"{t['macs'] / r['macs']:.4f}"],
    ])
    spectrum = align(["segments (groups of every spatial conv)", "params", "MACs (G)", "MACs vs depthwise"], [
        [str(p.segments) + ("  (this spec)" if p.current else ""), _int(p.params), f"{p.macs / 1e9:,.3f}",
         f"{p.macs / w.spectrum[-1].macs:.2f}×"] for p in w.spectrum])
    return "\n".join([title, "(the paper: ratio = 1/N + 1/D_K² when g = M, i.e. depthwise)", "",
                      align(header, body), "", whole, "", spectrum])
