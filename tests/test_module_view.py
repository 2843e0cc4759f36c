"""``pvttrace run --model ... --modules``: params, MACs and activation peak per module, to a chosen depth."""

from __future__ import annotations

import anymodel_zoo
import torch
from optional import needs
from typer.testing import CliRunner

from pvttrace.analyses.module_view import trace_modules
from pvttrace.cli import app
from pvttrace.cli.parsing import parse_model_spec


def test_rows_add_up_and_match_the_model() -> None:
    trace, rows = trace_modules(parse_model_spec("anymodel_zoo:my_pvt", input_shape="1,3,128,128"), depth=2)
    by_path = {row.path: row for row in rows}
    assert [row.path for row in rows] == ["", "levels", "levels.0", "levels.1", "classifier"]
    with torch.device("meta"):
        model = anymodel_zoo.my_pvt()
    assert by_path[""].params == trace.totals.params == sum(p.numel() for p in model.parameters())
    assert [by_path[f"levels.{i}"].params for i in (0, 1)] == [
        sum(p.numel() for p in lv.parameters()) for lv in model.levels
    ]
    # Each op counts in its module and every ancestor: the children's MACs add up to the parent's.
    assert by_path[""].macs == trace.totals.macs == sum(by_path[p].macs for p in ("levels", "classifier"))
    assert by_path["levels"].macs == by_path["levels.0"].macs + by_path["levels.1"].macs
    assert by_path["classifier"].macs == 64 * 10 and by_path["classifier"].output == (1, 10)
    assert by_path["levels.0"].output == (1, 32, 32, 32) and by_path["levels.0"].type == "_Level"
    assert by_path[""].peak_bytes == trace.totals.peak_activation_bytes


def test_depth_zero_is_the_model_alone() -> None:
    _, rows = trace_modules(parse_model_spec("anymodel_zoo:my_pvt", input_shape="1,3,128,128"), depth=0)
    assert [(row.path, row.type) for row in rows] == [("", "MyPvt")]


@needs("timm")
def test_cli_modules_view_of_a_timm_model_fits_80_columns(runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", "--model", "timm:resnet18", "--modules", "--depth", "1", "--width", "80"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    layer1 = next(line for line in lines if " layer1 " in line)
    assert "Sequential" in layer1 and "147.97 K" in layer1  # 2 basic blocks of 64 channels
