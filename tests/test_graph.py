"""The architecture graph: it agrees with the built model (module paths, a torch.fx trace of the
data flow, parameter counts), with timm's Xception (which blocks have a shortcut, which a
projection), with the cost model's totals, and survives its exports and its drawing."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import networkx as nx
import pytest
import torch
import torch.fx as fx

from explorer.build import build_model
from explorer.cli import main
from explorer.cost import count_costs
from explorer.graph import (
    GraphError,
    build_graph,
    from_node_link,
    graph_figure,
    layout_graph,
    to_node_link,
    write_graph,
)
from explorer.spec import INPUT, load_spec

VARIANTS = [
    ("xception", {}),
    ("xception", {"residual": False}),
    ("xception", {"middle_repeats": 3}),
    ("xception", {"mid_activation": "relu", "segments": 4, "width": 0.5}),
    ("inception_v3", {}),
    ("inception_v3", {"aux_logits": False}),
]


def _spec(name: str, knobs: dict):
    spec = load_spec(name)
    return spec.with_overrides(**knobs) if knobs else spec


def _meta_model(spec) -> torch.nn.Module:
    """The built model without allocating its weights (the module tree and forward are the same)."""
    with torch.device("meta"):
        return build_model(spec)


class _LayerTracer(fx.Tracer):
    """Every module at a layer path is a leaf, so the fx graph is the data flow between layers."""

    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        return qualname in self.leaves


def fx_edges(model: torch.nn.Module) -> set[tuple[str, str]]:
    """Module → module edges of a torch.fx trace of ``model`` in training mode (aux head included).

    Any non-module node between two module calls is looked through, so the
    edges hold whatever the forward really does.
    """
    leaves = {name for name, m in model.named_modules() if name and not list(m.children())}
    model.train()
    try:
        traced = _LayerTracer(leaves).trace(model)
    finally:
        model.eval()

    def sources(node: fx.Node) -> set[str]:
        if node.op == "placeholder":
            return {INPUT}
        if node.op == "call_module":
            return {str(node.target)}
        return set().union(*(sources(n) for n in node.all_input_nodes)) if node.all_input_nodes else set()

    edges = set()
    for node in traced.nodes:
        if node.op == "call_module":
            for arg in node.all_input_nodes:
                edges |= {(s, str(node.target)) for s in sources(arg)}
    return edges


@pytest.mark.parametrize("name, knobs", VARIANTS)
def test_layer_graph_is_the_built_models_data_flow(name, knobs):
    spec = _spec(name, knobs)
    graph = build_graph(spec)
    model = _meta_model(spec)
    for node, data in graph.nodes(data=True):
        if node == INPUT:
            assert data["kind"] == "input"
            continue
        module = model.get_submodule(node)
        assert not list(module.children()), f"{node} is not a leaf module"
        assert data["params"] == sum(p.numel() for p in module.parameters()), node
    assert set(graph.edges) == fx_edges(model)
    assert nx.is_directed_acyclic_graph(graph)
    assert all(graph.nodes[u]["order"] < graph.nodes[v]["order"] for u, v in graph.edges)


@pytest.mark.parametrize("name, knobs", VARIANTS)
def test_block_graph_nodes_are_module_paths_and_contract_the_layer_graph(name, knobs):
    spec = _spec(name, knobs)
    layers = build_graph(spec)
    blocks = build_graph(spec, level="block")
    model = _meta_model(spec)
    for node in blocks:
        if node != INPUT:
            model.get_submodule(node)
    expected = {(layers.nodes[u]["block"], layers.nodes[v]["block"]) for u, v in layers.edges}
    assert set(blocks.edges) == {(u, v) for u, v in expected if u != v}
    assert sum(d["layers"] for _, d in blocks.nodes(data=True)) == layers.number_of_nodes() - 1


def test_shortcuts_match_timm_xception(timm_xception):
    """timm's blocks 1-12: all add their input back; those with a ``skip`` conv project it."""
    spec = load_spec("xception")
    graph = build_graph(spec)
    model = _meta_model(spec)
    theirs = [getattr(timm_xception, f"block{i}").skip is not None for i in range(1, 13)]
    adds = [n for n, d in graph.nodes(data=True) if d["kind"] == "add"]
    assert len(adds) == len(theirs)
    skip_edges = {(u, v) for u, v, s in graph.edges(data="skip") if s}
    for add, projects in zip(adds, theirs):
        block = graph.nodes[add]["block"]
        has_skip_module = hasattr(model.get_submodule(block), "skip")
        assert has_skip_module == projects, block
        # the shortcut: a path of skip edges from the block's input to its add, through <block>.skip.*
        block_input = next(u for u, v in graph.edges if graph.nodes[v]["block"] == block
                           and graph.nodes[u]["block"] != block and not graph.edges[u, v]["skip"])
        path = [f"{block}.skip.conv", f"{block}.skip.bn"] if projects else []
        expected = set(zip([block_input, *path], [*path, add]))
        assert {e for e in skip_edges if e[1] in (*path, add)} == expected, block
    # the main path does not need the shortcuts: without them, input still reaches the output
    main_path = graph.edge_subgraph([e for e in graph.edges if e not in skip_edges])
    assert nx.has_path(main_path, INPUT, "exit.fc")
    assert all(main_path.in_degree(a) == 1 for a in adds)


def test_no_residual_means_no_shortcuts():
    graph = build_graph(load_spec("xception").with_overrides(residual=False))
    assert not any(s for *_, s in graph.edges(data="skip"))
    assert not any(d["kind"] == "add" for _, d in graph.nodes(data=True))
    block = build_graph(load_spec("xception").with_overrides(residual=False), level="block")
    assert {d.get("residual") for _, d in block.nodes(data=True) if d["kind"] == "xception"} == {"none"}


@pytest.mark.parametrize("k", [0, 3])
def test_middle_repeats_and_collapse(k):
    spec = load_spec("xception").with_overrides(middle_repeats=k)
    blocks = build_graph(spec, level="block")
    assert [n for n, d in blocks.nodes(data=True) if d["flow"] == "middle"] == [
        f"middle.block{i}" for i in range(1, k + 1)]
    for level in ("block", "layer"):
        collapsed = build_graph(spec, level=level, collapse_middle=True)
        middle = [n for n, d in collapsed.nodes(data=True) if d["flow"] == "middle"]
        assert middle == (["middle.block"] if k else [])
        if k:
            node = collapsed.nodes["middle.block"]
            assert node["repeat"] == k and node["label"] == f"middle.block ×{k}"
            assert node["members"] == tuple(f"middle.block{i}" for i in range(1, k + 1))
            assert list(collapsed.predecessors("middle.block")) == ["entry.block3" if level == "block"
                                                                    else "entry.block3.add"]
        full = build_graph(spec, level=level)
        for key in ("params", "macs"):
            assert sum(d[key] for _, d in collapsed.nodes(data=True)) == sum(d[key] for _, d in full.nodes(data=True))
        assert nx.is_weakly_connected(collapsed)


@pytest.mark.parametrize("name", ["xception", "inception_v3"])
def test_costs_come_from_the_cost_model_and_sum_to_its_totals(name):
    spec = load_spec(name)
    report = count_costs(spec)
    for level, collapse in (("layer", False), ("block", False), ("block", True)):
        graph = build_graph(spec, level=level, collapse_middle=collapse)
        nodes = graph.nodes(data=True)
        assert sum(d["params"] for _, d in nodes) == report.totals["params"]
        assert sum(d["macs"] for _, d in nodes if not d["train_only"]) == report.totals["macs"]
    layers = build_graph(spec)
    for row in report.layers:
        assert (layers.nodes[row.name]["macs"], layers.nodes[row.name]["params"]) == (row.macs, row.params)
    blocks = build_graph(spec, level="block")
    for row in report.by("block"):
        node = blocks.nodes[row["block"]]
        assert (node["macs"], node["params"]) == (row["macs"], row["params"])


def test_node_link_json_round_trip(tmp_path):
    graph = build_graph(load_spec("inception_v3"))
    back = from_node_link(json.dumps(to_node_link(graph)))
    assert list(back.nodes) == list(graph.nodes) and set(back.edges) == set(graph.edges)
    assert dict(back.nodes(data=True)) == dict(graph.nodes(data=True))
    assert dict(back.edges.items()) == dict(graph.edges.items())
    path = write_graph(graph, tmp_path / "g.json")
    assert set(from_node_link(path.read_text()).edges) == set(graph.edges)
    with pytest.raises(GraphError):
        from_node_link("{not json")


def test_graphml_is_readable_by_networkx(tmp_path):
    graph = build_graph(load_spec("xception"), level="block", collapse_middle=True)
    path = write_graph(graph, tmp_path / "g.graphml")
    back = nx.read_graphml(path)
    assert set(back.nodes) == set(graph.nodes) and set(back.edges) == set(graph.edges)
    node = back.nodes["middle.block"]
    assert node["out_shape"] == "x".join(map(str, graph.nodes["middle.block"]["out_shape"]))
    assert node["members"].split(",") == list(graph.nodes["middle.block"]["members"])
    assert node["macs"] == graph.nodes["middle.block"]["macs"]
    layers = nx.read_graphml(write_graph(build_graph(load_spec("xception")), tmp_path / "l.graphml"))
    assert sum(1 for *_, s in layers.edges(data="skip") if s) == 20


def test_html_export_is_standalone(tmp_path):
    path = write_graph(build_graph(load_spec("xception"), level="block"), tmp_path / "g.html")
    text = path.read_text()
    assert "<html" in text and "plotly" in text.lower() and "entry.block2" in text
    assert not re.search(r"<script[^>]*\bsrc=", text)  # plotly.js is inlined: the file works offline
    with pytest.raises(GraphError, match="choose a file ending in"):
        write_graph(build_graph(load_spec("xception")), tmp_path / "g.png")


def test_inception_figure_has_a_trace_per_kind_and_hover_for_every_node():
    graph = build_graph(load_spec("inception_v3"))
    fig = graph_figure(graph)
    kinds = {d["kind"] for _, d in graph.nodes(data=True)}
    node_traces = [t for t in fig.data if t.customdata is not None]
    assert {t.name for t in node_traces} == kinds
    ids = [i for t in node_traces for i in t.customdata]
    assert sorted(ids) == sorted(graph.nodes)
    for t in node_traces:
        for node, text in zip(t.customdata, t.hovertext):
            assert node in text and "MACs" in text and "params" in text
    assert fig.to_plotly_json()["layout"]["annotations"]  # flow and block labels
    flows = {re.match(r"<b>(.*?)</b>", a["text"]).group(1) for a in fig.to_plotly_json()["layout"]["annotations"]
             if a["text"].startswith("<b>")}
    assert flows == {d["flow"] for _, d in graph.nodes(data=True)}


def test_figure_draws_shortcuts_apart_and_scales_by_cost():
    xception = build_graph(load_spec("xception"))
    names = [t.name for t in graph_figure(xception).data]
    assert "residual shortcut" in names
    plain = build_graph(load_spec("xception").with_overrides(residual=False))
    assert "residual shortcut" not in [t.name for t in graph_figure(plain).data]
    fig = graph_figure(xception, color_by="macs", size_by="params", selected=["entry.block2.add"])
    nodes = [t for t in fig.data if t.name == "macs"]
    assert len(nodes) == 1 and nodes[0].marker.colorbar.title.text == "MACs"
    sizes = dict(zip(nodes[0].customdata, nodes[0].marker.size))
    assert sizes["exit.fc"] > sizes["entry.conv1.conv"] > sizes["entry.conv1.act"]
    assert any(t.name == "selected" for t in fig.data)
    with pytest.raises(GraphError):
        graph_figure(xception, color_by="colour")
    collapsed = graph_figure(build_graph(load_spec("xception"), level="block", collapse_middle=True))
    assert any("block ×8" in (t.text or ()) for t in collapsed.data if t.customdata is not None)


def test_layout_runs_left_to_right_and_puts_branches_side_by_side():
    graph = build_graph(load_spec("inception_v3"))
    layout = layout_graph(graph)
    pos, row = layout.pos, layout.row_of
    for u, v in graph.edges:
        if row[u] == row[v]:
            assert pos[u][0] < pos[v][0], (u, v)
        else:
            assert row[u] < row[v] and layout.rows[row[u]].center > layout.rows[row[v]].center
    for node, data in graph.nodes(data=True):
        if data["kind"] == "concat":
            lanes = [pos[u][1] for u in graph.predecessors(node)]
            assert len(set(lanes)) == len(lanes), node  # every branch in its own lane
            assert pos[node][1] == pytest.approx(sum(lanes) / len(lanes))  # the join sits in the middle
    flows = [b.flow for b in layout.bands]
    assert flows == list(dict.fromkeys(d["flow"] for _, d in sorted(graph.nodes(data=True),
                                                                   key=lambda x: x[1]["order"])))


def test_cli_summary_and_files(capsys, tmp_path):
    assert main(["graph", "xception", "--set", "middle_repeats=2", "--level", "block"]) == 0
    out = capsys.readouterr().out
    totals = count_costs(load_spec("xception").with_overrides(middle_repeats=2)).totals
    assert "xception" in out and "middle" in out and f"{totals['params']:,}" in out
    target = tmp_path / "x.json"
    assert main(["graph", "inception_v3", "--out", str(target)]) == 0
    assert set(from_node_link(target.read_text()).nodes) == set(build_graph(load_spec("inception_v3")).nodes)


@pytest.mark.parametrize("args, needle", [
    (["graph", "xception", "--out", "graph.png"], "choose a file ending in"),
    (["graph", "xception", "--set", "aux_logits=false"], "aux_logits"),
])
def test_cli_errors_are_one_line(args, needle):
    result = subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
