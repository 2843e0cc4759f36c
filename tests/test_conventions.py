"""Counting conventions: ``paper`` reproduces the PVT authors' get_flops.py (reference pvt.md table 5.1),
``fvcore`` reproduces fvcore 0.1.5 (compared with fvcore itself when it is installed; CI installs it)."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from optional import needs, require
from typer.testing import CliRunner

from pvttrace.cli import app
from pvttrace.cli.parsing import parse_model_spec
from pvttrace.config import PvtConfig, get_variant, resolve_config
from pvttrace.costs.conventions import AttentionStage, apply_convention, paper_attention_term
from pvttrace.records import CONVENTIONS, Trace
from pvttrace.tracing.model import build_model
from pvttrace.tracing.recorder import trace_config
from pvttrace.tracing.target import trace_target

# Reference pvt.md section 5.1, column "paper conv. GF" (mmcv hooks + get_flops.py's attention term).
PAPER_GFLOPS = {
    "tiny": "1.9372",
    "small": "3.8228",
    "medium": "6.6699",
    "large": "9.8288",
    "b0": "0.5714",
    "b1": "2.1191",
    "b2-li": "3.9184",
    "b2": "4.0447",
    "b3": "6.9219",
    "b4": "10.1355",
    "b5": "11.7515",
}


@pytest.mark.parametrize("variant", list(PAPER_GFLOPS))
def test_paper_convention_reproduces_table_5_1(variant: str) -> None:
    trace = trace_config(get_variant(variant), convention="paper")
    assert f"{trace.totals.macs / 1e9:.4f}" == PAPER_GFLOPS[variant]
    head = sum(op.macs for op in trace.ops if op.stage is None)
    assert trace.totals.macs == sum(op.macs for op in trace.ops) == sum(s.macs for s in trace.stages) + head


def test_paper_counts_of_one_tiny_block_by_hand() -> None:
    # Reference pvt.md section 5: pvt_tiny stage-1 block @224 in the mmcv convention.
    trace = trace_config(get_variant("tiny"), convention="paper")
    block = {op.label: op.macs for op in trace.ops if op.module.startswith("block1.0") and op.macs}
    assert block == {
        "norm1": 401408,
        "q projection": 12845056,
        "SR conv": 12848192,  # incl. bias 3,136
        "SR norm": 6272,
        "kv projection": 401408,
        "scores q@k^T": 9834496,  # half of 2*56*56*7*7*64
        "attention@v": 9834496,
        "output projection": 12845056,
        "norm2": 401408,
        "MLP fc1": 102760448,
        "MLP fc2": 102760448,
    }
    assert sum(block.values()) == 264938688
    assert trace.convention == "paper"


def test_paper_term_uses_the_scripts_floors() -> None:
    stage = AttentionStage(index=2, dim=128, sr_ratio=4, linear=False)
    assert paper_attention_term(stage, 230, 230) == 2 * 28 * 28 * 7 * 7 * 128  # H//8, not ceil
    assert paper_attention_term(AttentionStage(1, 64, 8, True), 224, 224) == 2 * 56 * 56 * 49 * 64


def test_paper_term_with_fused_attention_goes_to_the_sdpa_op() -> None:
    explicit = trace_config(get_variant("b2"), convention="paper")
    fused = trace_config(get_variant("b2").with_overrides(attention="sdpa"), convention="paper")
    assert fused.totals.macs == explicit.totals.macs
    assert [s.attention_macs for s in fused.stages] == [s.attention_macs for s in explicit.stages]


def test_fvcore_convention_by_hand(tiny_trace: Trace) -> None:
    trace = trace_config(get_variant("tiny"), convention="fvcore")
    ops = {op.label: op.macs for op in trace.ops if op.module.startswith("block1.0") and op.macs}
    assert ops["norm1"] == 5 * 3136 * 64  # fvcore's layer_norm: 5 x numel with affine
    assert ops["SR conv"] == 49 * 64 * 64 * 8 * 8  # no bias
    assert ops["scores q@k^T"] == 3136 * 49 * 64
    assert "softmax" not in ops and "MLP activation" not in ops
    assert trace.totals.macs == 1943022336
    norms = sum(op.macs for op in trace.ops if op.kind.value == "norm")
    assert trace.totals.macs - norms == tiny_trace.totals.macs


def test_every_header_and_json_states_the_convention(runner: CliRunner) -> None:
    for name, text in CONVENTIONS.items():
        result = runner.invoke(app, ["run", "--variant", "b0", "--convention", name, "--width", "400"])
        assert result.exit_code == 0, result.output
        assert f"convention: {text}" in " ".join(result.stdout.replace("│", " ").split())
        result = runner.invoke(app, ["run", "--variant", "b0", "--convention", name, "--format", "json"])
        assert f'"convention": "{text}"' in result.stdout
    result = runner.invoke(app, ["run", "--variant", "b2", "--convention", "paper", "--format", "json"])
    assert '"macs": 4044719552' in result.stdout


def test_unknown_convention_is_refused() -> None:
    with pytest.raises(ValueError, match="convention='flops' must be one of macs, fvcore, timm, paper"):
        apply_convention("flops", (), (), {}, input_shape=(1, 3, 224, 224))


# -------------------------------------------------------------------------- against fvcore itself
needs_fvcore = needs("fvcore.nn")


def _fvcore_total(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    from fvcore.nn import FlopCountAnalysis

    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = FlopCountAnalysis(model.eval(), torch.randn(shape))
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            return int(analysis.total())
    finally:
        logging.disable(logging.NOTSET)


@needs_fvcore
@pytest.mark.parametrize(
    "cfg",
    [get_variant("tiny"), get_variant("b2-li"), resolve_config("b0", img=256, attention="sdpa")],
    ids=["tiny", "b2-li", "b0-256-sdpa"],
)
def test_fvcore_convention_matches_fvcore_on_builtins(cfg: PvtConfig) -> None:
    ours = trace_config(cfg, convention="fvcore").totals.macs
    assert ours == _fvcore_total(build_model(cfg, device="cpu"), cfg.input_shape)


@needs_fvcore
@pytest.mark.parametrize("factory", ["mix", "mix_fused"])
def test_fvcore_convention_matches_fvcore_on_every_spelling(factory: str) -> None:
    import anymodel_zoo

    trace = trace_target(parse_model_spec(f"anymodel_zoo:{factory}", input_shape="2,3,8,8"), convention="fvcore")
    assert trace.totals.macs == _fvcore_total(getattr(anymodel_zoo, factory)(), (2, 3, 8, 8))


@needs_fvcore
def test_fvcore_convention_matches_fvcore_on_timm() -> None:
    timm = require("timm")
    for fused in (True, False):
        trace = trace_target(
            parse_model_spec("timm:pvt_v2_b0", attention="sdpa" if fused else "explicit"), convention="fvcore"
        )
        model = timm.create_model("pvt_v2_b0", pretrained=False)
        for module in model.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = fused
        # fvcore counts nothing for fused SDPA, so the fused total is lower by the attention products.
        assert trace.totals.macs == _fvcore_total(model, (1, 3, 224, 224)) == (533915392 if fused else 572024064)
