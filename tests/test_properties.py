"""Property-based tests: invariants of the tracer over random valid configurations.

Each property draws configurations of 1 to 4 stages with small dims, odd and non-square image
sizes, every sr ratio, linear SRA, both versions and both tasks, and checks the trace against
an independent implementation of the closed forms of reference pvt.md section 5. The number of
examples is bounded (``max_examples``) so the file runs in well under a minute; set
``PVTTRACE_HYPOTHESIS_EXAMPLES`` to run more.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pvttrace.config import LINEAR_SRA_POOL, PvtConfig
from pvttrace.errors import ConfigError
from pvttrace.model import build_model
from pvttrace.records import OpKind, dumps_json, loads_trace
from pvttrace.trace import trace_config

EXAMPLES = int(os.environ.get("PVTTRACE_HYPOTHESIS_EXAMPLES", "40"))
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


def closed_form_macs(cfg: PvtConfig) -> int:
    """Reference pvt.md section 5, 'pure' convention (conv + linear + matmul)."""
    total = 0
    in_chans = cfg.in_chans
    for geo in cfg.geometry():
        i = geo.index - 1
        c, hid, n, nt, kv = cfg.dims[i], cfg.mlp_hidden(i), geo.hw[0] * geo.hw[1], geo.tokens, geo.kv_tokens
        kernel = cfg.patch_kernel(i)[0]
        total += kernel * kernel * in_chans * c * n
        block = 2 * nt * c * c + 2 * nt * c * hid + 2 * kv * c * c + 2 * nt * kv * c
        if cfg.linear_sra:
            block += LINEAR_SRA_POOL**2 * c * c
        elif cfg.sr_ratios[i] > 1:
            block += cfg.sr_ratios[i] ** 2 * c * c * kv
        if cfg.version == 2:
            block += 9 * hid * n
        total += cfg.depths[i] * block
        in_chans = c
    if cfg.task == "cls":
        total += cfg.dims[-1] * cfg.num_classes
    return cfg.batch * total


def closed_form_params(cfg: PvtConfig) -> int:
    """Reference pvt.md section 5 parameter formula, generalised to any stage count."""
    total = 0
    in_chans = cfg.in_chans
    bias = 1 if cfg.qkv_bias else 0
    last = cfg.num_stages - 1
    for i in range(cfg.num_stages):
        c, hid, r = cfg.dims[i], cfg.mlp_hidden(i), cfg.sr_ratios[i]
        kernel = cfg.patch_kernel(i)[0]
        total += kernel * kernel * in_chans * c + c + 2 * c
        block = 2 * c + (c * c + bias * c) + (2 * c * c + 2 * bias * c) + (c * c + c) + 2 * c
        block += (c * hid + hid) + (hid * c + c)
        if cfg.linear_sra:
            block += c * c + c + 2 * c
        elif r > 1:
            block += r * r * c * c + c + 2 * c
        if cfg.version == 2:
            block += 9 * hid + hid
        total += cfg.depths[i] * block
        if cfg.version == 1:
            gh, gw = cfg.pos_grid(i)
            total += (gh * gw + (1 if i == last else 0)) * c
        else:
            total += 2 * c
        in_chans = c
    if cfg.version == 1 and cfg.task == "cls":
        total += cfg.dims[-1] + 2 * cfg.dims[-1]
    if cfg.task == "cls":
        total += cfg.dims[-1] * cfg.num_classes + cfg.num_classes
    return total


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


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_halves_the_bytes(dtype: str) -> None:
    from pvttrace.config import get_variant

    full = trace_config(get_variant("b0"))
    half = trace_config(get_variant("b0").with_overrides(dtype=dtype))
    assert half.totals.macs == full.totals.macs
    assert half.totals.param_bytes * 2 == full.totals.param_bytes
    assert [op.out_bytes * 2 for op in half.ops] == [op.out_bytes for op in full.ops]
    assert all(op.dtype == dtype for op in half.ops)
