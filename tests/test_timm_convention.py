"""``--convention timm`` against timm's published benchmark CSV (tests/data/timm_benchmark_rows.csv).

Every row is traced with ``timm.create_model(name, pretrained=False)`` on the meta device at the
row's image size; params and MACs, rounded as timm prints them (millions and GMACs, 2 decimals),
must equal the row. 23 models from 20 families: ViT/DeiT, ResNet, ConvNeXt, PVT v2, Twins (PCPVT
and SVT), EfficientNet, MobileNetV3, MLP-Mixer, ResMLP, RegNet, LeViT, XCiT, MobileViT, CrossViT,
GhostNet, EdgeNeXt, TinyViT, EfficientViT, EVA-02, CoaT, ConViT.
"""

from __future__ import annotations

import csv
import json
import pathlib

import pytest
from optional import needs
from typer.testing import CliRunner

from pvttrace.cli import app
from pvttrace.cli.parsing import parse_model_spec
from pvttrace.records import CONVENTIONS
from pvttrace.tracing.target import trace_target

ROWS = pathlib.Path(__file__).parent / "data" / "timm_benchmark_rows.csv"


def _rows() -> list[dict[str, str]]:
    lines = [line for line in ROWS.read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


@needs("timm")
def test_timm_convention_reproduces_timms_published_rows() -> None:
    report = []
    for row in _rows():
        trace = trace_target(parse_model_spec(f"timm:{row['model']}", img=row["infer_img_size"]), convention="timm")
        ours = (round(trace.totals.params / 1e6, 2), round(trace.totals.macs / 1e9, 2))
        published = (float(row["param_count"]), float(row["infer_gmacs"]))
        report.append((row["model"], ours, published))
    assert len({name.split("_")[0] for name, _, _ in report}) >= 10
    # Every row is reported, good or bad.
    assert [r for r in report if r[1] != r[2]] == []


@needs("timm")
def test_timm_convention_counts_attention_that_fused_fvcore_misses() -> None:
    fused = trace_target(parse_model_spec("timm:vit_tiny_patch16_224"), convention="fvcore")
    timm = trace_target(parse_model_spec("timm:vit_tiny_patch16_224"), convention="timm")
    # 12 blocks x 2 products x 3 heads x 197 x 197 x 64 that fvcore does not see inside fused SDPA.
    assert timm.totals.macs - fused.totals.macs == 12 * 2 * 3 * 197 * 197 * 64


@needs("timm")
def test_timm_convention_is_stated_in_header_and_json(runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", "--model", "timm:resnet18", "--convention", "timm", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["convention"] == CONVENTIONS["timm"]
    text = runner.invoke(app, ["run", "--model", "timm:resnet18", "--convention", "timm", "--width", "200"]).stdout
    assert "convention: " + CONVENTIONS["timm"][:60] in text


def test_builtin_variants_accept_the_timm_convention(runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", "--variant", "b0", "--convention", "timm", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["convention"] == CONVENTIONS["timm"]


@pytest.mark.parametrize("name", ["macs", "fvcore", "timm", "paper"])
def test_every_convention_text_starts_with_its_name(name: str) -> None:
    assert CONVENTIONS[name].startswith(name)
