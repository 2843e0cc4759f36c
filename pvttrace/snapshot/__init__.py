"""Shape snapshots: what a trace is pinned to in CI, compared and checked against budgets.

``pvttrace.snapshot`` is a public import path; the names below are its API. The pieces are separate,
as in syrupy: the data and its parser (:mod:`.data`), the file layout and writing (:mod:`.storage`),
comparing (:mod:`.compare`), budgets and checking a file (:mod:`.check`), and the report's text lines
(:mod:`.report`).
"""

from __future__ import annotations

from pvttrace.base.jsonio import write_bytes_atomic, write_text_atomic
from pvttrace.snapshot.check import (
    BudgetViolation,
    CheckResult,
    CheckStatus,
    check_budgets,
    check_snapshot_file,
    verify_snapshot,
)
from pvttrace.snapshot.compare import (
    COST_FIELDS,
    ChangeStatus,
    FieldChange,
    FigureChange,
    OpChange,
    SnapshotReport,
    compare_snapshots,
)
from pvttrace.snapshot.data import (
    SNAPSHOT_SCHEMA,
    Budgets,
    Snapshot,
    SnapshotOp,
    load_snapshot,
    loads_snapshot,
    snapshot_from_trace,
)
from pvttrace.snapshot.storage import damaged_own_snapshot, dumps_snapshot, write_snapshot

__all__ = [
    "COST_FIELDS",
    "SNAPSHOT_SCHEMA",
    "BudgetViolation",
    "Budgets",
    "ChangeStatus",
    "CheckResult",
    "CheckStatus",
    "FieldChange",
    "FigureChange",
    "OpChange",
    "Snapshot",
    "SnapshotOp",
    "SnapshotReport",
    "check_budgets",
    "check_snapshot_file",
    "compare_snapshots",
    "damaged_own_snapshot",
    "dumps_snapshot",
    "load_snapshot",
    "loads_snapshot",
    "snapshot_from_trace",
    "verify_snapshot",
    "write_bytes_atomic",
    "write_snapshot",
    "write_text_atomic",
]
