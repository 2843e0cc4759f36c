"""Pure data modules must not import torch, rich or typer; library code never prints or exits."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import layers

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "pvttrace"


#: The pure-data layers: every module in them (and in these single modules) loads without torch, rich, typer
#: or matplotlib. ``costs.callfacts`` reads the arguments of torch calls for the tracer, so it imports torch.
PURE_PACKAGES = ("pvttrace.base", "pvttrace.costs", "pvttrace.stages", "pvttrace.memory")
PURE_MODULES = (
    "pvttrace",
    "pvttrace.config",
    "pvttrace.fidelity",
    "pvttrace.records",
    "pvttrace.analyses.diff",
    "pvttrace.analyses.sweep",
    # The plain-text and plot helpers of render/ load rich and matplotlib only when they draw.
    "pvttrace.render.tabular",
    "pvttrace.render.plot",
)
NEEDS_TORCH = ("pvttrace.costs.callfacts",)


def test_data_modules_import_nothing_heavy() -> None:
    probe = (
        "import importlib, pkgutil, sys\n"
        f"names = list({PURE_MODULES!r})\n"
        f"for package in {PURE_PACKAGES!r}:\n"
        "    names.append(package)\n"
        "    path = importlib.import_module(package).__path__\n"
        "    names += [m.name for m in pkgutil.walk_packages(path, package + '.')]\n"
        f"names = [n for n in names if n not in {NEEDS_TORCH!r}]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names), sorted(m for m in ('torch', 'rich', 'typer', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    count, heavy = out.strip().split(" ", 1)
    assert int(count) >= 20  # the walk found the layers' modules
    assert heavy == "[]"


def test_library_never_prints_or_exits() -> None:
    """Only the CLI (pvttrace/cli/, __main__) writes to the terminal or exits; every other module returns."""
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "cli" or rel.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("print", "exit", "quit"), f"{rel}:{node.lineno}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sys":
                assert node.attr not in ("exit", "stdout", "stderr"), f"{rel}:{node.lineno}"


def test_library_example_runs() -> None:
    import runpy

    example = runpy.run_path(str(PACKAGE.parent / "examples" / "compare_sr_ratios.py"))
    lines = example["main"](224)
    assert lines[0] == "stage 1: keys 49 -> 3136, attention MACs 39.34 M -> 2.52 G"
    assert lines[4].startswith("inference peak: ")


# ------------------------------------------------------------------------ layers (tests/layers.py)
def test_no_import_cycles() -> None:
    assert layers.cycles(layers.graph(PACKAGE)) == []


def test_imports_go_only_downward() -> None:
    assert layers.upward_imports(layers.graph(PACKAGE), layers.LAYERS) == []


def test_rich_typer_matplotlib_only_in_render_and_cli() -> None:
    assert layers.restricted_imports(PACKAGE, layers.RESTRICTED) == []


def test_every_module_has_a_layer() -> None:
    for name in layers.graph(PACKAGE):
        layers.layer_of(name, layers.LAYERS)


def _plant(tmp_path: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    root = tmp_path / "pvttrace"
    for rel, text in {"__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_planted_cycle_and_upward_import_fail(tmp_path: pathlib.Path) -> None:
    root = _plant(
        tmp_path,
        {
            "base/__init__.py": "",
            "base/units.py": "from pvttrace.config import PvtConfig\n",  # up a layer, and a cycle
            "config.py": "from pvttrace.base.units import format_bytes\n",
            "render/__init__.py": "",
            "render/a.py": "def f():\n    from pvttrace.render import b\n",  # a lazy import still counts
            "render/b.py": "from . import a\n",
            "records.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pvttrace.cli import x\n",
            "cli/__init__.py": "",
            "cli/x.py": "import rich\n",
            "stages.py": "import rich.table\nimport typer\n",
        },
    )
    edges = layers.graph(root)
    assert layers.cycles(edges) == [
        ["pvttrace.base.units", "pvttrace.config"],
        ["pvttrace.render.a", "pvttrace.render.b"],
    ]
    assert layers.upward_imports(edges, layers.LAYERS) == [
        "pvttrace.base.units:1 (layer 0) imports pvttrace.config (layer 1)",
        "pvttrace.records:3 (layer 1) imports pvttrace.cli.x (layer 6)",
    ]
    assert layers.restricted_imports(root, layers.RESTRICTED) == [
        "pvttrace.stages:1 imports rich.table",
        "pvttrace.stages:2 imports typer",
    ]


def test_wheel_packages_cover_every_subpackage() -> None:
    """pyproject's package discovery matches every folder of pvttrace, and each folder is a real package."""
    import fnmatch
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    folders = sorted(
        ".".join(p.relative_to(PACKAGE.parent).parts)
        for p in [PACKAGE, *PACKAGE.rglob("*")]
        if p.is_dir() and p.name != "__pycache__"
    )
    assert len(folders) >= 10
    for folder in folders:
        assert (PACKAGE.parent / folder.replace(".", "/") / "__init__.py").is_file(), folder
        assert any(fnmatch.fnmatchcase(folder, pattern) for pattern in include), folder
