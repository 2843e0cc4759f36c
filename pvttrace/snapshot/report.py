"""Snapshot check results as plain text lines: what ``pvttrace snapshot check`` and the pytest plugin print.

Pure functions from :mod:`pvttrace.snapshot` data to lists of strings, so the same words appear in a
terminal, a CI log and a pytest failure. Nothing here prints; no torch, rich or typer.

Lines read as ``stored -> current``. Changes that repeat identically across the blocks of a stage
are merged into one line (``stage 1, blocks 0-1, attn: ...``), and each stage shows at most
``limit`` op lines followed by a count of the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from pvttrace.base.units import format_bytes, format_count, format_ratio
from pvttrace.snapshot.check import BudgetViolation, CheckResult
from pvttrace.snapshot.compare import ChangeStatus, FieldChange, FigureChange, OpChange, SnapshotReport
from pvttrace.snapshot.data import SnapshotOp

__all__ = ["budget_line", "report_lines", "result_lines"]

_FIGURE_NAMES = {
    "hw": "grid",
    "tokens": "tokens",
    "kv_tokens": "kv tokens",
    "dim": "dim",
    "heads": "heads",
    "sr_ratio": "sr ratio",
    "depth": "depth",
    "params": "params",
    "param_bytes": "param bytes",
    "buffer_bytes": "buffer bytes",
    "macs": "MACs",
    "attention_macs": "attention MACs",
    "sr_macs": "SR conv MACs",
    "projection_macs": "projection MACs",
    "mlp_macs": "MLP MACs",
    "other_macs": "other MACs",
    "attention_map_shape": "attention map",
    "attention_map_bytes": "attention map bytes",
    "output": "output",
    "outputs": "outputs",
    "input": "input",
    "largest_activation_bytes": "largest activation",
    "ops": "ops",
    "uncosted_ops": "uncosted ops",
    "inputs": "inputs",
    "alloc_bytes": "alloc",
    "view": "view",
    "dtype": "dtype",
    "input_bytes": "input bytes",
    "peak_activation_bytes": "activation peak",
    "peak_memory_bytes": "peak memory",
    "peak_op": "peak op",
    "peak_stage": "peak stage",
    "live_bytes": "live",
    "peak_bytes": "peak",
    "saved_bytes": "saved",
    "out_bytes": "output bytes",
}
_COUNT_FIELDS = frozenset({"params", "macs", "attention_macs", "sr_macs", "projection_macs", "mlp_macs", "other_macs"})
_BYTE_FIELDS = frozenset(
    {
        "param_bytes",
        "buffer_bytes",
        "alloc_bytes",
        "attention_map_bytes",
        "largest_activation_bytes",
        "input_bytes",
        "peak_activation_bytes",
        "peak_memory_bytes",
        "live_bytes",
        "peak_bytes",
        "saved_bytes",
        "out_bytes",
    }
)
#: Positions, not amounts: shown as ``#29 -> #20`` without a ratio.
_INDEX_FIELDS = frozenset({"peak_op", "peak_stage", "index", "stage", "block"})


def _compact(value: Any) -> str:
    """Shapes as ``[1,1,3136,49]``, lists of shapes as ``[..],[..]``, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, (tuple, list)):
        if value and all(isinstance(v, (tuple, list)) for v in value):
            return ",".join(_compact(v) for v in value)
        return "[" + ",".join(_compact(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _scaled_pair(stored: int, current: int, formatter: Callable[[int, int], str]) -> tuple[str, str]:
    """Both values with the fewest digits that still tell them apart (exact integers as the last resort)."""
    for digits in (1, 2, 3):
        old, new = formatter(stored, digits), formatter(current, digits)
        if old != new or stored == current:
            return old, new
    return f"{stored:,}", f"{current:,}"


def _value_pair(name: str, stored: Any, current: Any) -> str:
    numeric = isinstance(stored, int) and isinstance(current, int) and not isinstance(stored, bool)
    if name == "view":
        return f"{'view' if stored else 'copy'} -> {'view' if current else 'copy'}"
    if name == "hw" and stored and current:
        return f"{stored[0]}x{stored[1]} -> {current[0]}x{current[1]}"
    if name in _INDEX_FIELDS:
        mark = "#" if name in ("peak_op", "index") else ""
        return " -> ".join("-" if v is None else f"{mark}{v}" for v in (stored, current))
    if numeric and name in _COUNT_FIELDS:
        old, new = _scaled_pair(stored, current, format_count)
    elif numeric and name in _BYTE_FIELDS:
        old, new = _scaled_pair(stored, current, format_bytes)
    else:
        old, new = _compact(stored), _compact(current)
    ratio = f" ({format_ratio(current, stored)})" if numeric and stored != 0 else ""
    return f"{old} -> {new}{ratio}"


def _figure_line(change: FigureChange) -> str:
    if change.scope == "config":
        return f"config {change.name} {_value_pair(change.name, change.stored, change.current)}"
    if change.scope == "stage" and change.name == "stage":
        return f"stage {change.stage} {'added' if change.current else 'removed'}"
    prefix = f"stage {change.stage}" if change.scope == "stage" else "total"
    name = _FIGURE_NAMES.get(change.name, change.name)
    return f"{prefix} {name} {_value_pair(change.name, change.stored, change.current)}"


_BLOCK_PREFIX = re.compile(r"^(?:.*?\.)?(?:block\d+|blocks)\.\d+(?:\.|$)")


def _op_place(op: SnapshotOp) -> str:
    """The module path inside its block (``attn.sr``), or the whole path outside blocks."""
    if op.block is not None:
        inner = _BLOCK_PREFIX.sub("", op.module)
        return inner or "(block)"
    return op.module or "(model)"


def _op_what(op: SnapshotOp) -> str:
    return f'{op.kind} "{op.label}"' if op.label else f"{op.kind} ({op.op})"


def _field_texts(change: FieldChange) -> list[str]:
    """``inputs`` of equal count name only the inputs that changed (``inputs[1] [64,64,8,8] -> [64,64,4,4]``)."""
    if change.name == "inputs" and len(change.stored) == len(change.current):
        return [
            f"inputs[{i}] {_compact(old)} -> {_compact(new)}"
            for i, (old, new) in enumerate(zip(change.stored, change.current, strict=True))
            if old != new
        ]
    return [f"{_FIGURE_NAMES.get(change.name, change.name)} {_value_pair(change.name, change.stored, change.current)}"]


def _op_detail(change: OpChange) -> str:
    if change.status == ChangeStatus.CHANGED:
        return "; ".join(text for field_change in change.changes for text in _field_texts(field_change))
    extra = f", MACs {format_count(change.op.macs, 1)}" if change.op.macs else ""
    return f"{change.status.value} (output {_compact(change.op.output)}{extra})"


def _block_list(blocks: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"blocks 0-2, 5"``; one block -> ``"block 3"``."""
    ordered = sorted(set(blocks))
    if len(ordered) == 1:
        return f"block {ordered[0]}"
    runs: list[str] = []
    start = previous = ordered[0]
    for block in [*ordered[1:], None]:
        if block is not None and block == previous + 1:
            previous = block
            continue
        runs.append(str(start) if start == previous else f"{start}-{previous}")
        if block is not None:
            start = previous = block
    return "blocks " + ", ".join(runs)


def _op_lines(changes: Sequence[OpChange]) -> list[tuple[str, int]]:
    """One line per distinct change, blocks that change alike merged; each with the number of ops it stands for."""
    merged: dict[tuple[Any, ...], list[OpChange]] = {}
    for change in changes:
        op = change.op
        key = (op.stage, op.block is None, _op_place(op), _op_what(op), _op_detail(change))
        merged.setdefault(key, []).append(change)
    lines = []
    for (stage, outside_blocks, place, what, detail), group in merged.items():
        where = [] if stage is None else [f"stage {stage}"]
        blocks = {c.op.block for c in group if c.op.block is not None}
        if not outside_blocks:
            where.append(_block_list(sorted(blocks)))
        times = f" (x{len(group)} ops)" if len(group) > max(1, len(blocks)) else ""
        where.append(place)
        lines.append((f"{', '.join(where)}: {what} {detail}{times}", len(group)))
    return lines


def report_lines(
    report: SnapshotReport, *, limit: int = 10, indent: str = "  ", show_all_hint: str = "--limit 0 shows all"
) -> list[str]:
    """The report as plain lines, grouped by stage (config first, totals last).

    Each stage shows its figures, then at most ``limit`` op lines (0: no limit) and a count of the rest,
    followed by ``show_all_hint``.
    """
    lines: list[str] = []
    config = [c for c in report.figure_changes if c.scope == "config"]
    if config:
        lines.append(f"{indent}config:")
        lines.extend(f"{indent * 2}{_figure_line(c)}" for c in config)
    stage_keys = {c.stage for c in report.figure_changes if c.scope == "stage"}
    stage_keys |= {c.op.stage for c in report.op_changes}
    for stage in sorted(stage_keys, key=lambda s: (s is None, s or 0)):
        figures = [c for c in report.figure_changes if c.scope == "stage" and c.stage == stage]
        ops = [c for c in report.op_changes if c.op.stage == stage]
        op_lines = _op_lines(ops)
        counts = []
        if figures:
            counts.append(f"{len(figures)} figure(s)")
        if ops:
            counts.append(f"{len(ops)} op(s)")
        title = f"stage {stage}" if stage is not None else "outside the stages"
        lines.append(f"{indent}{title}: {', '.join(counts)} differ")
        lines.extend(f"{indent * 2}{_figure_line(c)}" for c in figures)
        shown = op_lines if limit <= 0 else op_lines[:limit]
        lines.extend(f"{indent * 2}{text}" for text, _ in shown)
        hidden = sum(count for _, count in op_lines[len(shown) :])
        if hidden:
            lines.append(f"{indent * 2}... and {hidden} more op change(s) in {title} ({show_all_hint})")
    totals = [c for c in report.figure_changes if c.scope == "total"]
    if totals:
        lines.append(f"{indent}totals:")
        lines.extend(f"{indent * 2}{_figure_line(c)}" for c in totals)
    return lines


_BUDGET_NAMES = {"max_macs": "MACs", "max_params": "params", "max_attention_map": "largest attention map"}


def budget_line(violation: BudgetViolation) -> str:
    """``budget: MACs 1.93 G (1,932,911,616) over the limit 1 G (--max-macs)``."""
    as_bytes = violation.name == "max_attention_map"
    show = format_bytes if as_bytes else format_count
    where = f" in {violation.detail}" if violation.detail else ""
    return (
        f"budget: {_BUDGET_NAMES[violation.name]} {show(violation.actual)} ({violation.actual:,}){where} over the "
        f"limit {show(violation.limit)} ({violation.origin})"
    )


def result_lines(result: CheckResult, *, limit: int = 10, show_all_hint: str = "--limit 0 shows all") -> list[str]:
    """A file's check as plain lines: a status line, then (when something differs) the report and budget lines."""
    described = result.config.describe() if result.config is not None else result.description
    made = ""
    provenance = result.provenance
    if provenance is not None:  # the dtype only where the config does not already say it
        said = result.config is not None and result.config.dtype == provenance.dtype
        where = f"device {provenance.device}" if said else f"{provenance.dtype} on {provenance.device}"
        made = f" (convention {provenance.convention}, {where})"
    lines = [f"{result.status.value} {result.path}: {described}{made}"]
    report = result.report
    if report is not None and not report.matches:
        changed, added, removed = (report.count(s) for s in ChangeStatus)
        summary = (
            f"  {changed} op(s) changed, {added} added, {removed} removed; "
            f"{len(report.figure_changes)} figure(s) differ (stored -> current)"
        )
        if report.stored_version != report.current_version:
            summary += f"; stored by pvttrace {report.stored_version or '?'}, now {report.current_version or '?'}"
        lines.append(summary)
        lines.extend(report_lines(report, limit=limit, indent="  ", show_all_hint=show_all_hint))
    lines.extend(f"  {budget_line(v)}" for v in result.violations)
    return lines
