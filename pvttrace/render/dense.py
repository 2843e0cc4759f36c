"""Rendering of whole-model training memory: saved-for-backward bytes per stage and part, side by side.

Turns traces (pure data) into a rich table or markdown; no torch, no printing.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.table import Table

from pvttrace.base.units import format_bytes
from pvttrace.records import Trace
from pvttrace.render.markdown import markdown_row
from pvttrace.tracing.dense import saved_by_part

__all__ = ["training_parts_markdown", "training_parts_rows", "training_parts_table"]


def training_parts_rows(traces: Sequence[Trace]) -> list[list[str]]:
    """One row per stage/part with each trace's saved-for-backward bytes, then the training peak row."""
    per_trace = [dict(saved_by_part(t)) for t in traces]
    keys: list[str] = []
    for parts in per_trace:
        keys += [k for k in parts if k not in keys]
    rows = [[key, *(format_bytes(parts[key]) if key in parts else "-" for parts in per_trace)] for key in keys]
    rows.append(["training peak", *(format_bytes(t.training.peak_bytes) if t.training else "-" for t in traces)])
    return rows


def training_parts_table(traces: Sequence[Trace], names: Sequence[str]) -> Table:
    """Saved for backward per stage and part (neck, head, loss), and the training peak, per configuration."""
    table = Table(
        title="Training memory: saved for backward by part, and the step's peak",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("part")
    for name in names:
        table.add_column(name, justify="right")
    for row in training_parts_rows(traces):
        table.add_row(*row, style="bold" if row[0] == "training peak" else "")
    return table


def training_parts_markdown(traces: Sequence[Trace], names: Sequence[str]) -> str:
    """The same table as markdown."""
    lines = [markdown_row(["part", *names]), markdown_row(["---"] + ["---:"] * len(names))]
    lines += [markdown_row(row) for row in training_parts_rows(traces)]
    return "\n### Training memory by part\n\n" + "\n".join(lines) + "\n"
