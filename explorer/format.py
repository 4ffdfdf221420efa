"""Numbers for people: 8.357 GMACs, 26.4 MiB. Shared by the CLI tables and the app."""

from __future__ import annotations


def si(value: float, unit: str = "", digits: int = 3) -> str:
    """``si(8357403496, "MACs")`` → ``'8.357 GMACs'`` (powers of 1000)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}f} {prefix}{unit}"
    number = f"{value:.0f}" if float(value).is_integer() else f"{value:.{digits}g}"
    return f"{number} {unit}".rstrip()


def si_short(value: float, unit: str = "", digits: int = 3) -> str:
    """At most ``digits`` significant digits, no trailing zeros: ``si_short(105041400)`` → ``'105 M'``,
    ``si_short(2e9, "MACs")`` → ``'2 GMACs'`` (for axis ticks and chart labels)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {prefix}{unit}".rstrip()
    return f"{value:.{digits}g} {unit}".rstrip()


def count(value: int) -> str:
    """An integer with thousands separators: ``count(199148544)`` → ``'199,148,544'``."""
    return f"{int(value):,}"


def shape(dims, sep: str = "×") -> str:
    """A tensor shape as people write it: ``shape((728, 19, 19))`` → ``'728×19×19'``.

    Files meant for other programs (CSV, GraphML) pass ``sep="x"``: plain ASCII.
    """
    return sep.join(str(d) for d in dims)


def mib(nbytes: float) -> str:
    """Bytes as MiB (GiB from 1 GiB on)."""
    if abs(nbytes) >= 2**30:
        return f"{nbytes / 2**30:,.2f} GiB"
    return f"{nbytes / 2**20:,.1f} MiB"


def duration(seconds: float) -> str:
    """A time for people, in the unit they would use: ``25 µs``, ``12.3 ms``, ``0.35 s``, ``2 s``, ``4.2 s``,
    ``45 s``, ``3 min 20 s``, ``1 h 5 min``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 0.1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 600:
        m, s = divmod(round(seconds), 60)
        return f"{m} min {s} s" if s else f"{m} min"
    h, m = divmod(round(seconds / 60), 60)
    return f"{h} h {m} min" if h else f"{m} min"
