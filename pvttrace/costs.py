"""Cost rules: which kind each torch function is, and its MACs as a pure function of shapes.

Pure data and arithmetic; no torch import. The convention (``records.CONVENTION``): a
multiply-accumulate is one MAC; only conv, linear, matmul and fused attention cost MACs.
Every other op known here costs 0 by rule; an op missing from ``OP_KINDS`` is recorded
with 0 MACs and flagged (``CostRule.NONE``) rather than dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pvttrace.records import CostRule, OpKind, Shape

__all__ = ["OP_KINDS", "conv_macs", "cost_rule", "linear_macs", "matmul_macs", "sdpa_macs"]


def _names(kind: OpKind, *names: str) -> dict[str, OpKind]:
    return dict.fromkeys(names, kind)


#: Torch function name (``torch.overrides.resolve_name`` without ``torch.``) -> kind.
OP_KINDS: dict[str, OpKind] = {
    **_names(OpKind.CONV, "nn.functional.conv1d", "nn.functional.conv2d", "nn.functional.conv3d", "conv2d"),
    **_names(OpKind.LINEAR, "nn.functional.linear", "_C._nn.linear"),
    **_names(
        OpKind.MATMUL,
        "Tensor.matmul",
        "Tensor.__matmul__",
        "Tensor.__rmatmul__",
        "matmul",
        "Tensor.bmm",
        "bmm",
        "Tensor.mm",
        "mm",
    ),
    **_names(OpKind.SDPA, "nn.functional.scaled_dot_product_attention", "_C._nn.scaled_dot_product_attention"),
    **_names(
        OpKind.NORM,
        "nn.functional.layer_norm",
        "layer_norm",
        "nn.functional.group_norm",
        "nn.functional.batch_norm",
        "nn.functional.rms_norm",
    ),
    **_names(OpKind.SOFTMAX, "Tensor.softmax", "nn.functional.softmax", "softmax", "_C._nn.softmax"),
    **_names(
        OpKind.ACTIVATION,
        "nn.functional.gelu",
        "_C._nn.gelu",
        "nn.functional.relu",
        "relu",
        "Tensor.relu",
        "nn.functional.silu",
        "nn.functional.hardswish",
        "sigmoid",
        "Tensor.sigmoid",
        "tanh",
        "Tensor.tanh",
    ),
    **_names(OpKind.DROPOUT, "nn.functional.dropout", "dropout"),
    **_names(
        OpKind.ELEMENTWISE,
        "Tensor.add",
        "Tensor.__add__",
        "Tensor.__radd__",
        "Tensor.__iadd__",
        "Tensor.add_",
        "add",
        "Tensor.mul",
        "Tensor.__mul__",
        "Tensor.__rmul__",
        "Tensor.__imul__",
        "Tensor.mul_",
        "mul",
        "Tensor.sub",
        "Tensor.__sub__",
        "Tensor.div",
        "Tensor.__truediv__",
    ),
    **_names(
        OpKind.POOL,
        "nn.functional.adaptive_avg_pool2d",
        "_C._nn.adaptive_avg_pool2d",
        "nn.functional.avg_pool2d",
        "_C._nn.avg_pool2d",
        "nn.functional.max_pool2d",
        "nn.functional._max_pool2d",
    ),
    **_names(OpKind.INTERPOLATE, "nn.functional.interpolate"),
    **_names(OpKind.REDUCE, "Tensor.mean", "mean", "Tensor.sum", "sum"),
    **_names(OpKind.RESHAPE, "Tensor.reshape", "reshape"),
    **_names(OpKind.VIEW, "Tensor.view"),
    **_names(OpKind.PERMUTE, "Tensor.permute", "permute"),
    **_names(OpKind.TRANSPOSE, "Tensor.transpose", "transpose", "Tensor.t", "Tensor.T.__get__", "Tensor.mT.__get__"),
    **_names(OpKind.FLATTEN, "Tensor.flatten", "flatten", "Tensor.unflatten"),
    **_names(OpKind.CONTIGUOUS, "Tensor.contiguous"),
    **_names(
        OpKind.INDEX,
        "Tensor.__getitem__",
        "Tensor.unbind",
        "unbind",
        "Tensor.chunk",
        "chunk",
        "Tensor.split",
        "split",
        "Tensor.select",
        "Tensor.narrow",
    ),
    **_names(OpKind.EXPAND, "Tensor.expand", "Tensor.expand_as"),
    **_names(OpKind.CONCAT, "cat", "concat", "stack"),
}

#: Kinds whose MACs come from a formula; every other known kind costs 0 by rule.
MAC_KINDS = frozenset({OpKind.CONV, OpKind.PATCH_EMBED, OpKind.SR_CONV, OpKind.DW_CONV, OpKind.LINEAR, OpKind.MATMUL, OpKind.SDPA})


def cost_rule(op_name: str) -> CostRule:
    """How an op name is costed: by a MAC formula, zero by rule, or not known (flagged)."""
    kind = OP_KINDS.get(op_name)
    if kind is None:
        return CostRule.NONE
    return CostRule.MACS if kind in MAC_KINDS else CostRule.ZERO


def linear_macs(output: Shape, weight: Shape) -> int:
    """``F.linear``: every output element is a dot product of length in_features (bias not counted)."""
    return math.prod(output) * weight[-1]


def conv_macs(output: Shape, weight: Shape) -> int:
    """``F.conv*d``: every output element costs Cin/groups x kernel volume (weight is [Cout, Cin/g, *k])."""
    return math.prod(output) * math.prod(weight[1:])


def matmul_macs(a: Shape, b: Shape, output: Shape) -> int:
    """``a @ b`` with broadcasting: every output element is a dot product of length k."""
    k = a[-1] if a else 1
    if len(b) == 1 and len(a) >= 1:
        k = b[0]
    return math.prod(output) * k


def sdpa_macs(q: Shape, k: Shape, v: Shape) -> int:
    """Fused attention: scores ``q@k^T`` (L x S x E) plus ``attn@v`` (L x S x Ev), per batch and head."""
    batch_heads = math.prod(q[:-2]) if len(q) > 2 else 1
    length, embed = q[-2], q[-1]
    keys = k[-2]
    return batch_heads * length * keys * (embed + v[-1])


def op_macs(kind: OpKind, inputs: Sequence[Shape], output: Shape) -> int:
    """MACs of one op from its kind and shapes (0 for kinds without a formula)."""
    if kind == OpKind.LINEAR and len(inputs) >= 2:
        return linear_macs(output, inputs[1])
    if kind in (OpKind.CONV, OpKind.PATCH_EMBED, OpKind.SR_CONV, OpKind.DW_CONV) and len(inputs) >= 2:
        return conv_macs(output, inputs[1])
    if kind == OpKind.MATMUL and len(inputs) >= 2:
        return matmul_macs(inputs[0], inputs[1], output)
    if kind == OpKind.SDPA and len(inputs) >= 3:
        return sdpa_macs(inputs[0], inputs[1], inputs[2])
    return 0
