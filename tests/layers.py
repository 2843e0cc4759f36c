"""The import graph of a package read from its source (AST), and the layer rules pvttrace keeps.

Used by ``tests/test_layering.py`` on pvttrace itself and on planted packages that break a rule, so the
check is shown to fail where it should. Imports inside ``if TYPE_CHECKING:`` are type-only: they may not
go up a layer either, but they do not count towards cycles (they never run).
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

#: Layer of each part of pvttrace, lowest first. A module may import its own layer and the ones below.
LAYERS: Mapping[str, int] = {
    "pvttrace": 0,  # the root __init__: version and lazy exports, imports nothing at load time
    "pvttrace.base": 0,
    "pvttrace.config": 1,
    "pvttrace.fidelity": 1,
    "pvttrace.records": 1,
    "pvttrace.costs": 2,
    "pvttrace.stages": 2,
    "pvttrace.memory": 2,
    "pvttrace.tracing": 3,
    "pvttrace.trace": 3,
    "pvttrace.analyses": 4,
    "pvttrace.snapshot": 4,
    "pvttrace.render": 5,
    "pvttrace.cli": 6,
    "pvttrace.pytest_plugin": 6,
    "pvttrace.__main__": 6,
}

#: Third-party packages only some parts may import.
RESTRICTED: Mapping[str, tuple[str, ...]] = {
    "rich": ("pvttrace.render", "pvttrace.cli"),
    "typer": ("pvttrace.cli",),
    "matplotlib": ("pvttrace.render",),
}


@dataclass(frozen=True)
class Import:
    """One import statement's target, as seen in ``source``."""

    source: str
    target: str
    line: int
    type_only: bool


def module_name(root: pathlib.Path, path: pathlib.Path) -> str:
    """Dotted name of ``path`` inside the package rooted at ``root`` (``root.name`` is the package)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(root: pathlib.Path, path: pathlib.Path) -> Iterator[Import]:
    """Every import in ``path``, at any depth (function-level imports count: they run too).

    ``from a.b import c`` gives the target ``a.b.c``, which is module ``a.b.c`` where there is one and
    otherwise the name ``c`` in module ``a.b``.
    """
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    type_only = _type_checking_lines(tree)
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` imports the submodule when there is one (graph() resolves which).
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            yield Import(name, target, node.lineno, node.lineno in type_only)


def graph(root: pathlib.Path) -> dict[str, list[Import]]:
    """Module name -> its imports of other modules of the same package (resolved to existing modules)."""
    modules = {module_name(root, p): p for p in root.rglob("*.py")}
    edges: dict[str, list[Import]] = {}
    for name, path in sorted(modules.items()):
        found: dict[str, Import] = {}
        for imp in imports_of(root, path):
            target = imp.target
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target not in found:
                found[target] = Import(name, target, imp.line, imp.type_only)
        edges[name] = list(found.values())
    return edges


def layer_of(name: str, layers: Mapping[str, int]) -> int:
    """Layer of a module: that of the longest entry of ``layers`` it is, or is inside."""
    best = max((key for key in layers if name == key or name.startswith(key + ".")), key=len, default=None)
    if best is None:
        raise KeyError(f"{name} has no layer: add its package to LAYERS")
    return layers[best]


def upward_imports(edges: Mapping[str, list[Import]], layers: Mapping[str, int]) -> list[str]:
    """``source:line imports target`` for every import of a higher layer."""
    return [
        f"{imp.source}:{imp.line} (layer {layer_of(imp.source, layers)}) imports {imp.target} "
        f"(layer {layer_of(imp.target, layers)})"
        for imports in edges.values()
        for imp in imports
        if layer_of(imp.target, layers) > layer_of(imp.source, layers)
    ]


def cycles(edges: Mapping[str, list[Import]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (through imports that run), as sorted names."""
    runtime = {name: [imp.target for imp in imports if not imp.type_only] for name, imports in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in runtime.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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

    for node in sorted(runtime):
        if node not in index:
            visit(node)
    return sorted(found)


def restricted_imports(root: pathlib.Path, allowed: Mapping[str, tuple[str, ...]]) -> list[str]:
    """``module:line imports rich`` for every import of a restricted package outside the parts allowed it."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        for imp in imports_of(root, path):
            top = imp.target.split(".")[0]
            places = allowed.get(top)
            if places is not None and not any(imp.source == p or imp.source.startswith(p + ".") for p in places):
                bad.append(f"{imp.source}:{imp.line} imports {imp.target}")
    return sorted(set(bad))
