"""``python -m explorer graph SPEC``: the network's graph as a summary, JSON, GraphML or HTML."""

from __future__ import annotations

import argparse

from explorer.graph.build import LEVELS, build_graph, summarize


def _graph(args: argparse.Namespace) -> int:
    from explorer.spec.arguments import resolve_spec

    spec = resolve_spec(args.spec, args.overrides)
    graph = build_graph(spec, level=args.level, collapse_middle=args.collapse_middle)
    if args.out is None:
        print(summarize(graph))
        return 0
    from explorer.graph.export import write_graph

    size_by = None if args.size_by == "none" else args.size_by
    path = write_graph(graph, args.out, color_by=args.color_by, size_by=size_by,
                       title=f"{spec.name}: {args.level} level")
    print(f"wrote {path} ({graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``graph`` subcommand."""
    from explorer.spec.arguments import add_spec_arguments

    p = sub.add_parser("graph", help="the architecture graph: a summary, or a .html, .json or .graphml file",
                       description="Build the data-flow graph of a spec (entry, middle and exit flows, with "
                                   "the cost of every node). Without --out, print a summary.")
    add_spec_arguments(p)
    p.add_argument("--level", choices=LEVELS, default="layer", help="one node per layer or per block")
    p.add_argument("--collapse-middle", action="store_true",
                   help="fold the repeated middle-flow block into one node")
    p.add_argument("--out", metavar="FILE", help="write FILE.html (standalone figure), FILE.json (node-link) "
                                                 "or FILE.graphml")
    p.add_argument("--color-by", choices=("kind", "flow", "macs", "params"), default="kind",
                   help="node colour in the HTML figure")
    p.add_argument("--size-by", choices=("macs", "params", "none"), default="macs",
                   help="node size in the HTML figure")
    p.set_defaults(handler=_graph)
