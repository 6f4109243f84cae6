"""The rooms of the package form layers: no room imports one that imports it back, the
torch-free core imports nothing above it, and what goes onto the Jetson (runtime,
profiling) imports neither torch nor the training side, not even lazily inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dynaprune_edge"
CORE = {"errors", "checks", "files", "registry", "progress", "flops", "hardware"}  # torch-free basics
ON_DEVICE = {"runtime", "profiling", "cost"}  # cost: the cost models the device side prices with
HEAVY = {"torch", "fvcore"}


def room(module: str) -> str:
    """dynaprune_edge.layers.conv → layers; dynaprune_edge.errors → core."""
    parts = module.split(".")
    if module == "dynaprune_edge":
        return "api"  # the package's own namespace: the public names, each imported when first used
    if module == "dynaprune_edge.flops.fvcore_count":
        return "fvcore check"  # fvcore's count of a model: torch and fvcore, nothing of dpedge
    name = parts[1] if len(parts) > 1 else "core"
    if name in CORE:
        return "core"
    return "cli" if name in ("cli", "__main__") else name


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(ROOT).with_suffix("")
        found[".".join(p for p in relative.parts if p != "__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module an import statement in the file names, wherever the statement is."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def room_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        source = room(name)
        graph.setdefault(source, set())
        for target in imports(path):
            if target.startswith("dynaprune_edge") and room(target) != source:
                graph[source].add(room(target))
    return graph


def test_every_room_is_found():
    assert {
        "core",
        "cost",
        "data",
        "layers",
        "masks",
        "models",
        "training",
        "export",
        "runtime",
        "profiling",
        "bench",
        "cli",
    } <= set(room_graph())


def test_rooms_form_layers_without_a_cycle():
    graph = room_graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = path[path.index(node) :] + [node]
            pytest.fail(f"rooms import each other in a cycle: {' → '.join(cycle)}")
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            visit(target, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])


def test_the_core_imports_nothing_above_it_and_no_torch():
    for name, path in modules().items():
        if room(name) == "core":
            above = {
                target for target in imports(path) if target.startswith("dynaprune_edge") and room(target) != "core"
            }
            heavy = {target for target in imports(path) if target.split(".")[0] in HEAVY}
            assert not above and not heavy, f"{name} imports {sorted(above | heavy)}"


@pytest.mark.parametrize("device_room", sorted(ON_DEVICE))
def test_what_goes_on_the_device_imports_neither_torch_nor_the_training_side(device_room):
    allowed = {"core"} | ON_DEVICE
    for name, path in modules().items():
        if room(name) == device_room:
            wrong = {
                t
                for t in imports(path)
                if t.split(".")[0] in HEAVY or (t.startswith("dynaprune_edge") and room(t) not in allowed)
            }
            assert not wrong, f"{name} imports {sorted(wrong)}"
