"""Stage summaries: the one place a :class:`~pvttrace.records.StageSummary` is built.

A summary has two halves. Its layout (grid, tokens N, keys N', dim, heads, SR ratio, depth,
output) comes from the config for a built-in model (:func:`config_stage_summaries`) or is read
back from the op records for any other model (:func:`derived_stage_summaries`). Its costs
(MACs by category, the attention map, activation peak and saved bytes) always come from the
stage's ops, in :func:`stage_summary`; cost categories are the cost registry's
(:func:`pvttrace.costs.registry.macs_by_category`). Pure data: no torch, rich or typer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pvttrace.config import PvtConfig
from pvttrace.costs.registry import macs_by_category
from pvttrace.records import MacsCategory, OpKind, OpRecord, Shape, StageSummary
from pvttrace.stages.structure import StageGeometry

__all__ = [
    "StageLayout",
    "attention_map",
    "config_stage_summaries",
    "derived_stage_summaries",
    "ops_of_stage",
    "stage_summary",
]


@dataclass(frozen=True, slots=True)
class StageLayout:
    """What a stage is, apart from what its ops cost (0 where a fact is not known)."""

    index: int
    hw: tuple[int, int]
    tokens: int
    kv_tokens: int
    dim: int
    heads: int
    sr_ratio: int
    depth: int
    output: Shape | None


def ops_of_stage(ops: Sequence[OpRecord], index: int) -> list[OpRecord]:
    """The ops of 1-based stage ``index``, in execution order."""
    return [op for op in ops if op.stage == index]


def attention_map(stage_ops: Sequence[OpRecord]) -> tuple[Shape | None, int]:
    """One block's score map [B, heads, N, N'] and its bytes (0 when fused: SDPA never materialises it)."""
    for op in stage_ops:
        if op.label == "scores q@k^T":
            return op.output, op.out_bytes
        if op.kind == OpKind.SDPA and len(op.inputs) >= 2:
            q, k = op.inputs[0], op.inputs[1]
            return (*q[:-1], k[-2]), 0
    return None, 0


def stage_summary(layout: StageLayout, stage_ops: Sequence[OpRecord], params: int) -> StageSummary:
    """The summary of one stage: ``layout`` plus what ``stage_ops`` cost and hold in memory.

    Memory fields read the ops' ``peak_bytes`` and ``saved_bytes`` (0 until the memory analysis
    has stamped them).
    """
    # Only ops with MACs can change a category's sum, and most ops have none (norms, layout, element-wise):
    # the category is read off each op's module path, so skipping them saves that work.
    by_category = macs_by_category(op for op in stage_ops if op.macs)
    map_shape, map_bytes = attention_map(stage_ops)
    return StageSummary(
        index=layout.index,
        hw=layout.hw,
        tokens=layout.tokens,
        kv_tokens=layout.kv_tokens,
        dim=layout.dim,
        heads=layout.heads,
        sr_ratio=layout.sr_ratio,
        depth=layout.depth,
        params=params,
        macs=sum(op.macs for op in stage_ops),
        attention_macs=by_category[MacsCategory.ATTENTION],
        sr_macs=by_category[MacsCategory.SR],
        projection_macs=by_category[MacsCategory.PROJECTION],
        mlp_macs=by_category[MacsCategory.MLP],
        other_macs=by_category[MacsCategory.OTHER],
        attention_map_shape=map_shape,
        attention_map_bytes=map_bytes,
        output=layout.output,
        peak_activation_bytes=max((op.peak_bytes for op in stage_ops), default=0),
        saved_activation_bytes=sum(op.saved_bytes for op in stage_ops),
    )


def config_stage_summaries(
    cfg: PvtConfig, ops: Sequence[OpRecord], stage_params: Mapping[int | None, int]
) -> tuple[StageSummary, ...]:
    """Per-stage summaries of a built-in model's trace (layout from the config, costs from the ops)."""
    summaries = []
    for geo in cfg.geometry():
        i = geo.index - 1
        stage_ops = ops_of_stage(ops, geo.index)
        outputs = [op for op in stage_ops if op.label in ("stage output map", "stage norm")]
        last_op = outputs[-1] if outputs else (stage_ops[-1] if stage_ops else None)
        layout = StageLayout(
            index=geo.index,
            hw=geo.hw,
            tokens=geo.tokens,
            kv_tokens=geo.kv_tokens,
            dim=cfg.dims[i],
            heads=cfg.heads[i],
            sr_ratio=cfg.sr_ratios[i],
            depth=cfg.depths[i],
            output=None if last_op is None else last_op.output,
        )
        summaries.append(stage_summary(layout, stage_ops, stage_params.get(geo.index, 0)))
    return tuple(summaries)


def _sr_ratio(stage_ops: Sequence[OpRecord], grid_h: int, map_shape: Shape | None) -> int:
    """The stage's spatial-reduction ratio: the SR conv's kernel (linear SRA: grid over pooled size);
    1 when attention sees every token; 0 (unknown) without attention or when keys are reduced otherwise."""
    conv = next((op for op in stage_ops if op.label == "SR conv" and len(op.inputs) >= 2), None)
    if conv is None:
        return 1 if map_shape is not None and map_shape[-1] == map_shape[-2] else 0
    kernel = conv.inputs[1][-1]
    if kernel > 1:
        return kernel
    # Linear SRA: pooled to a fixed grid, so the ratio is the grid over the pooled size.
    pooled = conv.output[-2] if len(conv.output) >= 2 else 0
    return max(1, grid_h // pooled) if pooled and grid_h else 0


def _derived_layout(index: int, stage_ops: Sequence[OpRecord], geo: StageGeometry | None) -> StageLayout:
    map_shape, _ = attention_map(stage_ops)
    embed = next((op for op in stage_ops if op.kind == OpKind.PATCH_EMBED and len(op.output) == 4), None)
    q_proj = next((op for op in stage_ops if op.label in ("q projection", "qkv projection")), None)
    if geo is not None:
        hw, depth = geo.hw, geo.depth
        tokens = map_shape[-2] if map_shape else geo.tokens
        dim = q_proj.inputs[0][-1] if q_proj else geo.channels
    else:
        grid_op = embed or next((op for op in stage_ops if len(op.output) == 4), None)
        hw = (grid_op.output[-2], grid_op.output[-1]) if grid_op is not None else (0, 0)
        linear = next((op for op in stage_ops if op.kind == OpKind.LINEAR and len(op.inputs[0]) == 3), None)
        tokens = map_shape[-2] if map_shape else (linear.inputs[0][1] if linear else 0)
        dim = q_proj.inputs[0][-1] if q_proj else (embed.output[1] if embed else 0)
        depth = len({op.block for op in stage_ops if op.block is not None})
    return StageLayout(
        index=index,
        hw=hw,
        tokens=tokens,
        kv_tokens=map_shape[-1] if map_shape else tokens,
        dim=dim,
        heads=map_shape[1] if map_shape and len(map_shape) == 4 else 0,
        sr_ratio=_sr_ratio(stage_ops, hw[0], map_shape),
        depth=depth,
        # The stage's output is what its last op leaves for the next stage (or the head).
        output=stage_ops[-1].output,
    )


def derived_stage_summaries(
    ops: Sequence[OpRecord],
    stage_params: Mapping[int | None, int],
    geometry: Sequence[StageGeometry] = (),
) -> tuple[StageSummary, ...]:
    """Stage summaries of any model, read back from its op records (no config needed).

    With ``geometry`` (from :func:`pvttrace.stages.structure.derive_structure`) the grid, channels and
    depth are the data's; without it, the stage's patch-embedding output gives the grid.
    Tokens N and keys N': the attention map (or the stage's tokens); heads: the map's second
    dim; dim: the q projection's width. Facts that cannot be known are 0 (rendered ``-``).
    """
    known = {g.index: g for g in geometry}
    by_stage: dict[int, list[OpRecord]] = {}  # what ops_of_stage gives for each stage, in one pass
    for op in ops:
        if op.stage is not None:
            by_stage.setdefault(op.stage, []).append(op)
    summaries = []
    for index in sorted(by_stage):
        stage_ops = by_stage[index]
        layout = _derived_layout(index, stage_ops, known.get(index))
        summaries.append(stage_summary(layout, stage_ops, stage_params.get(index, 0)))
    return tuple(summaries)
