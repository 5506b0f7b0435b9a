"""The engine's contract: the names the README documents import, ``import fpn_core`` stays light,
and the engine's import graph has no cycle and no cross-module private name.

The import graph is read with ``ast`` from every file under ``fpn_core/``: every import counts,
module level, under ``TYPE_CHECKING`` and inside functions.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fpn_core"
README = (ROOT / "README.md").read_text(encoding="utf-8")

#: Names the README uses bare (in prose and examples), by the module that offers them.
README_NAMES = {
    "fpn_core": ("build_pyramid", "load_image", "build_detector", "detect", "Detector", "Provenance"),
    "fpn_core.detection": ("DETECTORS", "DetectorSpec", "HeadFamily"),
    "fpn_core.weights": ("resolve_weights", "WEIGHT_FILES"),
}

# --------------------------------------------------------------------------- README's names


def _readme_imports() -> list[tuple[str, str]]:
    """(module, name) of every ``from fpn_core... import ...`` in the README's Python code blocks."""
    found = []
    for block in re.findall(r"```python\n(.*?)```", README, flags=re.S):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fpn_core"):
                found += [(node.module, alias.name) for alias in node.names]
    return found


def _readme_dotted() -> set[str]:
    """Every ``fpn_core.x.y`` the README names in backticks (modules, then attributes)."""
    names = set()
    for code in re.findall(r"`([^`\n]+)`", README):
        names.update(re.findall(r"\bfpn_core(?:\.[A-Za-z_]\w*)+", code))
    return names


def test_the_readme_shows_the_detector_api_it_documents():
    imports = _readme_imports()
    assert ("fpn_core", "build_detector") in imports and ("fpn_core", "detect") in imports
    for module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"from {module} import {name}"


def test_every_dotted_name_in_the_readme_resolves():
    dotted = _readme_dotted()
    assert "fpn_core.detection" in dotted and "fpn_core.weights.WEIGHT_FILES" in dotted
    for name in sorted(dotted):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest module prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
                break
            except ModuleNotFoundError:
                continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), f"{name}: no {attr}"
            obj = getattr(obj, attr)


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in README_NAMES.items() for n in names])
def test_the_readmes_bare_names_import(module, name):
    assert re.search(rf"\b{name}\b", README), f"{name} is no longer in the README: update the list"
    mod = importlib.import_module(module)
    assert name in dir(mod) and name in getattr(mod, "__all__", dir(mod))
    exec(f"from {module} import {name}", {})  # noqa: S102 (a fixed name from the list above)


def test_import_fpn_core_does_not_load_the_detectors(fresh_imports):
    """In a fresh interpreter: ``import fpn_core`` leaves the detectors unloaded, yet names them (PEP 562)."""
    assert not fresh_imports["detection_after_import"], "detection loaded by import fpn_core"
    assert fresh_imports["lazy_name_listed"] and fresh_imports["lazy_names_are_detections"]
    assert fresh_imports["unknown_name_raises"]


def test_torch_and_torchvision_are_pinned_to_the_installed_minor():
    """detection/run.py uses torchvision's private functions: the bounds admit only the tested minor."""
    requirements = pytest.importorskip("packaging.requirements")
    import torch
    import torchvision

    lines = (ROOT / "requirements.txt").read_text().splitlines()
    reqs = {r.name: r for r in (requirements.Requirement(ln.split("#")[0]) for ln in lines if ln.split("#")[0].strip())}
    for module in (torch, torchvision):
        spec = reqs[module.__name__].specifier
        installed = module.__version__.split("+")[0]
        major, minor = (int(v) for v in installed.split(".")[:2])
        assert spec.contains(installed), (module.__name__, str(spec))
        assert not spec.contains(f"{major}.{minor + 1}.0") and not spec.contains(f"{major}.{minor - 1}.0")
    assert "torchvision>=0.29,<0.30" in README


# --------------------------------------------------------------------------- the import graph


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    if not level:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(engine module imported, name taken from it or None) for every import anywhere in the file."""
    is_package = path.name == "__init__.py"
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names if a.name.split(".")[0] == "fpn_core"]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, is_package, node.level, node.module)
            if target.split(".")[0] != "fpn_core":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((sub, None) if sub in modules else (target, alias.name))
    return [(m, n) for m, n in out if m in modules]


def _graph() -> dict[str, set[str]]:
    """Edges to each imported module and to its packages that do not contain the importer (their
    ``__init__`` runs first); the root package ``fpn_core`` is every module's parent and is left out."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, set())
        own = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target, _ in _imports(name, path, modules):
            parts = target.split(".")
            for cut in range(2, len(parts) + 1):
                dep = ".".join(parts[:cut])
                if dep in modules and dep != name and not (own == dep or own.startswith(dep + ".")):
                    edges.add(dep)
            if target == "fpn_core" and name != "fpn_core":
                edges.add("fpn_core")
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_reader_sees_lazy_and_type_checking_imports():
    graph = _graph()
    assert "fpn_core.detection.build" in graph["fpn_core.detection.run"]
    assert "fpn_core.weights" in graph["fpn_core.backbone"]
    assert "fpn_core.detection" in graph["fpn_core.export"]  # the package's __init__ runs first
    # a cycle made only of lazy imports is found
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_engine_has_no_import_cycle():
    assert _cycles(_graph()) == []


def test_weights_is_a_leaf():
    assert _graph()["fpn_core.weights"] <= {"fpn_core.levels"}


def test_no_module_imports_another_modules_private_name():
    modules = _modules()
    bad = []
    for name, path in modules.items():
        for target, imported in _imports(name, path, modules):
            if imported and imported.startswith("_") and not imported.startswith("__"):
                bad.append(f"{name} imports {imported} from {target}")
    assert bad == []
