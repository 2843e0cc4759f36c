"""Plots fit for a paper: series apart in greyscale, colour-blind-safe colours, editable SVG text, stated settings."""

from __future__ import annotations

import pathlib
import struct

import pytest
from optional import require
from typer.testing import CliRunner

from pvttrace.cli import app


def _png_size(path: pathlib.Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def test_diff_plot_states_shared_settings_and_where_it_wrote(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    require("matplotlib")
    from pvttrace.config import resolve_config
    from pvttrace.render.plot import shared_settings

    assert shared_settings(
        [resolve_config(sr=(1, 1, 1, 1), img=512), resolve_config(variant="b1", sr=(1, 1, 1, 1), img=512)]
    ) == ("512x512, batch 1, float32, sr 1,1,1,1")
    target = tmp_path / "bars.svg"
    args = ["diff", "--variant", "b2", "--variant", "b2-li", "--sr", "1,1,1,1", "--img", "512", "--plot", str(target)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and result.stderr == f"plot written to {target}\n"
    svg = target.read_text()
    assert "512x512, batch 1, float32, sr 1,1,1,1" in svg  # text stays text (svg.fonttype none)
    assert "log scale" in svg and "<text" in svg


def test_series_differ_in_marker_and_line_style(tmp_path: pathlib.Path, runner: CliRunner) -> None:
    require("matplotlib")
    from pvttrace.analyses.sweep import METRICS, SweepColumn, run_sweep
    from pvttrace.cli.parsing import parse_sizes
    from pvttrace.render.plot import PALETTE, plot_sweep
    from pvttrace.tracing.recorder import trace_config

    columns = tuple(
        SweepColumn(f"c{i}", (("variant", "b0"), ("sr", sr)))
        for i, sr in enumerate([(8, 4, 2, 1), (1, 1, 1, 1), (4, 2, 1, 1)])
    )
    result = run_sweep(columns, parse_sizes("224,448"), (METRICS["macs"], METRICS["params"]), trace=trace_config)
    figure = plot_sweep(result)
    assert len(figure.axes) == 1  # the flat parameter panel is left out
    lines = figure.axes[0].get_lines()
    assert len({line.get_marker() for line in lines}) == 3 and len({line.get_linestyle() for line in lines}) == 3
    assert [line.get_color() for line in lines] == list(PALETTE[:3])
    assert figure.axes[0].get_ylabel() == "MACs, log scale"
    small, large = tmp_path / "a.png", tmp_path / "b.png"
    for path, dpi in ((small, "100"), (large, "200")):
        args = ["sweep", "--variant", "b0", "--img", "224,448", "--metric", "macs", "--plot", str(path), "--dpi", dpi]
        assert runner.invoke(app, args).exit_code == 0
    assert _png_size(large)[0] == pytest.approx(2 * _png_size(small)[0], abs=2)
    bad = runner.invoke(app, ["sweep", "--img", "224", "--plot", str(small), "--dpi", "5"])
    assert bad.exit_code == 2 and bad.stderr == "error: dpi=5 must be from 50 to 1200\n"
