"""CSV exports: a generic writer and the per-op table of a trace.

Pure text. This module must not import torch, rich or typer. CSV text uses ``\\n`` line ends
and the csv module's minimal quoting, so the same input gives the same bytes; shapes are
written as ``1x3136x64`` (no commas, so no quoting), several shapes joined by ``;``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from pvttrace.records import Shape, Trace

__all__ = ["TRACE_CSV_FIELDS", "csv_shape", "csv_text", "trace_csv"]

CsvCell = str | int | float | bool | None

#: Columns of ``pvttrace run --format csv``: the op record fields, in record order.
TRACE_CSV_FIELDS = (
    "index",
    "stage",
    "block",
    "module",
    "op",
    "kind",
    "label",
    "inputs",
    "output",
    "dtype",
    "macs",
    "flops",
    "out_bytes",
    "alloc_bytes",
    "view",
    "cost_rule",
    "source",
)


def _cell(value: CsvCell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[CsvCell]]) -> str:
    """CSV text with a header row; None becomes an empty cell, booleans ``true``/``false``.

    Example:
        >>> csv_text(["a", "b"], [[1, None], ["x,y", True]])
        'a,b\\n1,\\n"x,y",true\\n'
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row has {len(row)} cells but the header has {len(header)}")
        writer.writerow([_cell(v) for v in row])
    return buffer.getvalue()


def csv_shape(shape: Shape) -> str:
    """``(1, 3136, 64) -> '1x3136x64'``; a scalar's empty shape is ``()``."""
    return "x".join(str(d) for d in shape) if shape else "()"


def trace_csv(trace: Trace, *, stages: Iterable[int] | None = None, kinds: Iterable[str] | None = None) -> str:
    """One row per op with the record fields (:data:`TRACE_CSV_FIELDS`); ``stages``/``kinds`` filter as in ``run``."""
    rows = (
        [
            op.index,
            op.stage,
            op.block,
            op.module,
            op.op,
            op.kind.value,
            op.label,
            ";".join(csv_shape(s) for s in op.inputs),
            csv_shape(op.output),
            op.dtype,
            op.macs,
            op.flops,
            op.out_bytes,
            op.alloc_bytes,
            op.view,
            op.cost_rule.value,
            op.source,
        ]
        for op in trace.select(stages=stages, kinds=kinds)
    )
    return csv_text(TRACE_CSV_FIELDS, rows)
