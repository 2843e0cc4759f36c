"""Reading pvttrace's JSON files defensively: regular files only, a size limit, strict JSON, printable strings.

Snapshots and traces arrive through pull requests, so every reader treats them as hostile data:

* only a regular file is read (a FIFO would block forever, ``/dev/zero`` never ends) and only up to
  :data:`MAX_FILE_BYTES`, so a huge file gives a one-line error instead of a ``MemoryError``;
* duplicate object keys are an error (JSON keeps the last one silently, so a second ``"budgets"``
  could hide the first);
* control characters and escape sequences in strings are replaced by visible ``\\xNN`` escapes when
  the file is parsed, so that nothing read from a file can drive the terminal when it is printed.

Pure functions; no torch, rich or typer.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any

from pvttrace.base.errors import TraceFileError

__all__ = ["MAX_FILE_BYTES", "loads_strict", "printable", "read_text_file"]

#: Largest snapshot or trace file pvttrace reads. A 4096-block trace with source lines is about 150 MiB;
#: parsing JSON takes roughly ten times the file's size in memory.
MAX_FILE_BYTES = 256 * 2**20

# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows.
_UNPRINTABLE = frozenset(
    [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F]
)


def printable(text: str) -> str:
    """``text`` with each control character shown as an escape (``\\x1b``); other characters unchanged."""
    if all(ord(c) not in _UNPRINTABLE for c in text):
        return text
    return "".join(
        (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") if ord(c) in _UNPRINTABLE else c for c in text
    )


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise TraceFileError(f"has the key {printable(key)!r} twice in one object; JSON keeps only the last")
        document[printable(key)] = _clean(value)
    return document


def loads_strict(text: str) -> Any:
    """``json.loads`` that rejects duplicate keys and makes every string printable.

    Raises:
        TraceFileError: a duplicate key (the message starts with ``has``).
        ValueError, RecursionError: as ``json.loads`` (callers turn them into one line).
    """
    value = json.loads(text, object_pairs_hook=_object)
    return _clean(value)


def read_text_file(path: str, *, what: str = "pvttrace") -> str:
    """The UTF-8 text of the regular file ``path``, at most :data:`MAX_FILE_BYTES` long.

    The file is opened without blocking and checked with ``fstat`` on the open descriptor, so a FIFO,
    a device or a directory is refused before anything is read.

    Raises:
        TraceFileError: missing, not a regular file, too large, not UTF-8 or unreadable (one line).
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise TraceFileError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise TraceFileError(f"{path} is a directory, not a {what} file") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO or socket with nobody on the other end
            raise TraceFileError(f"{path} is not a regular file (a FIFO or socket), so not a {what}") from None
        raise TraceFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise TraceFileError(f"{path} is a directory, not a {what} file")
        if not stat.S_ISREG(info.st_mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(info.st_mode)
                else "a device"
                if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                else "a socket"
                if stat.S_ISSOCK(info.st_mode)
                else "not a regular file"
            )
            raise TraceFileError(f"{path} is {kind}, not a regular file; pvttrace reads only regular files")
        if info.st_size > MAX_FILE_BYTES:
            raise TraceFileError(_too_large(path, info.st_size))
        chunks: list[bytes] = []
        size = 0
        while True:  # read to the end, but never past the limit (the file may grow while read)
            chunk = os.read(descriptor, min(2**20, MAX_FILE_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise TraceFileError(_too_large(path, size))
    except OSError as exc:
        raise TraceFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(descriptor)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise TraceFileError(f"{path} is not UTF-8 text, so not a {what}") from None


def _too_large(path: str, size: int) -> str:
    return (
        f"{path} is {size / 2**20:.0f} MiB or more, larger than the {MAX_FILE_BYTES // 2**20} MiB pvttrace reads "
        f"(a 4096-block trace is about 150 MiB)"
    )
