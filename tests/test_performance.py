"""The performance shortcuts change no figure: skipped weight initialisation on meta, the paused
garbage collector, and traces without memory tracking; and a trace's work per op does not grow with
the trace (counted in function calls; timings are benchmarks/run.py's job)."""

from __future__ import annotations

import dataclasses
import sys
from types import FrameType

import pytest
import torch

from pvttrace.analyses.sweep import METRICS, needs_memory
from pvttrace.config import get_variant, resolve_config
from pvttrace.tracing.model import PyramidVisionTransformer, build_model
from pvttrace.tracing.noinit import default_device_without_init, skip_meta_init
from pvttrace.tracing.recorder import trace_config, trace_model
from tests.optional import require


def _shapes(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    return [(n, tuple(t.shape), t.dtype) for n, t in (*model.named_parameters(), *model.named_buffers())]


def test_builtin_model_built_without_init_has_every_parameter() -> None:
    cfg = get_variant("b0")
    model = build_model(cfg)  # skips initialisation (meta)
    reference = PyramidVisionTransformer(cfg, device="meta")  # initialised as usual
    assert _shapes(model) == _shapes(reference)
    assert sum(p.numel() for p in model.parameters()) == 3_666_760


def test_timm_model_built_without_init_has_every_parameter() -> None:
    timm = require("timm")
    with torch.device("meta"):
        reference = timm.create_model("pvt_v2_b0", pretrained=False)
        with skip_meta_init("meta"):
            fast = timm.create_model("pvt_v2_b0", pretrained=False)
    assert _shapes(fast) == _shapes(reference)
    assert [type(m) for m in fast.modules()] == [type(m) for m in reference.modules()]


def test_one_context_sets_the_default_device_and_skips_init() -> None:
    """``default_device_without_init`` (one torch-function mode) builds what ``torch.device`` plus
    ``skip_meta_init`` build, sets and restores the default device, and leaves explicit devices alone."""
    timm = require("timm")
    with torch.device("meta"), skip_meta_init("meta"):
        stacked = timm.create_model("pvt_v2_b0", pretrained=False)
    before = torch.get_default_device()
    with default_device_without_init("meta"):
        assert torch.get_default_device() == torch.device("meta")
        combined = timm.create_model("pvt_v2_b0", pretrained=False)
        on_cpu = torch.ones(2, device="cpu")
        with torch.device("cpu"):  # a factory's own default-device context nests as usual
            nested = torch.empty(3)
        assert torch.empty(1).is_meta
    assert torch.get_default_device() == before
    assert _shapes(combined) == _shapes(stacked)
    assert [type(m) for m in combined.modules()] == [type(m) for m in stacked.modules()]
    assert all(p.is_meta for p in combined.parameters())
    assert on_cpu.sum().item() == 2 and nested.device.type == "cpu"
    torch.manual_seed(0)
    with default_device_without_init("cpu"):
        layer = torch.nn.Linear(4, 3)
    assert layer.weight.device.type == "cpu" and layer.weight.abs().sum().item() > 0


def test_init_still_runs_off_meta() -> None:
    torch.manual_seed(0)
    with skip_meta_init("cpu"):
        layer = torch.nn.Linear(4, 3)
    assert layer.weight.abs().sum().item() > 0  # kaiming_uniform_ ran on the CPU tensor


@pytest.mark.parametrize("train", [False, True])
def test_trace_is_the_same_with_the_garbage_collector_running(train: bool) -> None:
    cfg = resolve_config("tiny", img=64, batch=2)
    model = build_model(cfg)
    example = torch.empty(cfg.input_shape, device="meta")
    paused = trace_model(model, example, config=cfg, train=train)
    running = trace_model.__wrapped__(model, example, config=cfg, train=train)  # type: ignore[attr-defined]
    assert paused == running


def test_trace_without_memory_figures_differs_only_in_memory() -> None:
    cfg = resolve_config("b0", img=96, batch=2)
    full, lean = trace_config(cfg), trace_config(cfg, memory_figures=False)
    memory_fields = {"live_bytes", "peak_bytes", "saved_bytes"}
    strip = {f.name: 0 for f in dataclasses.fields(full.ops[0]) if f.name in memory_fields}
    assert [dataclasses.replace(op, **strip) for op in full.ops] == list(lean.ops)
    assert lean.totals.macs == full.totals.macs and lean.totals.params == full.totals.params
    assert lean.totals.peak_activation_bytes == 0 < full.totals.peak_activation_bytes
    assert [s.attention_map_bytes for s in lean.stages] == [s.attention_map_bytes for s in full.stages]


def test_only_memory_metrics_need_memory_tracking() -> None:
    assert needs_memory([METRICS["peak_activation_bytes"]])
    assert not needs_memory([METRICS[name] for name in ("macs", "attention_macs", "attention_map_bytes", "params")])


@pytest.mark.parametrize("train", [False, True])
def test_traces_leave_no_reference_cycles(train: bool) -> None:
    """The CLI pauses the cyclic collector for a whole command; that is safe because traces (inference and
    training, built-in and any model) leave nothing that only the collector could free."""
    import gc

    from pvttrace.tracing.target import builtin_spec, trace_target

    gc.collect()
    gc.disable()
    try:
        for img in (64, 96):
            trace_target(builtin_spec(resolve_config("b2-li", img=img, batch=2)), train=train)
        with torch.device("meta"):
            small = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
        trace_model(small, torch.empty(1, 3, 32, 32, device="meta"), train=train)
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_the_command_line_runs_with_the_collector_paused_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    import pvttrace.cli as cli

    seen: list[bool] = []

    def command() -> None:
        seen.append(gc.isenabled())
        raise SystemExit(0)

    monkeypatch.setattr(cli, "command_app", lambda argv: command)
    assert gc.isenabled()
    with pytest.raises(SystemExit):
        cli.main()
    assert seen == [False]
    assert gc.isenabled()


def _calls_and_ops(depth: int, *, train: bool) -> tuple[int, int]:
    """Python and C function calls made while tracing tiny with ``depth`` blocks per stage, and its ops."""
    cfg = resolve_config("tiny", img=64, depths=(depth,) * 4)
    model = build_model(cfg)
    example = torch.empty(cfg.input_shape, device="meta")
    calls = 0

    def count(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        ops = trace_model(model, example, config=cfg, train=train).totals.ops
    finally:
        sys.setprofile(None)
    return calls, ops


@pytest.mark.parametrize("train", [False, True])
def test_work_per_op_does_not_grow_with_the_trace(train: bool) -> None:
    # Function calls are what the tracer's time is made of, and unlike time they are exact: work that
    # grows with the trace (a scan of earlier records, a quadratic post-processing pass) makes the calls
    # per added op larger between bigger models. Blocks 3-6 and 7-18 of every stage must cost the same.
    _calls_and_ops(2, train=train)  # first-trace work (lazy imports, caches) out of the way
    (c2, o2), (c6, o6), (c18, o18) = (_calls_and_ops(depth, train=train) for depth in (2, 6, 18))
    assert o18 - o6 == 3 * (o6 - o2) > 0
    assert (c18 - c6) / (o18 - o6) == pytest.approx((c6 - c2) / (o6 - o2), rel=0.005)
