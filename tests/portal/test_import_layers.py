"""The layer rules of the architecture, read off the source: no import cycle among product
modules, ``catalog`` never imports ``integrations``, providers never reach the engine or the faces,
and only the demo command imports the sandbox."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("portal", "catalog", "integrations", "scorecards")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _product_modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PRODUCT_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    }


def _imported(module: str, path: Path, node: ast.AST) -> list[str]:
    """The dotted names an import statement names (``from a import b`` names ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    return [source, *(f"{source}.{alias.name}" for alias in node.names)]


def _imports(modules: dict[str, Path], *, top_level_only: bool) -> dict[str, set[str]]:
    """Each module's imports: at import time only (what can form a cycle), or anywhere."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        graph[module] = {
            name for node in nodes for name in _imported(module, path, node) if name != module
        }
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next((c for c in children if c in graph), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_among_product_modules():
    modules = _product_modules()
    assert len(modules) > 50
    assert _cycles(_imports(modules, top_level_only=True)) == []


def _importers(prefix: str, *, of: str) -> list[str]:
    modules = {name: path for name, path in _product_modules().items() if name.startswith(of)}
    graph = _imports(modules, top_level_only=False)
    return sorted(
        module
        for module, names in graph.items()
        if any(name == prefix or name.startswith(f"{prefix}.") for name in names)
    )


def test_the_catalog_never_imports_integrations():
    assert _importers("integrations", of="catalog") == []


@pytest.mark.parametrize("package", ["catalog", "integrations"])
def test_neither_the_catalog_nor_integrations_import_scorecards(package):
    assert _importers("scorecards", of=package) == []


@pytest.mark.parametrize(
    "layer",
    ["integrations.engine", "integrations.views", "integrations.api", "integrations.services"],
)
def test_providers_never_reach_the_engine_or_the_faces(layer):
    assert _importers(layer, of="integrations.providers") == []


def test_only_the_demo_and_sandbox_commands_import_the_sandbox():
    importers = {
        module for package in PRODUCT_PACKAGES for module in _importers("sandbox", of=package)
    }
    assert importers <= {
        "integrations.management.commands.demo",
        "integrations.management.commands.bitbucket_sandbox",
    }
