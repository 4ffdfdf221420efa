"""Plotly figures of a measured profile: the roofline, and the share of MACs against the share of time.

The roofline (Williams, Waterman & Patterson, 2009) puts every layer at its arithmetic intensity
(FLOP per byte moved) and the FLOP/s it achieved, under the device's two ceilings: the memory roof
(bandwidth × intensity) up to the ridge point, the compute roof (peak FLOP/s) after it. A layer far
below its roof wastes the device; a layer left of the ridge is bound by memory, however few MACs it
counts. That is where a depthwise convolution lands, and why counted MACs do not predict time.

No Streamlit here: the app, the README pictures and the tests draw the same figures.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any, Literal

import plotly.graph_objects as go

from explorer.format import si_short
from explorer.plots import log_axis
from explorer.spec.kinds import KINDS, Kind

if TYPE_CHECKING:
    from explorer.measure import Ceilings, LayerTime, Profile

ColorBy = Literal["kind", "flow"]
COLOR_BY: tuple[str, ...] = ("kind", "flow")
# the two halves of a separable convolution: their medians are marked on the roofline
MARKED_KINDS: tuple[str, ...] = ("depthwise", "pointwise")
FLOW_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
MEASURED_ROOF = "measured roof"
DATASHEET_ROOF = "datasheet roof"
_ROOF_COLOUR = "#333333"
_DATASHEET_COLOUR = "#8a8a8a"
_OTHER_COLOUR = "#555555"


def ms(seconds: float) -> str:
    """A duration in milliseconds with three significant digits: ``0.0123`` → ``'12.3 ms'``."""
    value = seconds * 1e3
    return f"{value:.3g} ms" if value < 1000 else f"{value:,.0f} ms"


def kind_colour(kind: str) -> str:
    """The colour a layer kind has everywhere in the app (the kinds table's graph style)."""
    try:
        return KINDS[Kind(kind)].style.color
    except ValueError:
        return _OTHER_COLOUR


def drawable(layer: LayerTime) -> bool:
    """Whether a layer has a place on the log-log roofline: FLOPs, bytes and a time above zero."""
    return layer.flops > 0 and layer.bytes > 0 and layer.seconds > 0


def _roof(x: float, peak: float | None, bandwidth: float | None) -> float:
    """The attainable FLOP/s at intensity ``x`` under the given ceilings (either may be unknown)."""
    limits = [v for v in (peak, bandwidth * x if bandwidth else None) if v]
    return min(limits)


def _roof_trace(name: str, peak: float | None, bandwidth: float | None, x0: float, x1: float, *,
                dash: str | None, colour: str) -> go.Scatter:
    """A roof from ``x0`` to ``x1``: the memory slope up to the ridge (when both ceilings are known),
    then flat at the peak."""
    xs = [x0]
    if peak and bandwidth and x0 < peak / bandwidth < x1:
        xs.append(peak / bandwidth)
    xs.append(x1)
    return go.Scatter(x=xs, y=[_roof(x, peak, bandwidth) for x in xs], mode="lines", name=name,
                      line=dict(color=colour, width=2.2 if dash is None else 1.6, dash=dash),
                      hoverinfo="skip", legendrank=1)


def roofline_figure(profile: Profile, *, color_by: ColorBy = "kind", title: str | None = None) -> go.Figure:
    """The roofline of ``profile``: every layer a point (x: FLOP/byte, y: achieved FLOP/s), marker area
    by its share of the time, coloured by ``kind`` (one trace per kind, so the legend toggles them) or
    ``flow``; the measured roofs solid, the datasheet's dashed when known; the medians of the depthwise
    and the pointwise convolutions marked. Layers without FLOPs (concat, dropout) have no place on a
    log axis and are said in the subtitle instead."""
    if color_by not in COLOR_BY:
        raise ValueError(f"cannot colour by '{color_by}' (choose from {', '.join(COLOR_BY)})")
    ceilings = profile.ceilings
    layers = [layer for layer in profile.layers if drawable(layer)]
    left_out = [layer for layer in profile.layers if not drawable(layer)]
    top_share = max((layer.share for layer in layers), default=0.0) or 1.0

    ridges = [ceilings.ridge]
    if ceilings.datasheet_flops and ceilings.datasheet_bandwidth:
        ridges.append(ceilings.datasheet_flops / ceilings.datasheet_bandwidth)
    intensities = [layer.intensity for layer in layers]
    xaxis = log_axis([min(intensities + ridges) / 2, max(intensities + ridges) * 2], "",
                     title="arithmetic intensity (FLOP/byte)")
    x0, x1 = 10 ** xaxis["range"][0], 10 ** xaxis["range"][1]
    peaks = [ceilings.peak_flops] + ([ceilings.datasheet_flops] if ceilings.datasheet_flops else [])
    achieved = [layer.flops_per_s for layer in layers]
    floor = min(achieved + [_roof(x0, ceilings.peak_flops, ceilings.bandwidth)])
    yaxis = log_axis([floor / 2, max(peaks + achieved) * 1.5], "FLOP/s", title="achieved FLOP/s")

    traces: list[go.BaseTraceType] = [_roof_trace(MEASURED_ROOF, ceilings.peak_flops, ceilings.bandwidth, x0, x1,
                                                  dash=None, colour=_ROOF_COLOUR)]
    if ceilings.datasheet_flops or ceilings.datasheet_bandwidth:
        traces.append(_roof_trace(DATASHEET_ROOF, ceilings.datasheet_flops, ceilings.datasheet_bandwidth, x0, x1,
                                  dash="dash", colour=_DATASHEET_COLOUR))

    groups: dict[str, list[LayerTime]] = {}
    for layer in layers:
        groups.setdefault(getattr(layer, color_by), []).append(layer)
    flow_colours = {flow: FLOW_COLOURS[i % len(FLOW_COLOURS)]
                    for i, flow in enumerate(dict.fromkeys(layer.flow for layer in profile.layers))}
    for value, members in groups.items():
        colour = kind_colour(value) if color_by == "kind" else flow_colours[value]
        traces.append(go.Scatter(
            x=[m.intensity for m in members], y=[m.flops_per_s for m in members], mode="markers", name=value,
            legendgroup=value,
            marker=dict(color=colour, size=[7 + 26 * math.sqrt(m.share / top_share) for m in members],
                        line=dict(color="white", width=0.7), opacity=0.85),
            customdata=[[m.name, m.kind, ms(m.seconds), f"{m.share:.1%}", m.flops_per_s / 1e9, m.intensity,
                         m.bound(ceilings), m.block] for m in members],
            hovertemplate=("<b>%{customdata[0]}</b><br>%{customdata[1]} · block %{customdata[7]}<br>"
                           "time %{customdata[2]} (%{customdata[3]} of the layers)<br>"
                           "%{customdata[4]:.3g} GFLOP/s at %{customdata[5]:.3g} FLOP/byte<br>"
                           "%{customdata[6]}-bound<extra></extra>")))

    annotations = _roof_labels(ceilings, x0, x1)
    for kind in MARKED_KINDS:
        members = [layer for layer in layers if layer.kind == kind]
        if not members:
            continue
        x, y = statistics.median(m.intensity for m in members), statistics.median(m.flops_per_s for m in members)
        traces.append(go.Scatter(
            x=[x], y=[y], mode="markers", name=f"{kind} median", legendgroup=kind if color_by == "kind" else None,
            marker=dict(symbol="diamond-wide-open", size=22, color=kind_colour(kind), line=dict(width=3)),
            hovertemplate=f"<b>median of {len(members)} {kind} convs</b><br>%{{x:.3g}} FLOP/byte, "
                          "%{customdata:.3g} GFLOP/s<extra></extra>", customdata=[y / 1e9]))
        annotations.append(dict(x=math.log10(x), y=math.log10(y), text=f"<b>{kind}</b> median: {x:.3g} FLOP/B, "
                                f"{si_short(y, 'FLOP/s')}", showarrow=True, arrowhead=0,
                                # pointwise: down and right, clear of the compute roof's label; depthwise: down
                                ax=40 if kind == "pointwise" else 0, ay=56 if kind == "pointwise" else 34,
                                font=dict(size=11, color=kind_colour(kind)), bgcolor="rgba(255,255,255,0.8)"))

    fig = go.Figure(traces)
    subtitle = (f"{profile.spec_name} · {ceilings.device_name} · batch {profile.batch} · {profile.dtype}"
                + (" · inference copy" if profile.fast else ""))
    if left_out:
        share = sum(layer.share for layer in left_out)
        subtitle += f" · {len(left_out)} layers without FLOPs not drawn ({share:.1%} of the time)"
    fig.update_layout(
        title=dict(text=f"{title or 'Roofline: where each layer runs against the device'}"
                        f"<br><sup>{subtitle}</sup>", x=0.01),
        xaxis=xaxis, yaxis=yaxis, height=560, plot_bgcolor="white", paper_bgcolor="white",
        margin=dict(l=10, r=10, t=80, b=10), legend=dict(title=dict(text=color_by), itemsizing="constant"),
        annotations=annotations, hoverlabel=dict(align="left"))
    fig.update_xaxes(showgrid=True, gridcolor="#eeeeee", zeroline=False)
    fig.update_yaxes(showgrid=True, gridcolor="#eeeeee", zeroline=False)
    return fig


def _roof_labels(ceilings: Ceilings, x0: float, x1: float) -> list[dict[str, Any]]:
    """The ceilings in words: the measured peak where its roof turns flat, the datasheet's at the right end
    of its roof, the bandwidth and the ridge point beside the memory roof."""
    # three quarters up the memory roof, the label above it (on the empty side of the line)
    slope_x = max(x0, ceilings.ridge / 1e3) ** 0.25 * ceilings.ridge ** 0.75
    labels = [dict(x=math.log10(ceilings.ridge), y=math.log10(ceilings.peak_flops), xanchor="left",
                   yanchor="bottom", text=f"measured peak {si_short(ceilings.peak_flops, 'FLOP/s')}", showarrow=False,
                   font=dict(size=11, color=_ROOF_COLOUR)),
              dict(x=math.log10(slope_x), y=math.log10(ceilings.bandwidth * slope_x), xanchor="right",
                   yanchor="bottom", xshift=-4, showarrow=False, font=dict(size=11, color=_ROOF_COLOUR),
                   text=f"measured bandwidth {si_short(ceilings.bandwidth, 'B/s')}<br>"
                        f"ridge at {ceilings.ridge:.3g} FLOP/B")]
    if ceilings.datasheet_flops:
        source = f" ({ceilings.datasheet_source})" if ceilings.datasheet_source else ""
        labels.append(dict(x=math.log10(x1), y=math.log10(ceilings.datasheet_flops), xanchor="right",
                           yanchor="bottom", showarrow=False, font=dict(size=11, color=_DATASHEET_COLOUR),
                           text=f"datasheet peak {si_short(ceilings.datasheet_flops, 'FLOP/s')}{source}"))
    return labels


def share_rows(profile: Profile, level: str = "flow") -> list[dict[str, Any]]:
    """Per ``level`` (flow, kind, block): its share of the counted MACs and of the measured layer time,
    each summing to 1 over the rows, with the seconds and MACs they come from."""
    rows = profile.by(level)
    seconds = sum(r["seconds"] for r in rows)
    macs = sum(r["macs"] for r in rows)
    return [{level: r[level], "seconds": r["seconds"], "macs": r["macs"],
             "time_share": r["seconds"] / seconds if seconds else 0.0,
             "macs_share": r["macs"] / macs if macs else 0.0} for r in rows]


def share_figure(profile: Profile, level: str = "flow") -> go.Figure:
    """Grouped bars per flow (or kind, block): its share of the MACs beside its share of the time.
    Where the time bar is the taller, that part of the network runs slower than its MACs say."""
    rows = share_rows(profile, level)
    names = [str(r[level]) for r in rows]
    fig = go.Figure([
        go.Bar(name="share of counted MACs", x=names, y=[r["macs_share"] for r in rows], marker_color="#9ecae1",
               text=[f"{r['macs_share']:.1%}" for r in rows], textposition="outside",
               customdata=[si_short(r["macs"], "MACs") for r in rows],
               hovertemplate="%{x}: %{y:.1%} of the MACs (%{customdata})<extra></extra>"),
        go.Bar(name="share of measured time", x=names, y=[r["time_share"] for r in rows], marker_color="#e6550d",
               text=[f"{r['time_share']:.1%}" for r in rows], textposition="outside",
               customdata=[ms(r["seconds"]) for r in rows],
               hovertemplate="%{x}: %{y:.1%} of the time (%{customdata})<extra></extra>"),
    ])
    top = max([r["macs_share"] for r in rows] + [r["time_share"] for r in rows] + [0.01])
    fig.update_layout(
        barmode="group", height=380, margin=dict(l=10, r=10, t=50, b=10), plot_bgcolor="white",
        title=dict(text=f"Per {level}: share of the MACs beside share of the time", x=0.01),
        yaxis=dict(title="share", tickformat=".0%", range=[0, min(1.0, top * 1.2) + 0.02], gridcolor="#eeeeee"),
        xaxis=dict(type="category", title=None), legend=dict(orientation="h", y=-0.15))
    fig.update_traces(cliponaxis=False)
    return fig


def layer_rows(profile: Profile) -> list[dict[str, Any]]:
    """One plain row per measured layer for a table: time (ms), share, GFLOP/s, GB/s, FLOP/byte, bound,
    the counted MACs (a row's absorbed layers included) and the layers it absorbed."""
    return [{"name": layer.name, "kind": layer.kind, "flow": layer.flow, "block": layer.block,
             "time_ms": layer.seconds * 1e3, "spread_ms": layer.spread * 1e3, "share": layer.share,
             "gflops": layer.flops_per_s / 1e9 if layer.seconds > 0 else None,
             "gbytes": layer.bytes_per_s / 1e9 if layer.seconds > 0 else None,
             "intensity": layer.intensity if layer.bytes > 0 else None,
             "bound": layer.bound(profile.ceilings) if drawable(layer) else "",
             "macs": layer.macs, "absorbed": ", ".join(layer.absorbed)} for layer in profile.layers]


def layer_values(profile: Profile) -> dict[str, float]:
    """Module path → measured median seconds (for colouring the graph by time)."""
    return {layer.name: layer.seconds for layer in profile.layers}
