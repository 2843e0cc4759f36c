"""What other counting tools count for one op: fvcore 0.1.5's aten handles and mmcv's module hooks.

Each function takes the op's record, the non-tensor facts of its call (``pvttrace.costs.callfacts``)
and the qualified class of the module that issued it, and returns that tool's MACs for the op.
The registry (:mod:`pvttrace.costs.registry`) says which op name uses which of them; what each tool
counts overall is told in :mod:`pvttrace.costs.conventions`. Pure arithmetic: no torch, rich or typer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pvttrace.costs.formulas import conv_macs, einsum_macs, required_fact
from pvttrace.records import OpKind, OpRecord, Shape

__all__ = [
    "fvcore_adaptive_avg_pool",
    "fvcore_addmm",
    "fvcore_bmm",
    "fvcore_conv",
    "fvcore_conv_transpose",
    "fvcore_einsum",
    "fvcore_grid_sample",
    "fvcore_interpolate",
    "fvcore_linear",
    "fvcore_matmul",
    "fvcore_mha",
    "fvcore_norm",
    "mmcv_macs",
]

_CONVS = frozenset({OpKind.CONV, OpKind.PATCH_EMBED, OpKind.SR_CONV, OpKind.DW_CONV})


def _prod(shape: Shape) -> int:
    return math.prod(shape)


# ---------------------------------------------------------------------------------------- fvcore
def fvcore_linear(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    """fvcore's linear handle: numel(input) x out_features (no bias)."""
    inputs = op.inputs
    return _prod(inputs[0]) * inputs[1][0] if len(inputs) >= 2 else 0


def fvcore_conv(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    """fvcore's conv handle: the same count as ours (no bias)."""
    return conv_macs(op.output, op.inputs[1]) if len(op.inputs) >= 2 else 0


def fvcore_conv_transpose(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    """fvcore's conv handle on a transposed conv: batch x weight volume x the input's spatial size."""
    inputs = op.inputs
    return inputs[0][0] * _prod(inputs[1]) * _prod(inputs[0][2:]) if len(inputs) >= 2 else 0


def _einsum_count(equation: str, shapes: Sequence[Shape]) -> int:
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
            return math.floor(float(line.split(":")[-1]) / 2)
    return einsum_macs(equation, shapes)


def fvcore_einsum(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    """fvcore's einsum handle (see :func:`_einsum_count`)."""
    return _einsum_count(str(facts.get("equation", "")), op.inputs) if len(op.inputs) >= 2 else 0


def fvcore_bmm(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    """fvcore's bmm handle: [n, c, t] @ [n, t, d] costs n x c x t x d."""
    inputs = op.inputs
    if len(inputs) < 2:
        return 0
    n, c, t = inputs[0]
    return n * c * t * inputs[1][-1]


def fvcore_addmm(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    """fvcore's addmm handle: the product of the two matrices, bias not counted."""
    inputs = op.inputs
    return inputs[1][0] * inputs[1][1] * inputs[2][1] if len(inputs) >= 3 else 0


def fvcore_matmul(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    """fvcore's matmul handle: numel(a) x b's last dim (vector operands: our count)."""
    inputs, output = op.inputs, op.output
    if len(inputs) < 2:
        return 0
    a, b = (inputs[1], inputs[0]) if op.op == "Tensor.__rmatmul__" else (inputs[0], inputs[1])
    if len(a) >= 2 and len(b) >= 2:
        return _prod(a) * b[-1]
    return _prod(output) * (a[-1] if a else 1)


def fvcore_mha(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    """``nn.MultiheadAttention`` as the JIT decomposes it: projections always, the two attention
    products only on the ``need_weights`` path without a mask (``bmm``)."""
    if len(op.inputs) < 3:
        return 0
    query, key, value = op.inputs[0], op.inputs[1], op.inputs[2]
    embed = int(required_fact(facts, "embed_dim", "multi_head_attention_forward"))
    length, keys = query[0], key[0]
    batch = query[1] if len(query) == 3 else 1
    projections = 2 * length * batch * embed * embed + keys * batch * (key[-1] + value[-1]) * embed
    if facts.get("need_weights", True) and not facts.get("masked", False):
        projections += 2 * batch * length * (keys + int(facts.get("extra_keys", 0))) * embed
    return projections


def fvcore_norm(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    """fvcore's norm handles: numel x (5 if affine else 4); eval batch norm numel x (2 if affine else 1)."""
    if not op.inputs:
        return 0
    affine = bool(facts.get("affine", False))
    if op.op == "nn.functional.batch_norm" and not facts.get("training", False):
        return _prod(op.inputs[0]) * (2 if affine else 1)
    return _prod(op.inputs[0]) * (5 if affine else 4)


def fvcore_interpolate(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    """fvcore's upsample handles on 2-D maps: bilinear 4 x numel(out), nearest numel(out), others 0."""
    if len(op.output) != 4:
        return 0
    return {"bilinear": 4, "nearest": 1}.get(str(facts.get("mode")), 0) * _prod(op.output)


def fvcore_grid_sample(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    """fvcore's grid_sampler handle: 4 x numel(out)."""
    return 4 * _prod(op.output)


def fvcore_adaptive_avg_pool(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    """fvcore's adaptive_avg_pool2d handle: numel(input)."""
    return _prod(op.inputs[0]) if op.inputs else 0


# ---------------------------------------------------------------------------------------- mmcv
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
