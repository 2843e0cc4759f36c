"""The one cost registry: per torch op name, its kind, MAC formula, MAC category and convention counts.

Every cost decision about an op name lives in one :class:`CostEntry`, filled at import time by
:func:`cost_rule_for` (ops with a MAC formula, used as a decorator) and :func:`zero_by_rule` (ops that
cost 0 MACs by rule). Both raise on an op name registered twice, as torch's ``register_flop_formula``
does, so the table cannot list an op under two kinds. Users add ops through
:func:`register_cost_rule`, which needs ``replace=True`` to override a rule.

Our convention (``records.CONVENTION``): a multiply-accumulate is one MAC; only conv, linear, matmul
and attention cost MACs. An op missing from the registry is recorded with 0 MACs and flagged
(``CostRule.NONE``) rather than dropped. Pure data and arithmetic: no torch, rich or typer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from pvttrace.base.errors import UserInputError
from pvttrace.costs.formulas import (
    conv_macs,
    conv_transpose_macs,
    einsum_macs,
    linear_macs,
    matmul_macs,
    mha_macs,
    required_fact,
    sdpa_macs,
)
from pvttrace.costs.tool_formulas import (
    fvcore_adaptive_avg_pool,
    fvcore_addmm,
    fvcore_bmm,
    fvcore_conv,
    fvcore_conv_transpose,
    fvcore_einsum,
    fvcore_grid_sample,
    fvcore_interpolate,
    fvcore_linear,
    fvcore_matmul,
    fvcore_mha,
    fvcore_norm,
    mmcv_macs,
)
from pvttrace.records import CONVENTIONS, CostRule, MacsCategory, OpKind, OpRecord, Shape

__all__ = [
    "ConventionCount",
    "CostEntry",
    "CostFormula",
    "FactsNeeded",
    "MacsFormula",
    "conv_role",
    "cost_entries",
    "cost_entry",
    "cost_rule",
    "cost_rule_for",
    "facts_needed",
    "macs_by_category",
    "macs_category",
    "op_kind",
    "record_macs",
    "register_cost_rule",
    "registered_cost_rules",
    "zero_by_rule",
]

MacsFormula = Callable[[Sequence[Shape], Shape, Mapping[str, Any]], int]
"""Our MACs of one call: (input shapes, output shape, non-tensor facts of the call) -> MACs."""

ConventionCount = Callable[[OpRecord, Mapping[str, Any], str | None], int]
"""One convention's MACs for a recorded op: (record, facts of its call, its module's class) -> MACs."""


class CostFormula(Protocol):
    """A user cost rule: MACs of one call from its tensor arguments' shapes and the output's shape."""

    def __call__(self, *input_shapes: Shape, out_shape: Shape) -> int: ...


class FactsNeeded(StrEnum):
    """Which non-tensor facts of a call the entry's counts read (``pvttrace.costs.callfacts`` gathers them)."""

    NONE = "none"
    EINSUM = "einsum"
    """The equation."""
    MHA = "mha"
    """``nn.MultiheadAttention``'s embed dim, heads, extra keys, need_weights, mask."""
    INTERPOLATE = "interpolate"
    """The upsampling mode."""
    NORM = "norm"
    """Whether the norm is affine."""
    NORM_TRAINING = "norm_training"
    """Whether the norm is affine and normalises with the batch's statistics (training mode)."""
    BIAS = "bias"
    """Whether a conv or linear has a bias."""


def _as_recorded(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    return op.macs


def _uncounted(op: OpRecord, facts: Mapping[str, Any], module_type: str | None) -> int:
    return 0


@dataclass(frozen=True, slots=True)
class CostEntry:
    """Everything pvttrace decides about the cost of one op name."""

    op: str
    """Torch function name without ``torch.`` (``nn.functional.linear``, ``Tensor.permute``), as recorded."""
    kind: OpKind
    """The kind recorded for the op (convs get their role on top: see :func:`conv_role`)."""
    macs: MacsFormula | None
    """Our MACs (convention ``macs``); None: 0 MACs by rule."""
    counts: Mapping[str, ConventionCount] = field(default_factory=dict)
    """Convention name (every key of ``records.CONVENTIONS``) -> how that convention counts the op."""
    facts: FactsNeeded = FactsNeeded.NONE
    """Which non-tensor facts of the call the counts need (:class:`FactsNeeded`)."""
    user: bool = False
    """Registered with :func:`register_cost_rule`: its count holds in every convention."""

    @property
    def cost_rule(self) -> CostRule:
        """How the op is costed: by a MAC formula, or zero by rule."""
        return CostRule.MACS if self.macs is not None else CostRule.ZERO

    def category(self, module: str, kind: OpKind | None = None) -> MacsCategory:
        """Where the op's MACs go inside a stage when issued by ``module`` (``kind``: the recorded kind)."""
        return _category(self.kind if kind is None else kind, module)


#: The built-in entries, by op name.
_BUILTIN: dict[str, CostEntry] = {}
#: User rules (:func:`register_cost_rule`): op name -> entry. Consulted before the built-in table.
_USER_RULES: dict[str, CostEntry] = {}

#: fvcore's and timm's counts are the same handles (timm's benchmark counts with fvcore).
_FVCORE_CONVENTIONS = ("fvcore", "timm")


def _counts(fvcore: ConventionCount | None) -> dict[str, ConventionCount]:
    counts: dict[str, ConventionCount] = {"macs": _as_recorded, "paper": mmcv_macs}
    for name in _FVCORE_CONVENTIONS:
        counts[name] = fvcore if fvcore is not None else _uncounted
    if set(counts) != set(CONVENTIONS):  # a new convention must say how it counts every op
        raise RuntimeError(f"cost registry counts {sorted(counts)} but records.CONVENTIONS has {sorted(CONVENTIONS)}")
    return counts


def _add(entries: Sequence[CostEntry]) -> None:
    """Register ``entries``, all or none.

    Raises:
        RuntimeError: an op name is already registered, or given twice.
    """
    seen: dict[str, CostEntry] = {}
    for entry in entries:
        earlier = _BUILTIN.get(entry.op) or seen.get(entry.op)
        if earlier is not None:
            raise RuntimeError(
                f"duplicate cost registration for op {entry.op!r}: already {earlier.kind.value}, now {entry.kind.value}"
            )
        seen[entry.op] = entry
    _BUILTIN.update(seen)


def cost_rule_for(
    kind: OpKind,
    *names: str,
    fvcore: ConventionCount | None = None,
    facts: FactsNeeded = FactsNeeded.NONE,
) -> Callable[[MacsFormula], MacsFormula]:
    """Decorator: register ``names`` as ops of ``kind`` whose MACs the decorated formula computes.

    ``fvcore`` is what fvcore (and timm) count for them (None: fvcore has no handle, 0); the
    ``paper`` convention counts every op by its module's mmcv hook.

    Raises:
        RuntimeError: an op name is already registered (a programming error in the table).
    """

    def register(formula: MacsFormula) -> MacsFormula:
        _add([CostEntry(name, kind, formula, _counts(fvcore), facts) for name in names])
        return formula

    return register


def zero_by_rule(
    kind: OpKind, *names: str, fvcore: ConventionCount | None = None, facts: FactsNeeded = FactsNeeded.NONE
) -> None:
    """Register ``names`` as ops of ``kind`` that cost 0 MACs in our convention.

    Raises:
        RuntimeError: an op name is already registered (a programming error in the table).
    """
    _add([CostEntry(name, kind, None, _counts(fvcore), facts) for name in names])


# ---------------------------------------------------------------------------------------- MAC rules
_CONV_NAMES = ("nn.functional.conv1d", "nn.functional.conv2d", "nn.functional.conv3d", "conv1d", "conv2d", "conv3d")
_CONV_TRANSPOSE_NAMES = tuple(f"{p}conv_transpose{d}d" for p in ("", "nn.functional.") for d in (1, 2, 3))


@cost_rule_for(OpKind.CONV, *_CONV_NAMES, fvcore=fvcore_conv, facts=FactsNeeded.BIAS)
def _conv(inputs: Sequence[Shape], output: Shape, facts: Mapping[str, Any]) -> int:
    return conv_macs(output, inputs[1]) if len(inputs) >= 2 else 0


@cost_rule_for(OpKind.CONV, *_CONV_TRANSPOSE_NAMES, fvcore=fvcore_conv_transpose, facts=FactsNeeded.BIAS)
def _conv_transpose(inputs: Sequence[Shape], output: Shape, facts: Mapping[str, Any]) -> int:
    return conv_transpose_macs(inputs[0], inputs[1]) if len(inputs) >= 2 else 0


@cost_rule_for(OpKind.LINEAR, "nn.functional.linear", "_C._nn.linear", fvcore=fvcore_linear, facts=FactsNeeded.BIAS)
def _linear(inputs: Sequence[Shape], output: Shape, facts: Mapping[str, Any]) -> int:
    return linear_macs(output, inputs[1]) if len(inputs) >= 2 else 0


# Stacked decorators register bottom-up.
@cost_rule_for(OpKind.MATMUL, "Tensor.mm", "mm", fvcore=fvcore_matmul)
@cost_rule_for(OpKind.MATMUL, "Tensor.bmm", "bmm", fvcore=fvcore_bmm)
@cost_rule_for(
    OpKind.MATMUL, "Tensor.matmul", "Tensor.__matmul__", "Tensor.__rmatmul__", "matmul", fvcore=fvcore_matmul
)
def _matmul(inputs: Sequence[Shape], output: Shape, facts: Mapping[str, Any]) -> int:
    return matmul_macs(inputs[0], inputs[1], output) if len(inputs) >= 2 else 0


@cost_rule_for(OpKind.MATMUL, "baddbmm", "Tensor.baddbmm")  # fvcore has no baddbmm handle
@cost_rule_for(OpKind.MATMUL, "addmm", "Tensor.addmm", fvcore=fvcore_addmm)
def _addmm(inputs: Sequence[Shape], output: Shape, facts: Mapping[str, Any]) -> int:
    """The product of the last two operands (the first is what is added)."""
    if len(inputs) >= 3:
        return matmul_macs(inputs[1], inputs[2], output)
    return _matmul(inputs, output, facts)


@cost_rule_for(OpKind.MATMUL, "einsum", "functional.einsum", fvcore=fvcore_einsum, facts=FactsNeeded.EINSUM)
def _einsum(inputs: Sequence[Shape], output: Shape, facts: Mapping[str, Any]) -> int:
    return einsum_macs(str(required_fact(facts, "equation", "einsum")), inputs)


@cost_rule_for(OpKind.SDPA, "nn.functional.scaled_dot_product_attention", "_C._nn.scaled_dot_product_attention")
def _sdpa(inputs: Sequence[Shape], output: Shape, facts: Mapping[str, Any]) -> int:
    """Fused attention: fvcore has no handle for it (0 there)."""
    return sdpa_macs(inputs[0], inputs[1], inputs[2]) if len(inputs) >= 3 else 0


@cost_rule_for(OpKind.MHA, "nn.functional.multi_head_attention_forward", fvcore=fvcore_mha, facts=FactsNeeded.MHA)
def _mha(inputs: Sequence[Shape], output: Shape, facts: Mapping[str, Any]) -> int:
    """Costed by formula: the tracer does not see ``multi_head_attention_forward``'s nested calls."""
    embed_dim = int(required_fact(facts, "embed_dim", "multi_head_attention_forward"))
    extra_keys = int(required_fact(facts, "extra_keys", "multi_head_attention_forward"))
    return mha_macs(inputs[0], inputs[1], inputs[2], embed_dim=embed_dim, extra_keys=extra_keys)


# ---------------------------------------------------------------------------------------- zero by rule
zero_by_rule(
    OpKind.NORM, "nn.functional.layer_norm", "nn.functional.group_norm", fvcore=fvcore_norm, facts=FactsNeeded.NORM
)
zero_by_rule(
    OpKind.NORM,
    "nn.functional.batch_norm",
    "nn.functional.instance_norm",
    fvcore=fvcore_norm,
    facts=FactsNeeded.NORM_TRAINING,
)
# torch.layer_norm (not F.layer_norm): its call is not read, so fvcore's count takes it as not affine.
zero_by_rule(OpKind.NORM, "layer_norm", fvcore=fvcore_norm)
zero_by_rule(OpKind.NORM, "nn.functional.rms_norm")  # no fvcore handle
zero_by_rule(OpKind.SOFTMAX, "Tensor.softmax", "nn.functional.softmax", "softmax", "_C._nn.softmax")
zero_by_rule(
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
    "Tensor.exp",
    "exp",
)
zero_by_rule(OpKind.DROPOUT, "nn.functional.dropout", "dropout", "nn.functional.dropout2d")
zero_by_rule(
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
    "Tensor.div_",
    "Tensor.pow",
    "Tensor.__pow__",
    "Tensor.sqrt",
    "Tensor.rsqrt",
    "Tensor.clamp",
    "Tensor.masked_fill",
    "Tensor.where",
    "where",
)
zero_by_rule(
    OpKind.POOL, "nn.functional.adaptive_avg_pool2d", "_C._nn.adaptive_avg_pool2d", fvcore=fvcore_adaptive_avg_pool
)
zero_by_rule(
    OpKind.POOL,
    "nn.functional.avg_pool2d",
    "_C._nn.avg_pool2d",
    "nn.functional.max_pool2d",
    "nn.functional._max_pool2d",
)
zero_by_rule(OpKind.INTERPOLATE, "nn.functional.interpolate", fvcore=fvcore_interpolate, facts=FactsNeeded.INTERPOLATE)
zero_by_rule(OpKind.INTERPOLATE, "nn.functional.grid_sample", fvcore=fvcore_grid_sample)
zero_by_rule(OpKind.REDUCE, "Tensor.mean", "mean", "Tensor.sum", "sum", "Tensor.amax", "Tensor.max")
zero_by_rule(OpKind.RESHAPE, "Tensor.reshape", "reshape")
zero_by_rule(OpKind.VIEW, "Tensor.view", "Tensor.view_as", "Tensor.squeeze", "Tensor.unsqueeze", "squeeze", "unsqueeze")
zero_by_rule(OpKind.PERMUTE, "Tensor.permute", "permute")
zero_by_rule(OpKind.TRANSPOSE, "Tensor.transpose", "transpose", "Tensor.t", "Tensor.T.__get__", "Tensor.mT.__get__")
zero_by_rule(OpKind.FLATTEN, "Tensor.flatten", "flatten", "Tensor.unflatten")
zero_by_rule(OpKind.CONTIGUOUS, "Tensor.contiguous")
zero_by_rule(
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
)
zero_by_rule(
    OpKind.EXPAND, "Tensor.expand", "Tensor.expand_as", "Tensor.repeat", "nn.functional.pad", "Tensor.roll", "roll"
)
zero_by_rule(OpKind.CONCAT, "cat", "concat", "stack")
# Losses of whole models (pvttrace.tracing.heads): softmax-like normalisations and reductions, no MACs.
zero_by_rule(
    OpKind.SOFTMAX,
    "nn.functional.cross_entropy",
    "nn.functional.log_softmax",
    "Tensor.log_softmax",
    "nn.functional.nll_loss",
)
zero_by_rule(OpKind.ELEMENTWISE, "nn.functional.l1_loss")
# Tensors a forward creates (labels, targets): memory, no arithmetic.
zero_by_rule(OpKind.OTHER, "zeros", "zeros_like", "ones_like", "Tensor.new_zeros", "Tensor.new_ones", "empty", "arange")
# Type conversions: a copy in another dtype, no arithmetic.
zero_by_rule(OpKind.OTHER, "Tensor.long", "Tensor.int", "Tensor.float", "Tensor.half", "Tensor.bfloat16")


# ---------------------------------------------------------------------------------------- user rules
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
        UserInputError: ``op_name`` is empty, ``kind`` is not an op kind, or ``op_name`` already has a
            rule (built-in or registered) and ``replace`` is False.
    """
    if not isinstance(op_name, str) or not op_name:
        raise UserInputError(f"op_name={op_name!r} must be a non-empty op name, as run --coverage lists it")
    try:
        op_kind_ = OpKind(kind)
    except ValueError:
        kinds = ", ".join(k.value for k in OpKind)
        raise UserInputError(f"kind={kind!r} of cost rule {op_name!r} must be one of {kinds}") from None

    def register(formula: CostFormula) -> CostFormula:
        if not replace and (op_name in _USER_RULES or op_name in _BUILTIN):
            raise UserInputError(
                f"op_name={op_name!r}: op {op_name!r} already has a cost rule; pass replace=True to override it"
            )

        def macs(inputs: Sequence[Shape], output: Shape, facts: Mapping[str, Any]) -> int:
            return _checked(op_name, formula(*inputs, out_shape=output))

        counts = dict.fromkeys(CONVENTIONS, _as_recorded)
        _USER_RULES[op_name] = CostEntry(op_name, op_kind_, macs, counts, user=True)
        return formula

    return register


def _checked(op_name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserInputError(f"cost rule for {op_name!r} returned {value!r}; it must return a non-negative int of MACs")
    return value


def registered_cost_rules() -> dict[str, OpKind]:
    """The op names with a user rule and their kinds."""
    return {name: entry.kind for name, entry in _USER_RULES.items()}


# ---------------------------------------------------------------------------------------- lookups
def cost_entry(op_name: str) -> CostEntry | None:
    """The entry of an op name: a user rule's, else the built-in one; None when no rule knows it."""
    return _USER_RULES.get(op_name) or _BUILTIN.get(op_name)


def cost_entries() -> tuple[CostEntry, ...]:
    """Every built-in entry, in registration order."""
    return tuple(_BUILTIN.values())


def facts_needed(op_name: str) -> FactsNeeded:
    """Which facts of a call to ``op_name`` the built-in counts read (:class:`FactsNeeded`)."""
    entry = _BUILTIN.get(op_name)
    return entry.facts if entry is not None else FactsNeeded.NONE


def op_kind(op_name: str) -> OpKind:
    """The kind of an op name: a user rule's, the built-in table's, else ``other``."""
    entry = cost_entry(op_name)
    return entry.kind if entry is not None else OpKind.OTHER


def cost_rule(op_name: str) -> CostRule:
    """How an op name is costed: by a MAC formula (built-in or registered), zero by rule, or not known (flagged)."""
    entry = cost_entry(op_name)
    return entry.cost_rule if entry is not None else CostRule.NONE


def conv_role(kind: OpKind, module: str, label: str | None, *, depthwise: bool) -> OpKind:
    """Name a conv by its role: SR reduction, depthwise MLP conv or patch embedding (other kinds unchanged).

    ``depthwise``: the weight has one input channel per group while the input has several.
    """
    if kind != OpKind.CONV:
        return kind
    leaf = module.rsplit(".", 1)[-1]
    if leaf in ("sr", "spatial_reduction", "sequence_reduction") or (label or "").startswith("SR"):
        return OpKind.SR_CONV
    if "dwconv" in module or depthwise:
        return OpKind.DW_CONV
    if "patch_embed" in module or "downsample" in module:
        return OpKind.PATCH_EMBED
    return kind


def record_macs(op_name: str, inputs: Sequence[Shape], output: Shape, facts: Mapping[str, Any]) -> int:
    """Our MACs of one recorded call (0 for ops zero by rule or without a rule).

    Raises:
        UserInputError: a user rule returned something other than a non-negative int, or the call's
            ``facts`` lack one the formula needs.
    """
    entry = cost_entry(op_name)
    if entry is None or entry.macs is None:
        return 0
    return entry.macs(inputs, output, facts)


# ---------------------------------------------------------------------------------------- categories
_ATTENTION_MODULE = re.compile(r"(^|\.)(attn|attention|self_attn)($|\.)")
_MLP_MODULE = re.compile(r"(^|\.)mlp($|\.)")


def _category(kind: OpKind, module: str) -> MacsCategory:
    if kind == OpKind.MHA or (kind in (OpKind.MATMUL, OpKind.SDPA) and _ATTENTION_MODULE.search(module)):
        return MacsCategory.ATTENTION
    if kind == OpKind.SR_CONV:
        return MacsCategory.SR
    if kind == OpKind.LINEAR and _ATTENTION_MODULE.search(module):
        return MacsCategory.PROJECTION
    if _MLP_MODULE.search(module):
        return MacsCategory.MLP
    return MacsCategory.OTHER


def macs_category(op: OpRecord) -> MacsCategory:
    """Attention (q@k^T, attn@v, SDPA) / SR (reduction conv) / projections (q, kv, proj) / MLP / other.

    Decided by the recorded kind (convs carry their role) and the module path.
    """
    return _category(op.kind, op.module)


def macs_by_category(ops: Iterable[OpRecord]) -> dict[MacsCategory, int]:
    """The ops' MACs summed per category (every category present, 0 when none)."""
    totals = dict.fromkeys(MacsCategory, 0)
    for op in ops:
        totals[macs_category(op)] += op.macs
    return totals
