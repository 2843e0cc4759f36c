"""The tracer: walkthrough shapes, labels, per-op costs, views vs copies, meta == cpu, hygiene."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pvttrace.base.errors import TraceError
from pvttrace.config import VARIANTS, PvtConfig, get_variant, resolve_config
from pvttrace.records import OpKind, Trace, dumps_json, loads_trace
from pvttrace.tracing.model import build_model
from pvttrace.tracing.recorder import record_ops, trace_config


def _first(trace: Trace, label: str, stage: int = 1) -> tuple[int, ...]:
    return next(op.output for op in trace.ops if op.label == label and op.stage == stage)


def _last(trace: Trace, label: str, stage: int = 1) -> tuple[int, ...]:
    """Output of the last op of the first run of ``label`` (e.g. the permute after a reshape)."""
    ops = [op for op in trace.ops if op.stage == stage]
    start = next(i for i, op in enumerate(ops) if op.label == label)
    end = start
    while end + 1 < len(ops) and ops[end + 1].label == label:
        end += 1
    return ops[end].output


def test_stage_one_flow_matches_the_walkthrough(tiny_trace: Trace) -> None:
    # reference/seed-walkthrough.md and pvt.md section 3, pvt_tiny @224, stage 1.
    assert _last(tiny_trace, "patches to tokens") == (1, 3136, 64)
    assert _first(tiny_trace, "split heads") == (1, 3136, 1, 64)
    q = [op.output for op in tiny_trace.ops if op.label == "split heads" and op.stage == 1][1]
    assert q == (1, 1, 3136, 64)
    assert _first(tiny_trace, "SR conv") == (1, 64, 7, 7)
    kv = [op.output for op in tiny_trace.ops if op.label == "split k/v heads" and op.stage == 1][1]
    assert kv == (2, 1, 1, 49, 64)
    assert _first(tiny_trace, "transpose k") == (1, 1, 64, 49)
    assert _first(tiny_trace, "scores q@k^T") == (1, 1, 3136, 49)
    assert _first(tiny_trace, "attention@v") == (1, 1, 3136, 64)
    merged = [op.output for op in tiny_trace.ops if op.label == "merge heads" and op.stage == 1][1]
    assert merged == (1, 3136, 64)
    assert _first(tiny_trace, "MLP fc1") == (1, 3136, 512)  # official width dim*mlp_ratio, not 64
    assert _first(tiny_trace, "stage output map") == (1, 56, 56, 64)
    assert tiny_trace.stages[0].output == (1, 64, 56, 56)


def test_block_op_sequence_reads_like_the_walkthrough(tiny_trace: Trace) -> None:
    block = [op for op in tiny_trace.ops if op.module.startswith("block1.0")]
    labels: list[str] = []
    for op in block:
        if op.label and (not labels or labels[-1] != op.label):
            labels.append(op.label)
    assert labels == [
        "norm1",
        "q projection",
        "split heads",
        "tokens to map",
        "SR conv",
        "map to tokens",
        "SR norm",
        "kv projection",
        "split k/v heads",
        "take k, v",
        "transpose k",
        "scores q@k^T",
        "scale",
        "softmax",
        "attention dropout",
        "attention@v",
        "merge heads",
        "output projection",
        "projection dropout",
        "attention residual add",
        "norm2",
        "MLP fc1",
        "MLP activation",
        "MLP dropout",
        "MLP fc2",
        "MLP dropout",
        "MLP residual add",
    ]


def test_per_op_costs_by_hand(tiny_trace: Trace) -> None:
    ops = {op.label: op for op in tiny_trace.ops if op.module.startswith("block1.0")}
    assert ops["q projection"].macs == 3136 * 64 * 64  # 12,845,056
    assert ops["SR conv"].macs == 49 * 64 * 64 * 8 * 8  # 12,845,056 (bias not counted)
    assert ops["kv projection"].macs == 49 * 64 * 128  # 401,408
    assert ops["scores q@k^T"].macs == 3136 * 49 * 64  # 9,834,496
    assert ops["attention@v"].macs == 3136 * 49 * 64
    assert ops["MLP fc1"].macs == 3136 * 64 * 512  # 102,760,448
    assert ops["softmax"].macs == 0 and ops["split heads"].macs == 0
    assert ops["scores q@k^T"].flops == 2 * ops["scores q@k^T"].macs
    assert ops["scores q@k^T"].out_bytes == 3136 * 49 * 4
    assert ops["scores q@k^T"].kind == OpKind.MATMUL
    assert ops["SR conv"].kind == OpKind.SR_CONV


def test_views_and_copies() -> None:
    trace = trace_config(get_variant("tiny"))
    stage2 = [op for op in trace.ops if op.module.startswith("block2.0")]
    merge = [op for op in stage2 if op.label == "merge heads"]
    # with 2 heads, transpose(1,2) is a view and the reshape after it must copy
    assert [m.view for m in merge] == [True, False]
    assert merge[1].alloc_bytes == 784 * 128 * 4
    # with 1 head (stage 1) the same reshape is still a view
    stage1 = [op for op in trace.ops if op.module.startswith("block1.0") and op.label == "merge heads"]
    assert [m.view for m in stage1] == [True, True]
    assert all(op.alloc_bytes == 0 for op in trace.ops if op.view)


def test_per_module_macs_agree_with_torch_flop_counter() -> None:
    for variant in ("tiny", "b2-li", "b0"):
        cfg = get_variant(variant)
        trace = trace_config(cfg)
        model = build_model(cfg)
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(cfg.input_shape, device="meta"))
        counts = counter.get_flop_counts()
        checked = 0
        for name, per_op in counts.items():
            if name == "Global":
                continue
            path = name.removeprefix("PyramidVisionTransformer").removeprefix(".")
            ours = sum(op.macs for op in trace.ops if op.module == path or op.module.startswith(path + ".") or not path)
            assert ours == sum(per_op.values()) // 2, name
            checked += 1
        assert checked > 50


def test_meta_and_cpu_records_are_identical() -> None:
    cfg = resolve_config("b2-li", img=96, depths=(1, 1, 1, 1))
    meta = trace_config(cfg, device="meta")
    cpu = trace_config(cfg, device="cpu")
    assert meta.ops == cpu.ops
    assert meta.stages == cpu.stages
    assert meta.totals == cpu.totals
    v1 = resolve_config("tiny", img=(96, 128), depths=(1, 1, 1, 1), sr=(2, 2, 1, 1), task="backbone")
    assert trace_config(v1, device="meta").ops == trace_config(v1, device="cpu").ops


def test_tracing_twice_is_identical_and_json_is_stable() -> None:
    cfg = get_variant("b0")
    first, second = trace_config(cfg), trace_config(cfg)
    assert first == second
    text = dumps_json(first.to_dict())
    assert text == dumps_json(second.to_dict())
    assert loads_trace(text) == first


def test_backbones_return_four_pyramid_maps() -> None:
    v1 = trace_config(resolve_config("tiny", img=(800, 1333), task="backbone"))
    assert v1.outputs == ((1, 64, 200, 333), (1, 128, 100, 166), (1, 320, 50, 83), (1, 512, 25, 41))
    assert not any(op.label in ("classifier head", "prepend cls token") for op in v1.ops)
    assert any(op.kind == OpKind.INTERPOLATE and op.label == "pos embed resize" for op in v1.ops)
    v2 = trace_config(resolve_config("b2", img=(800, 1333), task="backbone"))
    assert v2.outputs == ((1, 64, 200, 334), (1, 128, 100, 167), (1, 320, 50, 84), (1, 512, 25, 42))
    assert [s.kv_tokens for s in v2.stages] == [1025, 1025, 1050, 1050]


def test_v1_positional_resize_shows_in_the_trace() -> None:
    at_224 = trace_config(get_variant("tiny"))
    assert not any(op.kind == OpKind.INTERPOLATE for op in at_224.ops)
    at_256 = trace_config(resolve_config("tiny", img=256))
    resized = [op for op in at_256.ops if op.kind == OpKind.INTERPOLATE]
    assert [op.output for op in resized] == [(1, 64, 64, 64), (1, 128, 32, 32), (1, 320, 16, 16), (1, 512, 8, 8)]
    assert {op.stage for op in resized} == {1, 2, 3, 4}


def test_sdpa_has_the_same_macs_and_no_map() -> None:
    explicit = trace_config(get_variant("b2"))
    fused = trace_config(get_variant("b2").with_overrides(attention="sdpa"))
    assert fused.totals.macs == explicit.totals.macs
    assert [s.attention_macs for s in fused.stages] == [s.attention_macs for s in explicit.stages]
    assert [s.attention_map_shape for s in fused.stages] == [s.attention_map_shape for s in explicit.stages]
    assert all(s.attention_map_bytes == 0 for s in fused.stages)
    assert not any(op.kind == OpKind.SOFTMAX for op in fused.ops)


def test_stage_summaries(tiny_trace: Trace) -> None:
    s1 = tiny_trace.stages[0]
    assert (s1.hw, s1.tokens, s1.kv_tokens, s1.dim, s1.heads, s1.sr_ratio, s1.depth) == (
        (56, 56),
        3136,
        49,
        64,
        1,
        8,
        2,
    )
    assert s1.attention_map_shape == (1, 1, 3136, 49)
    assert s1.attention_map_bytes == 153664 * 4
    assert s1.attention_macs == 2 * 2 * 9834496
    assert s1.sr_macs == 2 * 12845056
    assert s1.macs == s1.attention_macs + s1.sr_macs + s1.projection_macs + s1.mlp_macs + s1.other_macs
    assert tiny_trace.stages[3].tokens == 50


def test_every_op_is_recorded_with_a_source_line(tiny_trace: Trace) -> None:
    assert tiny_trace.totals.uncosted_ops == 0
    assert all(op.source and op.source.startswith("model.py:") for op in tiny_trace.ops)
    assert [op.index for op in tiny_trace.ops] == list(range(len(tiny_trace.ops)))


class _Broken(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return y.reshape(3, -1, 5)


def test_failures_name_the_op_and_leave_no_hooks() -> None:
    model = _Broken()
    with pytest.raises(
        TraceError, match=r"Tensor.reshape in the model.*last recorded op #0 nn.functional.linear in fc"
    ):
        record_ops(model, torch.zeros(2, 8))
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert not model.fc._forward_hooks and not model.fc._forward_pre_hooks
    assert torch.overrides._get_current_function_mode_stack() == []
    model.fc(torch.zeros(1, 8))  # still usable outside the tracer


def _repeat_and_run(cfg: PvtConfig, **trace: Any) -> tuple[Any, Any, int]:
    """(trace with repeated blocks, trace running every block, how many blocks were repeated)."""
    from pvttrace.tracing import replay
    from pvttrace.tracing.model import stage_block_groups
    from pvttrace.tracing.recorder import memory_log, trace_model

    model = build_model(cfg)
    example = torch.empty(cfg.input_shape, device="meta")
    repeated: list[int] = []
    original = replay.BlockReplay._repeat

    def counted(self: replay.BlockReplay, *args: Any) -> torch.Tensor:
        repeated.append(1)
        return original(self, *args)

    groups = stage_block_groups(cfg)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay.BlockReplay, "_repeat", counted)
        with_replay = trace_model(model, example, config=cfg, block_groups=groups, **trace)
        repeats = len(repeated)
        facts: list[dict[str, Any]] = []
        logged = memory_log(model, example, train=False, facts=facts, block_groups=groups)
    facts_run: list[dict[str, Any]] = []
    logged_run = memory_log(model, example, train=False, facts=facts_run)
    assert logged == logged_run  # records, output shapes, every storage event with its key
    assert facts == facts_run
    return with_replay, trace_model(model, example, config=cfg, **trace), repeats


@pytest.mark.parametrize("task", ["cls", "backbone"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_repeated_blocks_equal_running_every_block(variant: str, task: str) -> None:
    """A block repeated from its twin's run gives what running it gives: every record, figure and storage event."""
    cfg = resolve_config(variant, task=task, img=(97, 131))
    replayed, run, repeated = _repeat_and_run(cfg)
    assert replayed == run
    assert repeated == sum(cfg.depths) - cfg.num_stages  # all but each stage's first block


@pytest.mark.parametrize(
    ("variant", "options", "trace"),
    [
        ("b2", {"batch": 2, "attention": "sdpa"}, {}),
        ("b2-li", {"batch": 3, "img": (64, 96)}, {"convention": "fvcore"}),
        ("tiny", {"img": (800, 1333), "task": "backbone"}, {"memory_figures": False}),
        ("small", {"dtype": "bfloat16", "sr": (4, 2, 1, 1)}, {"convention": "paper"}),
    ],
)
def test_repeated_blocks_equal_running_every_block_across_options(
    variant: str, options: dict[str, Any], trace: dict[str, Any]
) -> None:
    cfg = resolve_config(variant, **options)
    replayed, run, repeated = _repeat_and_run(cfg, **trace)
    assert replayed == run
    assert repeated > 0


def test_blocks_are_not_repeated_off_meta_or_in_training() -> None:
    """On a real device a repeated block's output would hold no values, and training needs autograd's graph:
    both run every block (the figures are compared with CPU runs elsewhere)."""
    from pvttrace.tracing import replay

    calls: list[str] = []
    original = replay.BlockReplay.__init__

    def made(self: replay.BlockReplay, *args: Any, **kwargs: Any) -> None:
        calls.append("made")
        original(self, *args, **kwargs)

    cfg = resolve_config("tiny", img=(64, 64), depths=(2, 2, 2, 2))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay.BlockReplay, "__init__", made)
        trace_config(cfg, device="cpu")
        assert calls == []
        trace_config(cfg, train=True)
        assert calls == ["made"]  # the inference forward only; the forward with grad runs every block
