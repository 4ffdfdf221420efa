"""Axis helpers shared by every plotly figure: readable log ticks and SI prefixes people read.

Plotly's own log axes label the minor ticks with bare digits ("8 7 6 5 4 3 2 10B") and its
default exponent format says "B" for billions where the rest of the app says "G". These
helpers give a log axis 1-2-5 ticks labelled with :func:`explorer.format.si_short`, and a
linear axis SI prefixes (G, M, k).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from explorer.format import si_short

LINEAR_SI: dict[str, Any] = {"exponentformat": "SI", "separatethousands": True}


def nice_log_ticks(low: float, high: float, *, max_ticks: int = 8) -> list[float]:
    """1-2-5 tick values covering ``[low, high]`` (both > 0), thinned to at most ``max_ticks``."""
    if not (low > 0 and high > 0):
        raise ValueError(f"a log axis needs positive bounds, got {low} and {high}")
    low, high = min(low, high), max(low, high)
    for steps in ((1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
                 for m in steps]
        inside = [t for t in ticks if low / 1.0001 <= t <= high * 1.0001]
        # keep one tick either side of the data so every point lies between two labels
        below = [t for t in ticks if t < low / 1.0001][-1:]
        above = [t for t in ticks if t > high * 1.0001][:1]
        chosen = below + inside + above
        if len(chosen) <= max_ticks:
            return chosen
    decades = list(range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1))
    stride = math.ceil(len(decades) / max_ticks)
    return [10.0 ** e for e in decades[::stride]]


def log_axis(values: Iterable[float], unit: str = "", **extra: Any) -> dict[str, Any]:
    """Layout for a log axis over ``values`` (non-positive ones ignored): 1-2-5 ticks such as
    "10 M", "20 M", "50 M", a range that holds them all, no minor digit labels."""
    positive = [float(v) for v in values if v is not None and float(v) > 0 and math.isfinite(float(v))]
    if not positive:
        return {"type": "log", **extra}
    ticks = nice_log_ticks(min(positive), max(positive))
    return {"type": "log", "tickmode": "array", "tickvals": ticks,
            "ticktext": [si_short(t, unit) for t in ticks], "minor": {"showgrid": False},
            "range": [math.log10(ticks[0]), math.log10(ticks[-1])], **extra}
