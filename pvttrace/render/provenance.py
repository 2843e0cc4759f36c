"""How a report's traces were made, in words: the counting convention, the dtype and the device.

Every report (run, diff, sweep, snapshot check) states these, read from its traces. Where the columns
of a comparison differ, each column is named with its own value, and a difference in convention is
called out: MACs of two conventions are different quantities.
"""

from __future__ import annotations

from collections.abc import Sequence

from pvttrace.records import CONVENTIONS, Provenance

__all__ = ["provenance_lines"]


def provenance_lines(labels: Sequence[str], provenances: Sequence[Provenance]) -> list[str]:
    """Two lines for a comparison: the convention, then the dtype and device (per column where they differ).

    Example (one convention): ``convention: macs = multiply-accumulates ...`` and
    ``dtype: float32; device: meta``. With different conventions the first line names each column's and
    warns that ratios between them compare different counts.
    """
    conventions = [p.convention for p in provenances]
    if len(set(conventions)) == 1:
        first = f"convention: {CONVENTIONS[conventions[0]]}"
    else:
        columns = ", ".join(f"{label} {name}" for label, name in zip(labels, conventions, strict=True))
        first = f"conventions differ: {columns}; ratios between them compare different counts"
    parts = []
    for name, values in (("dtype", [p.dtype for p in provenances]), ("device", [p.device for p in provenances])):
        if len(set(values)) == 1:
            parts.append(f"{name}: {values[0]}")
        else:
            parts.append(f"{name}: " + ", ".join(f"{label} {v}" for label, v in zip(labels, values, strict=True)))
    return [first, "; ".join(parts)]
