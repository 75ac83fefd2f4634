"""Who may import whom (docs/architecture.md), read from the source with `ast`: every import counts, the
lazy ones inside functions too."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import watchdogd

PACKAGE = Path(watchdogd.__file__).parent
COMMAND_HELPERS = {"watchdogd.commands.options"}  # the parser pieces every verb shares
# Storage: these, and the whole adapter (its SQL store, however it is split into modules).
STORAGE = (
    "watchdogd.status_file",
    "watchdogd.journal",
    "watchdogd.journal_rows",
    "watchdogd.journal_health",
    "watchdogd.backup",
    "watchdogd.opencode",
)
PRESENTATION = ("watchdogd.present", "watchdogd.commands", "watchdogd.cli")
# The adapter may use these: the package itself (`__version__`, in the repair marker) and `durations` (how
# long, in words), plain helpers that import nothing of watchdogd themselves.
ADAPTER_MAY_USE = {"watchdogd", "watchdogd.durations"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, name: str) -> set[str]:
    """The watchdogd modules a module imports (a `from package import module` names the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m in MODULES}


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: imported(path, name) - {name} for name, path in MODULES.items()}


def under(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_is_read():
    # A parser that finds nothing would make every check below pass: the known edges must be there.
    assert "watchdogd.pipeline" in GRAPH["watchdogd.daemon"]
    assert "watchdogd.commands.options" in GRAPH["watchdogd.commands.scan"]
    assert "watchdogd.opencode.rows" in GRAPH["watchdogd.models"]
    assert len(MODULES) > 40


def test_no_command_module_imports_another():
    offending = {
        (name, dep)
        for name, deps in GRAPH.items()
        if under(name, "watchdogd.commands")
        for dep in deps
        if under(dep, ("watchdogd.commands", "watchdogd.cli"))
        and dep not in COMMAND_HELPERS | {"watchdogd.commands"}
    }
    assert offending == set()


def test_storage_imports_no_presentation():
    storage = [name for name in GRAPH if under(name, STORAGE)]
    assert {"watchdogd.status_file", "watchdogd.journal", "watchdogd.backup"} <= set(storage)
    assert any(name.startswith("watchdogd.opencode.store") for name in storage)
    offending = {(name, dep) for name in storage for dep in GRAPH[name] if under(dep, PRESENTATION)}
    assert offending == set()


def test_the_presentation_layer_is_imported_only_by_outputs():
    """Nothing the pass runs on (pipeline, actions, adapter) renders: it hands typed values up."""
    readers = (
        "watchdogd.present",
        "watchdogd.commands",
        "watchdogd.cli",
        "watchdogd.daemon",
        "watchdogd.notifiers",
        "watchdogd.notify",
        "watchdogd.log",
    )
    offending = {
        (name, dep)
        for name, deps in GRAPH.items()
        for dep in deps
        if under(dep, "watchdogd.present") and not under(name, readers)
    }
    assert offending == set()


def adapter_escapes() -> set[tuple[str, str]]:
    return {
        (name, dep)
        for name, deps in GRAPH.items()
        if under(name, "watchdogd.opencode")
        for dep in deps
        if not under(dep, "watchdogd.opencode") and dep not in ADAPTER_MAY_USE
    }


def test_the_adapter_helpers_are_leaves():
    assert {dep for helper in ADAPTER_MAY_USE for dep in GRAPH[helper]} == set()


def test_the_adapter_imports_nothing_above_it():
    assert adapter_escapes() == set()


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path (first module repeated at the end), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycle():
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    assert find_cycle(GRAPH) == []
