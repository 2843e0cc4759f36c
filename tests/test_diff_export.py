"""`pvttrace diff --format csv` and `--plot`: values per stage and configuration."""

from __future__ import annotations

import csv
import io
import pathlib

from optional import require
from typer.testing import CliRunner

from pvttrace.cli import app


def test_diff_csv_has_one_row_per_stage_and_configuration(runner: CliRunner) -> None:
    result = runner.invoke(app, ["diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["stage"], r["config"]) for r in rows[:2]] == [("1", "sr=8,4,2,1"), ("1", "sr=1,1,1,1")]
    assert len(rows) == 8
    stage1 = rows[1]
    assert int(stage1["kv_tokens"]) == 3136 and float(stage1["kv_tokens_ratio"]) == 64.0
    assert int(stage1["attention_macs"]) == 2517630976 and float(stage1["attention_macs_ratio"]) == 64.0
    assert sum(int(r["macs"]) for r in rows if r["config"] == "sr=8,4,2,1") == 1932911616 - 512000


def test_diff_plot_draws_grouped_bars(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    require("matplotlib")
    target = tmp_path / "bars.svg"
    args = ["diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "--plot", str(target), "--plot-metric", "attention_macs"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = target.read_text()
    assert text.startswith("<?xml") and "<svg" in text
    assert "sr=8,4,2,1" in text and "sr=1,1,1,1" in text and "stage 4" in text


def test_diff_plot_metric_and_suffix_are_checked_before_tracing(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    result = runner.invoke(app, ["diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "--plot", str(tmp_path / "x.txt")])
    assert result.exit_code == 2 and result.stderr.startswith("error: plot=")
    result = runner.invoke(
        app, ["diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "--plot", str(tmp_path / "x.png"), "--plot-metric", "speed"]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "error: plot-metric='speed' must be one of: "
        "macs, attention_macs, sr_macs, attention_map_bytes, kv_tokens, params\n"
    )


def test_diff_shows_what_fused_attention_saves_in_memory(runner: CliRunner) -> None:
    args = [
        "diff",
        "--variant",
        "b2",
        "--img",
        "1280x800",
        "--sr",
        "1,1,1,1",
        "--attention",
        "explicit",
        "--attention",
        "sdpa",
        "--format",
        "json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    import json

    doc = json.loads(result.stdout)
    assert doc["labels"] == ["attention=explicit", "attention=sdpa"]
    explicit, fused = (c["totals"] for c in doc["configurations"])
    assert explicit["macs"] == fused["macs"] == 1981686272000
    # stage 1: one [1, 1, 64000, 64000] float32 score map is 15.26 GiB; explicit attention keeps it and its softmax
    assert explicit["largest_activation_bytes"] == 64000 * 64000 * 4
    assert explicit["peak_memory_bytes"] > 24 * 2**30 > 2**30 > fused["peak_memory_bytes"]
    assert doc["totals"][0]["peak_memory_bytes"]["ratio"] < 0.02
