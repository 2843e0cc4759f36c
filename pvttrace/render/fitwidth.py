"""Fit rich tables to the console width without cutting a number.

Rendering only (rich, no torch, no typer, no printing). Rich squeezes a table that is wider than
the console by wrapping or cutting cells, which turns ``894.66 K`` into ``894.… K`` or a ratio into
``…``. :class:`FittedTable` instead measures the table's natural width when it is rendered and
drops whole columns, lowest priority first (official name, grid, N, module path ...), until it
fits; one dim line under the table names what was left out. Every kept column is ``no_wrap``.
The width is the console's at render time, so the same object fits a terminal, ``--width`` and
``rich.print`` from Python alike.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

__all__ = ["FittedTable", "dropped_note", "fitted"]

#: Width used to measure a table's natural (unsqueezed) width.
_UNLIMITED = 10_000


def _header_text(header: RenderableType) -> str:
    return header.plain if isinstance(header, Text) else str(header)


def dropped_note(names: Sequence[str], width: int) -> Text:
    """The one dim line that says which columns a table left out at ``width`` columns."""
    return Text(f"(not shown at {width} columns: {', '.join(names)}; see --width)", style="dim")


class FittedTable:
    """A rich ``Table`` that drops low-priority columns instead of cutting cells when the console is narrow.

    Args:
        table: the full table.
        drop: headers of the columns that may be dropped, first dropped first.
        wrap: headers of text columns (labels, never numbers) that may wrap onto more lines when
            the table is still too wide after the drops.
        narrower: a more compact table with the same rows (e.g. values without their exact digits),
            used when this one is still too wide after the drops.
    """

    def __init__(
        self, table: Table, drop: Iterable[str] = (), wrap: Iterable[str] = (), narrower: FittedTable | None = None
    ) -> None:
        self.table = table
        self.drop = tuple(drop)
        self.narrower = narrower
        wrapping = set(wrap)
        for column in table.columns:
            column.no_wrap = _header_text(column.header) not in wrapping
            if not column.no_wrap:
                column.overflow = "fold"

    @property
    def columns(self) -> list[object]:
        """The full table's columns (for code that inspects the table)."""
        return list(self.table.columns)

    def natural_width(self, console: Console, options: ConsoleOptions, table: Table | None = None) -> int:
        """The width the table needs with no cell wrapped or cut."""
        return Measurement.get(console, options.update_width(_UNLIMITED), table or self.table).maximum

    def fit(self, console: Console, options: ConsoleOptions) -> tuple[Table, list[str]]:
        """The table to print at ``options.max_width`` and the headers of the columns dropped."""
        width = options.max_width
        table = self.table
        if self.natural_width(console, options) <= width:
            return table, []
        dropped: list[str] = []
        for name in self.drop:
            kept = [c for c in table.columns if _header_text(c.header) != name]
            if len(kept) == len(table.columns):
                continue
            table = copy.copy(table)
            table.columns = kept
            dropped.append(name)
            if self.natural_width(console, options, table) <= width:
                return table, dropped
        if self.narrower is not None and self.natural_width(console, options, table) > width:
            return self.narrower.fit(console, options)
        if self.natural_width(console, options, table) > width and table.box not in (None, box.SIMPLE_HEAD):
            # Last resort before cutting: a box without vertical rules saves one column per border.
            table = copy.copy(table)
            table.box = box.SIMPLE_HEAD
        return table, dropped

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Render the fitted table, then the note naming the dropped columns."""
        table, dropped = self.fit(console, options)
        yield table
        if dropped:
            yield dropped_note(dropped, options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        """As wide as the fitted table."""
        table, _ = self.fit(console, options)
        return Measurement.get(console, options, table)


def fitted(
    table: Table, drop: Iterable[str] = (), wrap: Iterable[str] = (), narrower: FittedTable | None = None
) -> FittedTable:
    """Wrap ``table`` so that it drops the ``drop`` columns (first first) rather than cut cells when narrow."""
    return FittedTable(table, drop, wrap, narrower)
