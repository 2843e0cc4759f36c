"""Comparing a stored snapshot with the current one: every op and figure that differs, stored values first.

Ops are aligned by what they are (stage, block, module, op, kind, label), so an inserted op shows as one
added op instead of shifting every later one. Costs may differ within a relative tolerance; shapes never.
The convention, dtype and device the two were made with are compared too (as config figures).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from fractions import Fraction
from typing import Any

from pvttrace.base.errors import UserInputError
from pvttrace.records import Provenance, StageSummary
from pvttrace.snapshot.data import Snapshot, SnapshotOp

__all__ = [
    "COST_FIELDS",
    "MAX_ALIGNMENT_CELLS",
    "ChangeStatus",
    "FieldChange",
    "FigureChange",
    "OpChange",
    "SnapshotReport",
    "compare_snapshots",
]

#: Fields that ``rtol`` applies to; every other field (shapes, token counts, flags) must match exactly.
COST_FIELDS = frozenset(
    {
        "macs",
        "alloc_bytes",
        "params",
        "param_bytes",
        "buffer_bytes",
        "largest_activation_bytes",
        "attention_macs",
        "sr_macs",
        "projection_macs",
        "mlp_macs",
        "other_macs",
        "attention_map_bytes",
    }
)


class ChangeStatus(StrEnum):
    """How an op differs between the stored snapshot and the current trace."""

    CHANGED = "changed"
    ADDED = "added"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field whose stored value differs from the current one."""

    name: str
    stored: Any
    current: Any


@dataclass(frozen=True, slots=True)
class OpChange:
    """An op that changed, or that only one side has."""

    status: ChangeStatus
    op: SnapshotOp
    """The current op (the stored one for REMOVED)."""
    changes: tuple[FieldChange, ...] = ()
    """For CHANGED: the fields that differ."""


@dataclass(frozen=True, slots=True)
class FigureChange:
    """A stage, total or config figure that differs."""

    scope: str
    """``"config"``, ``"stage"`` or ``"total"``."""
    stage: int | None
    name: str
    stored: Any
    current: Any


@dataclass(frozen=True, slots=True)
class SnapshotReport:
    """Every difference between a stored snapshot and the current trace, stored values first."""

    op_changes: tuple[OpChange, ...]
    figure_changes: tuple[FigureChange, ...]
    stored_version: str = ""
    current_version: str = ""
    stored_provenance: Provenance | None = None
    """The convention, dtype and device the stored figures were made with."""
    current_provenance: Provenance | None = None
    """The same for the current trace (a difference is also one of ``figure_changes``)."""

    @property
    def matches(self) -> bool:
        """True when nothing differs (beyond the tolerance)."""
        return not self.op_changes and not self.figure_changes

    def count(self, status: ChangeStatus) -> int:
        """Number of op changes with ``status``."""
        return sum(1 for change in self.op_changes if change.status == status)


def _differs(name: str, stored: Any, current: Any, rtol: float) -> bool:
    if stored == current:
        return False
    if rtol > 0 and name in COST_FIELDS and isinstance(stored, int) and isinstance(current, int):
        # Exact (Fraction): a float product overflows past 1e308 and rounds past 2**53.
        return abs(current - stored) > Fraction(rtol) * abs(stored)
    return True


def _field_changes(
    stored: Mapping[str, Any], current: Mapping[str, Any], names: Iterable[str], rtol: float
) -> list[FieldChange]:
    return [
        FieldChange(name, stored.get(name), current.get(name))
        for name in names
        if _differs(name, stored.get(name), current.get(name), rtol)
    ]


_OP_FIELDS = ("output", "inputs", "macs", "alloc_bytes", "view", "dtype")


def _op_values(op: SnapshotOp) -> dict[str, Any]:
    return {name: getattr(op, name) for name in _OP_FIELDS}


#: Largest (stored ops x current ops) between the common prefix and suffix that difflib aligns. difflib's
#: cost grows with that product; past it the differing middle is reported as removed and added ops.
MAX_ALIGNMENT_CELLS = 4_000_000


def _alignment(stored: Sequence[Any], current: Sequence[Any]) -> list[tuple[str, int, int, int, int]]:
    """difflib-style opcodes: linear when the sequences are equal, the common prefix and suffix matched
    in linear time, and difflib only on the differing middle while it stays under MAX_ALIGNMENT_CELLS."""
    n, m = len(stored), len(current)
    prefix = 0
    while prefix < min(n, m) and stored[prefix] == current[prefix]:
        prefix += 1
    if prefix == n == m:
        return [("equal", 0, n, 0, m)] if n else []
    suffix = 0
    while suffix < min(n, m) - prefix and stored[n - 1 - suffix] == current[m - 1 - suffix]:
        suffix += 1
    opcodes: list[tuple[str, int, int, int, int]] = [("equal", 0, prefix, 0, prefix)] if prefix else []
    a, b = stored[prefix : n - suffix], current[prefix : m - suffix]
    if len(a) * len(b) <= MAX_ALIGNMENT_CELLS:
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        opcodes += [
            (t, i1 + prefix, i2 + prefix, j1 + prefix, j2 + prefix) for t, i1, i2, j1, j2 in matcher.get_opcodes()
        ]
    else:
        opcodes.append(("replace", prefix, n - suffix, prefix, m - suffix))
    if suffix:
        opcodes.append(("equal", n - suffix, n, m - suffix, m))
    return opcodes


def _compare_ops(stored: Sequence[SnapshotOp], current: Sequence[SnapshotOp], rtol: float) -> list[OpChange]:
    """Align the two op sequences so an inserted op does not shift the rest (see :func:`_alignment`)."""
    changes: list[OpChange] = []
    for tag, i1, i2, j1, j2 in _alignment([op.identity for op in stored], [op.identity for op in current]):
        if tag == "equal":
            for old, new in zip(stored[i1:i2], current[j1:j2], strict=True):
                if old == new:
                    continue
                fields_changed = _field_changes(_op_values(old), _op_values(new), _OP_FIELDS, rtol)
                if fields_changed:
                    changes.append(OpChange(ChangeStatus.CHANGED, new, tuple(fields_changed)))
            continue
        changes.extend(OpChange(ChangeStatus.REMOVED, op) for op in stored[i1:i2])
        changes.extend(OpChange(ChangeStatus.ADDED, op) for op in current[j1:j2])
    return changes


def _identity(snapshot: Snapshot) -> dict[str, Any]:
    """What was traced and how: the config (or model), and the convention, dtype and device."""
    subject = snapshot.config.to_dict() if snapshot.config is not None else {"model": snapshot.model}
    made = snapshot.provenance
    return {**subject, "convention": made.convention, "traced dtype": made.dtype, "device": made.device}


def _compare_figures(stored: Snapshot, current: Snapshot, rtol: float) -> list[FigureChange]:
    figures: list[FigureChange] = []
    old_config, new_config = _identity(stored), _identity(current)
    for change in _field_changes(old_config, new_config, sorted(old_config.keys() | new_config.keys()), rtol):
        figures.append(FigureChange("config", None, change.name, change.stored, change.current))
    old_stages = {s.index: s for s in stored.stages}
    new_stages = {s.index: s for s in current.stages}
    stage_fields = [
        f.name
        for f in fields(StageSummary)
        if f.name != "index" and (stored.recorded is None or f.name in stored.recorded)
    ]
    for index in sorted(old_stages.keys() | new_stages.keys()):
        old, new = old_stages.get(index), new_stages.get(index)
        if old is None or new is None:
            figures.append(FigureChange("stage", index, "stage", old is not None, new is not None))
            continue
        old_values = {name: getattr(old, name) for name in stage_fields}
        new_values = {name: getattr(new, name) for name in stage_fields}
        for change in _field_changes(old_values, new_values, stage_fields, rtol):
            figures.append(FigureChange("stage", index, change.name, change.stored, change.current))
    old_totals = {"input": stored.input_shape, "outputs": stored.outputs, **stored.totals.to_dict()}
    new_totals = {"input": current.input_shape, "outputs": current.outputs, **current.totals.to_dict()}
    old_totals.pop("flops")
    new_totals.pop("flops")
    if stored.recorded is not None:
        old_totals = {k: v for k, v in old_totals.items() if k in ("input", "outputs") or k in stored.recorded}
    for change in _field_changes(old_totals, new_totals, list(old_totals), rtol):
        figures.append(FigureChange("total", None, change.name, change.stored, change.current))
    return figures


def compare_snapshots(stored: Snapshot, current: Snapshot, *, rtol: float = 0.0) -> SnapshotReport:
    """Every difference between ``stored`` and ``current``; costs may differ by ``rtol`` (relative), shapes never.

    Raises:
        UserInputError: ``rtol`` is negative or not finite.
    """
    if not math.isfinite(rtol) or rtol < 0:
        raise UserInputError(f"rtol={rtol} must be a finite number >= 0")
    return SnapshotReport(
        op_changes=tuple(_compare_ops(stored.ops, current.ops, rtol)),
        figure_changes=tuple(_compare_figures(stored, current, rtol)),
        stored_version=stored.tool_version,
        current_version=current.tool_version,
        stored_provenance=stored.provenance,
        current_provenance=current.provenance,
    )
