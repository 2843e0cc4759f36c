"""Snapshot files: their stable byte layout and how they are written (atomically, only when changed).

File layout: keys are sorted and indented by two spaces like every pvttrace JSON, except that each
op is written on one line. A changed op then shows up in a review diff as one ``-``/``+`` pair that
carries its module, label and shapes together, and the files stay about 4x smaller.

Writing goes through :func:`pvttrace.base.jsonio.write_text_atomic`, the one atomic writer of pvttrace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pvttrace.base.errors import TraceFileError
from pvttrace.base.jsonio import read_text_file, write_text_atomic
from pvttrace.snapshot.data import SNAPSHOT_VERSION, Snapshot

__all__ = ["damaged_own_snapshot", "dumps_snapshot", "write_snapshot"]


def dumps_snapshot(snapshot: Snapshot) -> str:
    """Stable bytes: sorted keys, 2-space indent, one line per op, trailing newline.

    Apart from the one-line ops, the layout is exactly ``json.dumps(..., sort_keys=True, indent=2)``.
    """
    return _dump(snapshot.to_dict(), 0, top=True) + "\n"


def _dump(value: Any, depth: int, *, top: bool = False, one_line_items: bool = False) -> str:
    inner, outer = "  " * (depth + 1), "  " * depth
    if isinstance(value, Mapping) and value:
        items = [
            f"{inner}{json.dumps(key)}: {_dump(value[key], depth + 1, one_line_items=top and key == 'ops')}"
            for key in sorted(value)
        ]
        return "{\n" + ",\n".join(items) + "\n" + outer + "}"
    if isinstance(value, list) and value:
        if one_line_items:
            items = [inner + json.dumps(item, sort_keys=True, ensure_ascii=False) for item in value]
        else:
            items = [inner + _dump(item, depth + 1) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + outer + "]"
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def damaged_own_snapshot(path: str) -> bool:
    """True when ``path`` is a regular file that looks like a damaged pvttrace snapshot of this or an older
    schema: its schema line says so, or it starts as :func:`dumps_snapshot` writes. A caller that has the
    config from elsewhere (the pytest plugin) may rewrite it; a hand-written or newer file is never one."""
    try:
        text = read_text_file(path)
    except TraceFileError:
        return False
    found = re.search(r'"schema"\s*:\s*"pvttrace\.snapshot/([1-9][0-9]{0,8})"', text, re.ASCII)
    if found is not None:
        return int(found.group(1)) <= SNAPSHOT_VERSION
    return text.startswith('{\n  "budgets": ')


def write_snapshot(path: str, snapshot: Snapshot) -> bool:
    """Write ``snapshot`` to ``path`` atomically; return False (and touch nothing) when the bytes are already there."""
    text = dumps_snapshot(snapshot)
    try:
        if read_text_file(path) == text:
            return False
    except TraceFileError:
        pass
    write_text_atomic(path, text)
    return True
