"""The import graph of the package points one way.

Every ``import`` of an fworker module inside fworker/ counts, wherever it is written: at the
top, inside a function (a late import is still a dependency), under ``if TYPE_CHECKING``
(a type checker follows it).  Imports by name at run time (``importlib``) are not seen; the
package root's lazy exports are listed under its TYPE_CHECKING block, so they are.

``import a.b`` and ``from a import b`` (b a module) depend on ``a.b`` only: the implicit
import of the parent package is not an edge, or every module would depend on the root.
"""
from __future__ import annotations

import ast
import dataclasses
import fnmatch
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "fworker"

# The layers, bottom-up.  A module may import modules of its own layer and of lower ones,
# never of a higher one.  Names are relative to the package; ``__init__`` is the root.
LAYERS: list[tuple[str, list[str]]] = [
    ("foundations", ["errors", "version", "safetext"]),
    ("parts", ["states", "events", "lines", "rows", "overflow", "spool", "cgroups", "proctree", "task",
               "settingvalues", "config", "configfile", "pretask", "logsetup", "discovery", "cmdline", "hubmonitor",
               "statefiles", "statelock", "configsafety", "settingsdoc", "credentials", "childenv",
               "blenderargs", "instance"]),
    ("mechanisms", ["warmblender", "containment", "process", "leftovers", "queue", "queuespace", "upstream", "metrics",
                    "tools", "preview",
                    # The seam's declaration: what the services call, whichever generation answers.
                    "edge.base"]),
    ("commands", ["commands", "commands.*", "plugins"]),
    ("services", ["registration", "flusher", "statuschange", "taskwatch", "reporter", "errorstate"]),
    # What differs between Manager generations, behind one seam (fworker/edge/base.py).
    ("edge", ["edge", "edge.*"]),
    ("task running", ["runner"]),
    ("worker", ["conversation", "worker"]),
    ("wiring", ["wiring"]),
    # Only the entry points may use the development Manager (the demo runs one).
    ("development Manager", ["devmanager", "devmanager.*"]),
    ("entry points", ["api", "cli", "demo", "__init__", "__main__"]),
]
# Layers that may import, beyond their own, only these modules whatever their rank: the
# development Manager stands beside the worker, not on it.  It imports the package root,
# whose first import applies gevent's monkey patch, and nothing else of the worker.
ONLY: dict[str, list[str]] = {"development Manager": ["__init__"]}


@dataclasses.dataclass(frozen=True)
class Import:
    importer: str  # module names relative to the package, as in LAYERS
    imported: str
    where: str  # file:line

    def __str__(self) -> str:
        return f"{self.importer} imports {self.imported} ({self.where})"


def modules(root: pathlib.Path = PACKAGE) -> dict[str, pathlib.Path]:
    """Every module of the package by relative name (folders without ``__init__.py``, such
    as the scripts run inside Blender, are not part of it)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if not all((root.joinpath(*parts[:depth]) / "__init__.py").exists() for depth in range(1, len(parts))):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts) or "__init__"] = path
    return found


def _absolute(name: str) -> str:
    return "fworker" if name == "__init__" else f"fworker.{name}"


def _relative(dotted: str) -> str:
    return "__init__" if dotted == "fworker" else dotted.removeprefix("fworker.")


def imports(name: str, path: pathlib.Path, known: set[str], root: pathlib.Path = PACKAGE) -> list[Import]:
    """The fworker modules that module ``name`` imports, anywhere in its text."""
    package = _absolute(name) if path.name == "__init__.py" else _absolute(name).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from a import b``: the module a.b if there is one, else a itself.
            targets = [f"{base}.{alias.name}" if _relative(f"{base}.{alias.name}") in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # ``import fworker.commands.base`` or an attribute: the longest known module.
            while target and _relative(target) not in known:
                target = target.rpartition(".")[0]
            if target.split(".")[0] == "fworker" and target:
                where = f"{path.relative_to(root.parent)}:{node.lineno}"
                found.append(Import(name, _relative(target), where))
    return found


def graph(root: pathlib.Path = PACKAGE) -> dict[str, list[Import]]:
    """Each module's imports of fworker modules, one Import per module it imports."""
    mods = modules(root)
    edges: dict[str, list[Import]] = {}
    for name, path in mods.items():
        firsts: dict[str, Import] = {}
        for imp in imports(name, path, set(mods), root):
            firsts.setdefault(imp.imported, imp)
        edges[name] = list(firsts.values())
    return edges


def strongly_connected(edges: dict[str, list[Import]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or not (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for imp in edges.get(node, []):
            if imp.imported not in index:
                visit(imp.imported)
                low[node] = min(low[node], low[imp.imported])
            elif imp.imported in on_stack:
                low[node] = min(low[node], index[imp.imported])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [group for group in groups
            if len(group) > 1 or any(imp.imported == group[0] for imp in edges.get(group[0], []))]


def circles(edges: dict[str, list[Import]], limit: int = 10000) -> list[list[Import]]:
    """Every elementary import circle (each once, starting at its smallest module), up to
    ``limit`` of them."""
    found: list[list[Import]] = []
    for start in sorted(edges):
        _circles_from(start, edges, found, limit)
    return found


def _circles_from(start: str, edges: dict[str, list[Import]], found: list[list[Import]], limit: int) -> None:
    path: list[Import] = []
    on_path = {start}

    def walk(node: str) -> None:
        for imp in edges.get(node, []):
            if len(found) >= limit:
                return
            if imp.imported == start:
                found.append([*path, imp])
            elif imp.imported > start and imp.imported not in on_path:
                path.append(imp)
                on_path.add(imp.imported)
                walk(imp.imported)
                on_path.discard(imp.imported)
                path.pop()

    walk(start)


def layer_of(name: str) -> int | None:
    for rank, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            return rank
    return None


def wrong_way(edges: dict[str, list[Import]]) -> list[str]:
    """Every import that breaks the declared layers, as a sentence."""
    problems = []
    for imps in edges.values():
        for imp in imps:
            mine, theirs = layer_of(imp.importer), layer_of(imp.imported)
            if mine is None or theirs is None:
                continue  # test_every_module_has_a_layer names it
            layer = LAYERS[mine][0]
            if layer in ONLY and theirs != mine:
                if imp.imported not in ONLY[layer]:
                    problems.append(f"{imp}: the {layer} layer may import only itself and "
                                    f"{', '.join(ONLY[layer])}")
            elif theirs > mine:
                problems.append(f"{imp}: layer '{layer}' may not import the higher layer "
                                f"'{LAYERS[theirs][0]}'")
    return problems


def test_every_module_has_a_layer():
    unplaced = [name for name in modules() if layer_of(name) is None]
    assert not unplaced, f"modules in no layer (add them to LAYERS in tests/test_layers.py): {', '.join(unplaced)}"


def test_no_import_circles():
    edges = graph()
    described = ["; ".join(str(imp) for imp in circle) for circle in circles(edges, limit=20)]
    groups = strongly_connected(edges)
    assert not groups, "import circles:\n" + "\n".join(described)


def test_imports_point_down_the_layers():
    problems = wrong_way(graph())
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


# The checks above must be able to fail: a package in a temporary folder that breaks them.

@pytest.fixture
def package(tmp_path):
    root = tmp_path / "fworker"
    files = {
        "__init__.py": "from fworker.api import start\n",
        "api.py": "import fworker.worker\n",
        "worker.py": "from fworker import errors\nfrom fworker.proctree import stop\n",
        "errors.py": "",
        "proctree.py": "import typing\nif typing.TYPE_CHECKING:\n    from fworker.worker import Worker\n",
        "devmanager/__init__.py": "from .app import App\n",
        "devmanager/app.py": "import fworker\n\ndef late():\n    from ..queue import Queue\n",
        "queue.py": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_graph_sees_every_kind_of_import(package):
    edges = graph(package)
    assert {imp.imported for imp in edges["worker"]} == {"errors", "proctree"}
    assert [imp.imported for imp in edges["proctree"]] == ["worker"]  # under TYPE_CHECKING
    assert {imp.imported for imp in edges["devmanager.app"]} == {"__init__", "queue"}  # root, late, relative
    assert [imp.imported for imp in edges["devmanager"]] == ["devmanager.app"]
    assert [str(imp) for imp in edges["api"]] == ["api imports worker (fworker/api.py:1)"]


def test_a_circle_is_found_and_named(package):
    edges = graph(package)
    assert strongly_connected(edges) == [["proctree", "worker"]]
    assert [[str(imp) for imp in circle] for circle in circles(edges)] == [[
        "proctree imports worker (fworker/proctree.py:3)", "worker imports proctree (fworker/worker.py:2)"]]


def test_a_wrong_way_import_is_named(package):
    problems = wrong_way(graph(package))
    assert ("proctree imports worker (fworker/proctree.py:3): layer 'parts' may not import the higher "
            "layer 'worker'") in problems
    assert ("devmanager.app imports queue (fworker/devmanager/app.py:4): the development Manager layer "
            "may import only itself and __init__") in problems
    assert len(problems) == 2  # the root importing the API, the Manager importing the root: allowed
