"""The layering of chalicelib/ (README, "Architecture"), checked from the source's own imports: no import cycles,
the pure core imports no adapter, storage knows nothing of delivery or the engine, and nothing in the Lambda bundle
imports the tooling that never ships."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "chalicelib"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (also inside functions and ``TYPE_CHECKING``), as absolute names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {name: {i for i in imports_of(path) if i in MODULES and i != name} for name, path in MODULES.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles of ``graph``; a package ``__init__`` that re-exports its own private modules is not one."""

    def edges(name: str) -> set[str]:
        return {t for t in graph[name] if not (t in PACKAGES and name.startswith(t + "."))}

    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges(name)):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target):], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def test_no_import_cycles_in_chalicelib() -> None:
    assert find_cycles(GRAPH) == []


def test_negative_control_a_cycle_is_found() -> None:
    graph = {**GRAPH, "chalicelib.storage.codec": GRAPH["chalicelib.storage.codec"] | {"chalicelib.refresh"}}
    assert find_cycles(graph)


@pytest.mark.parametrize(
    ("layer", "may_import"),
    [
        ("chalicelib.core", {"chalicelib.core", "chalicelib.errors", "chalicelib.clock", "chalicelib.catalog_config",
                             "chalicelib.providers.kinds"}),
        ("chalicelib.storage", {"chalicelib.core", "chalicelib.storage", "chalicelib.errors", "chalicelib.clock",
                                "chalicelib.logs"}),
        ("chalicelib.exports", {"chalicelib.core", "chalicelib.exports", "chalicelib.catalog_config"}),
    ],
)
def test_inner_layers_import_only_what_is_below_them(layer: str, may_import: set[str]) -> None:
    def allowed(target: str) -> bool:
        return any(target == prefix or target.startswith(prefix + ".") for prefix in may_import)

    offending = {
        name: sorted(t for t in targets if not allowed(t))
        for name, targets in GRAPH.items()
        if name.startswith(layer + ".") or name == layer
    }
    assert {name: targets for name, targets in offending.items() if targets} == {}


def test_the_lambda_bundle_imports_no_tooling() -> None:
    tooling = ("devstack", "catalog_cli", "tests", "infra", "moto", "websockets", "playwright")
    offending = {
        name: sorted(i for i in imports_of(path) if i.split(".")[0] in tooling)
        for name, path in {**MODULES, "app": REPO / "app.py"}.items()
        if name != "chalicelib.cli"  # the thin `python -m chalicelib.cli` entry point of the contract
    }
    assert {name: found for name, found in offending.items() if found} == {}
