"""Counting conventions other than ours: what fvcore and the PVT authors' script would count.

``macs`` (ours, the default): multiply-accumulates of conv, linear, matmul, einsum and
attention; everything else 0. The other two re-cost each recorded op as that tool would:

``fvcore`` (fvcore 0.1.5, ``FlopCountAnalysis(...).total()``, whose "flops" are MACs): its
default handles for the aten ops a JIT trace records -- linear/conv/matmul/mm/bmm/addmm
without bias, einsum (two special cases, otherwise numpy's optimal contraction / 2),
layer/group/instance norm ``numel * (5 if affine else 4)``, eval batch norm
``numel * (2 if affine else 1)``, ``upsample_bilinear2d`` 4 x numel(out),
``upsample_nearest2d`` numel(out), ``adaptive_avg_pool2d`` numel(in), ``grid_sampler``
4 x numel(out). Every other op, fused ``scaled_dot_product_attention`` included, counts 0.
``nn.MultiheadAttention`` is decomposed by the JIT: its projections count, and its two
attention products only on the ``need_weights`` path without a mask (``bmm``; the masked path
uses ``baddbmm`` and the other path SDPA, which fvcore does not count).

``paper`` (``PVT@v2:classification/get_flops.py``, reference pvt.md sections 4 and 5.1):
mmcv's ``get_model_complexity_info`` hooks, matched by *exact* module type (a subclass such as
timm's ``LayerNorm`` is not counted) -- Conv incl. bias, Linear ``numel(in) * out``, BatchNorm/
GroupNorm/InstanceNorm/LayerNorm ``numel * (2 if affine)``, ReLU-family numel(out), pools
numel(in), Upsample numel(out[0]) -- plus the authors' closed-form attention term per block,
``2*h*w*(h//R)*(w//R)*C`` (linear SRA: ``2*h*w*7*7*C``) with ``h, w = H//4, W//4`` in stage 1
and halved per stage. The term replaces the attention matmuls (mmcv does not see them): it is
attributed half to each block's scores and attention@v op, or whole to its fused SDPA op, so
stage and total sums still add up. Every count here covers the whole batch (mmcv reports
per image; at batch 1 they agree).

Pure arithmetic on op records: no torch, rich or typer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pvttrace.base.errors import UserInputError
from pvttrace.costs.registry import cost_entry
from pvttrace.costs.tool_formulas import mmcv_macs
from pvttrace.records import CONVENTIONS, OpKind, OpRecord, Shape

__all__ = [
    "CONVENTION_NAMES",
    "AttentionStage",
    "Convention",
    "apply_convention",
    "as_convention",
    "fvcore_macs",
    "mmcv_macs",
    "paper_attention_term",
]

CONVENTION_NAMES = tuple(CONVENTIONS)


class Convention(StrEnum):
    """Counting conventions a trace can follow (``pvttrace.records.CONVENTIONS`` describes each)."""

    MACS = "macs"
    FVCORE = "fvcore"
    TIMM = "timm"
    PAPER = "paper"


def as_convention(value: Convention | str) -> Convention:
    """``value`` as a :class:`Convention` (a plain string that names one is accepted).

    Raises:
        UserInputError: ``value`` names no convention.
    """
    if value not in CONVENTION_NAMES:
        raise UserInputError(f"convention={value!r} must be one of {', '.join(CONVENTION_NAMES)}")
    return Convention(value)


def fvcore_macs(op: OpRecord, facts: Mapping[str, Any]) -> int:
    """What fvcore 0.1.5's default handles count for this op (0 where it has no handle)."""
    entry = cost_entry(op.op)
    return 0 if entry is None or entry.user else entry.counts["fvcore"](op, facts, None)


@dataclass(frozen=True, slots=True)
class AttentionStage:
    """What the authors' closed-form attention term needs to know about one stage."""

    index: int
    """1-based stage."""
    dim: int
    sr_ratio: int
    linear: bool


def paper_attention_term(stage: AttentionStage, height: int, width: int) -> int:
    """One block's attention MACs as ``get_flops.py`` writes them (``sra_flops`` / ``li_sra_flops``).

    ``h, w = H // 4, W // 4`` in stage 1, ``H // 8`` in stage 2 ... regardless of the real grid.

    Raises:
        UserInputError: the stage index is not 1-based.
    """
    if stage.index < 1:
        raise UserInputError(f"attention stage index={stage.index} must be 1 or more (stages are 1-based)")
    scale = 4 << (stage.index - 1)
    h, w = height // scale, width // scale
    if stage.linear:
        return 2 * h * w * 7 * 7 * stage.dim
    r = max(stage.sr_ratio, 1)
    return 2 * h * w * (h // r) * (w // r) * stage.dim


_ATTENTION_PRODUCTS = frozenset({"scores q@k^T", "attention@v"})


def _with_paper_term(
    ops: Sequence[OpRecord], stages: Sequence[AttentionStage], input_shape: Shape
) -> tuple[OpRecord, ...]:
    batch, height, width = input_shape[0], input_shape[-2], input_shape[-1]
    terms = {s.index: batch * paper_attention_term(s, height, width) for s in stages}
    out = list(ops)
    for i, op in enumerate(ops):
        if op.stage not in terms:
            continue
        term = terms[op.stage]
        if op.kind == OpKind.SDPA:
            out[i] = replace(op, macs=term)
        elif op.kind == OpKind.MATMUL and op.label in _ATTENTION_PRODUCTS:
            # The term covers both products; it is even, so each gets half exactly.
            out[i] = replace(op, macs=term // 2)
    return tuple(out)


def apply_convention(
    convention: str,
    ops: Sequence[OpRecord],
    facts: Sequence[Mapping[str, Any]],
    module_types: Mapping[str, str],
    *,
    input_shape: Shape,
    attention_stages: Sequence[AttentionStage] = (),
) -> tuple[OpRecord, ...]:
    """Re-cost ``ops`` (recorded under ``macs``) in ``convention``: each op as its registry entry's
    count for that convention says (ops without an entry count 0), then, for ``paper``, the
    closed-form attention term.

    Args:
        convention: a key of ``records.CONVENTIONS``.
        ops: the records, with ``facts[i]`` the non-tensor facts of ``ops[i]``'s call.
        module_types: module path -> qualified class name (``torch.nn.modules.linear.Linear``).
        input_shape: the traced batch [B, C, H, W] (``paper``'s closed form uses H and W).
        attention_stages: the PVT stages for ``paper``'s closed-form term (empty: no term, e.g.
            a model that is not PVT-like).

    Raises:
        UserInputError: an unknown convention, one facts mapping per op missing, or an input shape
            without H and W while ``paper`` has attention stages to cost.
    """
    if convention not in CONVENTIONS:
        raise UserInputError(f"convention={convention!r} must be one of {', '.join(CONVENTION_NAMES)}")
    if len(facts) != len(ops):
        raise UserInputError(f"facts has {len(facts)} entries but ops has {len(ops)}; it needs one per op")
    if convention == "paper" and attention_stages and len(input_shape) < 3:
        raise UserInputError(
            f"input_shape={list(input_shape)} must be [B, C, H, W] (at least 3 dims) for paper's attention term"
        )
    if convention == "macs":
        return tuple(ops)
    out = []
    for i, op in enumerate(ops):
        entry = cost_entry(op.op)
        macs = 0 if entry is None else entry.counts[convention](op, facts[i], module_types.get(op.module))
        out.append(op if macs == op.macs else replace(op, macs=macs))
    if convention == "paper":
        return _with_paper_term(out, attention_stages, input_shape)
    return tuple(out)
