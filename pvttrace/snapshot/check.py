"""Checking snapshots: cost budgets, and one stored file against a fresh trace of its configuration.

:func:`check_snapshot_file` ties the pieces together for one file and takes the tracing function as an
argument, so this module stays free of torch, rich and typer, never prints and never exits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pvttrace.base.errors import TraceFileError, UserInputError
from pvttrace.base.jsonio import read_json
from pvttrace.config import PvtConfig
from pvttrace.records import Provenance, Shape, Trace
from pvttrace.snapshot.compare import SnapshotReport, compare_snapshots
from pvttrace.snapshot.data import (
    Budgets,
    Snapshot,
    load_snapshot,
    recover_config,
    snapshot_from_trace,
)
from pvttrace.snapshot.storage import write_snapshot

__all__ = ["BudgetViolation", "CheckResult", "CheckStatus", "check_budgets", "check_snapshot_file", "verify_snapshot"]


# ---------------------------------------------------------------------------------- budgets
@dataclass(frozen=True, slots=True)
class BudgetViolation:
    """A cost over its limit."""

    name: str
    """``max_macs``, ``max_params`` or ``max_attention_map``."""
    limit: int
    actual: int
    origin: str
    """Where the limit came from: ``"--max-macs"`` or ``"the snapshot"``."""
    detail: str = ""
    """Where the cost arises, e.g. ``"stage 1"`` for the largest attention map."""


def check_budgets(
    snapshot: Snapshot, command_line: Budgets | None = None, *, given_as: Literal["option", "argument"] = "option"
) -> tuple[BudgetViolation, ...]:
    """Compare ``snapshot``'s costs with its stored budgets, each overridden by the same limit from ``command_line``.

    ``given_as`` names the overriding limits in violations: ``"option"`` (``--max-macs``) or ``"argument"``
    (``max_macs=``, for the pytest fixture).
    """
    command_line = command_line or Budgets()
    stored = snapshot.budgets.to_dict()
    given = command_line.to_dict()
    largest_map = max(snapshot.stages, key=lambda s: s.attention_map_bytes, default=None)
    actual = {
        "max_macs": (snapshot.totals.macs, ""),
        "max_params": (snapshot.totals.params, ""),
        "max_attention_map": (
            (largest_map.attention_map_bytes, f"stage {largest_map.index}") if largest_map else (0, "")
        ),
    }
    violations = []
    for name, (value, detail) in actual.items():
        limit = given.get(name, stored.get(name))
        if limit is not None and value > limit:
            if name not in given:
                origin = "the snapshot"
            else:
                origin = "--" + name.replace("_", "-") if given_as == "option" else f"{name}="
            violations.append(BudgetViolation(name, limit, value, origin, detail))
    return tuple(violations)


# ---------------------------------------------------------------------------------- checking files
class CheckStatus(StrEnum):
    """Outcome of checking one snapshot file."""

    PASSED = "ok"
    FAILED = "FAIL"
    UPDATED = "updated"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What checking one snapshot file found (and did, under ``update``)."""

    path: str
    config: PvtConfig | None
    report: SnapshotReport | None
    """None when there was no readable stored snapshot to compare with (``update`` wrote a fresh one)."""
    violations: tuple[BudgetViolation, ...]
    written: bool = False
    """True when ``update`` brought the file up to date (also when a concurrent update had just written it)."""
    description: str = ""
    provenance: Provenance | None = None
    """The convention, dtype and device of the current trace the file was checked against."""
    """What was checked, in words (:meth:`Snapshot.describe`)."""

    @property
    def status(self) -> CheckStatus:
        """FAIL (a difference left unwritten, or a budget exceeded), updated (rewritten under update) or ok."""
        if self.violations or (self.report is not None and not self.report.matches and not self.written):
            return CheckStatus.FAILED
        return CheckStatus.UPDATED if self.written else CheckStatus.PASSED

    @property
    def passed(self) -> bool:
        """True unless the check failed."""
        return self.status != CheckStatus.FAILED


def verify_snapshot(
    path: str,
    stored: Snapshot | None,
    current: Snapshot,
    *,
    rtol: float = 0.0,
    budgets: Budgets | None = None,
    update: bool = False,
    budgets_given_as: Literal["option", "argument"] = "option",
) -> CheckResult:
    """Compare ``current`` with ``stored`` (None: no readable file), check budgets, and under ``update`` rewrite.

    ``update`` writes ``current`` (which should carry the stored budgets) when it differs, when nothing
    readable was stored, or when the file lacks figures this version records (written by an older
    pvttrace); budgets still fail, since a rewrite cannot fix a cost.
    """
    report = None if stored is None else compare_snapshots(stored, current, rtol=rtol)
    written = False
    outdated = stored is not None and stored.recorded is not None and stored.recorded != _figure_fields(current)
    if update and (report is None or not report.matches or outdated):
        # True also when a concurrent update already wrote these very bytes: the file is current either way.
        write_snapshot(path, current)
        written = True
    violations = check_budgets(current, budgets, given_as=budgets_given_as)
    return CheckResult(path, current.config, report, violations, written, current.describe(), current.provenance)


def _figure_fields(snapshot: Snapshot) -> frozenset[str]:
    """The stage and total field names ``snapshot`` writes (to spot files from an older pvttrace)."""
    # The two parts of Snapshot.to_dict that name figures; not the whole document, which has a dict per op.
    return frozenset(snapshot.totals.to_dict()).union(*(frozenset(stage.to_dict()) for stage in snapshot.stages))


def check_snapshot_file(
    path: str,
    *,
    trace: Callable[[PvtConfig], Trace],
    rtol: float = 0.0,
    budgets: Budgets | None = None,
    update: bool = False,
    trace_model: Callable[[str, Shape], Trace] | None = None,
) -> CheckResult:
    """Rebuild the configuration stored in ``path``, trace it once with ``trace``, and compare.

    Under ``update`` a file that differs is rewritten, and so is one that is unreadable apart from its
    config (e.g. malformed ops or an older schema); a file without a readable config, or of a newer
    schema, is never touched. A ``--model`` snapshot is re-traced with ``trace_model(model, input_shape)``.

    Raises:
        TraceFileError: the file is missing or invalid (under ``update``: and its config unreadable).
        UserInputError: ``rtol`` is invalid.
    """
    stored: Snapshot | None = None
    try:
        stored = load_snapshot(path)
        config, stored_budgets = stored.config, stored.budgets
    except TraceFileError as exc:
        if not update:
            raise
        try:
            config, stored_budgets = recover_config(read_json(path, what="snapshot"))
        except (TraceFileError, ValueError, KeyError, TypeError, RecursionError):
            raise TraceFileError(f"{exc}; --update leaves it alone (no config this version can rebuild)") from None
    if stored is not None and stored.config is None:
        if trace_model is None or stored.model is None:
            raise UserInputError(f"{path}: a --model snapshot needs a model tracer to be checked")
        current = snapshot_from_trace(trace_model(stored.model, stored.input_shape), stored_budgets)
    elif config is None:
        raise TraceFileError(f"{path} has no config to re-trace")
    else:
        current = snapshot_from_trace(trace(config), stored_budgets)
    return verify_snapshot(path, stored, current, rtol=rtol, budgets=budgets, update=update)
