"""Which ops a trace saw and how each was costed: by a MAC rule, zero by rule, or no rule at all.

Nothing is dropped silently: an op the cost registry (``pvttrace.costs.registry``) does not
know is still recorded, with 0 MACs and ``cost_rule == "none"``; this module counts them
so that ``pvttrace run --coverage`` can list every op name and ``run`` can warn in one line.
Pure data: no torch, rich or typer.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pvttrace.records import CostRule, OpKind, OpRecord, Trace

__all__ = [
    "COVERAGE_SCHEMA",
    "RULE_TEXT",
    "CoverageRow",
    "coverage_csv",
    "coverage_document",
    "op_coverage",
    "uncosted_summary",
]

COVERAGE_SCHEMA = "pvttrace.coverage/1"

#: How each cost rule reads in tables.
RULE_TEXT = {
    CostRule.MACS: "cost rule",
    CostRule.ZERO: "zero by rule",
    CostRule.NONE: "NO RULE (0 MACs)",
}


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """One op name of a trace: how often it ran, its kind, its cost rule and the MACs it added up to."""

    op: str
    kind: OpKind
    count: int
    rule: CostRule
    macs: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"op": self.op, "kind": self.kind.value, "count": self.count, "rule": self.rule.value, "macs": self.macs}


def op_coverage(trace: Trace) -> tuple[CoverageRow, ...]:
    """Every op name seen, ops without a rule first, then by MACs and count (largest first), then name."""
    counts: Counter[str] = Counter()
    macs: Counter[str] = Counter()
    first: dict[str, OpRecord] = {}
    for op in trace.ops:
        counts[op.op] += 1
        macs[op.op] += op.macs
        first.setdefault(op.op, op)
    rows = [CoverageRow(name, first[name].kind, counts[name], first[name].cost_rule, macs[name]) for name in counts]
    order = {CostRule.NONE: 0, CostRule.MACS: 1, CostRule.ZERO: 2}
    return tuple(sorted(rows, key=lambda r: (order[r.rule], -r.macs, -r.count, r.op)))


def coverage_document(trace: Trace) -> dict[str, Any]:
    """The ``pvttrace.coverage/1`` JSON document of a trace."""
    rows = op_coverage(trace)
    return {
        "schema": COVERAGE_SCHEMA,
        "convention": trace.convention,
        "ops": trace.totals.ops,
        "uncosted_ops": trace.totals.uncosted_ops,
        "op_names": [row.to_dict() for row in rows],
    }


def coverage_csv(trace: Trace) -> str:
    """The coverage rows as CSV (header ``op,kind,count,rule,macs``; one row per op name)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["op", "kind", "count", "rule", "macs"])
    for row in op_coverage(trace):
        writer.writerow([row.op, row.kind.value, row.count, row.rule.value, row.macs])
    return buffer.getvalue()


def uncosted_summary(trace: Trace, *, limit: int = 5) -> str | None:
    """One line naming the ops that had no cost rule (None when every op had one)."""
    if not any(op.cost_rule == CostRule.NONE for op in trace.ops):
        return None  # the common case, without grouping every op
    missing = [row for row in op_coverage(trace) if row.rule == CostRule.NONE]
    if not missing:
        return None
    names = ", ".join(f"{row.op} x{row.count}" for row in missing[:limit])
    more = f" and {len(missing) - limit} more" if len(missing) > limit else ""
    return (
        f"{trace.totals.uncosted_ops} op(s) had no cost rule and count 0 MACs: {names}{more} "
        "(run with --coverage for every op)"
    )
