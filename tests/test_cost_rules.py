"""``pvttrace.register_cost_rule``: a public way to cost an op pvttrace has no rule for, seen by --coverage."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

import pvttrace
from pvttrace.base.errors import TraceError
from pvttrace.cli.parsing import parse_model_spec
from pvttrace.costs import registry as costs
from pvttrace.costs.coverage import op_coverage
from pvttrace.records import CostRule, OpKind, Shape
from pvttrace.tracing.target import trace_target


@pytest.fixture
def clean_rules() -> Iterator[None]:
    saved = dict(costs._USER_RULES)
    yield
    costs._USER_RULES.clear()
    costs._USER_RULES.update(saved)


def _coverage(convention: str = "macs") -> dict[str, tuple[CostRule, int, OpKind]]:
    trace = trace_target(parse_model_spec("anymodel_zoo:cumulative", input_shape="2,4,8"), convention=convention)
    return {row.op: (row.rule, row.macs, row.kind) for row in op_coverage(trace)}


@pytest.mark.usefixtures("clean_rules")
def test_a_registered_rule_costs_the_op_and_coverage_shows_it() -> None:
    assert _coverage()["cumsum"] == (CostRule.NONE, 0, OpKind.OTHER)

    @pvttrace.register_cost_rule("cumsum", kind="reduce")
    def cumsum_macs(x: Shape, *_: Shape, out_shape: Shape) -> int:
        return math.prod(out_shape)  # one add per output element

    rows = _coverage()
    assert rows["cumsum"] == (CostRule.MACS, 2 * 4 * 8, OpKind.REDUCE)
    assert rows["nn.functional.linear"][1] == 2 * 4 * 8 * 8
    # The user's count holds in the other conventions too.
    assert _coverage("fvcore")["cumsum"][1] == _coverage("paper")["cumsum"][1] == 64


@pytest.mark.usefixtures("clean_rules")
def test_registering_twice_or_over_a_builtin_needs_replace() -> None:
    def zero(*_: Shape, out_shape: Shape) -> int:
        return 0

    pvttrace.register_cost_rule("cumsum")(zero)
    with pytest.raises(ValueError, match="'cumsum' already has a cost rule; pass replace=True"):
        pvttrace.register_cost_rule("cumsum")(zero)
    with pytest.raises(ValueError, match=r"'nn\.functional\.linear' already has a cost rule"):
        pvttrace.register_cost_rule("nn.functional.linear")(zero)
    pvttrace.register_cost_rule("cumsum", replace=True)(zero)
    assert _coverage()["cumsum"][:2] == (CostRule.MACS, 0)


@pytest.mark.usefixtures("clean_rules")
def test_a_formula_returning_a_bad_value_fails_the_trace_in_one_line() -> None:
    pvttrace.register_cost_rule("cumsum")(lambda *_, out_shape: -1)
    with pytest.raises(TraceError, match=r"cost rule for 'cumsum' returned -1; it must return a non-negative int"):
        _coverage()


def test_argument_read_by_position_equals_binding_the_call() -> None:
    """callfacts reads a norm's weight by position where it can; the same value binding the call gives."""
    import torch
    import torch.nn.functional as F

    from pvttrace.costs.callfacts import _argument, _bound

    x, w = torch.zeros(2, 4, 3), torch.ones(4)
    calls = [
        (F.layer_norm, (x, (3,)), {}),
        (F.layer_norm, (x, (3,), torch.ones(3)), {}),
        (F.layer_norm, (x, (3,)), {"weight": torch.ones(3)}),
        (F.group_norm, (x, 2, w), {}),
        (F.group_norm, (x, 2), {"bias": w}),
        (F.batch_norm, (x, None, None), {"weight": w, "training": True}),
        (F.batch_norm, (x, None, None, w), {}),
        (F.instance_norm, (x,), {}),
    ]
    for func, args, kwargs in calls:
        assert _argument(func, args, kwargs, "weight") is _bound(func, args, kwargs).get("weight")
