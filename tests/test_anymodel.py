"""Tracing any model: timm's pvt_v2 against the built-in variants, labels, attention spellings,
coverage, meta/CPU fallback and failures.

The timm tests are skipped only when timm does not import (and fail then under CI=true, where
.ci/run installs it). Expected renderings live in tests/expected/; regenerate them with
``PVTTRACE_UPDATE_EXPECTED=1 python -m pytest tests/test_anymodel.py``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import cache

import pytest
import torch
from helpers import check_expected, rendered
from optional import needs
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from pvttrace.base.errors import TraceError, UserInputError
from pvttrace.cli import app
from pvttrace.cli.parsing import parse_model_spec
from pvttrace.config import PvtConfig, get_variant
from pvttrace.costs.coverage import coverage_csv, coverage_document, op_coverage, uncosted_summary
from pvttrace.records import CostRule, OpKind, Trace, dumps_json, loads_trace
from pvttrace.render.trace import coverage_table, render_trace
from pvttrace.tracing.target import ModelSpec, trace_target

TIMM_PAIRS = [
    ("pvt_v2_b0", "b0"),
    ("pvt_v2_b1", "b1"),
    ("pvt_v2_b2", "b2"),
    ("pvt_v2_b2_li", "b2-li"),
    ("pvt_v2_b3", "b3"),
    ("pvt_v2_b4", "b4"),
    ("pvt_v2_b5", "b5"),
]
BUILTIN_MACS = {
    "b0": 566065664,
    "b1": 2108355584,
    "b2": 4026734592,
    "b2-li": 3888850944,
    "b3": 6897303552,
    "b4": 10101116416,
    "b5": 11717260288,
}


needs_timm = needs("timm")


@cache
def _timm_trace(name: str, attention: str) -> Trace:
    return trace_target(parse_model_spec(f"timm:{name}", attention=attention))


def _stage_facts(trace: Trace) -> list[tuple[object, ...]]:
    return [
        (
            s.index,
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
            s.attention_map_bytes,
        )
        for s in trace.stages
    ]


# ------------------------------------------------------------------------------------------ timm
@needs_timm
@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
@pytest.mark.parametrize(("timm_name", "variant"), TIMM_PAIRS)
def test_timm_pvt_v2_equals_the_builtin_variant(
    timm_name: str, variant: str, attention: str, trace_of: Callable[[PvtConfig], Trace]
) -> None:
    ours = trace_of(get_variant(variant).with_overrides(attention=attention))
    theirs = _timm_trace(timm_name, attention)
    assert theirs.totals.macs == ours.totals.macs == BUILTIN_MACS[variant]
    assert theirs.totals.params == ours.totals.params
    assert _stage_facts(theirs) == _stage_facts(ours)
    # Stage outputs agree except the classifier's last stage: timm returns a map, ours tokens.
    assert [s.output for s in theirs.stages[:3]] == [s.output for s in ours.stages[:3]]
    assert theirs.config is None and theirs.model == f"timm:{timm_name}"
    fused = [op for op in theirs.ops if op.kind == OpKind.SDPA]
    assert bool(fused) == (attention == "sdpa")


@needs_timm
def test_timm_ops_get_the_walkthrough_labels() -> None:
    trace = _timm_trace("pvt_v2_b2_li", "explicit")
    block = [op for op in trace.ops if op.module.startswith("stages.0.blocks.0")]
    assert [op.label for op in block] == [
        "norm1",
        "q projection",
        "split heads",
        "split heads",
        "tokens to map",
        "tokens to map",
        "SR pool",
        "SR conv",
        "map to tokens",
        "map to tokens",
        "SR norm",
        "SR activation",
        "kv projection",
        "split k/v heads",
        "split k/v heads",
        "take k, v",
        "scale",
        "transpose k",
        "scores q@k^T",
        "softmax",
        "attention dropout",
        "attention@v",
        "merge heads",
        "merge heads",
        "output projection",
        "projection dropout",
        "attention residual add",
        "norm2",
        "MLP fc1",
        "tokens to map",
        "tokens to map",
        "MLP ReLU",
        "DW conv 3x3",
        "map to tokens",
        "map to tokens",
        "MLP activation",
        "MLP dropout",
        "MLP fc2",
        "MLP dropout",
        "MLP residual add",
    ]
    stem = [(op.label, op.module, op.stage) for op in trace.ops[:4]]
    assert stem == [
        ("patch embed conv", "patch_embed.proj", 1),
        ("patches to tokens", "patch_embed", 1),
        ("patch norm", "patch_embed.norm", 1),
        ("patches to tokens", "stages.0", 1),
    ]
    assert [op.label for op in trace.ops[-3:]] == ["token mean", "head dropout", "classifier head"]
    scores = next(op for op in block if op.label == "scores q@k^T")
    assert scores.output == (1, 1, 3136, 49) and scores.macs == 3136 * 49 * 64


@needs_timm
def test_timm_default_input_and_image_size() -> None:
    trace = trace_target(parse_model_spec("timm:pvt_v2_b0", img="256", batch=2))
    assert trace.input_shape == (2, 3, 256, 256)
    assert [s.hw for s in trace.stages] == [(64, 64), (32, 32), (16, 16), (8, 8)]


@needs_timm
def test_cli_runs_a_timm_model(runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", "--model", "timm:pvt_v2_b0", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model"] == "timm:pvt_v2_b0" and doc["config"] is None
    assert doc["totals"]["macs"] == 566065664
    result = runner.invoke(app, ["run", "--model", "timm:pvt_v2_b9"])
    assert result.exit_code == 2 and "timm has no model 'pvt_v2_b9'; did you mean" in result.stderr


def test_missing_timm_is_a_clear_exit_2(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    result = runner.invoke(app, ["run", "--model", "timm:pvt_v2_b0"])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: model='timm:pvt_v2_b0' needs timm: timm failed to import: import of timm halted; "
    )
    # Never an install that would swap the user's torch build: the matching torchvision first, then timm.
    assert "pvttrace[timm]" not in result.stderr
    assert f"torchvision release made for your torch {torch.__version__.split('+')[0]}" in result.stderr
    assert result.stderr.rstrip().endswith("then: pip install timm") and result.stderr.count("\n") == 1


def test_import_errors_name_what_is_missing() -> None:
    from pvttrace.tracing.target import install_advice

    missing = ModuleNotFoundError("No module named 'requests'", name="requests")
    assert install_advice("timm", missing) == "install what it lacks: pip install requests"
    assert install_advice("transformers", ImportError("boom")).startswith(
        "pip install transformers (it does not pin torch"
    )


# ------------------------------------------------------------------------------ attention spellings
def _torch_macs(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(shape))
    return counter.get_total_flops() // 2


def test_mha_einsum_bmm_addmm_and_conv_transpose_are_costed() -> None:
    import anymodel_zoo

    trace = trace_target(parse_model_spec("anymodel_zoo:mix", input_shape="2,3,8,8"))
    assert trace.totals.uncosted_ops == 0
    assert trace.totals.macs == _torch_macs(anymodel_zoo.mix().eval(), (2, 3, 8, 8)) == 5724160
    by_op = {op.op: op for op in trace.ops if op.macs}
    mha = by_op["nn.functional.multi_head_attention_forward"]
    # L=256, N=2, E=8: q/k/v in-projections 3*L*N*E*E, scores and attn@v 2*N*L*S*E, out-projection L*N*E*E
    assert mha.macs == 3 * 256 * 2 * 8 * 8 + 2 * 2 * 256 * 256 * 8 + 256 * 2 * 8 * 8
    assert mha.kind == OpKind.MHA and mha.label == "multi-head attention"
    assert by_op["einsum"].macs == 2 * 256 * 256 * 8
    assert by_op["conv_transpose2d"].macs == 2 * 16 * 16 * 16 * 8 * 2 * 2
    assert by_op["addmm"].macs == 512 * 8 * 8
    # need_weights=False takes the fused path inside MHA: the same MACs (torch's CPU counter misses that SDPA)
    assert trace_target(parse_model_spec("anymodel_zoo:mix_fused", input_shape="2,3,8,8")).totals.macs == 5724160


def test_sdpa_counts_both_products_and_no_map() -> None:
    trace = trace_target(parse_model_spec("anymodel_zoo:sdpa", input_shape="2,16,8"))
    fused = next(op for op in trace.ops if op.kind == OpKind.SDPA)
    assert fused.inputs[:3] == ((2, 2, 16, 4), (2, 2, 8, 4), (2, 2, 8, 4))
    assert fused.macs == 2 * 2 * 16 * 8 * (4 + 4)
    assert fused.out_bytes == 2 * 2 * 16 * 4 * 4  # the output only: no [B, heads, 16, 8] map


def test_builtin_spec_is_the_builtin_path(tiny_trace: Trace) -> None:
    from pvttrace.tracing.target import builtin_spec

    assert trace_target(builtin_spec(get_variant("tiny"))) == tiny_trace
    assert tiny_trace.model is None and "model" not in tiny_trace.to_dict()


# ------------------------------------------------------------------------------ coverage, fallbacks
def test_coverage_lists_every_op_and_flags_missing_rules() -> None:
    notes: list[str] = []
    trace = trace_target(parse_model_spec("anymodel_zoo:reads_values", input_shape="1,3,8,8"), on_note=notes.append)
    assert trace.device == "cpu"
    assert notes and notes[0].startswith("anymodel_zoo:reads_values could not run on the meta device")
    rows = [(r.op, r.kind.value, r.count, r.rule.value, r.macs) for r in op_coverage(trace)]
    assert rows == [
        ("Tensor.abs", "other", 1, "none", 0),
        ("special.erf", "other", 1, "none", 0),
        ("nn.functional.conv2d", "conv", 1, "macs", 3888),
        ("Tensor.repeat", "expand", 1, "zero", 0),
        ("Tensor.sum", "reduce", 1, "zero", 0),
    ]
    assert trace.totals.ops == 5 and trace.totals.uncosted_ops == 2
    assert uncosted_summary(trace) == (
        "2 op(s) had no cost rule and count 0 MACs: Tensor.abs x1, special.erf x1 (run with --coverage for every op)"
    )
    assert coverage_document(trace)["op_names"][0] == {
        "op": "Tensor.abs",
        "kind": "other",
        "count": 1,
        "rule": "none",
        "macs": 0,
    }
    assert coverage_csv(trace).splitlines()[:2] == ["op,kind,count,rule,macs", "Tensor.abs,other,1,none,0"]
    check_expected("coverage_reads_values.txt", rendered(coverage_table(trace), 100))


def test_run_warns_in_one_line_about_ops_without_rules(runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", "--model", "anymodel_zoo:reads_values", "--input-shape", "1,3,8,8"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "no cost rule" in line]
    assert warnings == [
        "warning: 2 op(s) had no cost rule and count 0 MACs: Tensor.abs x1, special.erf x1 "
        "(run with --coverage for every op)"
    ]
    result = runner.invoke(app, ["run", "--variant", "b0"])
    assert result.exit_code == 0 and result.stderr == ""


def test_factory_that_cannot_build_on_meta_is_built_on_cpu() -> None:
    notes: list[str] = []
    trace = trace_target(parse_model_spec("anymodel_zoo:meta_hostile", input_shape="1,3,8,8"), on_note=notes.append)
    assert trace.device == "cpu" and trace.totals.macs == 4 * 6 * 6 * 27
    assert notes == [
        "anymodel_zoo:meta_hostile could not be built on the meta device (RuntimeError: Tensor.item() cannot be "
        "called on meta tensors); built on cpu instead"
    ]


def test_sdpa_model_renders_like_the_builtin_view() -> None:
    trace = trace_target(parse_model_spec("anymodel_zoo:sdpa", input_shape="2,16,8"))
    check_expected("run_model_sdpa.txt", rendered(render_trace(trace, show_all=True), 120))


def test_json_round_trip_keeps_model_and_convention() -> None:
    trace = trace_target(parse_model_spec("anymodel_zoo:sdpa", input_shape="2,16,8"), convention="fvcore")
    doc = trace.to_dict()
    assert doc["model"] == "anymodel_zoo:sdpa" and doc["convention"].startswith("fvcore: ")
    again = loads_trace(dumps_json(doc))
    assert again == trace and again.convention == "fvcore" and again.model == "anymodel_zoo:sdpa"


# ------------------------------------------------------------------------------ failures, bad input
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "anymodel_zoo:broken", "--input-shape", "2,8"],
            "error: model anymodel_zoo:broken: the forward failed at Tensor.reshape in the model: RuntimeError: "
            "shape '[3, -1, 5]' is invalid for input of size 16; last recorded op #1 nn.functional.linear in fc",
        ),
        (
            ["--model", "anymodel_zoo:fails"],
            "error: model anymodel_zoo:fails failed to build: ValueError: embed_dim=7 is not divisible by heads=2 "
            "(at anymodel_zoo.py:",
        ),
        (["--model", "anymodel_zoo:not_a_module"], "the factory returned an object of type int, not an nn.Module"),
        (["--model", "anymodel_zoo:nope"], "error: model='anymodel_zoo:nope': anymodel_zoo has no attribute 'nope'"),
        (["--model", "no_such_pkg.mod:make"], "cannot import no_such_pkg.mod (ModuleNotFoundError"),
        (
            ["--model", "anymodel_zoo"],
            "must be PACKAGE.MODULE:FACTORY (a callable returning an nn.Module), timm:NAME or hf:CLASS",
        ),
        (
            ["--model", "anymodel_zoo:mix", "--variant", "b0", "--sr", "1,1,1,1"],
            "cannot be combined with --variant, --sr",
        ),
        (["--model", "anymodel_zoo:mix", "--input-shape", "1,x"], "input_shape='1,x' must be positive integers"),
        (["--model", "anymodel_zoo:mix", "--input-shape", "1,3,8,8", "--img", "8"], "cannot be combined with img"),
        (["--input-shape", "1,3,8,8"], "input_shape needs --model"),
        (["--model", "anymodel_zoo:mix", "--attention", "sdpa"], "needs a model whose attention modules have a"),
        (["--model", "anymodel_zoo:mix", "--modules", "--depth", "65"], "depth=65 must be from 0 to 64"),
        (["--convention", "flops"], "Invalid value for '--convention'"),
    ],
)
def test_failures_and_bad_input_exit_2_in_one_line(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output


def test_spec_validation_needs_no_torch_import() -> None:
    spec = parse_model_spec("pkg.models:build_pvt", img="800x1333", batch=2)
    assert spec == ModelSpec(source="import", target="pkg.models:build_pvt", img=(800, 1333), batch=2)
    assert parse_model_spec("timm:pvt_v2_b0").name == "timm:pvt_v2_b0"
    with pytest.raises(UserInputError, match="batch=0 must be a positive integer"):
        parse_model_spec("timm:x", batch=0)
    with pytest.raises(TraceError, match="the forward failed"):
        trace_target(parse_model_spec("anymodel_zoo:broken", input_shape="2,8"))


def test_meta_rows_have_no_cost_rule_gaps_for_builtins(tiny_trace: Trace) -> None:
    assert all(row.rule != CostRule.NONE for row in op_coverage(tiny_trace))


def test_new_pure_modules_import_nothing_heavy() -> None:
    import subprocess

    probe = (
        "import sys\n"
        "import pvttrace.stages.labels, pvttrace.costs.conventions, pvttrace.costs.coverage, pvttrace.tracing.target\n"
        "print(sorted(m for m in ('torch', 'rich', 'typer', 'timm', 'fvcore') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
