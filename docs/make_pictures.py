"""Make the README's pictures with the project's own code.

    python docs/make_pictures.py            # all pictures
    python docs/make_pictures.py xception_blocks

One function per picture; each writes ``docs/images/<name>.png`` and returns
its path. Static export uses kaleido, which drives the local Chromium.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

IMAGES = Path(__file__).resolve().parent / "images"
SCALE = 2  # pixel density of the PNGs (sharp on high-DPI screens)


def xception_blocks(out_dir: Path = IMAGES) -> Path:
    """Xception at block level: the entry, middle (8 blocks) and exit flows, node size by MACs."""
    from explorer.graph import build_graph, graph_figure
    from explorer.spec import load_spec

    graph = build_graph(load_spec("xception"), level="block")
    fig = graph_figure(graph, color_by="kind", size_by="macs",
                       title="Xception, block level: node size = MACs, dashed arcs = residual shortcuts")
    return _write(fig, out_dir / "xception_blocks.png")


def inception_v3_layers(out_dir: Path = IMAGES) -> Path:
    """Inception V3 at layer level (319 layers): parallel branches meeting at each concat."""
    from explorer.graph import build_graph, graph_figure
    from explorer.spec import load_spec

    graph = build_graph(load_spec("inception_v3"), level="layer")
    fig = graph_figure(graph, color_by="kind", size_by="macs",
                       title="Inception V3, layer level: every module, node size = MACs")
    return _write(fig, out_dir / "inception_v3_layers.png")


def roofline_xception(out_dir: Path = IMAGES) -> Path:
    """Xception measured on this machine (batch 1, float32): every layer at its arithmetic intensity and the
    FLOP/s it reached, under the measured roofs; the depthwise and pointwise medians marked."""
    from explorer.measure import profile
    from explorer.measure.figures import roofline_figure
    from explorer.spec import load_spec

    # the roofs are the machine's cached ceilings (measured by the first profile, again with
    # `python -m explorer ceilings --remeasure`): on a shared machine, measure them while it is quiet
    measured = profile(load_spec("xception"), batch=1, repeats=20)
    fig = roofline_figure(measured, title="Xception's roofline on this machine: depthwise against pointwise")
    fig.update_layout(width=1100, height=640)
    return _write(fig, out_dir / "roofline_xception.png")


PICTURES: dict[str, Callable[[Path], Path]] = {
    "xception_blocks": xception_blocks,
    "inception_v3_layers": inception_v3_layers,
    "roofline_xception": roofline_xception,
}


def _write(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_image(path, scale=SCALE)
    return path


def main(argv: list[str]) -> int:
    """Make the named pictures (all without names); print where each went."""
    unknown = [name for name in argv if name not in PICTURES]
    if unknown:
        print(f"error: unknown picture {', '.join(unknown)} (choose from {', '.join(PICTURES)})", file=sys.stderr)
        return 2
    for name in argv or PICTURES:
        print(PICTURES[name]())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
