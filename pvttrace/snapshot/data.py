"""What a shape snapshot holds, and reading it: :class:`Snapshot`, its schema, and the one snapshot parser.

A snapshot (schema ``pvttrace.snapshot/1``) holds the resolved config (or a ``--model`` spec), the tool
version, the convention, dtype and device the trace was made with, per op its module, op, kind, label,
stage, block, input and output shapes, dtype, MACs, allocated bytes and view flag, plus the stage
summaries, the totals and optional cost budgets. It leaves out what churns without changing the model:
source lines and op indices (an inserted op would renumber every later one).

:func:`loads_snapshot` / :func:`load_snapshot` validate everything they read (through
:class:`pvttrace.base.jsonio.Fields`) and fail with one line naming the file, the field and the rule.
``pvttrace diff`` reads snapshot files through this parser too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from pvttrace.base.errors import ConfigError, TraceFileError, UserInputError
from pvttrace.base.gcpause import gc_paused
from pvttrace.base.jsonio import Fields, json_shape, parse_json, read_json
from pvttrace.base.units import format_shape
from pvttrace.config import DTYPE_BYTES, PvtConfig
from pvttrace.records import (
    OpKind,
    OpRecord,
    Provenance,
    Shape,
    StageSummary,
    Totals,
    Trace,
    convention_name,
    traced_dtype,
)

__all__ = [
    "SNAPSHOT_SCHEMA",
    "SNAPSHOT_VERSION",
    "Budgets",
    "Snapshot",
    "SnapshotOp",
    "load_snapshot",
    "loads_snapshot",
    "recover_config",
    "snapshot_from_trace",
]

SNAPSHOT_VERSION = 1
SNAPSHOT_SCHEMA = f"pvttrace.snapshot/{SNAPSHOT_VERSION}"
# ASCII digits without a leading zero, at most nine of them: "/01", "/１" and a 5000-digit version are not schemas.
SCHEMA_PATTERN = re.compile(r"pvttrace\.snapshot/([1-9][0-9]{0,8})", re.ASCII)

_OP_KINDS = frozenset(k.value for k in OpKind)


def _malformed(exc: TraceFileError) -> TraceFileError:
    return TraceFileError(f"is malformed: {exc}")


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

    def to_record(self, index: int) -> OpRecord:
        """An :class:`OpRecord` at ``index`` (what a snapshot leaves out: no source; output bytes from the shape)."""
        numel = 1
        for size in self.output:
            numel *= size
        return OpRecord(
            index=index,
            module=self.module,
            op=self.op,
            kind=OpKind(self.kind),
            label=self.label,
            inputs=self.inputs,
            output=self.output,
            dtype=self.dtype,
            macs=self.macs,
            out_bytes=numel * DTYPE_BYTES.get(self.dtype, 4),
            alloc_bytes=self.alloc_bytes,
            view=self.view,
            source=None,
            stage=self.stage,
            block=self.block,
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
        """Validate and rebuild one stored op; ``where`` names it in error messages (``ops[12]``).

        ``input_shapes`` and ``output_shape`` are read as ``inputs`` and ``output`` (hand-made files).
        """
        fast = _well_formed_op(data)
        if fast is not None:
            return fast
        try:
            op = Fields.of(data, where)
            kind = op.string("kind")
            if kind not in _OP_KINDS:
                raise TraceFileError(f"{where}.kind={kind!r} is not an op kind")
            inputs_name = "inputs" if "inputs" in op.data or "input_shapes" not in op.data else "input_shapes"
            output_name = "output" if "output" in op.data or "output_shape" not in op.data else "output_shape"
            return cls(
                module=op.string("module"),
                op=op.string("op"),
                kind=kind,
                label=op.optional_string("label"),
                stage=op.optional_integer("stage"),
                block=op.optional_integer("block"),
                inputs=tuple(json_shape(s, f"{where}.{inputs_name}") for s in op.array(inputs_name)),
                output=op.shape(output_name),
                dtype=op.string("dtype"),
                macs=op.integer("macs"),
                alloc_bytes=op.integer("alloc_bytes"),
                view=op.boolean("view"),
            )
        except TraceFileError as exc:
            raise _malformed(exc) from None


_OP_FIELDS = frozenset(f.name for f in fields(SnapshotOp))
_LABEL_TYPES = (str, type(None))
_PLACE_TYPES = (int, type(None))
_INT = frozenset({int})


def _is_shape(value: Any) -> bool:
    return type(value) is list and _INT.issuperset(map(type, value))


def _well_formed_op(data: Any) -> SnapshotOp | None:
    """The op ``data`` stores when it is exactly what pvttrace writes (the usual case), checked in one pass;
    None for anything else, which :meth:`SnapshotOp.from_dict` then reads field by field and explains.

    Accepts a subset of what the field-by-field reader accepts and builds the same op: a snapshot holds
    thousands of ops, and the general reader costs about as much per op as tracing it.
    """
    if type(data) is not dict or data.keys() != _OP_FIELDS:
        return None
    module, op, kind, label = data["module"], data["op"], data["kind"], data["label"]
    stage, block, inputs, output = data["stage"], data["block"], data["inputs"], data["output"]
    dtype, macs, alloc_bytes, view = data["dtype"], data["macs"], data["alloc_bytes"], data["view"]
    if not (
        type(module) is str
        and type(op) is str
        and type(kind) is str
        and kind in _OP_KINDS
        and type(label) in _LABEL_TYPES
        and type(stage) in _PLACE_TYPES
        and type(block) in _PLACE_TYPES
        and type(inputs) is list
        and all(map(_is_shape, inputs))
        and _is_shape(output)
        and type(dtype) is str
        and type(macs) is int
        and type(alloc_bytes) is int
        and type(view) is bool
    ):
        return None
    return SnapshotOp(
        module=module,
        op=op,
        kind=kind,
        label=label,
        stage=stage,
        block=block,
        inputs=tuple(tuple(shape) for shape in inputs),
        output=tuple(output),
        dtype=dtype,
        macs=macs,
        alloc_bytes=alloc_bytes,
        view=view,
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
        try:
            stored = Fields.of(data, where)
        except TraceFileError as exc:
            raise _malformed(exc) from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(stored.data) - known)
        if unknown:
            raise TraceFileError(
                f"is malformed: {where} has unknown limit(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, int] = {}
        for name in stored.data:
            try:
                value = stored.integer(name)
            except TraceFileError as exc:
                raise _malformed(exc) from None
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
    convention: str = "macs"
    """The counting convention of the stored MACs (a key of :data:`pvttrace.records.CONVENTIONS`)."""
    device: str = "meta"
    """Where the stored trace ran (files written before this field: ``meta``, the only device snapshots used)."""
    dtype: str = ""
    """Element type of the traced model; "" when constructed: taken from the config, else the ops."""

    def __post_init__(self) -> None:
        if not self.dtype:
            object.__setattr__(self, "dtype", traced_dtype(self.config, (op.dtype for op in self.ops)))

    @property
    def provenance(self) -> Provenance:
        """The convention, dtype and device the stored figures were made with."""
        return Provenance(self.convention, self.dtype, self.device)

    def describe(self) -> str:
        """The config in words, or the model and its input for a ``--model`` snapshot."""
        if self.config is not None:
            return self.config.describe()
        return f"{self.model}, input {format_shape(self.input_shape)}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see :func:`pvttrace.snapshot.storage.dumps_snapshot` for its byte layout)."""
        # "model" is written only by --model snapshots, so config snapshots keep their bytes.
        extra = {} if self.config is not None else {"model": self.model}
        return {
            **extra,
            "schema": SNAPSHOT_SCHEMA,
            "tool_version": self.tool_version,
            **self.provenance.to_dict(),
            "config": None if self.config is None else self.config.to_dict(),
            "input_shape": list(self.input_shape),
            "outputs": [list(s) for s in self.outputs],
            "budgets": self.budgets.to_dict(),
            "totals": self.totals.to_dict(),
            "stages": [s.to_dict() for s in self.stages],
            "ops": [op.to_dict() for op in self.ops],
        }

    def to_trace(self) -> Trace:
        """The stored figures as a :class:`Trace` (ops without sources; indices in stored order), for ``diff``."""
        return Trace(
            config=self.config,
            input_shape=self.input_shape,
            outputs=self.outputs,
            ops=tuple(op.to_record(i) for i, op in enumerate(self.ops)),
            stages=self.stages,
            totals=self.totals,
            device=self.device,
            tool_version=self.tool_version,
            convention=self.convention,
            model=self.model,
            dtype=self.dtype,
        )

    @classmethod
    def from_dict(cls, data: Any) -> Snapshot:
        """Validate and rebuild a snapshot document.

        Raises:
            TraceFileError: wrong or newer schema, or malformed content (one-line reason).
        """
        check_schema(data)
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            raise TraceFileError(f"has a bad model: {model!r} is not a string")
        try:
            config = None if model is not None and data.get("config") is None else PvtConfig.from_dict(data["config"])
        except KeyError:
            raise TraceFileError("has no config") from None
        except ConfigError as exc:
            raise TraceFileError(f"has a bad config: {exc}") from None
        document = Fields(data, "snapshot")
        try:
            stages = tuple(StageSummary.from_dict(s) for s in document.array("stages"))
            totals = Totals.from_dict(data["totals"])
            input_shape = document.shape("input_shape")
            outputs = tuple(json_shape(s, "outputs") for s in document.array("outputs"))
            op_list = document.array("ops")
            device = document.string("device") if document.has("device") else "meta"
            dtype = document.string("dtype") if document.has("dtype") else ""
        except KeyError as exc:
            raise TraceFileError(f"is malformed: missing field {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:  # TraceFileError is a ValueError
            raise TraceFileError(f"is malformed: {exc}") from None
        return cls(
            config=config,
            input_shape=input_shape,
            outputs=outputs,
            ops=tuple(SnapshotOp.from_dict(op, f"ops[{i}]") for i, op in enumerate(op_list)),
            stages=stages,
            totals=totals,
            budgets=Budgets.from_dict(data.get("budgets", {})),
            model=model,
            tool_version=str(data.get("tool_version", "")),
            recorded=frozenset(data["totals"]).union(*(frozenset(st) for st in data["stages"])),
            convention=convention_name(data.get("convention")),
            device=device,
            dtype=dtype,
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
        convention=trace.convention,
        device=trace.device,
        dtype=trace.dtype,
    )


def check_schema(data: Any) -> None:
    """Accept only a JSON object of this snapshot schema (version 1); say what else it is.

    Raises:
        TraceFileError: not an object, no schema, another schema, or a newer or older snapshot version.
    """
    if not isinstance(data, Mapping):
        raise TraceFileError(f"is a JSON {type(data).__name__}, not a pvttrace snapshot object")
    schema = data.get("schema")
    if schema is None:
        raise TraceFileError("has no schema field; it is not a pvttrace snapshot")
    match = SCHEMA_PATTERN.fullmatch(schema) if isinstance(schema, str) else None
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


def parse_snapshot(data: Any, *, origin: str = "snapshot") -> Snapshot:
    """A parsed JSON value as a snapshot (:meth:`Snapshot.from_dict`), errors prefixed with ``origin``."""
    try:
        with gc_paused():  # a record per stored op, all alive until the caller drops them
            return Snapshot.from_dict(data)
    except TraceFileError as exc:
        raise TraceFileError(f"{origin} {exc}") from None


def loads_snapshot(text: str, *, origin: str = "snapshot") -> Snapshot:
    """Parse and validate a snapshot text.

    Raises:
        TraceFileError: ``"{origin} {reason}"``: empty, truncated, not JSON, wrong or newer schema, malformed.
    """
    return parse_snapshot(parse_json(text, origin=origin), origin=origin)


def load_snapshot(path: str) -> Snapshot:
    """Read and validate a snapshot file.

    Raises:
        TraceFileError: missing, unreadable, empty, truncated, not JSON, wrong or newer schema, malformed.
    """
    return parse_snapshot(read_json(path, what="snapshot"), origin=path)


def recover_config(data: Any) -> tuple[PvtConfig, Budgets]:
    """The config and budgets of a parsed snapshot whose other parts are unreadable (for ``--update``, ``diff``).

    Raises:
        TraceFileError, ValueError, KeyError, TypeError: not a snapshot this version may rewrite, or no
            readable config or budgets.
    """
    schema = data.get("schema") if isinstance(data, Mapping) else None
    match = SCHEMA_PATTERN.fullmatch(schema) if isinstance(schema, str) else None
    if match is None or int(match.group(1)) > SNAPSHOT_VERSION:
        raise ValueError("not a snapshot this version may rewrite")
    budgets = Budgets.from_dict(data.get("budgets", {}))
    return PvtConfig.from_dict(data["config"]), budgets
