"""The package's shape, read from its source: layers, import cycles, where streamlit and torch may go.

The layers, lowest first, and what each part owns are one table, ``LAYERS`` in
``tools/architecture.py``; the same module reads the imports (with ``ast``,
importing nothing) and draws ``docs/images/architecture.png`` from them, so
the picture, ``docs/architecture.md`` and these checks cannot drift apart.

How an import is read. Every ``import`` and ``from ... import`` of every
module under ``explorer/`` counts: at module level (also under ``if`` and
``try``: they run when the module is imported; "load"), inside functions
("lazy"), ``importlib.import_module("explorer.x")``, and, in a module that
imports by name (``importlib.import_module(table[key])``), every explorer
module its strings name: ``explorer.cli``'s ``COMMANDS``, a lazy
``__getattr__``'s ``_API``, ``"explorer.build.modules:conv2d"`` ("name").
Relative imports are made absolute. ``import explorer.x.y`` and ``from
explorer.x import y`` (``y`` a submodule) depend on ``explorer.x.y``.
Imports under ``if TYPE_CHECKING:`` never run: they count for the layers (an
annotation naming a class from above still couples the layers) but not for
cycles.

Re-exports and cycles. Cycles are checked between modules. A package's
``__init__`` imports its submodules to re-export their names, so if
``from explorer.x import Name`` inside ``explorer/x/`` depended on
``explorer/x/__init__.py``, every such import would close a loop and a real
knot among the submodules could not be told from the noise. So ``from
explorer.x import Name`` depends on the submodule of ``explorer.x`` that
defines ``Name`` when the ``__init__`` only re-exports it (followed through
subpackages and lazy ``__getattr__`` tables); a name the ``__init__`` defines
itself, or takes from outside the package, is a dependency on the
``__init__`` (importing it runs that ``__init__``). For the same reason,
that importing ``explorer.x.y`` first runs ``explorer/x/__init__.py`` is not
counted. Two checks: import-time cycles between modules (module-level imports
only), which break or work depending on which module is imported first; and
cycles between parts (packages) closed through any import that runs, lazy or
by name, where the deferral only hides that two parts need each other: one
of them holds a fact that belongs to the other, or to a part below both.
Inside one part a lazy import may close a loop: ``Spec.with_overrides`` is a
method of the schema that defers to the knobs, which validate through the
spec reader; one room, one owner.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools import architecture as arch  # noqa: E402


@pytest.fixture(scope="module")
def imports() -> list[arch.Import]:
    return arch.read_imports()


def _fail(title: str, lines: list[str]) -> None:
    if lines:
        pytest.fail(f"{title}:\n  " + "\n  ".join(lines), pytrace=False)


# ---------------------------------------------------------------- the package


def test_the_layer_table_names_real_parts_once():
    names = [part.name for layer in arch.LAYERS for part in layer.parts]
    assert len(names) == len(set(names)), "a part is in two layers"
    known = arch.find_modules()
    missing = [name for name in names if name not in known and not any(m.startswith(name + ".") for m in known)]
    assert not missing, f"parts of LAYERS with no module: {missing}"
    for layer in arch.LAYERS:
        siblings = {part.name for part in layer.parts}
        for part in layer.parts:
            assert set(part.reads) <= siblings - {part.name}, f"{part.name} reads a part outside its layer"


def test_every_module_has_a_layer():
    _fail("modules in no layer of tools/architecture.py LAYERS", arch.unplaced_modules())


def test_no_part_imports_a_layer_above_it(imports):
    _fail("imports against the data flow (lowest layer first: "
          + " → ".join(layer.name for layer in arch.LAYERS) + ")",
          arch.layer_break_lines(imports))


def test_only_the_ui_imports_streamlit(imports):
    _fail("streamlit imported outside explorer/ui/", arch.ui_only_lines(imports))


def test_no_import_time_cycles(imports):
    _fail("modules that import each other when loaded",
          [arch.cycle_text(c) for c in arch.cycles(arch.module_graph(imports, ("load",)))])


def test_no_cycles_between_parts(imports):
    _fail("parts that need each other (a function-level or by-name import closes the loop)",
          [arch.cycle_text(c) for c in arch.cycles(arch.part_graph(imports, arch.RUN))])


def test_spec_cost_and_graph_load_no_torch():
    code = ("import sys, explorer, explorer.spec, explorer.cost, explorer.graph\n"
            "spec = explorer.spec.load_spec('xception')\n"
            "explorer.cost.count_costs(spec), explorer.graph.build_graph(spec)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'streamlit'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- the reader, on a small made-up package


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "explorer" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _edges(found: list[arch.Import]) -> set[tuple[str, str, str]]:
    return {(i.source, i.target, i.when) for i in found if i.target.startswith("explorer")}


def test_the_reader_resolves_re_exports_relative_and_lazy_imports(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": """
            import importlib
            _API = {"Spec": "explorer.spec", "build": "explorer.build"}
            def __getattr__(name):
                return getattr(importlib.import_module(_API[name]), name)
            """,
        "errors.py": "class ExplorerError(ValueError): ...\n",
        "spec/__init__.py": """
            from explorer.errors import ExplorerError
            from explorer.spec.schema import Spec
            from .io import load as load_spec
            VERSION = 1
            """,
        "spec/kinds.py": """
            import importlib
            FACTORIES = {"conv": "explorer.build.net:Net"}
            def factory(kind):
                module, _, name = FACTORIES[kind].partition(":")
                return getattr(importlib.import_module(module), name)
            """,
        "spec/schema.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from explorer.build import Net
            class Spec:
                def to_yaml(self):
                    from explorer.spec.io import dump
                    return dump(self)
            """,
        "spec/io.py": """
            from . import schema
            from .schema import Spec
            def load(): ...
            def dump(spec): ...
            """,
        "build/__init__.py": "from explorer.build.net import Net\n",
        "build/net.py": """
            from explorer.spec import Spec, ExplorerError, load_spec, VERSION
            from explorer import spec
            import explorer.spec.io
            class Net: ...
            """,
    })
    found = arch.read_imports(root)
    edges = _edges(found)
    assert ("explorer.build.net", "explorer.spec.schema", "load") in edges  # re-exported from a submodule
    assert ("explorer.build.net", "explorer.spec.io", "load") in edges  # re-exported under another name
    # a name the __init__ defines, or takes from outside the package: importing it runs the __init__
    assert ("explorer.build.net", "explorer.spec", "load") in edges
    assert ("explorer.spec.io", "explorer.spec.schema", "load") in edges  # relative
    assert ("explorer.spec.schema", "explorer.spec.io", "lazy") in edges  # inside a function
    assert ("explorer.spec.schema", "explorer.build.net", "typing") in edges
    assert ("explorer", "explorer.spec", "name") in edges and ("explorer", "explorer.build", "name") in edges
    assert ("explorer.spec.kinds", "explorer.build.net", "name") in edges  # a "module:function" reference
    assert not any(source == "explorer.spec.io" and target == "explorer.spec" for source, target, _ in edges)

    assert arch.cycles(arch.module_graph(found, ("load",))) == []
    assert arch.cycles(arch.module_graph(found)) == [[["explorer.spec.io", "explorer.spec.schema", "explorer.spec.io"]]]
    # the TYPE_CHECKING import of a higher layer counts for the layers
    assert sorted((i.source, i.target) for i in arch.layer_breaks(found)) == [
        ("explorer.spec.kinds", "explorer.build.net"), ("explorer.spec.schema", "explorer.build.net")]


def test_the_reader_finds_streamlit_and_imports_up_the_layers(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "jobs.py": "from explorer.spec import Spec\n",
        "spec/__init__.py": "class Spec: ...\n",
        "cost/__init__.py": "def f():\n    import streamlit.components.v1\n",
        "graph/__init__.py": "from explorer import cost\n",
        "ui/__init__.py": "import streamlit as st\nfrom explorer import graph\n",
    })
    found = arch.read_imports(root)
    assert [(i.source, i.target) for i in arch.ui_only_breaks(found)] == [("explorer.cost", "streamlit.components.v1")]
    assert [(i.source, i.target) for i in arch.layer_breaks(found)] == [("explorer.jobs", "explorer.spec")]
    assert arch.unplaced_modules(root) == []
