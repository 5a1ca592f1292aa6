"""The import rules of DESIGN.md: layers import only downwards, and the pure layers stay pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("crdts", "transport", "foundation_p2p", "simulations")

# Which project packages each package may import.
ALLOWED: dict[str, set[str]] = {
    "crdts": set(),
    "transport": set(),
    "foundation_p2p": {"crdts", "transport"},
    "simulations": {"foundation_p2p", "crdts"},
}
# The one sanctioned upward step: the command line lazily imports the simulator.
UPWARD_EXCEPTIONS = {("foundation_p2p/cli.py", "simulations")}

# Modules that would let a pure layer read a clock, a socket or a global random source.
# `random` itself is allowed only for its `Random` class: an rng is always passed in.
IMPURE = {
    "time",
    "asyncio",
    "socket",
    "selectors",
    "threading",
    "datetime",
    "os",
    "uuid",
    "secrets",
}
PURE_TREES = ("crdts", "foundation_p2p/engine")


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module imported anywhere in a file, with its line, resolving relative imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.extend(_imports_of(node, name, path))
    return found


def _files(tree: str) -> list[Path]:
    return sorted((ROOT / tree).rglob("*.py")) if (ROOT / tree).exists() else []


@pytest.mark.parametrize("package", PACKAGES)
def test_layers_import_only_downwards(package: str) -> None:
    """No package imports a project package above it or beside it."""
    violations = []
    for path in _files(package):
        rel = str(path.relative_to(ROOT))
        for module, line in _imports(path):
            top = module.split(".")[0]
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                if (rel, top) not in UPWARD_EXCEPTIONS:
                    violations.append(f"{rel}:{line} imports {module}")
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize("tree", PURE_TREES)
def test_pure_layers_read_no_clock_socket_or_global_random(tree: str) -> None:
    """crdts/ and the engine take time and randomness as arguments."""
    violations = []
    for path in _files(tree):
        rel = path.relative_to(ROOT)
        for module, line in _imports(path):
            if module.split(".")[0] in IMPURE or (
                module.startswith("random.") and module != "random.Random"
            ):
                violations.append(f"{rel}:{line} imports {module}")
        for node in ast.walk(ast.parse(path.read_text())):
            is_global_random = (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "random"
                and node.attr != "Random"
            )
            if is_global_random:
                violations.append(f"{rel}:{node.lineno} uses the global random.{node.attr}")
    assert not violations, "\n".join(violations)


def test_crdts_package_exists_and_is_checked() -> None:
    """The purity scan really looks at files (guards against a renamed tree)."""
    assert len(_files("crdts")) >= 5


def test_no_import_cycle_between_modules() -> None:
    """The module graph of the four packages (top-level imports) has no cycle."""
    modules = {}
    for package in PACKAGES:
        for path in _files(package):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        edges: set[str] = set()
        for node in tree.body:  # module level only: lazy imports inside functions cannot cycle
            if isinstance(node, ast.Import | ast.ImportFrom):
                for module, _ in _imports_of(node, name, path):
                    target = _resolve(module, modules)
                    if target and target != name:
                        edges.add(target)
        graph[name] = edges
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def _imports_of(node: ast.Import | ast.ImportFrom, name: str, path: Path) -> list[tuple[str, int]]:
    if isinstance(node, ast.Import):
        return [(alias.name, node.lineno) for alias in node.names]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    if node.level:
        parts = package.split(".")
        base = parts[: len(parts) - node.level + 1]
        module = ".".join([*base, node.module] if node.module else base)
    else:
        module = node.module or ""
    # `from pkg import mod` imports pkg.mod when it is a module
    return [(module, node.lineno)] + [(f"{module}.{a.name}", node.lineno) for a in node.names]


def _resolve(module: str, modules: dict[str, Path]) -> str | None:
    return module if module in modules else None


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    """The cycle check itself can fail."""
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
