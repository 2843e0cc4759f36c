"""GitHub markdown pieces shared by every view: the one table-row helper.

Pure text; no torch, rich or typer. A ``|`` inside a cell is escaped so it cannot split the row.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["markdown_row"]


def markdown_row(cells: Iterable[str]) -> str:
    """One table row: ``| a | b |``, with ``|`` inside a cell escaped."""
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
