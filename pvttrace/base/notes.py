"""Group a configuration's non-fatal geometry warnings into one line.

At 800x1333 a PVT floors (v1) or pads (v2) its patch grids and SR keys in four to six places;
one ``warning:`` line per place buried the output. :func:`grouped_warnings` keeps a single
warning as it is and folds several into one line that still names every stage and the size
it ends at. Pure text, no heavy imports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["grouped_by_prefix", "grouped_warnings"]

_PATCH = re.compile(
    r"stage (\d+): input \S+ is not divisible by patch stride \d+; PVT v\d (floors|ceils) .* to a (\S+) grid"
)
_SR = re.compile(r"stage (\d+): \S+ grid is not divisible by sr_ratio \d+; the SR conv floors to (\S+) keys")


def _short(message: str) -> str:
    if match := _PATCH.fullmatch(message):
        verb = "floors" if match.group(2) == "floors" else "pads"
        return f"stage {match.group(1)} patch grid {verb} to {match.group(3)}"
    if match := _SR.match(message):
        return f"stage {match.group(1)} SR keys floor to {match.group(2)}"
    return message


def grouped_warnings(warnings: Sequence[str], *, quiet_hint: str = "--quiet hides this") -> list[str]:
    """One warning as it is; several as one line naming each place, ending with ``quiet_hint``."""
    if len(warnings) <= 1:
        return list(warnings)
    shorts = [_short(w) for w in warnings]
    return [f"{len(warnings)} sizes do not divide evenly: {'; '.join(shorts)} ({quiet_hint})"]


_PREFIXED = re.compile(r"^(.+?): (stage \d+: .*)$")


def grouped_by_prefix(warnings: Sequence[str]) -> list[str]:
    """Warnings that name their configuration first (``tiny at 1000x1000: stage 1: ...``): one line per prefix."""
    groups: dict[str, list[str]] = {}
    for message in warnings:
        match = _PREFIXED.match(message)
        prefix, rest = (match.group(1), match.group(2)) if match else ("", message)
        groups.setdefault(prefix, []).append(rest)
    return [
        f"{prefix}: {line}" if prefix else line for prefix, rests in groups.items() for line in grouped_warnings(rests)
    ]
