"""Pure data modules must not import torch, rich or typer; library code never prints or exits."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "pvttrace"


def test_data_modules_import_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "import pvttrace, pvttrace.config, pvttrace.records, pvttrace.costs.rules, pvttrace.base.units, pvttrace.base.errors\n"
        "import pvttrace.analyses.sweep, pvttrace.render.tabular, pvttrace.render.plot\n"
        "print(sorted(m for m in ('torch', 'rich', 'typer', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_library_never_prints_or_exits() -> None:
    for path in PACKAGE.glob("*.py"):
        if path.name in ("cli.py", "__main__.py") or path.name.startswith("cli_"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("print", "exit", "quit"), f"{path.name}:{node.lineno}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sys":
                assert node.attr not in ("exit", "stdout", "stderr"), f"{path.name}:{node.lineno}"


def test_library_example_runs() -> None:
    import runpy

    example = runpy.run_path(str(PACKAGE.parent / "examples" / "compare_sr_ratios.py"))
    lines = example["main"]("224")
    assert lines[0] == "stage 1: keys 49 -> 3136, attention MACs 39.34 M -> 2.52 G"
    assert lines[4].startswith("inference peak: ")
