"""Attribution maps as pictures: over the image or alone; signed, absolute or positive; several maps on
one shared colour scale (or each on its own); PNG and ``.npy`` bytes. numpy, PIL and plotly only.

Scales (``scale=``):

* ``shared`` (default): each map is expressed in units of its own mean
  absolute attribution (1 = an average pixel of that map), which removes the
  methods' different units (gradients, logit differences), and then *one*
  colour range, the ``percentile`` of all the maps' values together, colours
  every map. Two maps that look equally hot are equally concentrated.
* ``raw``: the values as computed, one colour range for all the maps
  (meaningful for one method across networks or classes).
* ``per-map``: each map on its own range (Captum's ``visualize_image_attr``
  behaviour); colours cannot be compared between maps and the figure says so.

A map that is all zeros (or not finite) is never divided by zero: a single
render raises :class:`EmptyMapError` with a clear text, a figure shows the
text in that map's place.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from explorer.explain.base import check_sign
from explorer.explain.errors import EmptyMapError, ExplainError
from explorer.explain.result import Attribution

SCALES: tuple[str, ...] = ("shared", "per-map", "raw")
VIEWS: tuple[str, ...] = ("overlay", "map")
COLORSCALES: dict[str, str] = {"signed": "RdBu_r", "absolute": "Inferno", "positive": "Inferno"}
DEFAULT_PERCENTILE = 99.5
DEFAULT_ALPHA = 0.75

MapLike = Attribution | np.ndarray


def to_map(values: np.ndarray, sign: str = "signed") -> np.ndarray:
    """A 2-D map from C x H x W values: summed over channels (as Captum's views do), then the sign applied."""
    check_sign(sign)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 3:
        v = v.sum(axis=0)
    if v.ndim != 2:
        raise ExplainError(f"an attribution map must be H x W or C x H x W, got shape {v.shape}")
    if sign == "absolute":
        return np.abs(v)
    if sign == "positive":
        return np.maximum(v, 0.0)
    return v


@dataclass
class ScaledMap:
    """One map ready to colour: ``values`` in [-1, 1] (signed) or [0, 1], and how it was scaled.

    ``vmax`` is the value (in ``unit``) drawn at full colour; ``empty`` is the
    reason there is nothing to draw (then ``values`` is all zeros).
    """

    values: np.ndarray
    sign: str
    vmax: float
    unit: str
    scale: str
    empty: str | None = None
    title: str = ""


def _values_and_message(item: MapLike, sign: str) -> tuple[np.ndarray, str | None, str]:
    if isinstance(item, Attribution):
        message = item.empty_message()
        raw = item.values if message is None else np.zeros(item.values.shape[-2:])
        title = item.label
    else:
        raw = np.asarray(item)
        message = None
        if not np.isfinite(raw).all():
            message = "the map is not finite (NaN or infinity): nothing to show"
        elif not np.any(raw):
            message = "the map is all zeros: nothing to show"
        title = ""
    signed = to_map(raw if message is None else np.zeros(raw.shape[-2:]), "signed")
    if message is None and not np.any(signed):
        message = f"{title or 'the map'} cancels to zero when its channels are summed: nothing to show"
    if message is None and sign == "positive" and not np.any(signed > 0):
        message = (f"{title or 'the map'} has no positive values: nothing to show in the positive view "
                   f"(try the signed view)")
    return signed, message, title


def default_sign(items: Sequence[MapLike]) -> str:
    """The methods' common default sign, or ``absolute`` when they differ."""
    signs = {item.default_sign for item in items if isinstance(item, Attribution)}
    return signs.pop() if len(signs) == 1 else "absolute"


def scale_maps(items: Sequence[MapLike], *, sign: str | None = None, scale: str = "shared",
               percentile: float = DEFAULT_PERCENTILE, vmax: float | None = None) -> list[ScaledMap]:
    """Put several maps (attributions or arrays) on one colour scale (see the module docstring).

    ``vmax`` pins the full-colour value (in the scale's unit) instead of the percentile.
    """
    if scale not in SCALES:
        raise ExplainError(f"unknown scale '{scale}': choose from {', '.join(SCALES)}")
    if not 0 < percentile <= 100:
        raise ExplainError(f"percentile must be in (0, 100], got {percentile}")
    sign = check_sign(sign or default_sign(items))
    prepared = []
    for item in items:
        signed, message, title = _values_and_message(item, sign)
        if message is None and scale == "shared":
            signed = signed / np.abs(signed).mean()
        prepared.append((to_map(signed, sign), message, title))
    live = [m for m, message, _ in prepared if message is None]
    units = {"shared": "x mean |attribution| of each map", "raw": "attribution",
             "per-map": "fraction of each map's own range"}
    if vmax is not None and not vmax > 0:
        raise ExplainError(f"vmax must be positive, got {vmax}")
    common = vmax if vmax is not None else (_top(np.concatenate([np.abs(m).ravel() for m in live]), percentile)
                                            if live else 1.0)
    out = []
    for m, message, title in prepared:
        if message is not None:
            out.append(ScaledMap(np.zeros_like(m), sign, common, units[scale], scale, message, title))
            continue
        top = _top(np.abs(m).ravel(), percentile) if scale == "per-map" and vmax is None else common
        low = -1.0 if sign == "signed" else 0.0
        out.append(ScaledMap(np.clip(m / top, low, 1.0), sign, float(top), units[scale], scale, None, title))
    return out


def _top(values: np.ndarray, percentile: float) -> float:
    """The percentile of |values|, or their maximum when the percentile is 0 (a sparse map); never 0."""
    top = float(np.percentile(values, percentile)) if values.size else 0.0
    if top <= 0:
        top = float(values.max()) if values.size else 0.0
    return top if top > 0 else 1.0


@functools.lru_cache(maxsize=8)
def colormap(name: str) -> np.ndarray:
    """A 256 x 3 uint8 lookup table from a plotly colour scale (the same colours the figures use)."""
    from plotly.colors import get_colorscale, hex_to_rgb, unlabel_rgb

    stops = get_colorscale(name)
    where = np.array([float(s) for s, _ in stops])
    rgb = np.array([hex_to_rgb(c) if c.startswith("#") else unlabel_rgb(c) for _, c in stops], dtype=np.float64)
    grid = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(grid, where, rgb[:, k]) for k in range(3)], axis=1)
    return np.clip(np.rint(table), 0, 255).astype(np.uint8)


def colorize(scaled: ScaledMap) -> np.ndarray:
    """H x W x 3 uint8 colours of a scaled map."""
    v = scaled.values
    position = (v + 1.0) / 2.0 if scaled.sign == "signed" else v
    index = np.clip(np.rint(position * 255), 0, 255).astype(np.intp)
    return colormap(COLORSCALES[scaled.sign])[index]


def _check(scaled: ScaledMap) -> None:
    if scaled.empty:
        raise EmptyMapError(scaled.empty)


def _rgb(image: np.ndarray | Image.Image, size: tuple[int, int]) -> np.ndarray:
    pic = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image).astype(np.uint8).squeeze())
    pic = pic.convert("RGB")
    if pic.size != (size[1], size[0]):
        pic = pic.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(pic, dtype=np.float64)


def heatmap_image(scaled: ScaledMap) -> Image.Image:
    """The map alone, in colour (raises :class:`EmptyMapError` for an empty map)."""
    _check(scaled)
    return Image.fromarray(colorize(scaled), "RGB")


def overlay_image(image: np.ndarray | Image.Image, scaled: ScaledMap, *, alpha: float = DEFAULT_ALPHA) -> Image.Image:
    """The map over the un-normalized image: colour weighted by the attribution's magnitude,
    so unimportant pixels show the picture. Raises :class:`EmptyMapError` for an empty map."""
    _check(scaled)
    if not 0 <= alpha <= 1:
        raise ExplainError(f"alpha must be in [0, 1], got {alpha}")
    base = _rgb(image, scaled.values.shape)
    weight = alpha * np.abs(scaled.values)[..., None]
    blended = base * (1 - weight) + colorize(scaled).astype(np.float64) * weight
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8), "RGB")


def render(attribution: Attribution, *, view: str = "overlay", sign: str | None = None,
           percentile: float = DEFAULT_PERCENTILE, alpha: float = DEFAULT_ALPHA) -> Image.Image:
    """One attribution as a picture: ``overlay`` (needs ``attribution.image``) or ``map``.

    A single map is scaled on its own range. Raises :class:`EmptyMapError`
    (all-zero map) with a message to show instead.
    """
    if view not in VIEWS:
        raise ExplainError(f"unknown view '{view}': choose from {', '.join(VIEWS)}")
    scaled = scale_maps([attribution], sign=sign or attribution.default_sign, scale="per-map",
                        percentile=percentile)[0]
    if view == "map":
        return heatmap_image(scaled)
    if attribution.image is None:
        raise ExplainError("no image to draw the map over: use view='map' or pass the picture (image=...)")
    return overlay_image(attribution.image, scaled, alpha=alpha)


def png_bytes(image: Image.Image) -> bytes:
    """A PIL image as PNG file bytes (for a download button or a file)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes(values: MapLike) -> bytes:
    """Raw attribution values (or any array) as ``.npy`` file bytes, loadable with ``np.load``."""
    array = values.values if isinstance(values, Attribution) else np.asarray(values)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _grid(items: Sequence[Attribution]) -> tuple[list[str], list[str], dict[int, tuple[int, int]]]:
    rows: list[str] = []
    cols: list[str] = []
    where: dict[int, tuple[int, int]] = {}
    for i, item in enumerate(items):
        row = item.model or ""
        col = item.title + (f" @ {item.layer}" if item.layer else "")
        if row not in rows:
            rows.append(row)
        if col not in cols:
            cols.append(col)
        where[i] = (rows.index(row), cols.index(col))
    return rows, cols, where


def comparison_figure(items: Sequence[Attribution], *, sign: str | None = None, scale: str = "shared",
                      view: str = "overlay", percentile: float = DEFAULT_PERCENTILE, vmax: float | None = None,
                      alpha: float = DEFAULT_ALPHA, cell_px: int = 260):
    """A plotly grid: networks in rows, methods in columns, one colour scale with one colour bar
    (``scale="per-map"``: each map on its own range, and the colour bar says so). Empty maps show their message."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not items:
        raise ExplainError("nothing to compare: no attribution maps")
    if view not in VIEWS:
        raise ExplainError(f"unknown view '{view}': choose from {', '.join(VIEWS)}")
    scaled = scale_maps(items, sign=sign, scale=scale, percentile=percentile, vmax=vmax)
    sign = scaled[0].sign
    rows, cols, where = _grid(items)
    fig = make_subplots(rows=len(rows), cols=len(cols), column_titles=cols, row_titles=[r or " " for r in rows],
                        horizontal_spacing=0.02, vertical_spacing=0.06)
    shared = scale != "per-map"
    top = scaled[0].vmax if shared else 1.0
    low = -top if sign == "signed" else 0.0
    for i, (item, s) in enumerate(zip(items, scaled)):
        r, c = where[i]
        axis = r * len(cols) + c + 1
        axis = "" if axis == 1 else str(axis)  # plotly names the first axes x/y, then x2/y2, ...
        if s.empty:
            fig.add_annotation(text=_wrap(s.empty), x=0.5, y=0.5, xref=f"x{axis} domain", yref=f"y{axis} domain",
                               showarrow=False, font={"size": 11})
        elif view == "map":
            z = s.values * (top if shared else 1.0)
            fig.add_trace(go.Heatmap(z=z, coloraxis="coloraxis",
                                     hovertemplate="x %{x}, y %{y}: %{z:.3g}<extra></extra>"), row=r + 1, col=c + 1)
        else:
            fig.add_trace(go.Image(z=np.asarray(overlay_image(item.image, s, alpha=alpha))
                                   if item.image is not None else colorize(s), hoverinfo="skip"),
                          row=r + 1, col=c + 1)
        fig.update_xaxes(visible=False, row=r + 1, col=c + 1)
        fig.update_yaxes(visible=False, autorange="reversed", scaleanchor=f"x{axis}", row=r + 1, col=c + 1)
    # one colour bar for all maps (an invisible marker carries it when the cells are RGB overlays)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                             marker={"coloraxis": "coloraxis", "color": [low, top]}))
    title = {"shared": f"{sign}, x mean |attribution| per map (shared scale)",
             "raw": f"{sign}, raw attribution (shared scale)",
             "per-map": f"{sign}, each map on its own scale: colours not comparable"}[scale]
    fig.update_layout(coloraxis={"colorscale": COLORSCALES[sign], "cmin": low, "cmax": top,
                                 "colorbar": {"title": {"text": title, "side": "right"}}},
                      width=max(400, cell_px * len(cols) + 160), height=max(300, cell_px * len(rows) + 80),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, plot_bgcolor="white")
    return fig


def _wrap(text: str, width: int = 34) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "<br>".join(lines)
