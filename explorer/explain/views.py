"""Attribution maps as pictures: over the image or alone; signed, absolute or positive; several maps on
comparable colour scales; PNG and ``.npy`` bytes. numpy, PIL and plotly only.

Scales (``scale=``):

* ``per-method`` (default): each map is expressed in units of its own mean
  absolute attribution (1 = an average pixel of that map), which removes the
  networks' and methods' different magnitudes, and then each *method* gets
  one colour range, the ``percentile`` of that method's maps together: the
  networks in one column of a grid share it and compare (two maps that look
  equally hot are equally concentrated), while a smooth method (Grad-CAM,
  whose peak is a few times its mean) is not washed out by a peaky one
  (Saliency, whose peak is tens of times its mean). Colours compare within a
  column, not across columns, and the figure says so.
* ``shared``: the same units, but *one* colour range for every map, so
  methods compare too; a smooth map next to a peaky one looks faint.
* ``raw``: the values as computed, one colour range for all the maps
  (meaningful for one method across networks or classes).
* ``per-map``: each map on its own range (Captum's ``visualize_image_attr``
  behaviour); colours cannot be compared between maps and the figure says so.

A map that is all zeros (or not finite) is never divided by zero: a single
render raises :class:`EmptyMapError` with a clear text, a figure shows the
text in that map's place (as it shows a :class:`Placeholder`'s text for a map
still being computed).
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

SCALES: tuple[str, ...] = ("per-method", "shared", "per-map", "raw")
DEFAULT_SCALE = "per-method"
SCALE_LABELS: dict[str, str] = {
    "per-method": "Per method",
    "shared": "One for all maps",
    "per-map": "Per map",
    "raw": "Raw values",
}
VIEWS: tuple[str, ...] = ("overlay", "map")
COLORSCALES: dict[str, str] = {"signed": "RdBu_r", "absolute": "Inferno", "positive": "Inferno"}
DEFAULT_PERCENTILE = 99.5
INLINE_PIXELS = 64 * 64  # pictures up to this size go into a figure as pixel values, larger ones as PNG
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


@dataclass(frozen=True)
class Placeholder:
    """A cell of a comparison grid whose map is not there (yet): waiting, running, failed or cancelled.

    ``model``, ``title`` and ``layer`` place it like the :class:`Attribution` it stands for; ``text``
    is shown in its place.
    """

    model: str | None
    title: str
    text: str
    layer: str | None = None
    method: str = ""


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


def _group(item: MapLike, scale: str, index: int) -> object:
    """Which maps share a colour range: all (shared, raw), one method's (per-method), none (per-map)."""
    if scale == "per-map":
        return ("map", index)
    if scale == "per-method":
        return item.method if isinstance(item, Attribution) else ("array", index)
    return "all"


def scale_maps(items: Sequence[MapLike], *, sign: str | None = None, scale: str = DEFAULT_SCALE,
               percentile: float = DEFAULT_PERCENTILE, vmax: float | None = None) -> list[ScaledMap]:
    """Put several maps (attributions or arrays) on comparable colour scales (see the module docstring).

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
        if message is None and scale in ("shared", "per-method"):
            signed = signed / np.abs(signed).mean()
        prepared.append((to_map(signed, sign), message, title))
    units = {"shared": "x mean |attribution| of each map", "per-method": "x mean |attribution| of each map",
             "raw": "attribution", "per-map": "fraction of each map's own range"}
    if vmax is not None and not vmax > 0:
        raise ExplainError(f"vmax must be positive, got {vmax}")
    groups = [_group(item, scale, i) for i, item in enumerate(items)]
    tops: dict[object, float] = {}
    for group in dict.fromkeys(groups):
        live = [m for (m, message, _), g in zip(prepared, groups) if g == group and message is None]
        tops[group] = vmax if vmax is not None else (
            _top(np.concatenate([np.abs(m).ravel() for m in live]), percentile) if live else 1.0)
    out = []
    for (m, message, title), group in zip(prepared, groups):
        top = tops[group]
        if message is not None:
            out.append(ScaledMap(np.zeros_like(m), sign, top, units[scale], scale, message, title))
            continue
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


GridItem = Attribution | Placeholder


def _grid(items: Sequence[GridItem]) -> tuple[list[str], list[str], dict[int, tuple[int, int]]]:
    """Rows: the networks; columns: the methods (by title: one Grad-CAM column whatever each network's
    layer). Both in order of first appearance; the layer is the cell's caption, not part of the column."""
    rows: list[str] = []
    cols: list[str] = []
    where: dict[int, tuple[int, int]] = {}
    for i, item in enumerate(items):
        row = item.model or ""
        col = item.title
        if row not in rows:
            rows.append(row)
        if col not in cols:
            cols.append(col)
        where[i] = (rows.index(row), cols.index(col))
    return rows, cols, where


def _caption(item: GridItem) -> str:
    """Under a cell: the layer a layer method looked at, and the class explained."""
    parts = []
    if item.layer:
        parts.append(f"layer {item.layer}")
    if isinstance(item, Attribution):
        parts.append(f"class {item.target_label or item.target}")
    return " · ".join(parts)


def comparison_figure(items: Sequence[GridItem], *, sign: str | None = None, scale: str = DEFAULT_SCALE,
                      view: str = "overlay", percentile: float = DEFAULT_PERCENTILE, vmax: float | None = None,
                      alpha: float = DEFAULT_ALPHA, cell_px: int = 230, width: int | None = None):
    """A plotly grid: networks in rows, methods in columns (one column per method; Grad-CAM's layer is
    in the cell's caption), one colour bar that says what the colours mean (see the module docstring
    for the scales). Empty maps and :class:`Placeholder` cells show their text. ``width`` None lets the
    figure take its container's width (the cells keep their aspect ratio)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not items:
        raise ExplainError("nothing to compare: no attribution maps")
    if view not in VIEWS:
        raise ExplainError(f"unknown view '{view}': choose from {', '.join(VIEWS)}")
    maps = [item for item in items if isinstance(item, Attribution)]
    scaled_maps = iter(scale_maps(maps, sign=sign, scale=scale, percentile=percentile, vmax=vmax)) if maps else iter(())
    scaled = [next(scaled_maps) if isinstance(item, Attribution) else None for item in items]
    sign = next((s.sign for s in scaled if s is not None), None) or check_sign(sign or "absolute")
    rows, cols, where = _grid(items)
    one_range = scale in ("shared", "raw")
    col_top: dict[int, float] = {}
    for i, s in enumerate(scaled):
        if s is not None and not s.empty:
            col_top.setdefault(where[i][1], s.vmax)
    titles = list(cols)
    if scale == "per-method":
        titles = [f"{title}<br><sup>full colour: {_number(col_top[c])}× mean</sup>" if c in col_top else title
                  for c, title in enumerate(cols)]
    fig = make_subplots(rows=len(rows), cols=len(cols), column_titles=titles, row_titles=[r or " " for r in rows],
                        horizontal_spacing=0.03, vertical_spacing=0.1 if len(rows) > 1 else 0.02)
    top = next((s.vmax for s in scaled if s is not None and not s.empty), 1.0) if one_range else 1.0
    low = -top if sign == "signed" else 0.0
    for i, (item, s) in enumerate(zip(items, scaled)):
        r, c = where[i]
        axis = r * len(cols) + c + 1
        axis = "" if axis == 1 else str(axis)  # plotly names the first axes x/y, then x2/y2, ...
        message = item.text if isinstance(item, Placeholder) else s.empty
        if message:
            fig.add_annotation(text=_wrap(message), x=0.5, y=0.5, xref=f"x{axis} domain", yref=f"y{axis} domain",
                               showarrow=False, font={"size": 11})
            # an invisible point keeps the empty cell's axes (and its square) in place
            fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="markers", marker={"opacity": 0}, showlegend=False,
                                     hoverinfo="skip"), row=r + 1, col=c + 1)
        elif view == "map":
            z = s.values * (top if one_range else 1.0)
            fig.add_trace(go.Heatmap(z=z, coloraxis="coloraxis",
                                     hovertemplate="x %{x}, y %{y}: %{z:.3g}<extra></extra>"), row=r + 1, col=c + 1)
        else:
            picture = overlay_image(item.image, s, alpha=alpha) if item.image is not None else heatmap_image(s)
            if picture.width * picture.height > INLINE_PIXELS:
                # a PNG source rather than a z array: a tenth of the bytes to send for a 299-px picture
                trace = go.Image(source=_data_uri(picture), hoverinfo="skip")
            else:  # a small picture (the 32-px digits): its pixels cost less than a PNG, and draw at once
                trace = go.Image(z=np.asarray(picture), hoverinfo="skip")
            fig.add_trace(trace, row=r + 1, col=c + 1)
        caption = _caption(item)
        if caption:
            fig.add_annotation(text=_wrap(caption, 40), x=0.5, y=0.0, xref=f"x{axis} domain", yref=f"y{axis} domain",
                               yanchor="top", showarrow=False, font={"size": 10, "color": "#555"})
        fig.update_xaxes(visible=False, row=r + 1, col=c + 1)
        fig.update_yaxes(visible=False, autorange="reversed", scaleanchor=f"x{axis}", row=r + 1, col=c + 1)
    # one colour bar for all maps (an invisible marker carries it when the cells are RGB overlays)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                             marker={"coloraxis": "coloraxis", "color": [low, top]}))
    fig.update_layout(coloraxis={"colorscale": COLORSCALES[sign], "cmin": low, "cmax": top,
                                 "colorbar": {"title": {"text": scale_title(scale, sign), "side": "top"},
                                              "orientation": "h", "x": 0.5, "xanchor": "center",
                                              "y": -0.02, "yanchor": "top", "len": 0.9, "thickness": 12}},
                      height=max(300, cell_px * len(rows) + 140),
                      margin={"l": 10, "r": 30, "t": 60, "b": 90}, plot_bgcolor="white")
    if width is not None:
        fig.update_layout(width=width)
    return fig


def scale_title(scale: str, sign: str) -> str:
    """The colour bar's title: what the colours show, on which scale, in a few words (it must fit a
    narrow figure; :func:`scale_note` says it in full)."""
    what = {"signed": "signed", "absolute": "magnitude", "positive": "positive part"}[sign]
    return {"per-method": f"{what}, one scale per method (fraction of the column's full colour)",
            "shared": f"{what}, x mean |attribution| of each map, one scale",
            "raw": f"{what}, raw attribution, one scale",
            "per-map": f"{what}, each map on its own scale: colours not comparable"}[scale]


def scale_note(scale: str, sign: str) -> str:
    """One sentence for people on how to read a comparison figure's colours."""
    what = {"signed": "Red is for the class, blue against it", "absolute": "Colour is how much a pixel mattered",
            "positive": "Colour is how much a pixel spoke for the class"}[sign]
    how = {"per-method": "each method (column) has its own colour range, shared by the networks in it: compare "
                         "networks within a column, not colours across columns",
           "shared": "every map is in units of its own mean and one range colours them all: maps compare "
                     "across methods and networks, and smooth maps look faint next to peaky ones",
           "raw": "one range of raw values colours every map: only meaningful for one method",
           "per-map": "each map is on its own range: colours cannot be compared between maps"}[scale]
    return f"{what}; {how}."


def _data_uri(picture: Image.Image) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode("ascii")


def _number(value: float) -> str:
    return f"{value:.2g}" if value < 100 else f"{value:,.0f}"


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
