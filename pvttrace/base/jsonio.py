"""pvttrace's files: one defensive JSON reader, one typed-field validator, one atomic writer.

Reading. Snapshots and traces arrive through pull requests, so every reader treats them as hostile data:

* only a regular file is read (a FIFO would block forever, ``/dev/zero`` never ends) and only up to
  :data:`MAX_FILE_BYTES`, so a huge file gives a one-line error instead of a ``MemoryError``;
* duplicate object keys are an error (JSON keeps the last one silently, so a second ``"budgets"``
  could hide the first);
* control characters and escape sequences in strings are replaced by visible ``\\xNN`` escapes when
  the file is parsed, so that nothing read from a file can drive the terminal when it is printed.

:func:`read_json` (a file) and :func:`parse_json` (a text) do all of this and turn every failure into one
line (a :class:`TraceFileError` that starts with the file's name).

Validating. :class:`Fields` reads typed fields of one JSON object (``Fields(op, "ops[3]").integer("macs")``);
each failure is a :class:`TraceFileError` naming the field, the value and the rule
(``ops[3].macs='7' must be an integer``); ``json_int`` and ``json_shape`` check one value (a list item).

Writing. :func:`write_text_atomic` / :func:`write_bytes_atomic` are the one way pvttrace writes a file
(snapshots, plots): readers see the old file or the new one, never a mix, and nothing is lost on a failed write.

No torch, rich or typer; nothing printed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pvttrace.base.errors import TraceFileError
from pvttrace.base.gcpause import gc_paused

__all__ = [
    "MAX_FILE_BYTES",
    "Fields",
    "json_error_reason",
    "json_int",
    "json_shape",
    "loads_strict",
    "parse_json",
    "printable",
    "read_json",
    "read_text_file",
    "write_bytes_atomic",
    "write_text_atomic",
]

#: Largest snapshot or trace file pvttrace reads. A 4096-block trace with source lines is about 150 MiB;
#: parsing JSON takes roughly ten times the file's size in memory.
MAX_FILE_BYTES = 256 * 2**20

# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows.
_UNPRINTABLE = frozenset(
    [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F]
)


# The same characters as one regex class: a search runs in C, where a Python loop over every character of a
# multi-megabyte trace file took most of the time of reading it.
_UNPRINTABLE_PATTERN = re.compile("[" + "".join(f"\\u{code:04x}" for code in sorted(_UNPRINTABLE)) + "]")


# The unprintable characters that a JSON text can hold outside escapes and still decode to an unprintable string:
# all but the whitespace between tokens (tab, newline, carriage return), which json.loads refuses inside strings.
_UNPRINTABLE_IN_STRINGS = re.compile(
    "[" + "".join(f"\\u{code:04x}" for code in sorted(_UNPRINTABLE - {0x09, 0x0A, 0x0D})) + "]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with each control character shown as an escape (``\\x1b``); other characters unchanged."""
    if _UNPRINTABLE_PATTERN.search(text) is None:
        return text
    return _UNPRINTABLE_PATTERN.sub(_escape, text)


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


def _object_of_printable(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``_object`` for a text whose strings are known to be printable already: only the duplicate-key check."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise TraceFileError(f"has the key {key!r} twice in one object; JSON keeps only the last")
            seen.add(key)
    return document


def loads_strict(text: str) -> Any:
    """``json.loads`` that rejects duplicate keys and makes every string printable.

    A text with no backslash (so no escape sequence) and no unprintable character other than the whitespace
    between tokens cannot decode to an unprintable string (``json.loads`` refuses raw control characters in
    strings): then only keys are checked, which makes reading a large trace several times faster.

    Raises:
        TraceFileError: a duplicate key (the message starts with ``has``).
        ValueError, RecursionError: as ``json.loads`` (callers turn them into one line).
    """
    with gc_paused():  # a large file makes a dict per op, all alive until the caller drops them
        if "\\" not in text and _UNPRINTABLE_IN_STRINGS.search(text) is None:
            return json.loads(text, object_pairs_hook=_object_of_printable)
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


# ---------------------------------------------------------------------------------- parsing
def json_error_reason(exc: ValueError | RecursionError) -> str:
    """Why ``json.loads`` failed, in one line: its own message, except two that read as Python internals."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    if "integer string conversion" in str(exc):
        return f"it holds a number of more than {sys.get_int_max_str_digits()} digits"
    return " ".join(str(exc).split())


def _parse_failure(text: str, exc: ValueError | RecursionError) -> str:
    # A document cut short fails on its last line (an open string, a half-written ``nul``, a missing
    # bracket); garbage fails where it starts, and extra data is not a truncation.
    if isinstance(exc, json.JSONDecodeError):
        ends_early = (
            text.lstrip().startswith(("{", "["))
            and exc.pos > 0
            and "\n" not in text[exc.pos :].rstrip()
            and not exc.msg.startswith("Extra data")
        )
        if ends_early:
            return f"is truncated: the JSON ends early (line {exc.lineno}, column {exc.colno})"
    return f"is not valid JSON ({json_error_reason(exc)})"


def parse_json(text: str, *, origin: str) -> Any:
    """The JSON value of ``text`` (duplicate keys refused, strings made printable; see :func:`loads_strict`).

    Raises:
        TraceFileError: ``"{origin} {reason}"``: empty, truncated, not JSON, a duplicate key, nested too deeply,
            a number too long for Python.
    """
    if not text.strip():
        raise TraceFileError(f"{origin} is empty")
    try:
        return loads_strict(text)
    except TraceFileError as exc:
        raise TraceFileError(f"{origin} {exc}") from None
    except (ValueError, RecursionError) as exc:  # ValueError: also a number of more than 4300 digits
        raise TraceFileError(f"{origin} {_parse_failure(text, exc)}") from None


def read_json(path: str, *, what: str = "pvttrace") -> Any:
    """The JSON value of the regular file ``path`` (:func:`read_text_file`, then :func:`parse_json`).

    Raises:
        TraceFileError: the file cannot be read, or is not strict JSON (one line naming ``path``).
    """
    return parse_json(read_text_file(path, what=what), origin=path)


# ---------------------------------------------------------------------------------- typed fields
def _shown(value: Any) -> str:
    """``repr(value)``, cut to 80 characters (a stored string may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:76] + "...'"


def json_int(value: Any, where: str = "value") -> int:
    """``value`` when it is a JSON integer (not a bool, float, string or list).

    Raises:
        TraceFileError: ``"{where}={value!r} must be an integer"``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TraceFileError(f"{where}={_shown(value)} must be an integer")
    return value


def json_shape(value: Any, where: str = "shape") -> tuple[int, ...]:
    """``value`` as a shape: a JSON list of integers (or a tuple, from a document built in Python).

    Raises:
        TraceFileError: ``"{where}={value!r} must be a list of integers"``.
    """
    if not isinstance(value, list | tuple) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise TraceFileError(f"{where}={_shown(value)} must be a list of integers")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Fields:
    """Typed reads of the fields of one JSON object that a file gave us.

    ``where`` names the object in messages (``ops[3]``, ``budgets``); every failure is a
    :class:`TraceFileError` naming field, value and rule, e.g. ``ops[3].macs='7' must be an integer``.
    Callers put the file name and their own prefix in front (``PATH is malformed: ...``).
    """

    data: Mapping[str, Any]
    where: str

    @classmethod
    def of(cls, value: Any, where: str) -> Fields:
        """Fields of ``value``, which must be a JSON object.

        Raises:
            TraceFileError: ``"{where} must be a JSON object"``.
        """
        if not isinstance(value, Mapping):
            raise TraceFileError(f"{where} must be a JSON object")
        return cls(value, where)

    def has(self, name: str) -> bool:
        """True when the object holds ``name`` with a value other than null."""
        return self.data.get(name) is not None

    def value(self, name: str) -> Any:
        """The raw value of the required field ``name``."""
        if name not in self.data:
            raise TraceFileError(f"{self.where} has no field {name!r}")
        return self.data[name]

    def string(self, name: str) -> str:
        """A required string."""
        value = self.value(name)
        if not isinstance(value, str):
            raise TraceFileError(f"{self.where}.{name}={_shown(value)} must be a string")
        return value

    def integer(self, name: str) -> int:
        """A required integer (not a bool or a float)."""
        return json_int(self.value(name), f"{self.where}.{name}")

    def boolean(self, name: str) -> bool:
        """A required ``true`` or ``false``."""
        value = self.value(name)
        if not isinstance(value, bool):
            raise TraceFileError(f"{self.where}.{name}={_shown(value)} must be true or false")
        return value

    def array(self, name: str) -> list[Any]:
        """A required list (its items unchecked)."""
        value = self.value(name)
        if not isinstance(value, list):
            raise TraceFileError(f"{self.where}.{name} must be a list")
        return value

    def shape(self, name: str) -> tuple[int, ...]:
        """A required list of integers."""
        return json_shape(self.value(name), f"{self.where}.{name}")

    def optional_string(self, name: str) -> str | None:
        """A string, or None when the field is missing or null."""
        return self.string(name) if self.has(name) else None

    def optional_integer(self, name: str) -> int | None:
        """An integer, or None when the field is missing or null."""
        return self.integer(name) if self.has(name) else None


# ---------------------------------------------------------------------------------- atomic writing
def write_text_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old file or the new one, never a mix.

    The text goes to a temporary file in the same directory, is flushed to disk, then renamed over
    the file. A symlink is written through: its target is replaced and the link kept. An existing
    file keeps its permission bits; a new one gets ``0o666`` less the umask, as ``open`` would give.
    A file with more than one hard link is refused (the rename would split the links and leave the
    others stale). SIGTERM during the write is held until the rename is done, so a kill leaves the
    old or the new file and no ``.NAME.*.tmp``; a crash (SIGKILL) can still leave a stray
    temporary file next to it.

    Raises:
        TraceFileError: the directory cannot be created or written, or the file has hard links.
    """
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. read from a "\ud800" escape in a JSON file
        raise TraceFileError(f"cannot write {path}: the text is not valid Unicode ({exc.reason})") from None
    write_bytes_atomic(path, data)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """:func:`write_text_atomic` for bytes (plots): the same guarantees and errors."""
    target = os.path.realpath(path) if os.path.islink(path) else path
    directory = os.path.dirname(os.path.abspath(target))
    name = os.path.basename(target)
    with _signals_held():
        try:
            os.makedirs(directory, exist_ok=True)
            try:
                info = os.stat(target)
            except FileNotFoundError:
                mode = 0o666 & ~_umask()
            else:
                if not stat.S_ISREG(info.st_mode):
                    raise TraceFileError(f"cannot write {path}: it is not a regular file")
                if info.st_nlink > 1:
                    raise TraceFileError(
                        f"cannot write {path}: it has {info.st_nlink} hard links, and replacing it would leave the "
                        "others stale; copy it to a file of its own first"
                    )
                mode = stat.S_IMODE(info.st_mode)
            handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise TraceFileError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, target)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if isinstance(exc, OSError):
                raise TraceFileError(f"cannot write {path}: {exc.strerror or exc}") from None
            raise
    _sync_directory(directory)


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (else set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGTERM (main thread only) while the block runs, then deliver it with the old handler.

    The default SIGTERM action ends the process at once, without ``finally`` blocks, which could leave
    the temporary file behind; the atomic write takes milliseconds, so holding the signal is cheap.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    try:
        previous = signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
    except (ValueError, OSError):  # no signal support here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if received:
            os.kill(os.getpid(), signal.SIGTERM)


def _sync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); harmless where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
