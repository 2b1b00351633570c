"""The package's shape, checked from its source: no import circles, a pure sans-I/O core,
and an ARCHITECTURE.md whose module map names every module there is."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "ignitia_sync"
ARCHITECTURE = PACKAGE.parent / "ARCHITECTURE.md"
#: What no module of sansio/ (nor anything it imports from the package) may import.
IO_MODULES = {"socket", "ssl", "select", "selectors", "gevent", "threading", "asyncio"}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str) -> tuple[set[str], set[str]]:
    """(modules of the package, top-level outside modules) that ``name`` imports, lazily or not."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inside: set[str] = set()
    outside: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                (inside if alias.name.startswith("ignitia_sync") else outside).add(alias.name.split(".")[0] if not alias.name.startswith("ignitia_sync") else alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("ignitia_sync"):
                    base = node.module
                else:
                    outside.add((node.module or "").split(".")[0])
                    continue
            else:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            for alias in node.names:  # `from . import x` may name a module
                candidate = f"{base}.{alias.name}"
                inside.add(candidate if candidate in MODULES else base)
    return {module for module in inside if module in MODULES and module != name}, outside


GRAPH = {name: imports_of(name)[0] for name in MODULES}


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_package_has_no_import_circle():
    cycle = _cycle()
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_sees_a_circle():
    GRAPH["ignitia_sync.message"].add("ignitia_sync.hosting.server")
    try:
        assert _cycle() is not None
    finally:
        GRAPH["ignitia_sync.message"].discard("ignitia_sync.hosting.server")


def _closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(GRAPH[current])
    return seen


SANSIO = sorted(name for name in MODULES if name.startswith("ignitia_sync.sansio"))


@pytest.mark.parametrize("name", SANSIO)
def test_sansio_imports_no_io_not_even_through_the_package(name):
    for module in _closure(name):
        assert not imports_of(module)[1] & IO_MODULES, f"{name} reaches I/O through {module}"


@pytest.mark.parametrize("name", sorted(name for name in MODULES if name.startswith("ignitia_sync._support")))
def test_support_modules_import_nothing_else_of_the_package(name):
    assert all(module.startswith("ignitia_sync._support") for module in GRAPH[name]), GRAPH[name]


def _mapped_paths() -> set[str]:
    text = ARCHITECTURE.read_text()
    table = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([\w/.]+\.(?:py|c))`", table, re.MULTILINE))


def test_architecture_md_maps_every_module_and_nothing_else():
    actual = {str(path.relative_to(PACKAGE)) for pattern in ("*.py", "*.c") for path in PACKAGE.rglob(pattern)}
    mapped = _mapped_paths()
    assert not actual - mapped, f"modules missing from ARCHITECTURE.md's map: {sorted(actual - mapped)}"
    assert not mapped - actual, f"ARCHITECTURE.md maps modules that do not exist: {sorted(mapped - actual)}"


C_SOURCES = sorted(PACKAGE.rglob("*.c"))


@pytest.mark.parametrize("path", C_SOURCES, ids=lambda path: path.name)
def test_a_c_source_imports_only_pure_modules_of_the_package(path):
    """An extension's imports (PyImport_ImportModule) exist, and reach no I/O in sansio/."""
    imported = re.findall(r'PyImport_ImportModule\("([\w.]+)"\)', path.read_text())
    assert imported, "the accelerator builds the package's messages: it imports ignitia_sync.message"
    for name in imported:
        assert name in MODULES, name
        if "sansio" in path.parts:
            for module in _closure(name):  # the module itself included
                assert not imports_of(module)[1] & IO_MODULES, f"{path.name} reaches I/O through {module}"
