"""The user-facing names of the cost rules, kept where earlier versions had them.

``pvttrace.register_cost_rule`` and the MAC formulas were imported from here before the cost
decisions moved into one registry (:mod:`pvttrace.costs.registry`; the formulas are in
:mod:`pvttrace.costs.formulas`). This module decides nothing: it re-exports those names so that
existing imports keep working. Pure data: no torch, rich or typer.
"""

from __future__ import annotations

from pvttrace.costs.formulas import (
    conv_macs,
    conv_transpose_macs,
    einsum_macs,
    linear_macs,
    matmul_macs,
    mha_macs,
    sdpa_macs,
)
from pvttrace.costs.registry import (
    _USER_RULES,
    CostFormula,
    cost_rule,
    op_kind,
    register_cost_rule,
    registered_cost_rules,
)

__all__ = [
    "_USER_RULES",
    "CostFormula",
    "conv_macs",
    "conv_transpose_macs",
    "cost_rule",
    "einsum_macs",
    "linear_macs",
    "matmul_macs",
    "mha_macs",
    "op_kind",
    "register_cost_rule",
    "registered_cost_rules",
    "sdpa_macs",
]
