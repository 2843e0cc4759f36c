"""``--model hf:CLASS``: transformers models built from their config defaults, labelled and traced.

HF's PvtV2Model with its default config (PVT v2-b0) must equal the built-in b0 backbone op for op in
what the tables show; SegformerModel's default config is MiT-B0, which is the b0 backbone with MLP
ratio 4 in every stage (SegFormer paper, Table 6: MiT-B0 = C 32/64/160/256, depths 2/2/2/2, heads
1/2/5/8, R 8/4/2/1, E 4/4/4/4), so it must equal ``b0 --task backbone --mlp-ratios 4,4,4,4``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache

import pytest
from optional import needs
from typer.testing import CliRunner

from pvttrace.base.errors import UserInputError
from pvttrace.cli import app
from pvttrace.cli.parsing import parse_model_spec
from pvttrace.config import get_variant
from pvttrace.records import Trace
from pvttrace.tracing.recorder import trace_config
from pvttrace.tracing.target import trace_target

needs_hf = needs("transformers")


@cache
def _hf(name: str, *options: str) -> Trace:
    return trace_target(parse_model_spec(f"hf:{name}", options=options))


def _facts(trace: Trace) -> list[tuple[object, ...]]:
    return [
        (
            s.hw,
            s.tokens,
            s.kv_tokens,
            s.dim,
            s.heads,
            s.sr_ratio,
            s.depth,
            s.params,
            s.macs,
            s.attention_macs,
            s.sr_macs,
            s.projection_macs,
            s.mlp_macs,
            s.other_macs,
            s.attention_map_shape,
            s.output,
        )
        for s in trace.stages
    ]


@needs_hf
def test_hf_pvt_v2_b0_equals_the_builtin_b0_backbone() -> None:
    builtin = trace_config(get_variant("b0").with_overrides(task="backbone"))
    hf = _hf("PvtV2Model")
    assert (
        (hf.totals.params, hf.totals.macs, hf.totals.uncosted_ops)
        == (builtin.totals.params, builtin.totals.macs, 0)
        == (3409760, 565809664, 0)
    )
    assert _facts(hf) == _facts(builtin)
    labels = {op.label for op in hf.ops if op.stage == 1}
    assert {"SR conv", "SR norm", "q projection", "k projection", "scores q@k^T", "DW conv 3x3", "stage norm"} <= labels


@needs_hf
def test_hf_segformer_default_is_mit_b0() -> None:
    builtin = trace_config(get_variant("b0").with_overrides(task="backbone", mlp_ratios=(4.0, 4.0, 4.0, 4.0)))
    hf = _hf("SegformerModel")
    assert (hf.totals.params, hf.totals.macs) == (builtin.totals.params, builtin.totals.macs)
    assert _facts(hf) == _facts(builtin)


@needs_hf
def test_hf_segformer_for_semantic_segmentation_on_the_cli(runner: CliRunner) -> None:
    result = runner.invoke(
        app,
        [
            "run",
            "--model",
            "hf:SegformerForSemanticSegmentation",
            "--model-option",
            "num_labels=150",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["model"] == "hf:SegformerForSemanticSegmentation"
    # The encoder is MiT-B0; the all-MLP decoder (256 channels, 150 ADE20K classes) adds the rest.
    assert [s["depth"] for s in doc["stages"]] == [2, 2, 2, 2]
    assert doc["outputs"][0] == [1, 150, 56, 56]
    encoder = _hf("SegformerModel")
    assert doc["totals"]["params"] > encoder.totals.params


@needs_hf
def test_model_options_override_the_config_defaults(runner: CliRunner) -> None:
    b1 = _hf("PvtV2Model", "hidden_sizes=[64,128,320,512]")
    builtin = trace_config(get_variant("b1").with_overrides(task="backbone"))
    assert (b1.totals.params, b1.totals.macs) == (builtin.totals.params, builtin.totals.macs)
    result = runner.invoke(app, ["run", "--model", "hf:PvtV2Model", "--model-option", "depth=[1,1,1,1]"])
    assert result.exit_code == 2
    assert "PvtV2Config has no field 'depth'; did you mean depths" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "hf:Pvt-V2"], "must name a transformers model class after 'hf:'"),
        (["--model", "timm:pvt_v2_b0", "--model-option", "depths=[1]"], "model_option applies to hf:CLASS models only"),
        (["--model", "hf:PvtV2Model", "--model-option", "depths"], "must be KEY=VALUE"),
        (["--model-option", "depths=[1]"], "model_option needs --model hf:CLASS"),
    ],
)
def test_bad_hf_specs_exit_2_without_importing(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 2 and message in result.stderr


@needs_hf
def test_unknown_hf_class_suggests_close_names() -> None:
    with pytest.raises(UserInputError, match="transformers has no model class 'PvtV2Modle'; did you mean PvtV2Model"):
        trace_target(parse_model_spec("hf:PvtV2Modle"))


def test_timm_and_transformers_are_imported_only_when_asked() -> None:
    code = (
        "import sys; from pvttrace.tracing.target import external_spec, trace_target; "
        "trace_target(external_spec('import', 'anymodel_zoo:sdpa', input_shape=(1, 16, 8))); "
        "print(sorted(m for m in ('timm', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="tests")
    assert out.stdout.strip() == "[]"
