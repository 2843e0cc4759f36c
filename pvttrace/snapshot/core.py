"""Shape snapshots: a stored, reviewable record of what a configuration's trace must look like.

A snapshot (schema ``pvttrace.snapshot/1``) holds the resolved config, the tool version, per op
its module, op, kind, label, stage, block, input and output shapes, dtype, MACs, allocated bytes
and view flag, plus the stage summaries, the totals and optional cost budgets. It leaves out what
churns without changing the model: source lines and op indices (an inserted op would renumber
every later one).

The pieces are separate, as in syrupy: serialising (:func:`dumps_snapshot`), loading and
validating (:func:`load_snapshot`), comparing (:func:`compare_snapshots` -> :class:`SnapshotReport`),
budgets (:func:`check_budgets`) and atomic storage (:func:`write_text_atomic`); the report's text
lines live in :mod:`pvttrace.snapshot.report`. :func:`check_snapshot_file` ties them together for one file and
takes the tracing function as an argument, so this module stays free of torch, rich and typer,
never prints and never exits.

File layout: keys are sorted and indented by two spaces like every pvttrace JSON, except that each
op is written on one line. A changed op then shows up in a review diff as one ``-``/``+`` pair that
carries its module, label and shapes together, and the files stay about 4x smaller.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
import re
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from fractions import Fraction
from typing import Any, Literal

from pvttrace.base.errors import ConfigError, TraceFileError, UserInputError
from pvttrace.base.jsonio import loads_strict, read_text_file
from pvttrace.base.units import format_shape
from pvttrace.config import PvtConfig
from pvttrace.records import CONVENTION, OpKind, OpRecord, Shape, StageSummary, Totals, Trace, json_error_reason

__all__ = [
    "SNAPSHOT_SCHEMA",
    "BudgetViolation",
    "Budgets",
    "ChangeStatus",
    "CheckResult",
    "FieldChange",
    "FigureChange",
    "OpChange",
    "Snapshot",
    "SnapshotOp",
    "SnapshotReport",
    "check_budgets",
    "check_snapshot_file",
    "compare_snapshots",
    "damaged_own_snapshot",
    "dumps_snapshot",
    "load_snapshot",
    "loads_snapshot",
    "snapshot_from_trace",
    "verify_snapshot",
    "write_bytes_atomic",
    "write_snapshot",
    "write_text_atomic",
]

SNAPSHOT_VERSION = 1
SNAPSHOT_SCHEMA = f"pvttrace.snapshot/{SNAPSHOT_VERSION}"
# ASCII digits without a leading zero, at most nine of them: "/01", "/１" and a 5000-digit version are not schemas.
_SCHEMA_PATTERN = re.compile(r"pvttrace\.snapshot/([1-9][0-9]{0,8})", re.ASCII)

_OP_KINDS = frozenset(k.value for k in OpKind)

#: Fields that ``rtol`` applies to; every other field (shapes, token counts, flags) must match exactly.
COST_FIELDS = frozenset(
    {
        "macs",
        "alloc_bytes",
        "params",
        "param_bytes",
        "buffer_bytes",
        "largest_activation_bytes",
        "attention_macs",
        "sr_macs",
        "projection_macs",
        "mlp_macs",
        "other_macs",
        "attention_map_bytes",
    }
)


# ---------------------------------------------------------------------------------- data
@dataclass(frozen=True, slots=True)
class SnapshotOp:
    """One op as a snapshot stores it: what it does and costs, not where in the source it comes from."""

    module: str
    op: str
    kind: str
    label: str | None
    stage: int | None
    block: int | None
    inputs: tuple[Shape, ...]
    output: Shape
    dtype: str
    macs: int
    alloc_bytes: int
    view: bool

    @property
    def identity(self) -> tuple[Any, ...]:
        """What makes two ops "the same op" when aligning two traces (shapes and costs may differ)."""
        return (self.stage, self.block, self.module, self.op, self.kind, self.label)

    @classmethod
    def from_record(cls, op: OpRecord) -> SnapshotOp:
        """The stored part of a traced op."""
        return cls(
            module=op.module,
            op=op.op,
            kind=op.kind.value,
            label=op.label,
            stage=op.stage,
            block=op.block,
            inputs=op.inputs,
            output=op.output,
            dtype=op.dtype,
            macs=op.macs,
            alloc_bytes=op.alloc_bytes,
            view=op.view,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "module": self.module,
            "op": self.op,
            "kind": self.kind,
            "label": self.label,
            "stage": self.stage,
            "block": self.block,
            "inputs": [list(s) for s in self.inputs],
            "output": list(self.output),
            "dtype": self.dtype,
            "macs": self.macs,
            "alloc_bytes": self.alloc_bytes,
            "view": self.view,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SnapshotOp:
        """Validate and rebuild one stored op; ``where`` names it in error messages (``ops[12]``)."""
        if not isinstance(data, Mapping):
            raise TraceFileError(f"is malformed: {where} must be a JSON object")
        kind = _string(data, "kind", where)
        if kind not in _OP_KINDS:
            raise TraceFileError(f"is malformed: {where}.kind={kind!r} is not an op kind")
        return cls(
            module=_string(data, "module", where),
            op=_string(data, "op", where),
            kind=kind,
            label=_optional(data, "label", where, _string),
            stage=_optional(data, "stage", where, _integer),
            block=_optional(data, "block", where, _integer),
            inputs=tuple(_shape_value(s, f"{where}.inputs") for s in _list(data, "inputs", where)),
            output=_shape(data, "output", where),
            dtype=_string(data, "dtype", where),
            macs=_integer(data, "macs", where),
            alloc_bytes=_integer(data, "alloc_bytes", where),
            view=_boolean(data, "view", where),
        )


@dataclass(frozen=True, slots=True)
class Budgets:
    """Optional cost limits; None means no limit."""

    max_macs: int | None = None
    """Total multiply-accumulates of one forward."""
    max_params: int | None = None
    """Total parameter count."""
    max_attention_map: int | None = None
    """Bytes of the largest materialised attention score map of one block (fused SDPA maps count 0)."""

    def to_dict(self) -> dict[str, int]:
        """The limits that are set."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Any, where: str = "budgets") -> Budgets:
        """Validate stored budgets (positive integers, known names)."""
        if not isinstance(data, Mapping):
            raise TraceFileError(f"is malformed: {where} must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TraceFileError(
                f"is malformed: {where} has unknown limit(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, int] = {}
        for name in data:
            value = _integer(data, name, where)
            if value <= 0:
                raise TraceFileError(f"is malformed: {where}.{name}={value} must be a positive integer")
            values[name] = value
        return cls(**values)

    def overridden_by(self, other: Budgets) -> Budgets:
        """These limits with every limit that ``other`` sets replaced."""
        return Budgets(**{**self.to_dict(), **other.to_dict()})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a ``pvttrace.snapshot/1`` file holds."""

    config: PvtConfig | None
    """None for a ``--model`` snapshot, which names its ``model`` instead."""
    input_shape: Shape
    outputs: tuple[Shape, ...]
    ops: tuple[SnapshotOp, ...]
    stages: tuple[StageSummary, ...]
    totals: Totals
    budgets: Budgets = Budgets()
    model: str | None = None
    """A ``--model`` snapshot's spec (``timm:NAME`` or ``pkg.mod:factory``); re-traced at ``input_shape``."""
    tool_version: str = field(default="", compare=False)
    recorded: frozenset[str] | None = field(default=None, compare=False)
    """Stage and total fields the file held (None: all). Figures a snapshot written by an older
    pvttrace never stored (e.g. memory, added later) are not compared, so upgrading pvttrace
    does not fail every existing snapshot."""

    def describe(self) -> str:
        """The config in words, or the model and its input for a ``--model`` snapshot."""
        if self.config is not None:
            return self.config.describe()
        return f"{self.model}, input {format_shape(self.input_shape)}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see :func:`dumps_snapshot` for its byte layout)."""
        # "model" is written only by --model snapshots, so config snapshots keep their bytes.
        extra = {} if self.config is not None else {"model": self.model}
        return {
            **extra,
            "schema": SNAPSHOT_SCHEMA,
            "tool_version": self.tool_version,
            "convention": CONVENTION,
            "config": None if self.config is None else self.config.to_dict(),
            "input_shape": list(self.input_shape),
            "outputs": [list(s) for s in self.outputs],
            "budgets": self.budgets.to_dict(),
            "totals": self.totals.to_dict(),
            "stages": [s.to_dict() for s in self.stages],
            "ops": [op.to_dict() for op in self.ops],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Snapshot:
        """Validate and rebuild a snapshot document.

        Raises:
            TraceFileError: wrong or newer schema, or malformed content (one-line reason).
        """
        _check_schema(data)
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            raise TraceFileError(f"has a bad model: {model!r} is not a string")
        try:
            config = None if model is not None and data.get("config") is None else PvtConfig.from_dict(data["config"])
        except KeyError:
            raise TraceFileError("has no config") from None
        except ConfigError as exc:
            raise TraceFileError(f"has a bad config: {exc}") from None
        try:
            stages = tuple(StageSummary.from_dict(s) for s in _list(data, "stages", "snapshot"))
            totals = Totals.from_dict(data["totals"])
        except KeyError as exc:
            raise TraceFileError(f"is malformed: missing field {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise TraceFileError(f"is malformed: {exc}") from None
        return cls(
            config=config,
            input_shape=_shape(data, "input_shape", "snapshot"),
            outputs=tuple(_shape_value(s, "outputs") for s in _list(data, "outputs", "snapshot")),
            ops=tuple(SnapshotOp.from_dict(op, f"ops[{i}]") for i, op in enumerate(_list(data, "ops", "snapshot"))),
            stages=stages,
            totals=totals,
            budgets=Budgets.from_dict(data.get("budgets", {})),
            model=model,
            tool_version=str(data.get("tool_version", "")),
            recorded=frozenset(data["totals"]).union(*(frozenset(st) for st in data["stages"])),
        )


def snapshot_from_trace(trace: Trace, budgets: Budgets | None = None) -> Snapshot:
    """The snapshot of a trace: its config, or (any model) its model spec and input shape.

    Raises:
        UserInputError: the trace has neither a config nor a model name, so it could never be re-traced.
    """
    if trace.config is None and not trace.model:
        raise UserInputError("trace has no config or model; snapshots need one to re-trace the model")
    return Snapshot(
        config=trace.config,
        model=None if trace.config is not None else trace.model,
        input_shape=trace.input_shape,
        outputs=trace.outputs,
        ops=tuple(SnapshotOp.from_record(op) for op in trace.ops),
        stages=trace.stages,
        totals=trace.totals,
        budgets=budgets or Budgets(),
        tool_version=trace.tool_version,
    )


# ---------------------------------------------------------------------------------- validation helpers
def _require(data: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in data:
        raise TraceFileError(f"is malformed: {where} has no field {name!r}")
    return data[name]


def _string(data: Mapping[str, Any], name: str, where: str) -> str:
    value = _require(data, name, where)
    if not isinstance(value, str):
        raise TraceFileError(f"is malformed: {where}.{name}={value!r} must be a string")
    return value


def _integer(data: Mapping[str, Any], name: str, where: str) -> int:
    value = _require(data, name, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TraceFileError(f"is malformed: {where}.{name}={value!r} must be an integer")
    return value


def _boolean(data: Mapping[str, Any], name: str, where: str) -> bool:
    value = _require(data, name, where)
    if not isinstance(value, bool):
        raise TraceFileError(f"is malformed: {where}.{name}={value!r} must be true or false")
    return value


def _optional(
    data: Mapping[str, Any], name: str, where: str, read: Callable[[Mapping[str, Any], str, str], Any]
) -> Any:
    return None if data.get(name) is None else read(data, name, where)


def _list(data: Mapping[str, Any], name: str, where: str) -> list[Any]:
    value = _require(data, name, where)
    if not isinstance(value, list):
        raise TraceFileError(f"is malformed: {where}.{name} must be a list")
    return value


def _shape_value(value: Any, where: str) -> Shape:
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise TraceFileError(f"is malformed: {where}={value!r} must be a list of integers")
    return tuple(value)


def _shape(data: Mapping[str, Any], name: str, where: str) -> Shape:
    return _shape_value(_require(data, name, where), f"{where}.{name}")


def _check_schema(data: Any) -> None:
    if not isinstance(data, Mapping):
        raise TraceFileError(f"is a JSON {type(data).__name__}, not a pvttrace snapshot object")
    schema = data.get("schema")
    if schema is None:
        raise TraceFileError("has no schema field; it is not a pvttrace snapshot")
    match = _SCHEMA_PATTERN.fullmatch(schema) if isinstance(schema, str) else None
    if match is None:
        text = str(schema) if not isinstance(schema, int) or schema.bit_length() < 64 else "a huge number"
        shown = repr(text[:60] + "..." if len(text) > 60 else text) if isinstance(schema, str) else text
        hint = "; write one with: pvttrace snapshot write PATH" if text.startswith("pvttrace.") else ""
        raise TraceFileError(f"has schema {shown}, not {SNAPSHOT_SCHEMA!r}{hint}")
    version = int(match.group(1))
    if version > SNAPSHOT_VERSION:
        written_by = data.get("tool_version") or "a newer version"
        raise TraceFileError(
            f"was written by pvttrace {written_by} in schema {schema!r}, newer than this pvttrace reads "
            f"({SNAPSHOT_SCHEMA!r}); upgrade pvttrace"
        )
    if version < SNAPSHOT_VERSION:
        raise TraceFileError(f"has schema {schema!r}, older than {SNAPSHOT_SCHEMA!r}; rewrite it with --update")


# ---------------------------------------------------------------------------------- text and files
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


def _describe_json_error(text: str, exc: json.JSONDecodeError) -> str:
    # A document cut short fails on its last line (an open string, a half-written ``nul``, a missing
    # bracket); garbage fails where it starts, and extra data is not a truncation.
    ends_early = (
        text.lstrip().startswith(("{", "["))
        and exc.pos > 0
        and "\n" not in text[exc.pos :].rstrip()
        and not exc.msg.startswith("Extra data")
    )
    if ends_early:
        return f"is truncated: the JSON ends early (line {exc.lineno}, column {exc.colno})"
    return f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"


def loads_snapshot(text: str, *, origin: str = "snapshot") -> Snapshot:
    """Parse and validate a snapshot text.

    Raises:
        TraceFileError: ``"{origin} {reason}"``: empty, truncated, not JSON, wrong or newer schema, malformed.
    """
    if not text.strip():
        raise TraceFileError(f"{origin} is empty")
    try:
        data = loads_strict(text)
    except TraceFileError as exc:
        raise TraceFileError(f"{origin} {exc}") from None
    except json.JSONDecodeError as exc:
        raise TraceFileError(f"{origin} {_describe_json_error(text, exc)}") from None
    except RecursionError:
        raise TraceFileError(f"{origin} is not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # a number of more than 4300 digits (sys.get_int_max_str_digits)
        raise TraceFileError(f"{origin} is not valid JSON ({json_error_reason(exc)})") from None
    try:
        return Snapshot.from_dict(data)
    except TraceFileError as exc:
        raise TraceFileError(f"{origin} {exc}") from None


def _read_text(path: str) -> str:
    return read_text_file(path, what="snapshot")


def load_snapshot(path: str) -> Snapshot:
    """Read and validate a snapshot file.

    Raises:
        TraceFileError: missing, unreadable, empty, truncated, not JSON, wrong or newer schema, malformed.
    """
    return loads_snapshot(_read_text(path), origin=path)


def _recover_config(path: str) -> tuple[PvtConfig, Budgets]:
    """The config and budgets of a snapshot whose other parts are unreadable (for ``--update``)."""
    data = loads_strict(_read_text(path))
    schema = data.get("schema") if isinstance(data, Mapping) else None
    match = _SCHEMA_PATTERN.fullmatch(schema) if isinstance(schema, str) else None
    if match is None or int(match.group(1)) > SNAPSHOT_VERSION:
        raise ValueError("not a snapshot this version may rewrite")
    budgets = Budgets.from_dict(data.get("budgets", {}))
    return PvtConfig.from_dict(data["config"]), budgets


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


# ---------------------------------------------------------------------------------- comparison
class ChangeStatus(StrEnum):
    """How an op differs between the stored snapshot and the current trace."""

    CHANGED = "changed"
    ADDED = "added"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field whose stored value differs from the current one."""

    name: str
    stored: Any
    current: Any


@dataclass(frozen=True, slots=True)
class OpChange:
    """An op that changed, or that only one side has."""

    status: ChangeStatus
    op: SnapshotOp
    """The current op (the stored one for REMOVED)."""
    changes: tuple[FieldChange, ...] = ()
    """For CHANGED: the fields that differ."""


@dataclass(frozen=True, slots=True)
class FigureChange:
    """A stage, total or config figure that differs."""

    scope: str
    """``"config"``, ``"stage"`` or ``"total"``."""
    stage: int | None
    name: str
    stored: Any
    current: Any


@dataclass(frozen=True, slots=True)
class SnapshotReport:
    """Every difference between a stored snapshot and the current trace, stored values first."""

    op_changes: tuple[OpChange, ...]
    figure_changes: tuple[FigureChange, ...]
    stored_version: str = ""
    current_version: str = ""

    @property
    def matches(self) -> bool:
        """True when nothing differs (beyond the tolerance)."""
        return not self.op_changes and not self.figure_changes

    def count(self, status: ChangeStatus) -> int:
        """Number of op changes with ``status``."""
        return sum(1 for change in self.op_changes if change.status == status)


def _differs(name: str, stored: Any, current: Any, rtol: float) -> bool:
    if stored == current:
        return False
    if rtol > 0 and name in COST_FIELDS and isinstance(stored, int) and isinstance(current, int):
        # Exact (Fraction): a float product overflows past 1e308 and rounds past 2**53.
        return abs(current - stored) > Fraction(rtol) * abs(stored)
    return True


def _field_changes(
    stored: Mapping[str, Any], current: Mapping[str, Any], names: Iterable[str], rtol: float
) -> list[FieldChange]:
    return [
        FieldChange(name, stored.get(name), current.get(name))
        for name in names
        if _differs(name, stored.get(name), current.get(name), rtol)
    ]


_OP_FIELDS = ("output", "inputs", "macs", "alloc_bytes", "view", "dtype")


def _op_values(op: SnapshotOp) -> dict[str, Any]:
    return {name: getattr(op, name) for name in _OP_FIELDS}


#: Largest (stored ops x current ops) between the common prefix and suffix that difflib aligns. difflib's
#: cost grows with that product; past it the differing middle is reported as removed and added ops.
MAX_ALIGNMENT_CELLS = 4_000_000


def _alignment(stored: Sequence[Any], current: Sequence[Any]) -> list[tuple[str, int, int, int, int]]:
    """difflib-style opcodes: linear when the sequences are equal, the common prefix and suffix matched
    in linear time, and difflib only on the differing middle while it stays under MAX_ALIGNMENT_CELLS."""
    n, m = len(stored), len(current)
    prefix = 0
    while prefix < min(n, m) and stored[prefix] == current[prefix]:
        prefix += 1
    if prefix == n == m:
        return [("equal", 0, n, 0, m)] if n else []
    suffix = 0
    while suffix < min(n, m) - prefix and stored[n - 1 - suffix] == current[m - 1 - suffix]:
        suffix += 1
    opcodes: list[tuple[str, int, int, int, int]] = [("equal", 0, prefix, 0, prefix)] if prefix else []
    a, b = stored[prefix : n - suffix], current[prefix : m - suffix]
    if len(a) * len(b) <= MAX_ALIGNMENT_CELLS:
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        opcodes += [
            (t, i1 + prefix, i2 + prefix, j1 + prefix, j2 + prefix) for t, i1, i2, j1, j2 in matcher.get_opcodes()
        ]
    else:
        opcodes.append(("replace", prefix, n - suffix, prefix, m - suffix))
    if suffix:
        opcodes.append(("equal", n - suffix, n, m - suffix, m))
    return opcodes


def _compare_ops(stored: Sequence[SnapshotOp], current: Sequence[SnapshotOp], rtol: float) -> list[OpChange]:
    """Align the two op sequences so an inserted op does not shift the rest (see :func:`_alignment`)."""
    changes: list[OpChange] = []
    for tag, i1, i2, j1, j2 in _alignment([op.identity for op in stored], [op.identity for op in current]):
        if tag == "equal":
            for old, new in zip(stored[i1:i2], current[j1:j2], strict=True):
                if old == new:
                    continue
                fields_changed = _field_changes(_op_values(old), _op_values(new), _OP_FIELDS, rtol)
                if fields_changed:
                    changes.append(OpChange(ChangeStatus.CHANGED, new, tuple(fields_changed)))
            continue
        changes.extend(OpChange(ChangeStatus.REMOVED, op) for op in stored[i1:i2])
        changes.extend(OpChange(ChangeStatus.ADDED, op) for op in current[j1:j2])
    return changes


def _identity(snapshot: Snapshot) -> dict[str, Any]:
    return snapshot.config.to_dict() if snapshot.config is not None else {"model": snapshot.model}


def _compare_figures(stored: Snapshot, current: Snapshot, rtol: float) -> list[FigureChange]:
    figures: list[FigureChange] = []
    old_config, new_config = _identity(stored), _identity(current)
    for change in _field_changes(old_config, new_config, sorted(old_config.keys() | new_config.keys()), rtol):
        figures.append(FigureChange("config", None, change.name, change.stored, change.current))
    old_stages = {s.index: s for s in stored.stages}
    new_stages = {s.index: s for s in current.stages}
    stage_fields = [
        f.name
        for f in fields(StageSummary)
        if f.name != "index" and (stored.recorded is None or f.name in stored.recorded)
    ]
    for index in sorted(old_stages.keys() | new_stages.keys()):
        old, new = old_stages.get(index), new_stages.get(index)
        if old is None or new is None:
            figures.append(FigureChange("stage", index, "stage", old is not None, new is not None))
            continue
        old_values = {name: getattr(old, name) for name in stage_fields}
        new_values = {name: getattr(new, name) for name in stage_fields}
        for change in _field_changes(old_values, new_values, stage_fields, rtol):
            figures.append(FigureChange("stage", index, change.name, change.stored, change.current))
    old_totals = {"input": stored.input_shape, "outputs": stored.outputs, **stored.totals.to_dict()}
    new_totals = {"input": current.input_shape, "outputs": current.outputs, **current.totals.to_dict()}
    old_totals.pop("flops")
    new_totals.pop("flops")
    if stored.recorded is not None:
        old_totals = {k: v for k, v in old_totals.items() if k in ("input", "outputs") or k in stored.recorded}
    for change in _field_changes(old_totals, new_totals, list(old_totals), rtol):
        figures.append(FigureChange("total", None, change.name, change.stored, change.current))
    return figures


def compare_snapshots(stored: Snapshot, current: Snapshot, *, rtol: float = 0.0) -> SnapshotReport:
    """Every difference between ``stored`` and ``current``; costs may differ by ``rtol`` (relative), shapes never.

    Raises:
        UserInputError: ``rtol`` is negative or not finite.
    """
    if not math.isfinite(rtol) or rtol < 0:
        raise UserInputError(f"rtol={rtol} must be a finite number >= 0")
    return SnapshotReport(
        op_changes=tuple(_compare_ops(stored.ops, current.ops, rtol)),
        figure_changes=tuple(_compare_figures(stored, current, rtol)),
        stored_version=stored.tool_version,
        current_version=current.tool_version,
    )


# ---------------------------------------------------------------------------------- budgets
@dataclass(frozen=True, slots=True)
class BudgetViolation:
    """A cost over its limit."""

    name: str
    """``max_macs``, ``max_params`` or ``max_attention_map``."""
    limit: int
    actual: int
    origin: str
    """Where the limit came from: ``"--max-macs"`` or ``"the snapshot"``."""
    detail: str = ""
    """Where the cost arises, e.g. ``"stage 1"`` for the largest attention map."""


def check_budgets(
    snapshot: Snapshot, command_line: Budgets | None = None, *, given_as: Literal["option", "argument"] = "option"
) -> tuple[BudgetViolation, ...]:
    """Compare ``snapshot``'s costs with its stored budgets, each overridden by the same limit from ``command_line``.

    ``given_as`` names the overriding limits in violations: ``"option"`` (``--max-macs``) or ``"argument"``
    (``max_macs=``, for the pytest fixture).
    """
    command_line = command_line or Budgets()
    stored = snapshot.budgets.to_dict()
    given = command_line.to_dict()
    largest_map = max(snapshot.stages, key=lambda s: s.attention_map_bytes, default=None)
    actual = {
        "max_macs": (snapshot.totals.macs, ""),
        "max_params": (snapshot.totals.params, ""),
        "max_attention_map": (
            (largest_map.attention_map_bytes, f"stage {largest_map.index}") if largest_map else (0, "")
        ),
    }
    violations = []
    for name, (value, detail) in actual.items():
        limit = given.get(name, stored.get(name))
        if limit is not None and value > limit:
            if name not in given:
                origin = "the snapshot"
            else:
                origin = "--" + name.replace("_", "-") if given_as == "option" else f"{name}="
            violations.append(BudgetViolation(name, limit, value, origin, detail))
    return tuple(violations)


# ---------------------------------------------------------------------------------- checking files
class CheckStatus(StrEnum):
    """Outcome of checking one snapshot file."""

    PASSED = "ok"
    FAILED = "FAIL"
    UPDATED = "updated"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What checking one snapshot file found (and did, under ``update``)."""

    path: str
    config: PvtConfig | None
    report: SnapshotReport | None
    """None when there was no readable stored snapshot to compare with (``update`` wrote a fresh one)."""
    violations: tuple[BudgetViolation, ...]
    written: bool = False
    """True when ``update`` brought the file up to date (also when a concurrent update had just written it)."""
    description: str = ""
    """What was checked, in words (:meth:`Snapshot.describe`)."""

    @property
    def status(self) -> CheckStatus:
        """FAIL (a difference left unwritten, or a budget exceeded), updated (rewritten under update) or ok."""
        if self.violations or (self.report is not None and not self.report.matches and not self.written):
            return CheckStatus.FAILED
        return CheckStatus.UPDATED if self.written else CheckStatus.PASSED

    @property
    def passed(self) -> bool:
        """True unless the check failed."""
        return self.status != CheckStatus.FAILED


def verify_snapshot(
    path: str,
    stored: Snapshot | None,
    current: Snapshot,
    *,
    rtol: float = 0.0,
    budgets: Budgets | None = None,
    update: bool = False,
    budgets_given_as: Literal["option", "argument"] = "option",
) -> CheckResult:
    """Compare ``current`` with ``stored`` (None: no readable file), check budgets, and under ``update`` rewrite.

    ``update`` writes ``current`` (which should carry the stored budgets) when it differs, when nothing
    readable was stored, or when the file lacks figures this version records (written by an older
    pvttrace); budgets still fail, since a rewrite cannot fix a cost.
    """
    report = None if stored is None else compare_snapshots(stored, current, rtol=rtol)
    written = False
    outdated = stored is not None and stored.recorded is not None and stored.recorded != _figure_fields(current)
    if update and (report is None or not report.matches or outdated):
        # True also when a concurrent update already wrote these very bytes: the file is current either way.
        write_snapshot(path, current)
        written = True
    violations = check_budgets(current, budgets, given_as=budgets_given_as)
    return CheckResult(path, current.config, report, violations, written, current.describe())


def _figure_fields(snapshot: Snapshot) -> frozenset[str]:
    """The stage and total field names ``snapshot`` writes (to spot files from an older pvttrace)."""
    document = snapshot.to_dict()
    return frozenset(document["totals"]).union(*(frozenset(stage) for stage in document["stages"]))


def check_snapshot_file(
    path: str,
    *,
    trace: Callable[[PvtConfig], Trace],
    rtol: float = 0.0,
    budgets: Budgets | None = None,
    update: bool = False,
    trace_model: Callable[[str, Shape], Trace] | None = None,
) -> CheckResult:
    """Rebuild the configuration stored in ``path``, trace it once with ``trace``, and compare.

    Under ``update`` a file that differs is rewritten, and so is one that is unreadable apart from its
    config (e.g. malformed ops or an older schema); a file without a readable config, or of a newer
    schema, is never touched. A ``--model`` snapshot is re-traced with ``trace_model(model, input_shape)``.

    Raises:
        TraceFileError: the file is missing or invalid (under ``update``: and its config unreadable).
        UserInputError: ``rtol`` is invalid.
    """
    stored: Snapshot | None = None
    try:
        stored = load_snapshot(path)
        config, stored_budgets = stored.config, stored.budgets
    except TraceFileError as exc:
        if not update:
            raise
        try:
            config, stored_budgets = _recover_config(path)
        except (TraceFileError, ValueError, KeyError, TypeError, RecursionError):
            raise TraceFileError(f"{exc}; --update leaves it alone (no config this version can rebuild)") from None
    if stored is not None and stored.config is None:
        if trace_model is None or stored.model is None:
            raise UserInputError(f"{path}: a --model snapshot needs a model tracer to be checked")
        current = snapshot_from_trace(trace_model(stored.model, stored.input_shape), stored_budgets)
    elif config is None:
        raise TraceFileError(f"{path} has no config to re-trace")
    else:
        current = snapshot_from_trace(trace(config), stored_budgets)
    return verify_snapshot(path, stored, current, rtol=rtol, budgets=budgets, update=update)
