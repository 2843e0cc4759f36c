"""Layer 2: what each op costs, in every counting convention, and which ops a trace left uncosted.

The decisions live in :mod:`pvttrace.costs.registry`. The user-facing names stay importable from
``pvttrace.costs``, where they were before the registry existed.
"""

from __future__ import annotations

from pvttrace.costs.registry import CostFormula, register_cost_rule, registered_cost_rules

__all__ = ["CostFormula", "register_cost_rule", "registered_cost_rules"]
