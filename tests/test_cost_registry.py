"""The one cost registry: every op name once, under one kind, with a count in every convention."""

from __future__ import annotations

import ast
import pathlib
import re
from collections import Counter

import pytest

import pvttrace
from pvttrace.base.errors import PvtTraceError, UserInputError
from pvttrace.costs import registry
from pvttrace.costs.conventions import AttentionStage, apply_convention, paper_attention_term
from pvttrace.costs.formulas import einsum_macs
from pvttrace.records import CONVENTIONS, CostRule, MacsCategory, OpKind, OpRecord

REGISTRY_SOURCE = pathlib.Path(registry.__file__)
MAC_KINDS = {OpKind.CONV, OpKind.LINEAR, OpKind.MATMUL, OpKind.SDPA, OpKind.MHA}


def _registered_literals() -> Counter[str]:
    """Every op name written in a ``cost_rule_for``/``zero_by_rule`` call of the registry's source."""
    tree = ast.parse(REGISTRY_SOURCE.read_text())
    constants = {
        node.targets[0].id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    names: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("cost_rule_for", "zero_by_rule"):
            for arg in node.args[1:]:
                if isinstance(arg, ast.Constant):
                    names[arg.value] += 1
                elif isinstance(arg, ast.Starred) and isinstance(arg.value, ast.Name):
                    # *_CONV_NAMES: a module-level tuple (or generator) of names
                    names.update(eval(ast.unparse(constants[arg.value.id]), {}))
    return names


def test_every_op_name_is_registered_once_under_one_kind() -> None:
    written = _registered_literals()
    assert [name for name, count in written.items() if count > 1] == []
    entries = registry.cost_entries()
    # the old table's 155 keys less its two duplicates (Tensor.mul_, F.silu), plus arange and five dtype conversions
    assert len(entries) == 159
    assert set(written) == {entry.op for entry in entries}
    kinds: dict[str, set[OpKind]] = {}
    for entry in entries:
        kinds.setdefault(entry.op, set()).add(entry.kind)
    assert all(len(k) == 1 for k in kinds.values())
    assert registry.op_kind("Tensor.mul_") == OpKind.ELEMENTWISE
    assert registry.op_kind("nn.functional.silu") == OpKind.ACTIVATION


def test_registering_a_builtin_name_again_raises() -> None:
    before = registry.cost_entries()
    with pytest.raises(RuntimeError, match=re.escape("duplicate cost registration for op 'nn.functional.linear'")):
        registry.zero_by_rule(OpKind.ACTIVATION, "a_new_op", "nn.functional.linear")
    with pytest.raises(RuntimeError, match=re.escape("duplicate cost registration for op 'Tensor.mul_'")):

        @registry.cost_rule_for(OpKind.MATMUL, "Tensor.mul_")
        def _macs(inputs: object, output: object, facts: object) -> int:
            return 1

    assert registry.cost_entries() == before  # nothing half-registered: not even "a_new_op"
    assert registry.cost_entry("nn.functional.linear").kind == OpKind.LINEAR  # type: ignore[union-attr]


def test_an_entry_holds_kind_formula_counts_and_facts() -> None:
    for entry in registry.cost_entries():
        assert set(entry.counts) == set(CONVENTIONS), entry.op
        assert (entry.macs is not None) == (entry.kind in MAC_KINDS), entry.op
        assert entry.cost_rule == (CostRule.MACS if entry.kind in MAC_KINDS else CostRule.ZERO)
    linear = registry.cost_entry("nn.functional.linear")
    assert linear is not None and linear.facts == registry.FactsNeeded.BIAS
    # [2, 196, 64] @ W[128, 64]^T: 2 * 196 * 128 outputs, 64 MACs each = 3,211,264
    assert linear.macs is not None and linear.macs([(2, 196, 64), (128, 64)], (2, 196, 128), {}) == 3_211_264
    assert registry.cost_rule("cumsum_unknown_op") == CostRule.NONE
    assert registry.record_macs("cumsum_unknown_op", [(4,)], (4,), {}) == 0
    assert linear.category("blocks.0.attn.q") == MacsCategory.PROJECTION
    assert linear.category("blocks.0.mlp.fc1") == MacsCategory.MLP


def _op(op: str, kind: OpKind, module: str, macs: int) -> OpRecord:
    return OpRecord(0, module, op, kind, None, ((1, 4), (4, 4)), (1, 4), "float32", macs, 16, 16, False, None)


def test_macs_category_and_conv_roles() -> None:
    ops = [
        _op("matmul", OpKind.MATMUL, "stages.0.blocks.0.attn", 10),
        _op("nn.functional.conv2d", OpKind.SR_CONV, "stages.0.blocks.0.attn.sr", 20),
        _op("nn.functional.linear", OpKind.LINEAR, "stages.0.blocks.0.attn.q", 30),
        _op("nn.functional.linear", OpKind.LINEAR, "stages.0.blocks.0.mlp.fc1", 40),
        _op("nn.functional.linear", OpKind.LINEAR, "head", 50),
    ]
    assert registry.macs_by_category(ops) == {
        MacsCategory.ATTENTION: 10,
        MacsCategory.SR: 20,
        MacsCategory.PROJECTION: 30,
        MacsCategory.MLP: 40,
        MacsCategory.OTHER: 50,
    }
    role = registry.conv_role
    assert role(OpKind.CONV, "block1.0.attn.sr", None, depthwise=False) == OpKind.SR_CONV
    assert role(OpKind.CONV, "block1.0.mlp.dwconv.dwconv", None, depthwise=False) == OpKind.DW_CONV
    assert role(OpKind.CONV, "features.3", None, depthwise=True) == OpKind.DW_CONV
    assert role(OpKind.CONV, "patch_embed1.proj", None, depthwise=False) == OpKind.PATCH_EMBED
    assert role(OpKind.CONV, "stem.conv", "SR conv", depthwise=False) == OpKind.SR_CONV
    assert role(OpKind.CONV, "stem.conv", None, depthwise=False) == OpKind.CONV
    assert role(OpKind.LINEAR, "block1.0.attn.sr", None, depthwise=True) == OpKind.LINEAR


def test_the_public_register_cost_rule_is_the_registrys() -> None:
    assert pvttrace.register_cost_rule is registry.register_cost_rule
    from pvttrace import costs

    assert costs.register_cost_rule is registry.register_cost_rule  # the path before the registry


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: registry.register_cost_rule("cumsum", kind="fused"),
            r"kind='fused' of cost rule 'cumsum' must be one of patch_embed, sr_conv, ",
        ),
        (lambda: registry.register_cost_rule(""), r"op_name='' must be a non-empty op name"),
        (
            lambda: apply_convention("fvcore", (_op("mm", OpKind.MATMUL, "", 1),), (), {}, input_shape=(1, 3, 8, 8)),
            r"facts has 0 entries but ops has 1; it needs one per op",
        ),
        (
            lambda: paper_attention_term(AttentionStage(0, 64, 8, False), 224, 224),
            r"attention stage index=0 must be 1 or more",
        ),
        (
            lambda: apply_convention(
                "paper", (), (), {}, input_shape=(3,), attention_stages=(AttentionStage(1, 64, 8, False),)
            ),
            r"input_shape=\[3\] must be \[B, C, H, W\]",
        ),
        (lambda: einsum_macs("ij,jk->ik", [(2, 3)]), r"einsum equation='ij,jk->ik' has 2 operand\(s\) but 1 shape"),
        (
            lambda: registry.record_macs("einsum", [(2, 3), (3, 4)], (2, 4), {}),
            r"of the einsum call lack 'equation'",
        ),
    ],
)
def test_bad_input_raises_a_one_line_pvttrace_error(call: object, message: str) -> None:
    with pytest.raises(UserInputError, match=message) as caught:
        call()  # type: ignore[operator]
    assert isinstance(caught.value, PvtTraceError)
    assert "\n" not in str(caught.value)
