"""Property-based tests: invariants of the tracer over random valid configurations.

Each property draws configurations of 1 to 4 stages with small dims, odd and non-square image
sizes, every sr ratio, linear SRA, both versions and both tasks, and checks the trace against
an independent implementation of the closed forms of reference pvt.md section 5 (tests/closed_forms.py),
the data flow from op to op, meta against CPU, tracing twice, the JSON round trip, a snapshot written
and checked through the CLI, and a diff of a configuration with itself. The number of examples is
bounded (``max_examples``, derandomized) so the file runs in well under a minute; set
``PVTTRACE_HYPOTHESIS_EXAMPLES`` to run more (docs/reliability.md lists the counts).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import pytest
from closed_forms import closed_form_macs, closed_form_params
from helpers import invoke
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pvttrace.analyses.diff import OpStatus, StageMetric, TotalMetric, diff_traces
from pvttrace.base.errors import ConfigError
from pvttrace.config import PvtConfig
from pvttrace.records import OpKind, dumps_json, loads_trace
from pvttrace.snapshot import load_snapshot
from pvttrace.tracing.model import build_model
from pvttrace.tracing.recorder import trace_config

EXAMPLES = int(os.environ.get("PVTTRACE_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)


@st.composite
def configs(draw: st.DrawFn) -> PvtConfig:
    version = draw(st.sampled_from([1, 2]))
    stages = draw(st.integers(1, 4))
    heads = tuple(draw(st.sampled_from([1, 2, 3])) for _ in range(stages))
    dims = tuple(h * draw(st.sampled_from([4, 8])) for h in heads)
    linear = version == 2 and draw(st.booleans())
    task = draw(st.sampled_from(["cls", "backbone"]))
    sr = [draw(st.integers(1, 4)) for _ in range(stages)]
    if version == 1 and task == "cls":
        sr[-1] = 1
    first_stride = draw(st.sampled_from([2, 4]))
    try:
        return PvtConfig(
            variant="random",
            version=version,
            dims=dims,
            heads=heads,
            depths=tuple(draw(st.integers(1, 2)) for _ in range(stages)),
            mlp_ratios=tuple(draw(st.sampled_from([1.0, 1.5, 2.0, 4.0])) for _ in range(stages)),
            sr_ratios=tuple(sr),
            patch=(first_stride,) + (2,) * (stages - 1),
            img=(draw(st.integers(17, 97)), draw(st.integers(17, 97))),
            batch=draw(st.integers(1, 2)),
            in_chans=draw(st.sampled_from([1, 3])),
            qkv_bias=draw(st.booleans()),
            linear_sra=linear,
            num_classes=draw(st.integers(1, 11)),
            task=task,
            pos_size=(draw(st.sampled_from([32, 64])),) * 2,
            attention=draw(st.sampled_from(["explicit", "sdpa"])),
        )
    except ConfigError:
        assume(False)
        raise


@SETTINGS
@given(configs())
def test_totals_equal_the_closed_forms(cfg: PvtConfig) -> None:
    trace = trace_config(cfg)
    assert trace.totals.macs == closed_form_macs(cfg)
    assert trace.totals.params == closed_form_params(cfg)
    assert trace.totals.params == sum(p.numel() for p in build_model(cfg).parameters())


@SETTINGS
@given(configs())
def test_stage_grids_and_keys_follow_the_floor_and_ceil_rules(cfg: PvtConfig) -> None:
    trace = trace_config(cfg)
    convs = [op for op in trace.ops if op.kind == OpKind.PATCH_EMBED]
    h, w = cfg.img
    for geo, conv, summary in zip(cfg.geometry(), convs, trace.stages, strict=True):
        stride = cfg.patch[geo.index - 1]
        h, w = (h // stride, w // stride) if cfg.version == 1 else (-(-h // stride), -(-w // stride))
        assert conv.output[2:] == (h, w) == geo.hw == summary.hw
        assert summary.attention_map_shape is not None
        assert summary.attention_map_shape[-2:] == (geo.tokens, geo.kv_tokens)


@SETTINGS
@given(configs())
def test_each_op_consumes_shapes_that_earlier_ops_produced(cfg: PvtConfig) -> None:
    trace = trace_config(cfg)
    produced = {cfg.input_shape}
    parameter_shapes = {tuple(p.shape) for p in build_model(cfg).parameters()}
    for op in trace.ops:
        for shape in op.inputs:
            assert shape in produced or shape in parameter_shapes, (op.index, op.title, shape)
        produced.add(op.output)


@settings(SETTINGS, max_examples=max(5, EXAMPLES // 3))
@given(configs())
def test_meta_and_cpu_traces_are_identical(cfg: PvtConfig) -> None:
    meta, cpu = trace_config(cfg), trace_config(cfg, device="cpu")
    assert meta.ops == cpu.ops
    assert meta.stages == cpu.stages and meta.totals == cpu.totals and meta.outputs == cpu.outputs


@SETTINGS
@given(configs())
def test_tracing_twice_is_identical_and_json_round_trips(cfg: PvtConfig) -> None:
    first, second = trace_config(cfg), trace_config(cfg)
    assert first == second
    text = dumps_json(first.to_dict())
    assert loads_trace(text) == first
    assert dumps_json(loads_trace(text).to_dict()) == text


def cli_options(cfg: PvtConfig) -> list[str]:
    """The ``run`` options that rebuild ``cfg`` (from the preset of its version)."""

    def joined(values: tuple[int, ...] | tuple[float, ...]) -> str:
        return ",".join(repr(v) for v in values)

    return [
        "--variant",
        "tiny" if cfg.version == 1 else "b0",
        "--img",
        f"{cfg.img[0]}x{cfg.img[1]}",
        "--batch",
        str(cfg.batch),
        "--in-chans",
        str(cfg.in_chans),
        "--dims",
        joined(cfg.dims),
        "--heads",
        joined(cfg.heads),
        "--depths",
        joined(cfg.depths),
        "--mlp-ratios",
        joined(cfg.mlp_ratios),
        "--sr",
        joined(cfg.sr_ratios),
        "--patch",
        joined(cfg.patch),
        "--qkv-bias" if cfg.qkv_bias else "--no-qkv-bias",
        "--linear-sra" if cfg.linear_sra else "--no-linear-sra",
        "--num-classes",
        str(cfg.num_classes),
        "--dtype",
        cfg.dtype,
        "--task",
        cfg.task,
        "--pos-size",
        f"{cfg.pos_size[0]}x{cfg.pos_size[1]}",
        "--attention",
        cfg.attention,
    ]


@settings(SETTINGS, max_examples=max(5, EXAMPLES // 2))
@given(configs())
def test_a_snapshot_written_by_the_cli_checks_clean(cfg: PvtConfig) -> None:
    options = cli_options(cfg)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "snap.json")
        code, _, err = invoke("snapshot", "write", path, *options)
        assert code == 0, err
        stored = load_snapshot(path)
        assert dataclasses.replace(stored.config, variant=cfg.variant) == cfg
        before = Path(path).read_bytes()
        code, out, err = invoke("snapshot", "check", path)
        assert (code, err) == (0, "")
        assert out.startswith(f"ok {path}")
        assert Path(path).read_bytes() == before


@settings(SETTINGS, max_examples=max(5, EXAMPLES // 2))
@given(configs())
def test_a_config_diffed_with_itself_changes_nothing(cfg: PvtConfig) -> None:
    trace = trace_config(cfg)
    diff = diff_traces([trace, trace], ["a", "b"], with_ops=True)
    assert len(diff.stages) == cfg.num_stages
    for stage in diff.stages:
        for metric in StageMetric:
            assert (stage.change(1, metric).delta, stage.change(1, metric).ratio) == (0, 1.0), metric
    for total in TotalMetric:
        assert (diff.total(1, total).delta, diff.total(1, total).ratio) == (0, 1.0), total
    assert diff.op_rows is not None and len(diff.op_rows) == len(trace.ops)
    assert {row.status for row in diff.op_rows} == {OpStatus.SAME}
    # The same through the command line, from a saved trace compared with itself.
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "t.json")
        Path(path).write_text(dumps_json(trace.to_dict()), encoding="utf-8")
        code, out, err = invoke("diff", path, path, "--label", "a", "--label", "b", "-f", "json")
        assert code == 0, err
        ratios = _values_of(json.loads(out), "ratio")
        assert ratios and set(ratios) == {1.0}


def _values_of(document: object, key: str) -> list[object]:
    """Every value stored under ``key`` anywhere in a JSON document."""
    if isinstance(document, dict):
        return [v for k, v in document.items() if k == key] + [x for v in document.values() for x in _values_of(v, key)]
    if isinstance(document, list):
        return [x for v in document for x in _values_of(v, key)]
    return []


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_halves_the_bytes(dtype: str) -> None:
    from pvttrace.config import get_variant

    full = trace_config(get_variant("b0"))
    half = trace_config(get_variant("b0").with_overrides(dtype=dtype))
    assert half.totals.macs == full.totals.macs
    assert half.totals.param_bytes * 2 == full.totals.param_bytes
    assert [op.out_bytes * 2 for op in half.ops] == [op.out_bytes for op in full.ops]
    assert all(op.dtype == dtype for op in half.ops)
