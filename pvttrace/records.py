"""Trace data: op records, stage summaries, totals, and their stable JSON form.

Pure data with query helpers. This module must not import torch, rich or typer, so saved
traces can be read, compared and rendered without them.

Counting convention (stated in every header): ``macs`` counts multiply-accumulates of
conv, linear and matmul (what the PVT papers call FLOPs: 1 multiply-add = 1 FLOP);
``flops = 2 * macs`` (what ``torch.utils.flop_counter`` reports). Norms, softmax,
activations, element-wise and layout ops cost 0 MACs by rule.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from pvttrace.base.errors import ConfigError, TraceFileError
from pvttrace.base.jsonio import json_int, json_shape, parse_json, read_json
from pvttrace.config import PvtConfig
from pvttrace.fidelity import fidelity

__all__ = [
    "CONVENTION",
    "CONVENTIONS",
    "TRACE_SCHEMA",
    "CostRule",
    "MacsCategory",
    "OpKind",
    "OpRecord",
    "Provenance",
    "Shape",
    "StageSummary",
    "Totals",
    "Trace",
    "TrainingMemory",
    "convention_name",
    "dumps_json",
    "filtered_document",
    "load_trace",
    "loads_trace",
    "traced_dtype",
]

TRACE_SCHEMA = "pvttrace.trace/1"
CONVENTION = "macs = multiply-accumulates of conv/linear/matmul (papers' 'FLOPs'); flops = 2 x macs"

#: Counting conventions (``--convention``) and the line that states each in headers and JSON.
#: Each text starts with its name, so a saved trace says which convention its numbers use.
CONVENTIONS: dict[str, str] = {
    "macs": CONVENTION,
    "fvcore": (
        "fvcore: fvcore 0.1.5's count (its 'flops' are MACs): conv/linear/matmul/bmm/einsum without bias, "
        "norms 5 x numel (4 without affine), bilinear upsample 4 x numel, adaptive avg pool numel(input); "
        "ops fvcore has no handle for (fused SDPA, GELU, softmax ...) count 0; flops = 2 x macs"
    ),
    "timm": (
        "timm: fvcore's count (as in convention fvcore) with attention computed explicitly (timm's fused_attn "
        "off), as timm's benchmark.py reports infer_gmacs in its results CSVs; flops = 2 x macs"
    ),
    "paper": (
        "paper: the PVT authors' get_flops.py: mmcv hooks by exact module type (conv incl. bias, linear, "
        "nn.LayerNorm 2 x numel, ReLU, pools, Upsample) plus their closed-form attention term "
        "2*h*w*(h//R)*(w//R)*C per block (h, w = H//4 ... H//32); other matmuls count 0; flops = 2 x macs"
    ),
}

Shape = tuple[int, ...]


class OpKind(StrEnum):
    """What an op does, as users filter it with ``--kind``."""

    PATCH_EMBED = "patch_embed"
    SR_CONV = "sr_conv"
    DW_CONV = "dw_conv"
    CONV = "conv"
    LINEAR = "linear"
    MATMUL = "matmul"
    SDPA = "sdpa"
    MHA = "mha"
    NORM = "norm"
    SOFTMAX = "softmax"
    ACTIVATION = "activation"
    DROPOUT = "dropout"
    ELEMENTWISE = "elementwise"
    POOL = "pool"
    INTERPOLATE = "interpolate"
    REDUCE = "reduce"
    RESHAPE = "reshape"
    VIEW = "view"
    PERMUTE = "permute"
    TRANSPOSE = "transpose"
    FLATTEN = "flatten"
    CONTIGUOUS = "contiguous"
    INDEX = "index"
    EXPAND = "expand"
    CONCAT = "concat"
    OTHER = "other"


#: Kinds that only rearrange (or alias) data; they never cost MACs.
LAYOUT_KINDS = frozenset(
    {
        OpKind.RESHAPE,
        OpKind.VIEW,
        OpKind.PERMUTE,
        OpKind.TRANSPOSE,
        OpKind.FLATTEN,
        OpKind.CONTIGUOUS,
        OpKind.INDEX,
        OpKind.EXPAND,
        OpKind.CONCAT,
    }
)


class CostRule(StrEnum):
    """How an op's cost was decided: by a MAC formula, zero by rule, or no rule known (flagged)."""

    MACS = "macs"
    ZERO = "zero"
    NONE = "none"


class MacsCategory(StrEnum):
    """Where MACs go inside a stage (which op goes where: ``pvttrace.costs.registry.macs_category``)."""

    ATTENTION = "attention"
    SR = "sr"
    PROJECTION = "projection"
    MLP = "mlp"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class OpRecord:
    """One op of the forward, as the tracer saw it."""

    index: int
    """Execution order, 0-based."""
    module: str
    """Module path (state-dict name) whose forward issued the op; "" for the model's own forward."""
    op: str
    """Torch function name without the ``torch.`` prefix, e.g. ``Tensor.permute``, ``nn.functional.linear``."""
    kind: OpKind
    label: str | None
    """Walkthrough label ("split heads", "SR conv", ...) or None when the model gives none."""
    inputs: tuple[Shape, ...]
    """Shapes of the tensor arguments, in call order."""
    output: Shape
    dtype: str
    macs: int
    out_bytes: int
    """Bytes of the output tensor(s)."""
    alloc_bytes: int
    """Bytes of new storage: 0 when the output shares storage with an input (a view or an alias)."""
    view: bool
    """True when the output shares storage with an input."""
    source: str | None
    """``file:line`` of the model code that issued the op."""
    stage: int | None = None
    """1-based pyramid stage, or None (e.g. the classifier head)."""
    block: int | None = None
    """0-based block index inside the stage, or None outside blocks."""
    cost_rule: CostRule = CostRule.MACS
    live_bytes: int = 0
    """Activation bytes alive after the op, once the forward has dropped what it no longer needs (see memory.py)."""
    peak_bytes: int = 0
    """Highest activation bytes alive while the op ran, its own temporaries included."""
    saved_bytes: int = 0
    """Training traces: activation bytes this op saved for backward first (each storage counted once)."""

    @property
    def flops(self) -> int:
        """Floating-point operations, counting a multiply-accumulate as two."""
        return 2 * self.macs

    @property
    def title(self) -> str:
        """The label when there is one, else the op name."""
        return self.label or self.op

    def with_memory(self, *, live_bytes: int, peak_bytes: int, saved_bytes: int) -> OpRecord:
        """A copy with the given memory figures and every other field unchanged.

        The same as ``dataclasses.replace`` (tests/test_memory.py compares them field by field), built directly:
        a trace makes one copy per op, and ``replace``'s generic field loop cost about 2.5x as much.
        """
        return self._copy(
            self.index, self.module, self.label, self.stage, self.block, live_bytes, peak_bytes, saved_bytes
        )

    def with_label(self, label: str | None) -> OpRecord:
        """A copy with another walkthrough label, built directly for the reason :meth:`with_memory` is."""
        return self._copy(
            self.index, self.module, label, self.stage, self.block, self.live_bytes, self.peak_bytes, self.saved_bytes
        )

    def with_structure(self, *, stage: int | None, block: int | None) -> OpRecord:
        """A copy in another stage and block, built directly for the reason :meth:`with_memory` is."""
        return self._copy(
            self.index, self.module, self.label, stage, block, self.live_bytes, self.peak_bytes, self.saved_bytes
        )

    def moved(self, *, index: int, module: str, block: int | None) -> OpRecord:
        """A copy at another position and module path, every other field unchanged (a repeated block's op,
        see :mod:`pvttrace.tracing.replay`); built directly for the reason :meth:`with_memory` is."""
        return self._copy(
            index, module, self.label, self.stage, block, self.live_bytes, self.peak_bytes, self.saved_bytes
        )

    def _copy(
        self,
        index: int,
        module: str,
        label: str | None,
        stage: int | None,
        block: int | None,
        live_bytes: int,
        peak_bytes: int,
        saved_bytes: int,
    ) -> OpRecord:
        """A copy with these fields replaced, filled slot by slot.

        Equal to the constructor's record (no field has a default factory and there is no ``__post_init__``;
        tests/test_memory.py and tests/test_derived_stages.py compare them with ``dataclasses.replace``), but
        the frozen ``__init__`` sets each of the 19 fields through ``object.__setattr__``, which made a copy
        cost about twice as much (a loop over the setters, 1.5x), and a trace copies most ops more than once
        (labels, stages, memory). Unpacking the setters fails loudly if a field is added without a line here.
        """
        (
            set_index,
            set_module,
            set_op,
            set_kind,
            set_label,
            set_inputs,
            set_output,
            set_dtype,
            set_macs,
            set_out_bytes,
            set_alloc_bytes,
            set_view,
            set_source,
            set_stage,
            set_block,
            set_cost_rule,
            set_live_bytes,
            set_peak_bytes,
            set_saved_bytes,
        ) = _OP_RECORD_SLOT_SETTERS
        copy = object.__new__(OpRecord)
        set_index(copy, index)
        set_module(copy, module)
        set_op(copy, self.op)
        set_kind(copy, self.kind)
        set_label(copy, label)
        set_inputs(copy, self.inputs)
        set_output(copy, self.output)
        set_dtype(copy, self.dtype)
        set_macs(copy, self.macs)
        set_out_bytes(copy, self.out_bytes)
        set_alloc_bytes(copy, self.alloc_bytes)
        set_view(copy, self.view)
        set_source(copy, self.source)
        set_stage(copy, stage)
        set_block(copy, block)
        set_cost_rule(copy, self.cost_rule)
        set_live_bytes(copy, live_bytes)
        set_peak_bytes(copy, peak_bytes)
        set_saved_bytes(copy, saved_bytes)
        return copy

    def to_dict(self, *, with_source: bool = True) -> dict[str, Any]:
        """JSON-ready dict with the documented field names."""
        out: dict[str, Any] = {
            "index": self.index,
            "module": self.module,
            "op": self.op,
            "kind": self.kind.value,
            "label": self.label,
            "inputs": [list(s) for s in self.inputs],
            "output": list(self.output),
            "dtype": self.dtype,
            "macs": self.macs,
            "flops": self.flops,
            "out_bytes": self.out_bytes,
            "alloc_bytes": self.alloc_bytes,
            "view": self.view,
            "stage": self.stage,
            "block": self.block,
            "cost_rule": self.cost_rule.value,
            "live_bytes": self.live_bytes,
            "peak_bytes": self.peak_bytes,
            "saved_bytes": self.saved_bytes,
        }
        if with_source:
            out["source"] = self.source
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "op") -> OpRecord:
        """Inverse of :meth:`to_dict` (``flops`` is derived, ``source`` optional); ``where`` names it in errors."""
        return cls(
            index=json_int(data["index"], f"{where}.index"),
            module=str(data["module"]),
            op=str(data["op"]),
            kind=OpKind(data["kind"]),
            label=None if data.get("label") is None else str(data["label"]),
            inputs=tuple(json_shape(s, f"{where}.inputs") for s in data["inputs"]),
            output=json_shape(data["output"], f"{where}.output"),
            dtype=str(data["dtype"]),
            macs=json_int(data["macs"], f"{where}.macs"),
            out_bytes=json_int(data["out_bytes"], f"{where}.out_bytes"),
            alloc_bytes=json_int(data["alloc_bytes"], f"{where}.alloc_bytes"),
            view=bool(data["view"]),
            source=data.get("source"),
            stage=None if data.get("stage") is None else json_int(data["stage"], f"{where}.stage"),
            block=None if data.get("block") is None else json_int(data["block"], f"{where}.block"),
            cost_rule=CostRule(data.get("cost_rule", "macs")),
            live_bytes=json_int(data.get("live_bytes", 0), f"{where}.live_bytes"),
            peak_bytes=json_int(data.get("peak_bytes", 0), f"{where}.peak_bytes"),
            saved_bytes=json_int(data.get("saved_bytes", 0), f"{where}.saved_bytes"),
        )


_OPTIONAL_STAGE_FIELDS = ("peak_activation_bytes", "saved_activation_bytes")


#: The setter of each field's slot, in field order (what :meth:`OpRecord._copy` fills the fields with).
_OP_RECORD_SLOT_SETTERS: tuple[Callable[[OpRecord, Any], None], ...] = tuple(
    getattr(OpRecord, item.name).__set__ for item in fields(OpRecord)
)


@dataclass(frozen=True, slots=True)
class StageSummary:
    """What one pyramid stage does and costs."""

    index: int
    hw: tuple[int, int]
    tokens: int
    kv_tokens: int
    dim: int
    heads: int
    sr_ratio: int
    depth: int
    params: int
    macs: int
    attention_macs: int
    sr_macs: int
    projection_macs: int
    mlp_macs: int
    other_macs: int
    attention_map_shape: Shape | None
    """Logical shape of one block's score map [B, heads, N, N'] (also for SDPA, which never materialises it)."""
    attention_map_bytes: int
    """Bytes of one materialised score map; 0 when attention is fused (SDPA)."""
    output: Shape | None
    """Shape of the stage's output (the pyramid map, or tokens for the last classifier stage)."""
    peak_activation_bytes: int = 0
    """Highest activation bytes alive while the stage's ops ran (earlier stages' live tensors included)."""
    saved_activation_bytes: int = 0
    """Training traces: activation bytes the stage's ops saved for backward (each storage counted once)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageSummary:
        """Inverse of :meth:`to_dict`."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data and f.name in _OPTIONAL_STAGE_FIELDS:
                continue
            value = data[f.name]
            if f.name in ("hw", "attention_map_shape", "output"):
                value = None if value is None and f.name != "hw" else json_shape(value, f"stage {f.name}")
            else:
                value = json_int(value, f"stage {f.name}")
            kwargs[f.name] = value
        # Reports index these (grid "HxW", the score map's N x N'): a wrong length must fail here, not there.
        for name, length in (("hw", 2), ("attention_map_shape", 4)):
            if kwargs[name] is not None and len(kwargs[name]) != length:
                raise ValueError(f"stage {name}={list(kwargs[name])} must have {length} values")
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class Totals:
    """Whole-model figures."""

    params: int
    param_bytes: int
    buffer_bytes: int
    macs: int
    largest_activation_bytes: int
    """Bytes of the largest single op output."""
    ops: int
    uncosted_ops: int
    """Ops that had no cost rule (recorded with 0 MACs and flagged)."""
    input_bytes: int = 0
    """Bytes of the model input (counted as an activation: it is alive during the whole forward)."""
    peak_activation_bytes: int = 0
    """Highest activation bytes alive at any moment of the (inference) forward, input included."""
    peak_op: int | None = None
    """Index of the op during which the activation peak occurs."""
    peak_stage: int | None = None
    """1-based stage of ``peak_op`` (None outside stages)."""
    peak_memory_bytes: int = 0
    """Estimated peak memory of what was traced: params + buffers + peak activations for inference;
    the training-step peak (see :class:`TrainingMemory`) for a training trace."""

    @property
    def flops(self) -> int:
        """2 x macs."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``flops`` included)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["flops"] = self.flops
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Totals:
        """Inverse of :meth:`to_dict` (memory fields are optional: traces written before them still load)."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data and f.name in OPTIONAL_TOTALS:
                continue
            value = data[f.name]
            optional = value is None and f.name in ("peak_op", "peak_stage")
            kwargs[f.name] = None if optional else json_int(value, f"totals.{f.name}")
        return cls(**kwargs)


#: Memory totals added after the first trace format; files without them still load.
OPTIONAL_TOTALS = ("input_bytes", "peak_activation_bytes", "peak_op", "peak_stage", "peak_memory_bytes")


@dataclass(frozen=True, slots=True)
class TrainingMemory:
    """Memory of one training step (forward with grad, backward, optimizer step), estimated on the trace.

    ``peak_bytes = param_bytes + buffer_bytes + grad_bytes + optimizer_state_bytes
    + max(forward_peak_bytes, backward_peak_bytes)``; ``backward_peak_bytes`` is the saved
    activations plus the largest transient during backward (see ``pvttrace.memory.estimate``).
    """

    optimizer: str
    trainable_params: int
    grad_bytes: int
    """Gradients of the trainable parameters (= their bytes)."""
    optimizer_state_bytes: int
    """0 for none/sgd, 1x trainable param bytes for sgd-momentum, 2x for adam/adamw."""
    saved_activation_bytes: int
    """Activation storages autograd holds for backward at the end of the forward (each counted once)."""
    saved_param_bytes: int
    """Parameter/buffer storages autograd saved (no extra memory: they are already counted as params)."""
    forward_peak_bytes: int
    """Highest activation bytes alive during the forward with grad enabled."""
    backward_peak_bytes: int
    """Highest activation bytes alive during backward: saved tensors not yet released, gradients of
    activations, temporaries (parameter gradients excluded: they are ``grad_bytes``)."""
    peak_bytes: int
    """Estimated peak of the training step (formula in the class docstring)."""

    @property
    def backward_transient_bytes(self) -> int:
        """How far backward rises above the saved activations (activation gradients and temporaries)."""
        return max(0, self.backward_peak_bytes - self.saved_activation_bytes)

    @property
    def peak_phase(self) -> str:
        """``forward`` or ``backward``: which phase sets the activation term of the peak."""
        return "backward" if self.backward_peak_bytes >= self.forward_peak_bytes else "forward"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (derived ``backward_transient_bytes`` and ``peak_phase`` included)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["backward_transient_bytes"] = self.backward_transient_bytes
        out["peak_phase"] = self.peak_phase
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingMemory:
        """Inverse of :meth:`to_dict`."""
        counts = {f.name: json_int(data[f.name], f"training.{f.name}") for f in fields(cls) if f.name != "optimizer"}
        return cls(optimizer=str(data["optimizer"]), **counts)


@dataclass(frozen=True, slots=True)
class Provenance:
    """How a trace's numbers were made: the counting convention, the element dtype and the device.

    Every report states these, read from its traces: MACs of two conventions, or bytes of two dtypes,
    are different quantities, so a comparison must say when they differ.
    """

    convention: str
    """A key of :data:`CONVENTIONS` (``macs``, ``fvcore``, ``timm``, ``paper``)."""
    dtype: str
    """Element type of the model and its input (``float32``, ...); ``unknown`` when a file does not say."""
    device: str
    """Where the forward ran (``meta``, ``cpu``, ``cuda``)."""

    def to_dict(self) -> dict[str, str]:
        """JSON-ready dict; ``convention`` is the full line of :data:`CONVENTIONS` (it starts with the name)."""
        return {"convention": CONVENTIONS[self.convention], "dtype": self.dtype, "device": self.device}

    def describe(self) -> str:
        """``convention macs, float32 on meta``."""
        return f"convention {self.convention}, {self.dtype} on {self.device}"


@dataclass(frozen=True, slots=True)
class Trace:
    """Everything one traced forward produced: config, op records, stage summaries and totals."""

    config: PvtConfig | None
    input_shape: Shape
    outputs: tuple[Shape, ...]
    ops: tuple[OpRecord, ...]
    stages: tuple[StageSummary, ...]
    totals: Totals
    device: str = "meta"
    tool_version: str = field(default="", compare=False)
    convention: str = "macs"
    """Which counting convention ``macs`` follow: a key of :data:`CONVENTIONS`."""
    model: str | None = None
    """The traced model when it is not a built-in config, e.g. ``timm:pvt_v2_b0``."""
    training: TrainingMemory | None = None
    """Training-step memory, when traced with ``train=True`` (None for inference traces)."""
    dtype: str = ""
    """Element type of the model and its input; "" when constructed: taken from the config, else the ops."""

    def __post_init__(self) -> None:
        if not self.dtype:
            object.__setattr__(self, "dtype", traced_dtype(self.config, (op.dtype for op in self.ops)))

    @property
    def provenance(self) -> Provenance:
        """The convention, dtype and device this trace was made with."""
        return Provenance(self.convention, self.dtype, self.device)

    def __repr__(self) -> str:
        """One line (the dataclass repr of every op ran to ~100 KB): what was traced and its totals."""
        from pvttrace.base.units import format_bytes, format_count

        what = self.config.describe() if self.config is not None else (self.model or f"input {list(self.input_shape)}")
        peak = f", peak {format_bytes(self.totals.peak_memory_bytes)}" if self.totals.peak_memory_bytes else ""
        return (
            f"<Trace {what}: {len(self.ops)} ops, {len(self.stages)} stages, MACs {format_count(self.totals.macs)}, "
            f"params {format_count(self.totals.params)}{peak}>"
        )

    def select(
        self,
        *,
        stages: Iterable[int] | None = None,
        kinds: Iterable[str] | None = None,
    ) -> tuple[OpRecord, ...]:
        """Ops of the given 1-based stages and kinds (None: all)."""
        stage_set = None if stages is None else set(stages)
        kind_set = None if kinds is None else {OpKind(k) for k in kinds}
        return tuple(
            op
            for op in self.ops
            if (stage_set is None or op.stage in stage_set) and (kind_set is None or op.kind in kind_set)
        )

    def to_dict(self, *, with_source: bool = True) -> dict[str, Any]:
        """The ``pvttrace.trace/1`` JSON document."""
        document: dict[str, Any] = {
            "schema": TRACE_SCHEMA,
            "tool_version": self.tool_version,
            "convention": CONVENTIONS[self.convention],
            "device": self.device,
            "dtype": self.dtype,
            "config": None if self.config is None else self.config.to_dict(),
            "fidelity": None if self.config is None else fidelity(self.config).to_dict(),
            "input_shape": list(self.input_shape),
            "outputs": [list(s) for s in self.outputs],
            "totals": self.totals.to_dict(),
            "stages": [s.to_dict() for s in self.stages],
            "ops": [op.to_dict(with_source=with_source) for op in self.ops],
            "training": None if self.training is None else self.training.to_dict(),
        }
        if self.model is not None:
            document["model"] = self.model
        return document

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trace:
        """Rebuild a trace from its JSON document.

        Raises:
            TraceFileError: wrong schema or malformed content.
        """
        if not isinstance(data, Mapping) or data.get("schema") != TRACE_SCHEMA:
            found = data.get("schema") if isinstance(data, Mapping) else type(data).__name__
            raise TraceFileError(f"schema={found!r} is not {TRACE_SCHEMA!r}")
        try:
            config = None if data.get("config") is None else PvtConfig.from_dict(data["config"])
            return cls(
                config=config,
                input_shape=json_shape(data["input_shape"], "input_shape"),
                outputs=tuple(json_shape(s, "outputs") for s in data["outputs"]),
                ops=tuple(OpRecord.from_dict(o, f"ops[{i}]") for i, o in enumerate(data["ops"])),
                stages=tuple(StageSummary.from_dict(s) for s in data["stages"]),
                totals=Totals.from_dict(data["totals"]),
                device=str(data.get("device", "meta")),
                tool_version=str(data.get("tool_version", "")),
                convention=convention_name(data.get("convention")),
                model=None if data.get("model") is None else str(data["model"]),
                training=None if data.get("training") is None else TrainingMemory.from_dict(data["training"]),
                dtype=str(data.get("dtype") or ""),  # traces written before the field: from config or ops
            )
        except ConfigError as exc:
            raise TraceFileError(f"bad config in trace: {exc}") from None
        except TraceFileError as exc:
            raise TraceFileError(f"malformed trace content ({exc})") from None
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise TraceFileError(f"malformed trace content ({type(exc).__name__}: {exc})") from None


def traced_dtype(config: PvtConfig | None, op_dtypes: Iterable[str]) -> str:
    """The dtype a trace was made in: its config's, else the most common floating dtype of its ops' outputs.

    Used for traces and snapshots written before they stated their dtype, and for traces built in Python
    without one; ``unknown`` when no op has a floating output.
    """
    if config is not None:
        return config.dtype
    counts: dict[str, int] = {}
    for dtype in op_dtypes:
        if dtype.startswith(("float", "bfloat")):
            counts[dtype] = counts.get(dtype, 0) + 1
    return max(counts, key=lambda name: counts[name]) if counts else "unknown"


def convention_name(text: Any) -> str:
    """The convention key a saved ``convention`` line starts with (``macs`` for older traces)."""
    first = str(text or "").split(" ", 1)[0].rstrip(":")
    return first if first in CONVENTIONS else "macs"


def filtered_document(
    trace: Trace, *, stages: Iterable[int] | None = None, kinds: Iterable[str] | None = None
) -> dict[str, Any]:
    """The trace's JSON document with only the ops of ``stages``/``kinds``, as ``run --format json`` writes it.

    Stage summaries and totals stay whole-model. The document records the filters in ``filters``
    (``{"stages": [1, 2], "kinds": null}``); without filters it is exactly :meth:`Trace.to_dict`.
    """
    document = trace.to_dict()
    stage_list = None if stages is None else sorted(set(stages))
    kind_list = None if kinds is None else list(kinds)
    if stage_list is None and kind_list is None:
        return document
    document["ops"] = [op.to_dict() for op in trace.select(stages=stage_list, kinds=kind_list)]
    document["filters"] = {"stages": stage_list, "kinds": kind_list}
    return document


def dumps_json(document: Mapping[str, Any]) -> str:
    """Stable JSON text: sorted keys, 2-space indent, trailing newline (same input, same bytes)."""
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def loads_trace(text: str, *, origin: str = "trace") -> Trace:
    """Parse a ``pvttrace.trace/1`` JSON text.

    Raises:
        TraceFileError: not JSON, or not a trace.
    """
    data = parse_json(text, origin=origin)
    try:
        return Trace.from_dict(data)
    except TraceFileError as exc:
        raise TraceFileError(f"{origin}: {exc}") from None


def load_trace(path: str) -> Trace:
    """Read a trace JSON file written by ``pvttrace run --format json``.

    Raises:
        TraceFileError: missing, unreadable, not JSON or not a trace.
    """
    data = read_json(path, what="trace")
    try:
        return Trace.from_dict(data)
    except TraceFileError as exc:
        raise TraceFileError(f"{path}: {exc}") from None
