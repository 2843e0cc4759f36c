"""Our MAC formulas: the multiply-accumulates of one call as a pure function of shapes.

``macs`` convention (``records.CONVENTION``): a multiply-accumulate is one MAC; bias adds are not
counted. The registry (:mod:`pvttrace.costs.registry`) says which op name uses which formula.
Pure arithmetic: no torch, rich or typer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pvttrace.base.errors import UserInputError
from pvttrace.records import Shape

__all__ = [
    "conv_macs",
    "conv_transpose_macs",
    "einsum_macs",
    "linear_macs",
    "matmul_macs",
    "mha_macs",
    "required_fact",
    "sdpa_macs",
]


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
        raise UserInputError(
            f"einsum equation={equation!r} has {len(terms)} operand(s) but {len(shapes)} shape(s); "
            "it needs one subscript term per operand"
        )
    ellipsis_rank = max(
        (len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes, strict=False) if "..." in t), default=0
    )
    spare = [chr(c) for c in range(ord("A"), ord("Z") + 1) if chr(c) not in text][:ellipsis_rank]
    sizes: dict[str, int] = {}
    expanded: list[str] = []
    for term, shape in zip(terms, shapes, strict=False):
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

    Raises:
        UserInputError: the equation has not one subscript term per shape.
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


def required_fact(facts: Mapping[str, Any], name: str, op_name: str) -> Any:
    """``facts[name]``, which counting a call to ``op_name`` needs.

    Raises:
        UserInputError: the facts lack it (they come from ``pvttrace.costs.callfacts.call_facts``).
    """
    if name not in facts:
        raise UserInputError(
            f"facts={dict(facts)!r} of the {op_name} call lack {name!r}; counting it needs the call's facts "
            "(pvttrace.costs.callfacts.call_facts)"
        )
    return facts[name]
