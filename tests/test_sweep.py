"""``pvttrace sweep``: columns from repeated options, metrics, growth exponents, views, plots and CSV.

The rendered table and chart are compared with ``tests/expected/sweep_b0.txt``; after an
intended change, regenerate it with ``PVTTRACE_UPDATE_EXPECTED=1 python -m pytest tests/test_sweep.py``
and review the diff. Plot tests need matplotlib (the ``test`` extra installs it) and skip,
saying why, only when it is missing.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import pathlib
import sys
from collections.abc import Callable
from dataclasses import fields

import pytest
from helpers import check_expected, rendered
from optional import needs
from typer.testing import CliRunner

from pvttrace.analyses.sweep import (
    DEFAULT_METRICS,
    METRICS,
    Metric,
    MetricUnit,
    SweepColumn,
    SweepResult,
    available_metrics,
    build_columns,
    fit_power_law,
    plan_sweep,
    run_sweep,
)
from pvttrace.base.errors import ConfigError, UserInputError
from pvttrace.cli import app
from pvttrace.cli.options import ModelColumns
from pvttrace.cli.parsing import parse_metrics, parse_sizes
from pvttrace.config import DType, PvtConfig
from pvttrace.records import CONVENTIONS, Provenance, Totals, Trace
from pvttrace.render.sweep import GrowthChart, render_sweep, sweep_csv, sweep_markdown
from pvttrace.render.tabular import TRACE_CSV_FIELDS, csv_text

needs_matplotlib = needs("matplotlib")

B0_COLUMNS = (
    SweepColumn("sra", (("variant", "b0"),)),
    SweepColumn("full", (("variant", "b0"), ("sr", (1, 1, 1, 1)))),
    SweepColumn("linear", (("variant", "b0"), ("linear_sra", True))),
)
B0_METRICS = ("macs", "attention_macs", "attention_map_bytes", "largest_activation_bytes", "params")


@pytest.fixture(scope="module")
def b0_sweep(trace_of: Callable[[PvtConfig], Trace]) -> SweepResult:
    """b0 with SRA (8,4,2,1), full attention (sr 1) and linear SRA at 224, 448 and 896."""
    metrics = tuple(METRICS[name] for name in B0_METRICS)
    return run_sweep(B0_COLUMNS, parse_sizes("224,448,896"), metrics, trace=trace_of)


def _fit(result: SweepResult, metric: str, column: str) -> float:
    (series,) = [s for s in result.series_of(metric) if s.column.label == column]
    assert series.fit is not None
    return series.fit.exponent


# ---------------------------------------------------------------------------------- fitting
def test_fit_recovers_exact_power_laws() -> None:
    fit = fit_power_law([3136, 6400, 16384, 40000], [5 * n**2 for n in (3136, 6400, 16384, 40000)])
    assert fit is not None
    assert math.isclose(fit.exponent, 2.0, abs_tol=1e-12) and math.isclose(fit.coefficient, 5.0, rel_tol=1e-9)
    assert math.isclose(fit.r_squared, 1.0) and math.isclose(fit.end_slope, 2.0) and fit.points == 4
    flat = fit_power_law([1, 10, 100], [7, 7, 7])
    assert flat is not None and flat.exponent == 0.0 and flat.r_squared == 1.0


def test_fit_of_a_mixed_curve_has_lower_r_squared_and_a_steeper_end() -> None:
    xs = [2.0**k for k in range(10, 19)]
    fit = fit_power_law(xs, [1000 * x + x * x for x in xs])  # ~N at first, ~N^2 later
    assert fit is not None
    assert 1.0 < fit.exponent < 2.0 and fit.r_squared < 1.0 and fit.end_slope > fit.exponent


@pytest.mark.parametrize(
    ("xs", "ys"),
    [([1], [1]), ([1, 2], [1, 0]), ([2, 2], [1, 3]), ([0, 1], [1, 2]), ([1, 2, 3], [1, 2])],
)
def test_fit_needs_two_distinct_positive_points(xs: list[float], ys: list[float]) -> None:
    assert fit_power_law(xs, ys) is None


# ---------------------------------------------------------------------------------- columns and inputs
def test_repeated_options_become_columns_labelled_by_what_differs() -> None:
    columns = build_columns({"variant": ["b2", "b2", "b2-li"], "sr": [(8, 4, 2, 1), (1, 1, 1, 1), None], "batch": [2]})
    assert [c.label for c in columns] == ["b2 sr 8,4,2,1", "b2 sr 1,1,1,1", "b2-li"]
    assert columns[2].options == (("variant", "b2-li"), ("batch", 2))  # None keeps the preset's sr
    assert columns[0].config((512, 512)).sr_ratios == (8, 4, 2, 1) and columns[0].config((512, 512)).batch == 2
    assert [c.label for c in build_columns({"variant": ["b1"]})] == ["b1"]
    assert [c.label for c in build_columns({})] == ["tiny"]
    named = build_columns({"sr": [(8, 4, 2, 1), (1, 1, 1, 1)]}, labels=["SRA", "full"])
    assert [c.label for c in named] == ["SRA", "full"]
    ratios = build_columns({"mlp_ratios": [(4.5, 4, 4, 4), (8.0, 8.0, 4.0, 4.0)], "pos_size": [(224, 224), (256, 320)]})
    assert [c.label for c in ratios] == ["mlp-ratios 4.5,4,4,4 pos-size 224", "mlp-ratios 8,8,4,4 pos-size 256x320"]


def test_command_line_column_options_are_parsed_before_the_library_sees_them() -> None:
    columns = {"variant": ("b2", "-"), "sr": ("8,4,2,1", " - "), "dtype": ("float16",), "batch": (2,)}
    parsed = ModelColumns({**columns, "pos_size": ("256x320",)}).typed_lists()
    assert parsed == {
        "variant": ["b2", None],
        "sr": [(8, 4, 2, 1), None],
        "dtype": [DType.FLOAT16],
        "batch": [2],
        "pos_size": [(256, 320)],
    }
    with pytest.raises(ConfigError, match=r"^sr_ratios='8,x' must be a comma-separated list of integers"):
        ModelColumns({"sr": ("8,x",)}).typed_lists()
    with pytest.raises(ConfigError, match=r"^attention='fast' must be one of: explicit, sdpa$"):
        ModelColumns({"attention": ("fast",)}).typed_lists()


@pytest.mark.parametrize(
    ("options", "labels", "message"),
    [
        ({"sr": [(8, 4, 2, 1), (1, 1, 1, 1)], "variant": ["b0", "b1", "b2"]}, None, "--sr 2 times, --variant 3 times"),
        ({"sr": [(8, 4, 2, 1), (1, 1, 1, 1)]}, ["one"], "label is given 1 time(s) but there are 2 configuration(s)"),
        ({"sr": [(8, 4, 2, 1), (8, 4, 2, 1)]}, None, "share the label 'sr 8,4,2,1'"),
        ({"img": [224]}, None, "option 'img' cannot vary in a sweep"),
    ],
)
def test_bad_columns_are_rejected(options: dict[str, list[object]], labels: list[str] | None, message: str) -> None:
    with pytest.raises(UserInputError) as info:
        build_columns(options, labels=labels)
    assert message in str(info.value)


def test_plan_validates_every_config_before_tracing() -> None:
    sizes = parse_sizes("16,224")
    with pytest.raises(ConfigError, match=r"^'sr 8,4,2,1' at img 16x16: img=16x16 is too small for sr_ratios\[0\]=8"):
        plan_sweep(build_columns({"variant": ["b0"], "sr": [(8, 4, 2, 1), (1, 1, 1, 1)]}), sizes)
    same = build_columns({"variant": ["b2", "pvt_v2_b2"]})
    with pytest.raises(UserInputError, match="'b2' and 'pvt_v2_b2' are the same model"):
        plan_sweep(same, parse_sizes("224,448"))


def test_sizes_are_sorted_by_area_and_checked() -> None:
    assert parse_sizes("1024, 224,800x1333") == ((224, 224), (1024, 1024), (800, 1333))
    with pytest.raises(ConfigError, match="lists 224x224 more than once"):
        parse_sizes("224,224x224")
    with pytest.raises(ConfigError, match="must be a comma-separated list of sizes"):
        parse_sizes("224,,512")
    with pytest.raises(ConfigError, match="img='big' must be a size"):
        parse_sizes("big")


def test_metric_registry_defaults_and_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    has_peak = "peak_activation_bytes" in {f.name for f in fields(Totals)}
    defaults = [m.name for m in parse_metrics(None)]
    assert defaults == [n for n in DEFAULT_METRICS if has_peak or n != "peak_activation_bytes"]
    assert ("peak_activation_bytes" in available_metrics()) == has_peak
    assert [m.name for m in parse_metrics(["macs,params", "macs", "sr_macs"])] == ["macs", "params", "sr_macs"]
    with pytest.raises(UserInputError, match=r"metric='flops!' is not a sweep metric.*known: macs, "):
        parse_metrics(["flops!"])
    with pytest.raises(UserInputError, match="must name at least one metric"):
        parse_metrics([" , "])
    future = Metric(
        "future_bytes",
        "future",
        MetricUnit.BYTES,
        "not yet traced",
        lambda t: None,
        lambda t: None,
        requires="future_bytes",
    )
    monkeypatch.setitem(METRICS, "future_bytes", future)
    with pytest.raises(UserInputError, match="metric='future_bytes' is not available: traces of this pvttrace have no"):
        parse_metrics(["future_bytes"])


# ---------------------------------------------------------------------------------- values and exponents
def test_exponents_match_the_closed_forms(b0_sweep: SweepResult) -> None:
    assert abs(_fit(b0_sweep, "attention_macs", "full") - 2.0) < 0.05  # N x N x C per block
    assert abs(_fit(b0_sweep, "attention_macs", "sra") - 2.0) < 0.05  # N x N/R^2 x C
    assert abs(_fit(b0_sweep, "attention_macs", "linear") - 1.0) < 0.05  # N x 49 x C
    assert abs(_fit(b0_sweep, "attention_map_bytes", "full") - 2.0) < 0.05
    assert abs(_fit(b0_sweep, "attention_map_bytes", "linear") - 1.0) < 0.05
    assert _fit(b0_sweep, "params", "full") == 0.0
    # Total MACs mix ~N (linear layers) and ~N^2 (attention): in between, heading to 2 with full attention.
    (full_macs,) = [s for s in b0_sweep.series_of("macs") if s.column.label == "full"]
    assert full_macs.fit is not None and 1.8 < full_macs.fit.exponent < 2.0 < full_macs.fit.end_slope + 0.1


def test_attention_values_equal_hand_arithmetic(b0_sweep: SweepResult) -> None:
    sra, full, linear = b0_sweep.series_of("attention_macs")
    # b0 at 224: N = 3136, 784, 196, 49; C = 32, 64, 160, 256; 2 blocks per stage; q@k^T + attn@v = 2 N N' C.
    tokens, dims = (3136, 784, 196, 49), (32, 64, 160, 256)
    assert full.points[0].value == sum(2 * 2 * n * n * c for n, c in zip(tokens, dims, strict=True)) == 1443212288
    kv = (49, 49, 49, 49)  # SRA at 224 keeps 7x7 keys in every stage (56/8, 28/4, 14/2, 7/1)
    assert sra.points[0].value == sum(2 * 2 * n * k * c for n, k, c in zip(tokens, kv, dims, strict=True))
    assert linear.points[0].value == sra.points[0].value == 38108672
    # The R^2 factor: stage 1's scores with sr 8 are 64x smaller than with sr 1, at every size.
    for f, s in zip(full.points, sra.points, strict=True):
        assert f.stage_values is not None and s.stage_values is not None
        assert f.stage_values[0] == 64 * s.stage_values[0]
    assert [p.tokens for p in full.points] == [3136, 12544, 50176]
    assert [p.dominant_stage for p in full.points] == [1, 1, 1]
    map_full = b0_sweep.series_of("attention_map_bytes")[1]
    assert map_full.points[0].value == 1 * 1 * 3136 * 3136 * 4  # largest map: stage 1, one head, float32


def test_json_document(b0_sweep: SweepResult) -> None:
    from pvttrace.records import dumps_json

    text = dumps_json(b0_sweep.to_dict())
    assert text == dumps_json(b0_sweep.to_dict())
    doc = json.loads(text)
    assert doc["schema"] == "pvttrace.sweep/1" and doc["sizes"] == [[224, 224], [448, 448], [896, 896]]
    assert [c["label"] for c in doc["columns"]] == ["sra", "full", "linear"]
    assert doc["columns"][2]["config"]["linear_sra"] is True and "img" not in doc["columns"][2]["config"]
    attention = doc["metrics"][1]
    assert attention["name"] == "attention_macs" and attention["unit"] == "MACs"
    assert [s["exponent"] for s in attention["series"]] == [2.0, 2.0, 1.0]
    assert attention["series"][1]["points"][0] == {
        "img": [224, 224],
        "tokens": 3136,
        "value": 1443212288,
        "stage_values": [1258815488, 157351936, 24586240, 2458624],
        "dominant_stage": 1,
    }
    params = doc["metrics"][-1]["series"][1]
    assert params["exponent"] == 0.0 and "-0.0" not in text
    # How the numbers were made, read from the traces: the shared convention line and each column's values.
    assert doc["convention"] == CONVENTIONS["macs"]
    assert {(c["convention"], c["dtype"], c["device"]) for c in doc["columns"]} == {
        (CONVENTIONS["macs"], "float32", "meta")
    }


def test_the_header_states_convention_dtype_and_device_of_the_traces(trace_of: Callable[[PvtConfig], Trace]) -> None:
    def on_cpu(cfg: PvtConfig) -> Trace:
        return dataclasses.replace(trace_of(cfg), device="cpu", convention="fvcore")

    columns = B0_COLUMNS[:2]
    result = run_sweep(columns, parse_sizes("224,448"), (METRICS["macs"],), trace=on_cpu)
    assert result.provenances == (Provenance("fvcore", "float32", "cpu"),) * 2
    text = _render(render_sweep(result, chart=False), 100)
    assert "pvttrace sweep  (cpu device)" in text and "(meta device)" not in text
    assert "convention: fvcore: fvcore 0.1.5's count" in text and "dtype: float32; device: cpu" in text
    markdown = sweep_markdown(result)
    assert f"- convention: {CONVENTIONS['fvcore']}\n- dtype: float32; device: cpu\n" in markdown
    assert result.to_dict()["convention"] == CONVENTIONS["fvcore"]


# ---------------------------------------------------------------------------------- views
def _render(renderable: object, width: int) -> str:
    output = rendered(renderable, width)
    return "\n".join(line.rstrip() for line in output.splitlines()) + "\n"


def test_rendered_tables_and_charts_match_expected_output(b0_sweep: SweepResult) -> None:
    text = _render(render_sweep(b0_sweep), 100)
    assert max(len(line) for line in text.splitlines()) <= 100
    check_expected("sweep_b0.txt", text)
    for expected in ("1.44 G (s1)", "N^2.00", "N^1.00", "attention MACs vs image size (log-log)", "o sra ~N^2.00"):
        assert expected in text


def test_chart_places_markers_on_a_log_log_grid(b0_sweep: SweepResult) -> None:
    lines = [t.plain for t in GrowthChart(b0_sweep.series_of("attention_macs"), height=9).lines(60)]
    grid = [line.split("│", 1)[-1].split("┤", 1)[-1] for line in lines[1:10]]
    assert len(grid) == 9 and all(len(row) <= 60 for row in lines)
    # Full attention (x) spans bottom-to-top along the diagonal: its largest value is the top-right cell.
    assert grid[0].rstrip().endswith("x")
    # At 224, SRA and linear SRA cost the same (49 keys each), so their markers overlap there.
    bottom = grid[8]
    assert "*" in bottom and lines[-1].endswith("* several")
    assert "224" in lines[11] and "896" in lines[11]


def test_markdown_and_csv(b0_sweep: SweepResult) -> None:
    md = sweep_markdown(b0_sweep)
    assert "### attention MACs\n" in md
    assert "| 224 | 3136 | 38.11 M (s1) | 1.44 G (s1) | 38.11 M (s1) |" in md
    assert "| **growth k** |  | N^2.00 | N^2.00 | N^1.00 |" in md
    rows = list(csv.DictReader(io.StringIO(sweep_csv(b0_sweep))))
    assert len(rows) == len(B0_METRICS) * 3 * 3
    row = next(r for r in rows if r["metric"] == "attention_macs" and r["config"] == "full" and r["img"] == "224x224")
    assert row["value"] == "1443212288" and row["stage1"] == "1258815488" and row["exponent"] == "2.000000"
    assert row["tokens"] == "3136" and row["dominant_stage"] == "1" and row["unit"] == "MACs"


def test_csv_text_quotes_and_checks_widths() -> None:
    assert csv_text(["a", "b"], [[1, None], ["x,y", True]]) == 'a,b\n1,\n"x,y",true\n'
    with pytest.raises(ValueError, match="row has 1 cells but the header has 2"):
        csv_text(["a", "b"], [[1]])


# ---------------------------------------------------------------------------------- plots
@needs_matplotlib
def test_sweep_plot_has_one_labelled_log_log_line_per_configuration(
    b0_sweep: SweepResult, tmp_path: pathlib.Path
) -> None:
    from pvttrace.render.plot import plot_sweep, save_figure

    figure = plot_sweep(b0_sweep, ["attention_macs", "attention_map_bytes"])
    assert figure.get_suptitle() == "pvttrace sweep: b0 (PVT v2, cls, batch 1, float32)"
    axes = figure.axes
    assert len(axes) == 2
    first = axes[0]
    assert first.get_xscale() == "log" and first.get_yscale() == "log"
    assert first.get_title() == "attention MACs"
    assert first.get_ylabel() == "attention MACs, log scale"  # the unit is in the title already
    assert "stage-1 tokens N" in first.get_xlabel()
    assert axes[1].get_ylabel() == "attention map bytes, log scale"
    labels = [line.get_label() for line in first.get_lines()]
    assert labels == ["sra (~N$^{2.00}$)", "full (~N$^{2.00}$)", "linear (~N$^{1.00}$)"]
    full = first.get_lines()[1]
    assert list(full.get_xdata()) == [3136, 12544, 50176]
    assert list(full.get_ydata()) == [p.value for p in b0_sweep.series_of("attention_macs")[1].points]
    assert [t.get_text() for t in first.get_xticklabels()] == ["224\n3.1 K", "448\n12.5 K", "896\n50.2 K"]
    assert [t.get_text() for t in first.get_legend().get_texts()] == labels

    png, svg = tmp_path / "sweep.png", tmp_path / "sweep.svg"
    save_figure(figure, str(png))
    save_figure(figure, str(svg))
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    svg_text = svg.read_text()
    assert svg_text.startswith("<?xml") and "<svg" in svg_text and "<dc:date>" not in svg_text
    again = tmp_path / "again.svg"
    save_figure(plot_sweep(b0_sweep, ["attention_macs", "attention_map_bytes"]), str(again))
    assert again.read_bytes() == svg.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.svg", "sweep.png", "sweep.svg"]  # no temp files


@needs_matplotlib
def test_stage_bars_group_values_per_stage(tmp_path: pathlib.Path) -> None:
    from pvttrace.render.plot import plot_stage_bars, save_figure

    values = {"sr 8,4,2,1": [537.9e6, 800e6, 1.5e9, 700e6], "sr 1,1,1,1": [4.2e9, 1.4e9, 1.6e9, 700e6]}
    stages = ["stage 1", "stage 2", "stage 3", "stage 4"]
    figure = plot_stage_bars(stages, values, title="tiny @ 224: MACs by stage", ylabel="MACs (multiply-accumulates)")
    (axes,) = figure.axes
    assert axes.get_title() == "tiny @ 224: MACs by stage" and axes.get_ylabel() == "MACs (multiply-accumulates)"
    assert [t.get_text() for t in axes.get_xticklabels()] == stages
    assert [t.get_text() for t in axes.get_legend().get_texts()] == list(values)
    assert [c.get_label() for c in axes.containers] == list(values)
    heights = [[bar.get_height() for bar in container] for container in axes.containers]
    assert heights == [values["sr 8,4,2,1"], values["sr 1,1,1,1"]]
    first_bars = list(axes.containers[0])
    assert first_bars[0].get_x() < next(iter(axes.containers[1])).get_x() < first_bars[1].get_x()  # grouped
    out = tmp_path / "bars.png"
    save_figure(figure, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserInputError, match=r"values\['a'\] has 1 value\(s\) but there are 4 stage\(s\)"):
        plot_stage_bars(stages, {"a": [1.0]}, title="t", ylabel="y")


def test_plot_paths_are_checked(tmp_path: pathlib.Path) -> None:
    from pvttrace.render.plot import plot_format

    assert plot_format(str(tmp_path / "a.SVG")) == "svg"
    with pytest.raises(UserInputError, match=r"plot='x.jpg' must end in .png or .svg"):
        plot_format("x.jpg")
    with pytest.raises(UserInputError, match="does not exist"):
        plot_format(str(tmp_path / "missing" / "a.png"))


def test_missing_matplotlib_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, runner: CliRunner) -> None:
    from pvttrace.render.plot import require_matplotlib

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(UserInputError, match=r"plot needs matplotlib, which is not installed; install it with: pip"):
        require_matplotlib()
    result = runner.invoke(app, ["sweep", "--img", "224,448", "--plot", "out.png"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: plot needs matplotlib") and result.stderr.count("\n") == 1


# ---------------------------------------------------------------------------------- command line
@needs_matplotlib
def test_acceptance_sweep_three_configurations_by_seven_sizes(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    plot = tmp_path / "sweep.svg"
    args = [
        "sweep",
        "--variant",
        "b2",
        "--variant",
        "b2",
        "--variant",
        "b2-li",
        "--sr",
        "8,4,2,1",
        "--sr",
        "1,1,1,1",
        "--sr",
        "-",
        "--img",
        "224,320,512,800,1024,1600,2048",
        "--metric",
        "macs,attention_macs,params",
        "--format",
        "json",
        "--plot",
        str(plot),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stderr == f"plot written to {plot}\n"
    doc = json.loads(result.stdout)
    assert len(doc["sizes"]) == 7 and [c["label"] for c in doc["columns"]] == [
        "b2 sr 8,4,2,1",
        "b2 sr 1,1,1,1",
        "b2-li",
    ]
    macs, attention, params = doc["metrics"]
    exponents = [s["exponent"] for s in attention["series"]]
    assert abs(exponents[0] - 2.0) < 0.05 and abs(exponents[1] - 2.0) < 0.05 and abs(exponents[2] - 1.0) < 0.05
    # SRA: stage 3 (6 blocks) dominates b2's MACs at 224; stage 1's attention takes over by 1600.
    sra_points = macs["series"][0]["points"]
    assert [p["dominant_stage"] for p in sra_points] == [3, 3, 3, 3, 3, 1, 1]
    assert macs["series"][0]["points"][0]["value"] == 4026734592  # b2 @ 224, as in `run`
    assert [s["points"][0]["value"] for s in params["series"]] == [25362856, 21062376, 22553512]
    assert plot.read_text().startswith("<?xml")


def test_sweep_table_output_and_run_csv(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["sweep", "--variant", "b0", "--img", "224,448", "--metric", "attention_macs", "--width", "100"]
    )
    assert result.exit_code == 0, result.output
    assert "│       224 │  3136 │  38.11 M (s1) │" in result.stdout
    assert "growth k" in result.stdout and "N^2.00" in result.stdout and "attention MACs vs image size" in result.stdout
    quiet = runner.invoke(app, ["sweep", "--variant", "b0", "--img", "224,448", "-m", "params", "--no-chart"])
    assert quiet.exit_code == 0 and "vs image size" not in quiet.stdout
    md = runner.invoke(app, ["sweep", "--variant", "b0", "--img", "224,448", "-m", "params", "--format", "markdown"])
    assert "| 224 | 3136 | 3.67 M (s4) |" in md.stdout
    out = runner.invoke(app, ["sweep", "--variant", "b0", "--img", "224,448", "-m", "params", "--format", "csv"])
    assert (
        out.stdout.splitlines()[1]
        == "params,parameters,b0,224x224,3136,3666760,4,183296,326464,930080,1969920,0.000000,1.000000,0.000000"
    )

    run = runner.invoke(app, ["run", "--variant", "tiny", "--format", "csv"])
    assert run.exit_code == 0
    rows = list(csv.reader(io.StringIO(run.stdout)))
    assert tuple(rows[0]) == TRACE_CSV_FIELDS
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["op"] == "nn.functional.conv2d" and first["kind"] == "patch_embed"
    assert first["inputs"] == "1x3x224x224;64x3x4x4;64" and first["output"] == "1x64x56x56"
    assert first["macs"] == "9633792" and first["flops"] == "19267584" and first["view"] == "false"
    assert sum(int(r[rows[0].index("macs")]) for r in rows[1:]) == 1932911616
    stage_rows = runner.invoke(app, ["run", "--format", "csv", "--stage", "2", "--kind", "sr_conv"]).stdout
    assert len(stage_rows.splitlines()) == 1 + 2  # header + one SR conv per block of stage 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--sr", "8,4,2,1", "--sr", "1,1,1,1", "--variant", "b0", "--variant", "b1", "--variant", "b2"],
            "repeated options must come in equal counts (one per configuration), got --variant 3 times, --sr 2 times",
        ),
        (["--metric", "bogus"], "metric='bogus' is not a sweep metric"),
        (["--img", "224,abc"], "img='abc' must be a size"),
        (["--img", "224,224"], "lists 224x224 more than once"),
        (["--variant", "b0", "--img", "16,224"], "'b0' at img 16x16: img=16x16 is too small"),
        (["--plot", "out.gif"], "plot='out.gif' must end in .png or .svg"),
        (
            ["--variant", "b0", "--label", "a", "--label", "b"],
            "label is given 2 time(s) but there are 1 configuration(s)",
        ),
        (["--format", "xml"], "Invalid value for '--format'"),
    ],
)
def test_bad_sweep_input_is_one_line_and_exit_2(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["sweep", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.output
