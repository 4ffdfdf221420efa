"""The explorer's layers, the imports between them, and the picture of both.

    python tools/architecture.py            # writes docs/images/architecture.png and .svg
    python tools/architecture.py --check    # prints the rule breaks, exits 1 if there are any

``LAYERS`` is the one table of the package's layers (lowest first) and of the
facts each part owns. ``tests/test_architecture.py`` checks the measured
imports against it, ``docs/architecture.md`` shows the picture drawn from it.
The imports are read with :mod:`ast` from the source files, so nothing here
imports the explorer (or torch): the checks take a second, the picture a few.
"""

from __future__ import annotations

import ast
import io
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "explorer"
IMAGES = ROOT / "docs" / "images"


@dataclass(frozen=True)
class Part:
    """A package (or a base module) of the explorer: what it owns, and which siblings in its layer it may read."""

    name: str
    owns: str
    reads: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layer:
    """Parts at one step of the data flow. A part may import any part of a lower layer, a sibling only when
    its ``reads`` names it, and nothing above (except the top layer, which may import anything)."""

    name: str
    parts: tuple[Part, ...]


LAYERS: tuple[Layer, ...] = (
    Layer("base", (
        Part("explorer.errors", "ExplorerError, SpecError, UsageError"),
        Part("explorer.format", "numbers and shapes for people"),
        Part("explorer.plots", "log and SI axes of every figure", reads=("explorer.format",)),
        Part("explorer.jobs", "background tasks: progress, cancel, the heavy-work line",
             reads=("explorer.errors", "explorer.resources")),
        Part("explorer.devices", "device and precision names (no torch)"),
        Part("explorer.files", "atomic and private writes, uploads kept bounded, temporary folders, safe zips",
             reads=("explorer.errors", "explorer.resources")),
        Part("explorer.resources", "the limits (defaults, environment, explorer.toml); the allocator",
             reads=("explorer.errors", "explorer.format")),
    )),
    Layer("spec", (
        Part("explorer.spec", "the spec, knobs, presets → its layers; layer kinds"),
    )),
    Layer("build / cost / graph", (
        Part("explorer.build", "nn.Module from the layers; the fast copy"),
        Part("explorer.cost", "shapes, params, MACs, memory per layer"),
        Part("explorer.graph", "networkx graph, layout, figure, exports", reads=("explorer.cost",)),
    )),
    Layer("weights", (
        Part("explorer.weights", "the weights registry; safe checkpoints; LoadedModel"),
    )),
    Layer("infer", (
        Part("explorer.infer", "image decoding, devices, precisions, classify"),
        Part("explorer.measure", "measured time per layer; the machine's ceilings", reads=("explorer.infer",)),
    )),
    Layer("explain / lab", (
        Part("explorer.explain", "attribution methods, explain_decoded, views"),
        Part("explorer.lab", "training, ablations, reports"),
    )),
    Layer("ui", (
        Part("explorer.ui", "Streamlit pages: the only streamlit"),
    )),
    Layer("top", (
        Part("explorer.cli", "python -m explorer: the commands"),
        Part("explorer.__main__", "the module entry point"),
        Part("explorer", "the lazy public API (explorer/__init__.py)"),
    )),
)

BASE, TOP = LAYERS[0].name, LAYERS[-1].name
# Only explorer.ui (and app.py, outside the package) may import these.
UI_ONLY = ("streamlit",)


# ---------------------------------------------------------------- the table


def parts() -> dict[str, Part]:
    """Every part by name."""
    return {part.name: part for layer in LAYERS for part in layer.parts}


def layer_of(part: str) -> int:
    """Index of the layer ``part`` is in (0 = base)."""
    for index, layer in enumerate(LAYERS):
        if any(p.name == part for p in layer.parts):
            return index
    raise KeyError(part)


def part_of(module: str) -> str | None:
    """The part a module belongs to: the longest part name that is the module or a package above it
    (``explorer`` itself only for ``explorer/__init__.py``); None when no part holds it."""
    best = None
    for name in parts():
        if module == name or (name != PACKAGE and module.startswith(name + ".")):
            if best is None or len(name) > len(best):
                best = name
    return best


# ---------------------------------------------------------------- reading the imports


@dataclass(frozen=True)
class Import:
    """One dependency of ``source`` on ``target`` (an explorer module, or an outside name as written).

    ``when`` is ``"load"`` for an import that runs when ``source`` is imported (module level, also
    under ``if``/``try``), ``"lazy"`` for one inside a function, ``"name"`` for a module named by a
    string in a module that imports by name (``importlib.import_module(table[key])``: a module name,
    or a ``"module:function"`` reference), and ``"typing"`` for one under ``if TYPE_CHECKING:``
    (never run)."""

    source: str
    target: str
    path: str
    line: int
    when: str

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def find_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    modules: dict[str, Path] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        names = list(path.relative_to(root).with_suffix("").parts)
        if names[-1] == "__init__":
            names.pop()
        modules[".".join(names)] = path
    return modules


def _known(modules: dict[str, Path]) -> set[str]:
    """Module names plus every package directory (a package without ``__init__.py`` while it is being made)."""
    known = set(modules)
    for name in modules:
        pieces = name.split(".")
        known.update(".".join(pieces[:i]) for i in range(1, len(pieces)))
    return known


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """``from ..x import y`` in ``module`` → the absolute name of ``..x``."""
    if not level:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


@dataclass
class _Raw:
    """An import statement before its names are resolved to modules."""

    module: str
    names: tuple[str, ...] | None  # None for ``import module``
    line: int
    when: str


class _Walker(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package = module, is_package
        self.raw: list[_Raw] = []
        self.functions = 0
        self.typing = 0
        self.by_name = False  # importlib.import_module(<not a constant>) somewhere

    def _when(self) -> str:
        return "typing" if self.typing else "lazy" if self.functions else "load"

    def _function(self, node: ast.AST) -> None:
        self.functions += 1
        self.generic_visit(node)
        self.functions -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.typing += 1
        for child in node.body:
            self.visit(child)
        self.typing -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.raw.append(_Raw(alias.name, None, node.lineno, self._when()))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _absolute(self.module, self.is_package, node.level, node.module)
        self.raw.append(_Raw(base, tuple(a.name for a in node.names), node.lineno, self._when()))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self.raw.append(_Raw(arg.value, None, node.lineno, self._when()))
            else:
                self.by_name = True
        self.generic_visit(node)


def _module_strings(tree: ast.Module, known: set[str]) -> list[tuple[str, int]]:
    """Explorer modules named by a string anywhere in a module that imports by name: a module name
    (``COMMANDS = {"costs": "explorer.cost.cli"}``) or a ``"module:function"`` reference."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value.partition(":")[0]
            if name in known and _ours(name):
                found.append((name, node.lineno))
    return found


def _exports(tree: ast.Module, module: str, known: set[str]) -> dict[str, tuple[str, str]]:
    """What a package's ``__init__`` takes from elsewhere: ``from x import a as b`` → ``{"b": ("x.a", "a")}``
    when ``x.a`` is a module, else ``{"b": ("x", "a")}``; likewise the ``name → module`` tables of a lazy
    ``__getattr__``."""
    out: dict[str, tuple[str, str]] = {}
    lazy = any(isinstance(s, ast.FunctionDef) and s.name == "__getattr__" for s in tree.body)
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom):
            base = _absolute(module, True, stmt.level, stmt.module)
            for alias in stmt.names:
                sub = f"{base}.{alias.name}"
                out[alias.asname or alias.name] = (sub, alias.name) if sub in known else (base, alias.name)
        elif lazy and isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(stmt.value, ast.Dict):
            for key, value in zip(stmt.value.keys, stmt.value.values):
                if isinstance(key, ast.Constant) and isinstance(value, ast.Constant) \
                        and isinstance(key.value, str) and value.value in known:
                    out.setdefault(key.value, (value.value, key.value))
    return out


def _ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _existing(name: str, known: set[str]) -> str:
    """``explorer.x.y`` if it is a module, else the nearest package above it (not ``explorer`` itself:
    a name that exists nowhere yet stays as written)."""
    probe = name
    while probe not in known and "." in probe:
        probe = probe.rsplit(".", 1)[0]
    if probe == PACKAGE and name != PACKAGE:
        return name
    return probe if probe in known else name


def read_imports(root: Path = ROOT) -> list[Import]:
    """Every import of every module of the package, each name resolved to the module it comes from.

    ``import explorer.x.y`` and ``from explorer.x import y`` (``y`` a submodule) depend on
    ``explorer.x.y``. ``from explorer.x import name`` depends on the submodule of ``explorer.x``
    that defines ``name`` when ``explorer/x/__init__.py`` only re-exports it (followed through
    nested packages and lazy ``__getattr__`` tables), else on ``explorer.x`` itself. A module that
    imports by name (``importlib.import_module(table[key])``) depends on every explorer module its
    strings name (``"explorer.cost.cli"``, ``"explorer.build.modules:conv2d"``). Imports of other
    packages are kept as written."""
    modules = find_modules(root)
    known = _known(modules)
    trees = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in modules.items()}
    exports = {name: _exports(tree, name, known) for name, tree in trees.items() if _is_package(modules[name])}

    def defining(package: str, name: str) -> str:
        """The module inside ``package`` that defines ``name`` (``package`` itself when its ``__init__`` does)."""
        origin, original = exports[package].get(name, (package, name))
        if not origin.startswith(package + "."):  # defined here, or taken from outside: importing runs this __init__
            return package
        return defining(origin, original) if origin in exports else origin

    found: list[Import] = []
    for name, tree in trees.items():
        path = modules[name]
        rel = path.relative_to(root).as_posix()
        walker = _Walker(name, _is_package(path))
        walker.visit(tree)
        for raw in walker.raw:
            if not _ours(raw.module):
                found.append(Import(name, raw.module, rel, raw.line, raw.when))
                continue
            targets = []
            for item in raw.names or (None,):
                if item is None or item == "*":
                    targets.append(_existing(raw.module, known))
                elif f"{raw.module}.{item}" in known:
                    targets.append(f"{raw.module}.{item}")
                else:
                    targets.append(defining(raw.module, item) if raw.module in exports
                                   else _existing(raw.module, known))
            for target in dict.fromkeys(targets):
                if target != name:
                    found.append(Import(name, target, rel, raw.line, raw.when))
        if walker.by_name:
            for target, line in _module_strings(tree, known):
                if target != name:
                    found.append(Import(name, target, rel, line, "name"))
    return found


# ---------------------------------------------------------------- the rules


def unplaced_modules(root: Path = ROOT) -> list[str]:
    """Modules of the package that no part of ``LAYERS`` holds."""
    return [name for name in find_modules(root) if part_of(name) is None]


def layer_breaks(imports: list[Import]) -> list[Import]:
    """Imports of a part above the importer's layer, or of a sibling its ``reads`` does not name."""
    table = parts()
    breaks = []
    for imp in imports:
        source, target = part_of(imp.source), part_of(imp.target) if _ours(imp.target) else None
        if source is None or target is None or source == target:
            continue
        up, down = layer_of(source), layer_of(target)
        if LAYERS[up].name == TOP or down < up or (down == up and target in table[source].reads):
            continue
        breaks.append(imp)
    return breaks


def ui_only_breaks(imports: list[Import]) -> list[Import]:
    """Imports of streamlit outside ``explorer.ui``."""
    return [imp for imp in imports
            if imp.target.split(".")[0] in UI_ONLY and part_of(imp.source) != "explorer.ui"]


RUN = ("load", "lazy", "name")  # the imports that run (all but ``typing``)


def module_graph(imports: list[Import], whens: tuple[str, ...] = RUN) -> dict[str, set[str]]:
    """Explorer module → the explorer modules it imports, counting the imports of the given kinds."""
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in imports:
        if imp.when in whens and _ours(imp.target) and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    return graph


def part_graph(imports: list[Import], whens: tuple[str, ...] = RUN) -> dict[str, set[str]]:
    """Part (``explorer.spec``, ``explorer.cli``) → the other parts it imports, counting the given kinds."""
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in imports:
        if imp.when in whens and _ours(imp.target):
            source, target = part_of(imp.source), part_of(imp.target)
            if source is not None and target is not None and source != target:
                graph[source].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[list[str]]]:
    """The knots: groups of modules that import one another (strongly connected components), each
    given as shortest cycles ``[a, b, ..., a]`` that together pass through all its modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    knots: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan; recursion depth is bounded by the module count
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            knot = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                knot.append(top)
                if top == node:
                    break
            if len(knot) > 1:
                knots.append(sorted(knot))

    for node in sorted(graph):
        if node not in index:
            connect(node)

    def shortest_cycle(start: str, members: set[str]) -> list[str]:
        previous: dict[str, str] = {}
        frontier = [start]
        while start not in previous:  # a knot holds a cycle through each of its modules
            following = []
            for node in frontier:
                for nxt in sorted(graph.get(node, ())):
                    if nxt in members and nxt not in previous:
                        previous[nxt] = node
                        following.append(nxt)
            frontier = following
        chain = [start]
        while (node := previous[chain[-1]]) != start:
            chain.append(node)
        return [start, *chain[:0:-1], start]  # chain is the loop walked backwards from start

    found = []
    for knot in sorted(knots):
        loops: list[list[str]] = []
        for module in knot:
            if not any(module in loop for loop in loops):
                loops.append(shortest_cycle(module, set(knot)))
        found.append(loops)
    return found


def cycle_text(loops: list[list[str]]) -> str:
    """``a → b → a; c → a → c``: the cycles of one knot."""
    return "; ".join(" → ".join(loop) for loop in loops)


def part_edges(imports: list[Import]) -> dict[tuple[str, str], list[Import]]:
    """(importing part, imported part) → the imports that make the edge."""
    edges: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in imports:
        if not _ours(imp.target):
            continue
        source, target = part_of(imp.source), part_of(imp.target)
        if source and target and source != target:
            edges[source, target].append(imp)
    return dict(edges)


def _grouped(imports: list[Import]) -> list[list[Import]]:
    """The imports of one module from another (the same kind), together, in reading order."""
    groups: dict[tuple[str, str, str], list[Import]] = {}
    for imp in imports:
        groups.setdefault((imp.source, imp.target, imp.when), []).append(imp)
    return list(groups.values())


def _where(group: list[Import]) -> str:
    return f"{group[0].path}:" + ",".join(str(imp.line) for imp in group)


def layer_break_lines(imports: list[Import]) -> list[str]:
    """One line per pair of modules that breaks a layer rule: where, who, which layers, what kind of import."""
    lines = []
    for group in _grouped(layer_breaks(imports)):
        imp = group[0]
        source, target = LAYERS[layer_of(part_of(imp.source))].name, LAYERS[layer_of(part_of(imp.target))].name
        lines.append(f"{_where(group)}: {imp.source} ({source}) imports {imp.target} ({target}) [{imp.when}]")
    return lines


def ui_only_lines(imports: list[Import]) -> list[str]:
    """One line per module that imports streamlit outside ``explorer.ui``."""
    return [f"{_where(group)}: {group[0].source} imports {group[0].target} outside explorer.ui [{group[0].when}]"
            for group in _grouped(ui_only_breaks(imports))]


def report(imports: list[Import] | None = None, root: Path = ROOT) -> list[str]:
    """Every rule break, one line each."""
    imports = read_imports(root) if imports is None else imports
    lines = [f"{name}: in no layer of tools/architecture.py" for name in unplaced_modules(root)]
    lines += layer_break_lines(imports) + ui_only_lines(imports)
    at_load = cycles(module_graph(imports, ("load",)))
    lines += [f"import-time cycle: {cycle_text(c)}" for c in at_load]
    lines += [f"parts that need each other: {cycle_text(c)}" for c in cycles(part_graph(imports))
              if c not in at_load]
    return lines


# ---------------------------------------------------------------- the picture


def _short(name: str) -> str:
    return "__init__" if name == PACKAGE else name.removeprefix(PACKAGE + ".")


def draw(out_dir: Path = IMAGES, imports: list[Import] | None = None) -> list[Path]:
    """Draw the parts in one row in data-flow order, each layer a shaded column, base below and top above;
    the arcs are the measured imports between parts (grey: allowed, red: a rule break). Writes
    ``architecture.png`` (2400 px wide, read at 1200) and ``architecture.svg``; returns their paths."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "architecture"  # the same drawing gives the same file
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    imports = read_imports() if imports is None else imports
    edges = part_edges(imports)
    broken = {(part_of(i.source), part_of(i.target)) for i in layer_breaks(imports)}
    flow, bands = LAYERS[1:-1], (LAYERS[0], LAYERS[-1])

    width, height = 12.0, 6.5
    fig = plt.figure(figsize=(width, height), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    ink, grey = "#1A2733", "#59636E"

    # the row: parts side by side, a wider gap between layers
    box_w, box_h, inner, outer, row_y = 1.13, 1.12, 0.1, 0.24, 3.55
    count = sum(len(layer.parts) for layer in flow)
    total = count * box_w + sum(len(layer.parts) - 1 for layer in flow) * inner + (len(flow) - 1) * outer
    x = (width - total) / 2
    centre: dict[str, tuple[float, float]] = {}
    size: dict[str, tuple[float, float]] = {}
    for layer in flow:
        first = x
        for part in layer.parts:
            centre[part.name], size[part.name] = (x + box_w / 2, row_y), (box_w, box_h)
            x += box_w + inner
        last = x - inner
        ax.add_patch(FancyBboxPatch((first - 0.07, row_y - box_h / 2 - 0.08), last - first + 0.14, box_h + 0.5,
                                    boxstyle="round,pad=0,rounding_size=0.06", facecolor="#F4F7FB",
                                    edgecolor="#C9D3DE", linewidth=0.8, zorder=0))
        ax.text((first + last) / 2, row_y + box_h / 2 + 0.2, layer.name, ha="center", va="center",
                fontsize=9.5, color=grey, style="italic")
        x = last + outer
    left_edge = (width - total) / 2

    def band(layer: Layer, y: float, note: str, label_y: float) -> None:
        w = (total - (len(layer.parts) - 1) * inner) / len(layer.parts)
        ax.text(left_edge, label_y, f"{layer.name}: {note}", ha="left", va="center", fontsize=9.5, color=grey,
                style="italic")
        for i, part in enumerate(layer.parts):
            centre[part.name] = (left_edge + w / 2 + i * (w + inner), y)
            size[part.name] = (w, 0.62)

    band(LAYERS[-1], 5.3, "may import anything, lazily (those arrows are not drawn)", 5.78)
    band(LAYERS[0], 0.75, "imported by every layer (those arrows are not drawn)", 0.24)

    for name, (cx, cy) in centre.items():
        w, h = size[name]
        in_band = name in {p.name for b in bands for p in b.parts}
        ax.add_patch(FancyBboxPatch((cx - w / 2, cy - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                                    facecolor="#EEF0F2" if in_band else "#E3EEFA", edgecolor="#6C7A89",
                                    linewidth=1.0, zorder=2))
        ax.text(cx, cy + h / 2 - 0.07, _short(name), ha="center", va="top", fontsize=10, weight="bold",
                color=ink, zorder=3)
        owns = parts()[name].owns
        text = textwrap.fill(owns, 40) if in_band else textwrap.fill(owns, 18)
        ax.text(cx, cy - (0.07 if in_band else 0.1), text, ha="center", va="center", fontsize=8,
                color="#30363D", zorder=3, linespacing=1.12)

    # the arcs: every allowed import points left (down the data flow), so each leaves the bottom of its
    # importer's box on the left half and lands on the right half of the imported box's bottom; the
    # farther the other end, the farther out the point, so nested arcs do not cross at their ends
    in_row = {p.name for layer in flow for p in layer.parts}
    drawn = [(s, t, n) for (s, t), n in sorted(edges.items()) if s in in_row and t in in_row]
    leaving: dict[str, list[str]] = defaultdict(list)
    arriving: dict[str, list[str]] = defaultdict(list)
    for source, target, _ in drawn:
        leaving[source].append(target)
        arriving[target].append(source)

    def foot(part: str, other: str, ends: dict[str, list[str]]) -> tuple[float, float]:
        """Where the arc to ``other`` meets ``part``: on the half of the bottom edge facing ``other``,
        the nearer ``other``, the farther from the middle (so nested arcs do not cross at their ends)."""
        (cx, cy), (w, h) = centre[part], size[part]
        order = sorted(ends[part], key=lambda o: -abs(centre[o][0] - cx))
        offset = (0.05 + 0.38 * (order.index(other) + 0.5) / len(order)) * w
        return cx + (offset if centre[other][0] > cx else -offset), cy - h / 2

    for source, target, why in drawn:
        bad = (source, target) in broken
        start, end = foot(source, target, leaving), foot(target, source, arriving)
        dx = end[0] - start[0]
        depth = 0.15 + 0.15 * abs(dx)
        rad = 2 * depth / dx if dx else 0.0  # arc3: bends down both ways (leftward rad < 0, rightward rad > 0)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, shrinkA=0, shrinkB=1,
                                     connectionstyle=f"arc3,rad={rad}",
                                     color="#D62728" if bad else "#5B6B7B", alpha=0.95 if bad else 0.6,
                                     linewidth=0.9 + 0.35 * min(len(why), 9) ** 0.5, zorder=1))

    # rule breaks that involve the bands: straight red arrows
    for source, target in sorted(broken):
        if source in in_row and target in in_row:
            continue
        (sx, sy), (tx, ty) = centre[source], centre[target]
        start = (sx, sy + size[source][1] / 2) if ty > sy else (sx, sy - size[source][1] / 2)
        end = (tx, ty - size[target][1] / 2) if ty > sy else (tx, ty + size[target][1] / 2)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, shrinkA=0, shrinkB=1,
                                     color="#D62728", alpha=0.9, linewidth=1.4, zorder=4))

    ax.text(width / 2, height - 0.1, "explorer: data flows left to right; an arrow A → B means A imports B "
            "(grey: allowed, red: breaks a layer rule; width: number of imports)",
            ha="center", va="top", fontsize=10, color=ink)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "architecture.png", out_dir / "architecture.svg"]
    fig.savefig(paths[1], metadata={"Date": None})
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=200)
    plt.close(fig)
    from PIL import Image  # a palette of 64 colours: a quarter of the bytes, no visible change

    Image.open(buffer).convert("RGB").quantize(64, dither=Image.Dither.NONE).save(paths[0], optimize=True)
    return paths


def main(argv: list[str]) -> int:
    imports = read_imports()
    breaks = report(imports)
    print("\n".join(breaks) if breaks else "no rule breaks")
    if "--check" in argv:
        return 1 if breaks else 0
    for path in draw(imports=imports):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
