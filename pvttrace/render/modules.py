"""Rich table for the per-module view (:mod:`pvttrace.analyses.module_view`)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from pvttrace.analyses.module_view import ModuleRow
from pvttrace.base.units import format_bytes, format_count

__all__ = ["module_table"]


def module_table(rows: Sequence[ModuleRow], *, title: str = "Modules") -> Table:
    """One row per module, indented by depth: type, output, params, MACs and the activation peak while it ran."""
    table = Table(title=title, title_justify="left")
    # Fits 80 columns: the data's new-allocation bytes (``alloc_bytes``) stay out of the table.
    for name in ("module", "type", "output", "params", "MACs", "peak"):
        if name in ("module", "type", "output"):
            table.add_column(name, no_wrap=True, overflow="ellipsis")
        else:  # numbers never shrink: the text columns give way
            table.add_column(name, justify="right", no_wrap=True, min_width=9)
    for row in rows:
        parts = row.path.split(".") if row.path else []
        # A list index alone ("0") says little: show it with its list's name.
        leaf = ".".join(parts[-2:]) if parts and parts[-1].isdigit() else (parts[-1] if parts else "(model)")
        table.add_row(
            " " * max(0, row.depth - 1) + leaf,
            row.type,
            "x".join(map(str, row.output)) if row.output is not None else "-",
            format_count(row.params) if row.params else "-",
            format_count(row.macs) if row.macs else "-",
            format_bytes(row.peak_bytes),
        )
    return table
