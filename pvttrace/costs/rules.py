"""Cost rules: which kind each torch function is, and its MACs as a pure function of shapes.

Pure data and arithmetic; no torch import. The convention (``records.CONVENTION``): a
multiply-accumulate is one MAC; only conv, linear, matmul and fused attention cost MACs.
Every other op known here costs 0 by rule; an op missing from ``OP_KINDS`` is recorded
with 0 MACs and flagged (``CostRule.NONE``) rather than dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from pvttrace.records import CostRule, OpKind, Shape

__all__ = [
    "OP_KINDS",
    "CostFormula",
    "call_macs",
    "conv_macs",
    "conv_transpose_macs",
    "cost_rule",
    "einsum_macs",
    "linear_macs",
    "matmul_macs",
    "mha_macs",
    "register_cost_rule",
    "registered_cost_rules",
    "sdpa_macs",
]


def _names(kind: OpKind, *names: str) -> dict[str, OpKind]:
    return dict.fromkeys(names, kind)


#: Torch function name (``torch.overrides.resolve_name`` without ``torch.``) -> kind.
OP_KINDS: dict[str, OpKind] = {
    **_names(OpKind.CONV, "nn.functional.conv1d", "nn.functional.conv2d", "nn.functional.conv3d", "conv2d"),
    **_names(
        OpKind.CONV, "conv1d", "conv3d", *(f"{p}conv_transpose{d}d" for p in ("", "nn.functional.") for d in (1, 2, 3))
    ),
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
        "addmm",
        "Tensor.addmm",
        "baddbmm",
        "Tensor.baddbmm",
        "einsum",
        "functional.einsum",
    ),
    **_names(OpKind.SDPA, "nn.functional.scaled_dot_product_attention", "_C._nn.scaled_dot_product_attention"),
    **_names(OpKind.MHA, "nn.functional.multi_head_attention_forward"),
    **_names(
        OpKind.NORM,
        "nn.functional.layer_norm",
        "layer_norm",
        "nn.functional.group_norm",
        "nn.functional.batch_norm",
        "nn.functional.rms_norm",
        "nn.functional.instance_norm",
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
        "nn.functional.leaky_relu",
        "nn.functional.relu6",
        "nn.functional.hardtanh",
        "nn.functional.elu",
        "nn.functional.hardsigmoid",
        "nn.functional.mish",
        "nn.functional.silu",
        "Tensor.exp",
        "exp",
    ),
    **_names(OpKind.DROPOUT, "nn.functional.dropout", "dropout", "nn.functional.dropout2d"),
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
        "Tensor.__rsub__",
        "Tensor.__isub__",
        "Tensor.__itruediv__",
        "Tensor.mul_",
        "Tensor.div_",
        "Tensor.pow",
        "Tensor.__pow__",
        "Tensor.sqrt",
        "Tensor.rsqrt",
        "Tensor.clamp",
        "Tensor.masked_fill",
        "Tensor.where",
        "where",
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
    **_names(OpKind.INTERPOLATE, "nn.functional.interpolate", "nn.functional.grid_sample"),
    **_names(OpKind.REDUCE, "Tensor.mean", "mean", "Tensor.sum", "sum", "Tensor.amax", "Tensor.max"),
    **_names(OpKind.RESHAPE, "Tensor.reshape", "reshape"),
    **_names(
        OpKind.VIEW, "Tensor.view", "Tensor.view_as", "Tensor.squeeze", "Tensor.unsqueeze", "squeeze", "unsqueeze"
    ),
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
    **_names(
        OpKind.EXPAND, "Tensor.expand", "Tensor.expand_as", "Tensor.repeat", "nn.functional.pad", "Tensor.roll", "roll"
    ),
    **_names(OpKind.CONCAT, "cat", "concat", "stack"),
    # Losses of whole models (pvttrace.tracing.heads): softmax-like normalisations and reductions, no MACs.
    **_names(
        OpKind.SOFTMAX,
        "nn.functional.cross_entropy",
        "nn.functional.log_softmax",
        "Tensor.log_softmax",
        "nn.functional.nll_loss",
    ),
    **_names(OpKind.ELEMENTWISE, "nn.functional.l1_loss"),
    # Tensors a forward creates (labels, targets): memory, no arithmetic.
    **_names(OpKind.OTHER, "zeros", "zeros_like", "ones_like", "Tensor.new_zeros", "Tensor.new_ones", "empty"),
}

#: Kinds whose MACs come from a formula; every other known kind costs 0 by rule.
MAC_KINDS = frozenset(
    {
        OpKind.CONV,
        OpKind.PATCH_EMBED,
        OpKind.SR_CONV,
        OpKind.DW_CONV,
        OpKind.LINEAR,
        OpKind.MATMUL,
        OpKind.SDPA,
        OpKind.MHA,
    }
)

EINSUM_OPS = frozenset({"einsum", "functional.einsum"})
ADDMM_OPS = frozenset({"addmm", "Tensor.addmm", "baddbmm", "Tensor.baddbmm"})
CONV_TRANSPOSE_OPS = frozenset(f"{p}conv_transpose{d}d" for p in ("", "nn.functional.") for d in (1, 2, 3))


class CostFormula(Protocol):
    """A user cost rule: MACs of one call from its tensor arguments' shapes and the output's shape."""

    def __call__(self, *input_shapes: Shape, out_shape: Shape) -> int: ...


#: User rules (``register_cost_rule``): op name -> (kind, formula). Consulted before the built-in table.
_USER_RULES: dict[str, tuple[OpKind, CostFormula]] = {}


def register_cost_rule(
    op_name: str, *, kind: OpKind | str = OpKind.OTHER, replace: bool = False
) -> Callable[[CostFormula], CostFormula]:
    """Decorator: count an op that pvttrace has no rule for (a custom op, a torch function it lacks).

    ``op_name`` is the name ``pvttrace run --coverage`` lists for the op (``cumsum``,
    ``ops.mylib.fused_block.default`` ...). The formula gets the shapes of the call's tensor
    arguments in order and ``out_shape``, and returns MACs (a non-negative int); it should be pure,
    like ``torch.utils.flop_counter.register_flop_formula``'s. It applies in every convention.

    Example:
        >>> @register_cost_rule("cumsum")
        ... def cumsum_macs(x_shape, *_, out_shape):
        ...     return math.prod(out_shape)

    Raises:
        ValueError: ``op_name`` already has a rule (built-in or registered) and ``replace`` is False.
    """
    op_kind = OpKind(kind)

    def register(formula: CostFormula) -> CostFormula:
        if not replace and (op_name in _USER_RULES or op_name in OP_KINDS):
            raise ValueError(f"op {op_name!r} already has a cost rule; pass replace=True to override it")
        _USER_RULES[op_name] = (op_kind, formula)
        return formula

    return register


def registered_cost_rules() -> dict[str, OpKind]:
    """The op names with a user rule and their kinds."""
    return {name: kind for name, (kind, _) in _USER_RULES.items()}


def user_rule_macs(op_name: str, inputs: Sequence[Shape], output: Shape) -> int | None:
    """MACs from a registered rule, or None when ``op_name`` has none.

    Raises:
        ValueError: the formula returned something other than a non-negative int.
    """
    rule = _USER_RULES.get(op_name)
    if rule is None:
        return None
    value = rule[1](*inputs, out_shape=output)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"cost rule for {op_name!r} returned {value!r}; it must return a non-negative int of MACs")
    return value


def op_kind(op_name: str) -> OpKind:
    """The kind of an op name: a user rule's, the built-in table's, else ``other``."""
    rule = _USER_RULES.get(op_name)
    return rule[0] if rule is not None else OP_KINDS.get(op_name, OpKind.OTHER)


def cost_rule(op_name: str) -> CostRule:
    """How an op name is costed: by a MAC formula (built-in or registered), zero by rule, or not known (flagged)."""
    if op_name in _USER_RULES:
        return CostRule.MACS
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


def conv_transpose_macs(input_shape: Shape, weight: Shape) -> int:
    """``F.conv_transpose*d``: every input element is scattered over Cout/groups x kernel volume.

    The weight is [Cin, Cout/g, *k], so that is ``numel(input) * prod(weight[1:])``.
    """
    return math.prod(input_shape) * math.prod(weight[1:])


def _einsum_operands(equation: str, shapes: Sequence[Shape]) -> tuple[list[str], str, dict[str, int]]:
    """Split an einsum equation into per-operand subscripts and the output, expanding ``...``."""
    text = equation.replace(" ", "")
    lhs, arrow, rhs = text.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum equation {equation!r} has {len(terms)} operand(s) but {len(shapes)} shape(s)")
    ellipsis_rank = max(
        (len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes, strict=True) if "..." in t), default=0
    )
    spare = [chr(c) for c in range(ord("A"), ord("Z") + 1) if chr(c) not in text][:ellipsis_rank]
    sizes: dict[str, int] = {}
    expanded: list[str] = []
    for term, shape in zip(terms, shapes, strict=True):
        if "..." in term:
            rank = len(shape) - len(term.replace("...", ""))
            term = term.replace("...", "".join(spare[ellipsis_rank - rank :]))
        for letter, size in zip(term, shape, strict=False):
            sizes[letter] = max(sizes.get(letter, 1), size)
        expanded.append(term)
    if arrow:
        out = rhs.replace("...", "".join(spare))
    else:  # implicit output: broadcast dims, then letters that appear once, alphabetically
        counts = {c: "".join(expanded).count(c) for c in sizes}
        out = "".join(spare) + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in spare))
    return expanded, out, sizes


def einsum_macs(equation: str, shapes: Sequence[Shape]) -> int:
    """``torch.einsum``: contract operands left to right; each pairwise product costs the product of
    the sizes of every index it involves (the same count as the equivalent ``bmm``). One operand: 0.
    """
    terms, out, sizes = _einsum_operands(equation, shapes)
    if len(terms) < 2:
        return 0
    total = 0
    current = terms[0]
    for position in range(1, len(terms)):
        nxt = terms[position]
        involved = set(current) | set(nxt)
        total += math.prod(sizes[c] for c in involved)
        later = set(out).union(*terms[position + 1 :])
        current = "".join(sorted(c for c in involved if c in later))
    return total


def mha_macs(
    query: Shape,
    key: Shape,
    value: Shape,
    *,
    embed_dim: int,
    extra_keys: int = 0,
) -> int:
    """``F.multi_head_attention_forward`` (``nn.MultiheadAttention``), costed by formula because the
    tracer does not see its nested calls: q/k/v in-projections, scores, attn@v and the out-projection.

    Shapes are sequence-first [L, N, E] (or unbatched [L, E]); ``extra_keys`` counts ``bias_k``
    and ``add_zero_attn`` slots appended to the keys.
    """
    length = query[0]
    batch = query[1] if len(query) == 3 else 1
    keys = key[0]
    in_proj = length * batch * embed_dim * embed_dim + keys * batch * (key[-1] + value[-1]) * embed_dim
    attention = 2 * batch * length * (keys + extra_keys) * embed_dim
    out_proj = length * batch * embed_dim * embed_dim
    return in_proj + attention + out_proj


def call_macs(name: str, kind: OpKind, inputs: Sequence[Shape], output: Shape, facts: Mapping[str, Any]) -> int:
    """MACs of one recorded call: :func:`op_macs` plus the ops whose cost needs a non-tensor argument
    (``facts``: the einsum equation, MHA's embed dim) or other operand positions (addmm, transposed conv).
    """
    user = user_rule_macs(name, inputs, output)
    if user is not None:
        return user
    if name in EINSUM_OPS:
        return einsum_macs(str(facts["equation"]), inputs)
    if kind == OpKind.MHA:
        return mha_macs(
            inputs[0], inputs[1], inputs[2], embed_dim=int(facts["embed_dim"]), extra_keys=int(facts["extra_keys"])
        )
    if name in ADDMM_OPS and len(inputs) >= 3:
        return matmul_macs(inputs[1], inputs[2], output)
    if name in CONV_TRANSPOSE_OPS and len(inputs) >= 2:
        return conv_transpose_macs(inputs[0], inputs[1])
    return op_macs(kind, inputs, output)
