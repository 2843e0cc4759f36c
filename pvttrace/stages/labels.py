"""Recognise PVT structure in any model: stages from module names, walkthrough labels.

The built-in model labels its own ops (``step("split heads")``). Other models (timm's
``pvt_v2``, the official code, a user's modified copy) give only module names, so this
module labels their ops by rule:

* a leaf rule table: module path ending + op kind -> label (``attn.q`` linear -> "q projection",
  ``attn.sr`` conv -> "SR conv", ``mlp.fc1`` -> "MLP fc1" ...);
* order rules inside an attention module: the matmul that makes the map its next softmax
  normalises is "scores q@k^T", the one that multiplies the last softmax's map is "attention@v"
  (other matmuls, such as relative-position terms, stay unlabelled; a module without a softmax
  alternates the two labels); layout ops take their meaning from the op they continue ("split heads" after
  the q projection, "merge heads" after attention@v) or the op they prepare ("tokens to map"
  before the SR conv, "transpose k" before the scores).

Stages come from module names (timm ``stages.N`` and ``patch_embed``, official ``block1`` /
``patch_embed1`` / ``norm1``, ``layers.N``, ``layerN``); stage summaries are built from the labelled
records in :mod:`pvttrace.stages.summary`. Pure data: no torch, rich or typer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pvttrace.records import LAYOUT_KINDS, OpKind, OpRecord

__all__ = [
    "LABEL_RULES",
    "attention_modules",
    "block_of",
    "is_pvt_like",
    "label_ops",
    "stage_of_module",
]

#: (pattern, stage offset): the first group is the stage number; offset 1 turns 0-based names 1-based.
_STAGE_PATTERNS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"^(?:patch_embed|block|norm|pos_embed|pos_drop)(\d+)(?:\.|$)"), 0),
    (re.compile(r"^stages\.(\d+)(?:\.|$)"), 1),
    (re.compile(r"^layers\.(\d+)(?:\.|$)"), 1),
    (re.compile(r"^layer(\d+)(?:\.|$)"), 0),
)
#: timm's single stem ``patch_embed`` feeds stage 1.
_STEM = re.compile(r"^patch_embed(?:\.|$)")
_BLOCK = re.compile(r"(?:^|\.)(?:block\d+|blocks)\.(\d+)(?:\.|$)")
_BLOCK_ROOT = re.compile(r"(?:^|\.)(?:block\d+|blocks)\.\d+$")
_STAGE_ROOT = re.compile(r"^(?:stages|layers)\.\d+$")
_ATTENTION_LEAVES = frozenset({"attn", "attention", "self_attn"})
_PATCH_LEAF = re.compile(r"^(?:patch_embed\d*|downsample|patch_embeddings?)$")

_CONVS = frozenset({OpKind.CONV, OpKind.PATCH_EMBED, OpKind.SR_CONV, OpKind.DW_CONV})
_A = r"(?:^|\.)(?:attn|attention|self_attn)\.(?:self\.)?"
#: HF transformers spell the SR conv ``spatial_reduction`` (PvtV2), ``sequence_reduction`` (Segformer, Pvt).
_SR = r"(?:sr|spatial_reduction|sequence_reduction(?:\.sequence_reduction)?)"

#: Leaf rules: (module path pattern, op kinds, label). The first match wins. Names from the official
#: code and timm first, then HF transformers' (``query``, ``dense1``, ``layernorm_before`` ...).
LABEL_RULES: tuple[tuple[re.Pattern[str], frozenset[OpKind], str], ...] = tuple(
    (re.compile(pattern), kinds, label)
    for pattern, kinds, label in (
        (_A + r"(?:q|query|q_proj)$", frozenset({OpKind.LINEAR}), "q projection"),
        (_A + r"kv$", frozenset({OpKind.LINEAR}), "kv projection"),
        (_A + r"(?:key|k_proj)$", frozenset({OpKind.LINEAR}), "k projection"),
        (_A + r"(?:value|v_proj)$", frozenset({OpKind.LINEAR}), "v projection"),
        (_A + r"(?:qkv|in_proj)$", frozenset({OpKind.LINEAR}), "qkv projection"),
        (_A + r"(?:proj|out_proj|o_proj|output\.dense)$", frozenset({OpKind.LINEAR}), "output projection"),
        (_A + _SR + r"$", _CONVS, "SR conv"),
        (_A + r"pool$", frozenset({OpKind.POOL}), "SR pool"),
        (_A + r"(?:norm|layer_norm|sequence_reduction\.layer_norm)$", frozenset({OpKind.NORM}), "SR norm"),
        (_A + r"act$", frozenset({OpKind.ACTIVATION}), "SR activation"),
        (_A + r"attn_drop$", frozenset({OpKind.DROPOUT}), "attention dropout"),
        (_A + r"proj_drop$", frozenset({OpKind.DROPOUT}), "projection dropout"),
        (r"(?:^|\.)mlp\.(?:fc1|dense1)$", frozenset({OpKind.LINEAR}), "MLP fc1"),
        (r"(?:^|\.)mlp\.(?:fc2|dense2)$", frozenset({OpKind.LINEAR}), "MLP fc2"),
        (r"(?:^|\.)mlp\.dwconv(?:\.dwconv)?$", _CONVS, "DW conv 3x3"),
        (r"(?:^|\.)mlp\.relu$", frozenset({OpKind.ACTIVATION}), "MLP ReLU"),
        (r"(?:^|\.)mlp\.(?:act|intermediate_act_fn|activation_fn)$", frozenset({OpKind.ACTIVATION}), "MLP activation"),
        (r"(?:^|\.)mlp\.(?:drop\d?|dropout)$", frozenset({OpKind.DROPOUT}), "MLP dropout"),
        (r"^norm\d+$", frozenset({OpKind.NORM}), "stage norm"),
        (r"(?:^|\.)(?:stages|layers)\.\d+\.(?:norm|layer_norm)$", frozenset({OpKind.NORM}), "stage norm"),
        (r"^encoder\.layer_norm\.\d+$", frozenset({OpKind.NORM}), "stage norm"),
        (r"^norm$", frozenset({OpKind.NORM}), "final norm"),
        (r"\.(?:norm1|layer_norm_1|layernorm_before)$", frozenset({OpKind.NORM}), "norm1"),
        (r"\.(?:norm2|layer_norm_2|layernorm_after)$", frozenset({OpKind.NORM}), "norm2"),
        (r"(?:^|\.)(?:patch_embed\d*|downsample|patch_embeddings?(?:\.\d+)?)\.proj$", _CONVS, "patch embed conv"),
        (
            r"(?:^|\.)(?:patch_embed\d*|downsample|patch_embeddings?(?:\.\d+)?)\.(?:norm|layer_norm)$",
            frozenset({OpKind.NORM}),
            "patch norm",
        ),
        (r"^pos_drop\d+$", frozenset({OpKind.DROPOUT}), "pos dropout"),
        (r"^head$", frozenset({OpKind.LINEAR}), "classifier head"),
        (r"^head_drop$", frozenset({OpKind.DROPOUT}), "head dropout"),
    )
)

#: :data:`LABEL_RULES` for each op kind, in table order (so the first match is the same): most ops are of
#: kinds no rule names (layout, element-wise, matmul), and they need not walk the table.
_RULES_BY_KIND: dict[OpKind, tuple[tuple[re.Pattern[str], str], ...]] = {
    kind: tuple((pattern, label) for pattern, kinds, label in LABEL_RULES if kind in kinds) for kind in OpKind
}

#: What a layout op means when it continues the output of an op with this label.
_CONTINUES = {
    "q projection": "split heads",
    "kv projection": "split k/v heads",
    "k projection": "split k heads",
    "v projection": "split v heads",
    "qkv projection": "split q/k/v heads",
    "SR conv": "map to tokens",
    "attention@v": "merge heads",
    "fused attention (SDPA)": "merge heads",
}
_LAYOUT_LABELS = frozenset({*_CONTINUES.values(), "take k, v", "transpose k", "tokens to map"})


def stage_of_module(path: str) -> int | None:
    """1-based pyramid stage of a module or parameter path, or None (head, class token ...).

    A leading ``backbone.`` (whole detection/segmentation models) is skipped.
    """
    path = path.removeprefix("backbone.")
    for pattern, offset in _STAGE_PATTERNS:
        match = pattern.match(path)
        if match:
            return int(match.group(1)) + offset
    return 1 if _STEM.match(path) else None


def block_of(path: str) -> int | None:
    """0-based block index inside its stage (``block1.3`` or ``blocks.3``), or None."""
    match = _BLOCK.search(path)
    return int(match.group(1)) if match else None


def is_pvt_like(module_names: Iterable[str]) -> bool:
    """True when some attention module has PVT's spatial reduction (``attn.sr``) or its q/kv pair."""
    names = set(module_names)
    for name in names:
        if re.search(_A + _SR + r"$", name):
            return True
        if re.search(_A + r"q$", name) and name[:-1] + "kv" in names:
            return True
    return False


def _own_role(prefix: str, attention: frozenset[str]) -> str | None:
    """The structural role of module ``prefix`` itself, or None (then the module around it decides).

    ``attention`` holds modules recognised as attention by what they do (see :func:`attention_modules`).
    """
    parent, _, leaf = prefix.rpartition(".")
    if leaf in _ATTENTION_LEAVES or prefix in attention:
        return "attn"
    if leaf == "self" and "." in prefix and parent.rpartition(".")[2] in _ATTENTION_LEAVES:
        return "attn"
    if leaf == "mlp":
        return "mlp"
    if _PATCH_LEAF.match(leaf):
        return "patch"
    if _BLOCK_ROOT.search(prefix):
        return "block"
    if _STAGE_ROOT.match(prefix):
        return "stage"
    return None


def _inside(op: OpRecord, prefix: str) -> bool:
    return not prefix or op.module == prefix or op.module.startswith(prefix + ".")


def _leaf_label(module: str, kind: OpKind) -> str | None:
    for pattern, label in _RULES_BY_KIND[kind]:
        if pattern.search(module):
            return label
    return None


class _ModuleRules:
    """The rule lookups that depend only on an op's module path (and kind), memoised for one labelling.

    A deep model issues many ops from each module (mvitv2_huge: 6,679 ops from 1,700 modules), and the
    regex searches of :meth:`context` and :func:`_leaf_label` give the same answer for every op of a module.
    """

    def __init__(self, attention: frozenset[str]) -> None:
        self.attention = attention
        self._contexts: dict[str, tuple[str, str]] = {}
        self._leaf_labels: dict[tuple[str, OpKind], str | None] = {}

    def context(self, path: str) -> tuple[str, str]:
        """The innermost structural module around ``path`` (itself included): (role, its path).

        ("model", "") when there is none. Found from the module's own role, else from its parent's context,
        so each path's role is read once however many modules lie inside it.
        """
        found = self._contexts.get(path)
        if found is None:
            role = _own_role(path, self.attention) if path else None
            if role is not None:
                found = (role, path)
            elif path:
                found = self.context(path.rpartition(".")[0])
            else:
                found = ("model", "")
            self._contexts[path] = found
        return found

    def leaf_label(self, op: OpRecord) -> str | None:
        """The leaf rule table's label of ``op`` (:data:`LABEL_RULES`), or None."""
        key = (op.module, op.kind)
        try:
            return self._leaf_labels[key]
        except KeyError:
            label = self._leaf_labels[key] = _leaf_label(op.module, op.kind)
            return label


def attention_modules(ops: Sequence[OpRecord]) -> frozenset[str]:
    """Modules that compute attention themselves, whatever their name: matmul, softmax, matmul in their own ops."""
    seen: dict[str, list[OpKind]] = {}
    for op in ops:
        if op.kind in (OpKind.MATMUL, OpKind.SOFTMAX):
            seen.setdefault(op.module, []).append(op.kind)
    found = set()
    for module, kinds in seen.items():
        text = "".join("m" if k == OpKind.MATMUL else "s" for k in kinds)
        if module and "msm" in text:
            found.add(module)
    return frozenset(found)


class _SoftmaxMaps:
    """For each matmul, the maps of the softmaxes its own module issues just after and just before it.

    Attention multiplies twice around its softmax: q@k^T makes the map the softmax normalises, and the
    normalised map multiplies v. Matching shapes against those maps tells the two apart from any other
    matmul in the module (MViTv2's relative-position einsums sit between them).
    """

    def __init__(self, ops: Sequence[OpRecord]) -> None:
        self.following: dict[int, tuple[int, ...]] = {}
        self.preceding: dict[int, tuple[int, ...]] = {}
        for indices, found in ((range(len(ops)), self.preceding), (range(len(ops) - 1, -1, -1), self.following)):
            last: dict[str, tuple[int, ...]] = {}
            for i in indices:
                op = ops[i]
                if op.kind == OpKind.SOFTMAX:
                    last[op.module] = op.output
                elif op.kind == OpKind.MATMUL and op.module in last:
                    found[i] = last[op.module]

    def around(self, i: int) -> bool:
        """Whether matmul ``i``'s module issues a softmax before or after it."""
        return i in self.following or i in self.preceding

    def label(self, i: int, op: OpRecord) -> str | None:
        """Matmul ``i``'s label by the maps around it (see :meth:`around`); None when it makes neither."""
        following, preceding = self.following.get(i), self.preceding.get(i)
        if following is not None and op.output == following:
            return "scores q@k^T"
        if preceding is not None and op.inputs and op.inputs[0] == preceding:
            return "attention@v"
        return None


def _first_pass(ops: Sequence[OpRecord], rules: _ModuleRules) -> list[str | None]:
    """Labels of the ops that are not layout ops: leaf rules, then order rules per module."""
    labels: list[str | None] = []
    # Each block issues two residual adds (and an attention module without a softmax two matmuls) per call,
    # so counting per module path and alternating labels them in every call.
    counters: dict[str, int] = {}
    maps = _SoftmaxMaps(ops)
    for i, op in enumerate(ops):
        label = rules.leaf_label(op)
        if label is None:
            role, path = rules.context(op.module)
            label = _order_label(i, op, role, path, counters, maps)
        labels.append(label)
    return labels


def _order_label(
    i: int, op: OpRecord, role: str, path: str, counters: dict[str, int], maps: _SoftmaxMaps
) -> str | None:
    """The label of op ``i``, which no leaf rule names, from what it is inside (``role`` module ``path``) and
    its order.

    ``counters`` counts the matmuls of each attention module without a softmax and the residual adds of each
    block so far; ``maps`` places each matmul around its module's softmaxes.
    """
    if role == "attn" and op.module != path and op.kind in _CONVS and _strided(op):
        return "SR conv"
    if op.kind == OpKind.MHA:
        return "multi-head attention"
    if role == "attn" and op.module == path:
        if op.kind == OpKind.MATMUL:
            if maps.around(i):
                return maps.label(i, op)
            seen = counters.get(path, 0)
            counters[path] = seen + 1
            return "scores q@k^T" if seen % 2 == 0 else "attention@v"
        if op.kind == OpKind.SDPA:
            return "fused attention (SDPA)"
        if op.kind == OpKind.SOFTMAX:
            return "softmax"
        if op.kind == OpKind.ELEMENTWISE and ("mul" in op.op or "div" in op.op) and len(op.output) >= 3:
            return "scale"  # of queries or scores (batched tokens or maps), not of index grids
    elif role == "block" and op.module == path and op.kind == OpKind.ELEMENTWISE and "add" in op.op:
        seen = counters.get(path, 0)
        counters[path] = seen + 1
        return "attention residual add" if seen % 2 == 0 else "MLP residual add"
    elif role == "model" and op.kind == OpKind.REDUCE:
        return "token mean"
    return None


def _run(ops: Sequence[OpRecord], i: int, prefix: str) -> range:
    """Indices of the contiguous run of ops around ``i`` that were issued inside module ``prefix``."""
    start, end = i, i + 1
    while start > 0 and _inside(ops[start - 1], prefix):
        start -= 1
    while end < len(ops) and _inside(ops[end], prefix):
        end += 1
    return range(start, end)


def _anchor(ops: Sequence[OpRecord], labels: Sequence[str | None], start: int, step: int, prefix: str) -> str | None:
    """Label of the nearest non-layout op inside ``prefix`` in direction ``step``."""
    i = start + step
    while 0 <= i < len(ops) and _inside(ops[i], prefix):
        if ops[i].kind not in LAYOUT_KINDS:
            return labels[i]
        i += step
    return None


def _strided(op: OpRecord) -> bool:
    """A conv whose output grid is smaller than its input's: a spatial reduction."""
    return len(op.output) == 4 and len(op.inputs[0]) == 4 and op.output[-1] < op.inputs[0][-1]


def _layout_label(ops: Sequence[OpRecord], labels: Sequence[str | None], i: int, rules: _ModuleRules) -> str | None:
    op = ops[i]
    role, path = rules.context(op.module)
    previous = ops[i - 1] if i > 0 and _inside(ops[i - 1], path) else None
    previous_label = labels[i - 1] if previous is not None else None
    chained = previous is not None and bool(op.inputs) and op.inputs[0] == previous.output
    if role == "attn":
        following = _anchor(ops, labels, i, 1, path)
        if op.kind == OpKind.TRANSPOSE and following == "scores q@k^T":
            return "transpose k"
        if op.kind == OpKind.INDEX and previous_label in ("split k/v heads", "split q/k/v heads", "take k, v"):
            return "take k, v"
        if chained and previous_label is not None:
            if previous_label in _LAYOUT_LABELS:
                return previous_label
            if previous_label in _CONTINUES:
                return _CONTINUES[previous_label]
        if following in ("SR conv", "SR pool"):
            return "tokens to map"
        return None
    if role == "mlp":
        conv = next((j for j in _run(ops, i, path) if labels[j] == "DW conv 3x3"), None)
        if conv is None:
            return None
        return "tokens to map" if i < conv else "map to tokens"
    if role == "patch":
        return "patches to tokens"
    if role == "stage":
        blocks_before = any(_BLOCK.search(ops[j].module) for j in _run(ops, i, path) if j < i)
        return "stage output map" if blocks_before else "patches to tokens"
    return None


def label_ops(ops: Sequence[OpRecord]) -> tuple[OpRecord, ...]:
    """Fill in walkthrough labels for ops that have none, by the rule table and the order rules."""
    rules = _ModuleRules(attention_modules(ops))
    labels = _first_pass(ops, rules)
    for i, op in enumerate(ops):
        if op.label is not None:
            labels[i] = op.label
    for i, op in enumerate(ops):
        if labels[i] is None and op.kind in LAYOUT_KINDS:
            labels[i] = _layout_label(ops, labels, i, rules)
    return tuple(op if op.label == label else op.with_label(label) for op, label in zip(ops, labels, strict=True))
