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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pvttrace.base.errors import UserInputError
from pvttrace.costs.rules import (
    ADDMM_OPS,
    CONV_TRANSPOSE_OPS,
    EINSUM_OPS,
    conv_macs,
    einsum_macs,
    registered_cost_rules,
)
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


_CONVS = frozenset({OpKind.CONV, OpKind.PATCH_EMBED, OpKind.SR_CONV, OpKind.DW_CONV})


def _prod(shape: Shape) -> int:
    return math.prod(shape)


# ---------------------------------------------------------------------------------------- fvcore
def _fvcore_einsum(equation: str, shapes: Sequence[Shape]) -> int:
    """fvcore's einsum handle: two hard-coded bmm spellings, else numpy's optimal path flops / 2."""
    text = equation.replace(" ", "")
    letters = list(dict.fromkeys(c for c in text if c.isalpha()))
    canonical = text.translate({ord(c): 97 + i for i, c in enumerate(letters)})
    if canonical == "abc,abd->acd" and len(shapes) == 2:
        n, c, t = shapes[0]
        return n * c * t * shapes[-1][-1]
    if canonical == "abc,adc->adb" and len(shapes) == 2:
        n, t, g = shapes[0]
        return n * t * g * shapes[-1][1]
    try:
        import numpy as np
    except ImportError:  # numpy ships with torch's usual installs; without it, use our count
        return einsum_macs(equation, shapes)
    # Zero-stride views give numpy the shapes without allocating anything.
    operands = [np.broadcast_to(np.zeros((), dtype=np.float32), s) for s in shapes]
    report = np.einsum_path(text, *operands, optimize="optimal")[1]
    for line in report.split("\n"):
        if "optimized flop" in line.lower():
            return int(math.floor(float(line.split(":")[-1]) / 2))
    return einsum_macs(equation, shapes)


def _fvcore_mha(op: OpRecord, facts: Mapping[str, Any]) -> int:
    query, key, value = op.inputs[0], op.inputs[1], op.inputs[2]
    embed = int(facts["embed_dim"])
    length, keys = query[0], key[0]
    batch = query[1] if len(query) == 3 else 1
    projections = 2 * length * batch * embed * embed + keys * batch * (key[-1] + value[-1]) * embed
    if facts.get("need_weights", True) and not facts.get("masked", False):
        projections += 2 * batch * length * (keys + int(facts.get("extra_keys", 0))) * embed
    return projections


def fvcore_macs(op: OpRecord, facts: Mapping[str, Any]) -> int:
    """What fvcore 0.1.5's default handles count for this op (0 where it has no handle)."""
    name, inputs, output = op.op, op.inputs, op.output
    if op.kind == OpKind.LINEAR and len(inputs) >= 2:
        return _prod(inputs[0]) * inputs[1][0]
    if op.kind in _CONVS and len(inputs) >= 2:
        if name in CONV_TRANSPOSE_OPS:
            return inputs[0][0] * _prod(inputs[1]) * _prod(inputs[0][2:])
        return conv_macs(output, inputs[1])
    if op.kind == OpKind.MATMUL and len(inputs) >= 2:
        if name in EINSUM_OPS:
            return _fvcore_einsum(str(facts.get("equation", "")), inputs)
        if name in ("bmm", "Tensor.bmm"):
            n, c, t = inputs[0]
            return n * c * t * inputs[1][-1]
        if name in ("addmm", "Tensor.addmm") and len(inputs) >= 3:
            return inputs[1][0] * inputs[1][1] * inputs[2][1]
        if name in ADDMM_OPS:  # baddbmm: no fvcore handle
            return 0
        a, b = (inputs[1], inputs[0]) if name == "Tensor.__rmatmul__" else (inputs[0], inputs[1])
        if len(a) >= 2 and len(b) >= 2:
            return _prod(a) * b[-1]
        return _prod(output) * (a[-1] if a else 1)
    if op.kind == OpKind.MHA and len(inputs) >= 3:
        return _fvcore_mha(op, facts)
    if op.kind == OpKind.NORM and inputs:
        affine = bool(facts.get("affine", False))
        if name == "nn.functional.batch_norm" and not facts.get("training", False):
            return _prod(inputs[0]) * (2 if affine else 1)
        if name in (
            "nn.functional.layer_norm",
            "nn.functional.group_norm",
            "nn.functional.instance_norm",
            "layer_norm",
        ):
            return _prod(inputs[0]) * (5 if affine else 4)
        if name == "nn.functional.batch_norm":
            return _prod(inputs[0]) * (5 if affine else 4)
        return 0
    if name == "nn.functional.interpolate" and len(output) == 4:
        mode = facts.get("mode")
        return {"bilinear": 4, "nearest": 1}.get(str(mode), 0) * _prod(output)
    if name == "nn.functional.grid_sample":
        return 4 * _prod(output)
    if name in ("nn.functional.adaptive_avg_pool2d", "_C._nn.adaptive_avg_pool2d") and inputs:
        return _prod(inputs[0])
    return 0


# ---------------------------------------------------------------------------------------- paper
def _torch_nn(*names: str) -> frozenset[str]:
    return frozenset(f"torch.nn.modules.{name}" for name in names)


_MMCV_CONV = _torch_nn("conv.Conv1d", "conv.Conv2d", "conv.Conv3d")
_MMCV_DECONV = _torch_nn("conv.ConvTranspose2d")
_MMCV_RELU = _torch_nn(*(f"activation.{n}" for n in ("ReLU", "PReLU", "ELU", "LeakyReLU", "ReLU6")))
_MMCV_POOL = _torch_nn(
    *(f"pooling.{kind}Pool{d}d" for kind in ("Max", "Avg", "AdaptiveMax", "AdaptiveAvg") for d in (1, 2, 3))
)
_MMCV_NORM = _torch_nn(
    "batchnorm.BatchNorm1d",
    "batchnorm.BatchNorm2d",
    "batchnorm.BatchNorm3d",
    "normalization.GroupNorm",
    "normalization.LayerNorm",
    "instancenorm.InstanceNorm1d",
    "instancenorm.InstanceNorm2d",
    "instancenorm.InstanceNorm3d",
)
_MMCV_LINEAR = _torch_nn("linear.Linear")
_MMCV_UPSAMPLE = _torch_nn("upsampling.Upsample")


def mmcv_macs(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    """What mmcv's flops-counter hook of the op's module counts for it (0 for unhooked module types)."""
    inputs, output = op.inputs, op.output
    if module_type is None or not inputs:
        return 0
    if module_type in _MMCV_CONV and op.kind in _CONVS and len(inputs) >= 2:
        return conv_macs(output, inputs[1]) + (_prod(output) if facts.get("bias") else 0)
    if module_type in _MMCV_DECONV and op.kind in _CONVS and len(inputs) >= 2:
        macs = inputs[0][0] * _prod(inputs[0][2:]) * _prod(inputs[1])
        # mmcv's deconv hook multiplies output_height by itself for the bias term.
        return macs + (output[1] * output[0] * output[2] * output[2] if facts.get("bias") else 0)
    if module_type in _MMCV_RELU and op.kind == OpKind.ACTIVATION:
        return _prod(output)
    if module_type in _MMCV_POOL and op.kind == OpKind.POOL:
        return _prod(inputs[0])
    if module_type in _MMCV_NORM and op.kind == OpKind.NORM:
        return _prod(inputs[0]) * (2 if facts.get("affine") else 1)
    if module_type in _MMCV_LINEAR and op.kind == OpKind.LINEAR:
        return _prod(inputs[0]) * output[-1]
    if module_type in _MMCV_UPSAMPLE and op.kind == OpKind.INTERPOLATE:
        return _prod(output[1:])
    return 0


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
    """
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
    """Re-cost ``ops`` (recorded under ``macs``) in ``convention``.

    Args:
        convention: a key of ``records.CONVENTIONS``.
        ops: the records, with ``facts[i]`` the non-tensor facts of ``ops[i]``'s call.
        module_types: module path -> qualified class name (``torch.nn.modules.linear.Linear``).
        input_shape: the traced batch [B, C, H, W] (``paper``'s closed form uses H and W).
        attention_stages: the PVT stages for ``paper``'s closed-form term (empty: no term, e.g.
            a model that is not PVT-like).

    Raises:
        ValueError: an unknown convention.
    """
    if convention == "macs":
        return tuple(ops)
    # Ops with a user rule (register_cost_rule) keep its count in every convention.
    user = registered_cost_rules()
    if convention in ("fvcore", "timm"):
        # timm's benchmark counts with fvcore; the explicit attention is set on the model before tracing.
        return tuple(op if op.op in user else replace(op, macs=fvcore_macs(op, facts[i])) for i, op in enumerate(ops))
    if convention == "paper":
        hooked = [
            op if op.op in user else replace(op, macs=mmcv_macs(op, facts[i], module_types.get(op.module)))
            for i, op in enumerate(ops)
        ]
        return _with_paper_term(hooked, attention_stages, input_shape)
    raise ValueError(f"convention={convention!r} must be one of {', '.join(CONVENTION_NAMES)}")
