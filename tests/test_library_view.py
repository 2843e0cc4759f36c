"""Traces, diffs and sweeps seen from Python: a short repr; ``view(obj)`` shows the CLI view in rich and markdown in
notebooks, while the data classes themselves know nothing of rendering."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import rendered
from typer.testing import CliRunner

from pvttrace.analyses.diff import TraceDiff, diff_traces
from pvttrace.analyses.sweep import METRICS, SweepColumn, SweepResult, run_sweep
from pvttrace.base.errors import UserInputError
from pvttrace.cli import app
from pvttrace.cli.parsing import parse_sizes
from pvttrace.config import PvtConfig, resolve_config
from pvttrace.records import Trace
from pvttrace.render.views import View, view


def test_trace_repr_is_one_short_line(tiny_trace: Trace) -> None:
    text = repr(tiny_trace)
    assert text == (
        "<Trace tiny (PVT v1, cls) @ 224x224, batch 1, float32: 293 ops, 4 stages, MACs 1.93 G, "
        "params 13.23 M, peak 65.59 MiB>"
    )
    assert str(tiny_trace) == text


def test_rich_print_of_a_trace_is_the_cli_view(runner: CliRunner, tiny_trace: Trace) -> None:
    cli = runner.invoke(app, ["run", "--variant", "tiny", "--width", "100"])
    assert cli.exit_code == 0
    assert rendered(view(tiny_trace), 100) == cli.stdout
    markdown = runner.invoke(app, ["run", "--variant", "tiny", "-f", "markdown"]).stdout
    assert view(tiny_trace)._repr_markdown_() == markdown


def test_diff_repr_rich_and_markdown(runner: CliRunner, trace_of: Callable[[PvtConfig], Trace]) -> None:
    traces = [trace_of(resolve_config("tiny")), trace_of(resolve_config("tiny", sr=(1, 1, 1, 1)))]
    diff = diff_traces(traces, ["sr=8,4,2,1", "sr=1,1,1,1"])
    assert repr(diff) == "<TraceDiff 2 configurations: sr=8,4,2,1 MACs 1.93 G; sr=1,1,1,1 MACs 4.81 G (x2.49)>"
    cli = runner.invoke(app, ["diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "--width", "100"])
    assert rendered(view(diff), 100) == cli.stdout
    md = runner.invoke(app, ["diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "-f", "markdown"]).stdout
    assert view(diff)._repr_markdown_() == md


def test_sweep_repr_rich_and_markdown(trace_of: Callable[[PvtConfig], Trace]) -> None:
    columns = (SweepColumn("b0", (("variant", "b0"),)),)
    result = run_sweep(columns, parse_sizes("224,448"), (METRICS["macs"],), trace=trace_of)
    assert repr(result).startswith("<SweepResult b0") and repr(result).endswith("sizes 224,448; metrics macs>")
    assert len(repr(result)) < 200
    text = rendered(view(result), 80)
    assert "pvttrace sweep" in text and "566.07 M (s1)" in text and "2.72 G (s1)" in text and "N^1.13" in text
    assert view(result)._repr_markdown_().startswith("## Sweep: ")


def test_repr_of_a_loaded_trace_imports_no_rich(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "tiny.json"
    path.write_text(runner.invoke(app, ["run", "--variant", "tiny", "-f", "json"]).stdout)
    probe = (
        "import sys\nfrom pvttrace.records import load_trace\n"
        f"t = load_trace({str(path)!r})\nprint(repr(t))\nprint('rich' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("<Trace tiny") and out[1] == "False"


@pytest.mark.parametrize("width", [80, 160])
def test_rich_print_follows_the_console_width(tiny_trace: Trace, width: int) -> None:
    lines = rendered(view(tiny_trace), width).splitlines()
    assert max(len(line) for line in lines) <= width


def test_data_classes_do_not_render_themselves(tiny_trace: Trace) -> None:
    # Rendering lives in the render layer: the data classes have no rich or notebook hooks of their own.
    for cls in (Trace, TraceDiff, SweepResult):
        assert not hasattr(cls, "__rich__") and not hasattr(cls, "_repr_markdown_"), cls
    wrapped = view(tiny_trace)
    assert isinstance(wrapped, View) and wrapped.subject is tiny_trace
    assert repr(wrapped) == f"view({tiny_trace!r})"


def test_view_is_exported_lazily_and_refuses_other_objects() -> None:
    probe = (
        "import sys, pvttrace\n"
        "print('rich' in sys.modules)\n"
        "from pvttrace.render.views import view\n"
        "print(pvttrace.view is view, pvttrace.render.view is view)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "True"]
    with pytest.raises(UserInputError, match="view\\(\\) takes a Trace, TraceDiff or SweepResult, not dict"):
        view({})  # type: ignore[arg-type]
