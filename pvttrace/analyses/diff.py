"""Compare traces side by side: per-stage and total changes against a baseline, and aligned ops.

Pure data. This module must not import torch, rich or typer: saved traces can be compared
without them, and :func:`trace_distinct` takes the tracer as an argument. The first trace
of a comparison is the baseline; every change is "this configuration against the baseline".

Example:
    >>> from pvttrace.config import resolve_config
    >>> from pvttrace.tracing.recorder import trace_config
    >>> configs = [resolve_config(sr="8,4,2,1"), resolve_config(sr="1,1,1,1")]
    >>> diff = diff_traces(trace_distinct(configs, trace_config), default_labels(configs))
    >>> diff.labels
    ('sr=8,4,2,1', 'sr=1,1,1,1')
    >>> diff.stage(1).change(1, StageMetric.ATTENTION_MACS).ratio
    64.0
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pvttrace import __version__
from pvttrace.base.errors import ConfigError, TraceFileError, UserInputError
from pvttrace.base.jsonio import read_json
from pvttrace.base.units import format_bytes, format_count
from pvttrace.config import VARIANTS, PvtConfig, resolve_variant_name
from pvttrace.records import CONVENTIONS, TRACE_SCHEMA, OpKind, OpRecord, Provenance, StageSummary, Trace
from pvttrace.snapshot.data import SNAPSHOT_SCHEMA, parse_snapshot, recover_config

__all__ = [
    "DIFF_SCHEMA",
    "Change",
    "MixedConventions",
    "OpRow",
    "OpStatus",
    "StageDiff",
    "StageMetric",
    "TotalMetric",
    "TraceDiff",
    "align_ops",
    "check_labels",
    "default_labels",
    "diff_traces",
    "differing_settings",
    "file_labels",
    "load_diff_input",
    "summary_lines",
    "trace_distinct",
]

DIFF_SCHEMA = "pvttrace.diff/1"


class MixedConventions(UserInputError):
    """Traces counted under different conventions compared without ``mixed_conventions=True``.

    MACs of one convention are not MACs of another (fvcore counts norms, macs does not), so a ratio
    between them would read as a model change that is not there.
    """

    def __init__(self, labels: Sequence[str], conventions: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self.conventions = tuple(conventions)
        columns = ", ".join(f"{label}: {name}" for label, name in zip(labels, conventions, strict=True))
        super().__init__(
            f"the traces were counted under different conventions ({columns}); ratios between their MACs "
            "would compare different counts, so diff refuses them"
        )


class StageMetric(StrEnum):
    """Per-stage quantities compared against the baseline (names are ``StageSummary`` fields)."""

    TOKENS = "tokens"
    KV_TOKENS = "kv_tokens"
    ATTENTION_MAP_BYTES = "attention_map_bytes"
    ATTENTION_MACS = "attention_macs"
    SR_MACS = "sr_macs"
    PROJECTION_MACS = "projection_macs"
    MLP_MACS = "mlp_macs"
    MACS = "macs"
    PARAMS = "params"


class TotalMetric(StrEnum):
    """Whole-model quantities compared against the baseline (names are ``Totals`` fields)."""

    PARAMS = "params"
    MACS = "macs"
    FLOPS = "flops"
    PARAM_BYTES = "param_bytes"
    LARGEST_ACTIVATION_BYTES = "largest_activation_bytes"
    PEAK_ACTIVATION_BYTES = "peak_activation_bytes"
    PEAK_MEMORY_BYTES = "peak_memory_bytes"


@dataclass(frozen=True, slots=True)
class Change:
    """One quantity of one configuration next to the baseline's; None where a side lacks it."""

    value: int | None
    baseline: int | None

    @property
    def delta(self) -> int | None:
        """``value - baseline``, or None when either is missing."""
        if self.value is None or self.baseline is None:
            return None
        return self.value - self.baseline

    @property
    def ratio(self) -> float | None:
        """``value / baseline``; 1.0 when both are 0; None when the baseline is 0 (or missing) and the value is not,
        or when the quotient is beyond a float (integers of hundreds of digits, read from a damaged file)."""
        if self.value is None or self.baseline is None:
            return None
        if self.baseline == 0:
            return 1.0 if self.value == 0 else None
        try:
            return self.value / self.baseline
        except OverflowError:
            return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: value, baseline, delta and ratio."""
        return {"value": self.value, "baseline": self.baseline, "delta": self.delta, "ratio": self.ratio}


@dataclass(frozen=True, slots=True)
class StageDiff:
    """One pyramid stage across every configuration (None where a configuration has fewer stages)."""

    index: int
    """1-based stage number."""
    stages: tuple[StageSummary | None, ...]
    """The stage's summary in each configuration, baseline first."""

    def change(self, config: int, metric: StageMetric) -> Change:
        """``metric`` of configuration ``config`` (0-based; 0 is the baseline) next to the baseline's."""
        return Change(_stage_value(self.stages[config], metric), _stage_value(self.stages[0], metric))

    def per_block(self, config: int, metric: StageMetric) -> Change:
        """Like :meth:`change`, divided by each side's stage depth (attention MACs per block, ...)."""

        def one(stage: StageSummary | None) -> int | None:
            value = _stage_value(stage, metric)
            return None if stage is None or value is None else value // max(stage.depth, 1)

        return Change(one(self.stages[config]), one(self.stages[0]))


def _stage_value(stage: StageSummary | None, metric: StageMetric) -> int | None:
    if stage is None:
        return None
    value: int = getattr(stage, metric.value)
    return value


class OpStatus(StrEnum):
    """How one aligned op differs across configurations."""

    SAME = "same"
    """Present everywhere with equal output shape and MACs."""
    SHAPE = "shape"
    """Present everywhere; the output shape differs somewhere."""
    MACS = "macs"
    """Present everywhere with equal shapes; the MACs differ."""
    ADDED = "added"
    """Absent from the baseline."""
    ABSENT = "absent"
    """In the baseline but absent from another configuration (e.g. the SR conv when sr=1)."""


@dataclass(frozen=True, slots=True)
class OpRow:
    """One op aligned across configurations by (stage, module path, op, label)."""

    stage: int | None
    module: str
    op: str
    label: str | None
    kind: OpKind
    ops: tuple[OpRecord | None, ...]
    """The op in each configuration, baseline first; None where it is absent."""

    @property
    def status(self) -> OpStatus:
        """What differs: see :class:`OpStatus`."""
        if self.ops[0] is None:
            return OpStatus.ADDED
        if any(op is None for op in self.ops):
            return OpStatus.ABSENT
        present = [op for op in self.ops if op is not None]
        if len({op.output for op in present}) > 1:
            return OpStatus.SHAPE
        if len({op.macs for op in present}) > 1:
            return OpStatus.MACS
        return OpStatus.SAME

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; each configuration's side holds index, output shape, MACs and new bytes, or null."""
        return {
            "stage": self.stage,
            "module": self.module,
            "op": self.op,
            "label": self.label,
            "kind": self.kind.value,
            "status": self.status.value,
            "ops": [
                None
                if op is None
                else {"index": op.index, "output": list(op.output), "macs": op.macs, "alloc_bytes": op.alloc_bytes}
                for op in self.ops
            ],
        }


@dataclass(frozen=True, slots=True)
class TraceDiff:
    """Two or more traces compared against the first (the baseline)."""

    labels: tuple[str, ...]
    """Column names, baseline first; unique."""
    traces: tuple[Trace, ...]
    stages: tuple[StageDiff, ...]
    op_rows: tuple[OpRow, ...] | None = None
    """Aligned ops, when asked for (``diff_traces(..., with_ops=True)``)."""

    @property
    def baseline(self) -> Trace:
        """The trace every other one is compared with."""
        return self.traces[0]

    def __repr__(self) -> str:
        """One line: the columns and each one's MACs ratio to the baseline."""
        from pvttrace.base.units import format_count, format_ratio

        base = self.baseline.totals.macs
        parts = [
            f"{label} MACs {format_count(t.totals.macs)}"
            + ("" if i == 0 else f" ({format_ratio(t.totals.macs, base)})")
            for i, (label, t) in enumerate(zip(self.labels, self.traces, strict=True))
        ]
        return f"<TraceDiff {len(self.traces)} configurations: {'; '.join(parts)}>"

    @property
    def provenances(self) -> tuple[Provenance, ...]:
        """Each configuration's convention, dtype and device, read from its trace (baseline first)."""
        return tuple(t.provenance for t in self.traces)

    @property
    def mixed_conventions(self) -> bool:
        """True when the traces were counted under more than one convention (their MACs do not compare)."""
        return len({t.convention for t in self.traces}) > 1

    def stage(self, index: int) -> StageDiff:
        """The 1-based stage ``index``.

        Raises:
            KeyError: no configuration has that stage.
        """
        for stage in self.stages:
            if stage.index == index:
                return stage
        raise KeyError(index)

    def total(self, config: int, metric: TotalMetric) -> Change:
        """Whole-model ``metric`` of configuration ``config`` next to the baseline's."""
        value: int = getattr(self.traces[config].totals, metric.value)
        base: int = getattr(self.baseline.totals, metric.value)
        return Change(value, base)

    def to_dict(self) -> dict[str, Any]:
        """The ``pvttrace.diff/1`` JSON document.

        It holds each configuration's config, totals and stages (as ``pvttrace.trace/1`` writes
        them), then per stage and for the totals every non-baseline configuration's changes
        (value, baseline, delta, ratio), the summary sentences, and the aligned ops when computed.
        """
        others = range(1, len(self.traces))
        document: dict[str, Any] = {
            "schema": DIFF_SCHEMA,
            "tool_version": __version__,
            # The shared convention line; null when the columns differ (each configuration states its own).
            "convention": None if self.mixed_conventions else CONVENTIONS[self.baseline.convention],
            "mixed_conventions": self.mixed_conventions,
            "baseline": self.labels[0],
            "labels": list(self.labels),
            "configurations": [
                {
                    "label": label,
                    "config": None if trace.config is None else trace.config.to_dict(),
                    **trace.provenance.to_dict(),
                    "input_shape": list(trace.input_shape),
                    "outputs": [list(s) for s in trace.outputs],
                    "totals": trace.totals.to_dict(),
                    "stages": [s.to_dict() for s in trace.stages],
                }
                for label, trace in zip(self.labels, self.traces, strict=True)
            ],
            "stages": [
                {
                    "index": stage.index,
                    "changes": [
                        {"label": self.labels[i], **{m.value: stage.change(i, m).to_dict() for m in StageMetric}}
                        for i in others
                    ],
                }
                for stage in self.stages
            ],
            "totals": [
                {"label": self.labels[i], **{m.value: self.total(i, m).to_dict() for m in TotalMetric}} for i in others
            ],
            "summary": summary_lines(self),
        }
        if self.op_rows is not None:
            document["ops"] = [row.to_dict() for row in self.op_rows]
        return document


# ---------------------------------------------------------------------------------- building
def diff_traces(
    traces: Sequence[Trace], labels: Sequence[str], *, with_ops: bool = False, mixed_conventions: bool = False
) -> TraceDiff:
    """Compare ``traces`` against ``traces[0]``.

    Args:
        traces: two or more traces, baseline first.
        labels: one unique, non-empty name per trace.
        with_ops: also align the ops (costs one sequence alignment per non-baseline trace).
        mixed_conventions: compare traces counted under different conventions anyway (the views
            then say so above every ratio); refused by default.

    Raises:
        UserInputError: fewer than two traces, or labels that do not fit.
        MixedConventions: the traces use different counting conventions and ``mixed_conventions`` is False.
    """
    check_labels(labels, len(traces))
    if not mixed_conventions and len({t.convention for t in traces}) > 1:
        raise MixedConventions(labels, [t.convention for t in traces])
    count = max(len(t.stages) for t in traces)
    stages = tuple(StageDiff(index, tuple(_stage_at(t, index) for t in traces)) for index in range(1, count + 1))
    rows = align_ops([t.ops for t in traces]) if with_ops else None
    return TraceDiff(tuple(labels), tuple(traces), stages, rows)


def check_labels(labels: Sequence[str], count: int) -> None:
    """Check that ``count`` configurations (two or more) get one unique, non-empty label each.

    Raises:
        UserInputError: fewer than two configurations, or labels that do not fit.
    """
    if count < 2:
        raise UserInputError(
            f"diff needs at least two configurations, got {count}: repeat an option such as "
            "--sr (--sr 8,4,2,1 --sr 1,1,1,1) or give two trace files"
        )
    if len(labels) != count:
        raise UserInputError(
            f"label was given {len(labels)} time(s) for {count} configurations; give one per configuration"
        )
    for label in labels:
        if not label.strip():
            raise UserInputError(f"label={label!r} must not be empty")
    if len(set(labels)) != len(labels):
        repeated = sorted({label for label in labels if list(labels).count(label) > 1})
        raise UserInputError(f"label={repeated[0]!r} is given to more than one configuration; labels must be unique")


def _stage_at(trace: Trace, index: int) -> StageSummary | None:
    for stage in trace.stages:
        if stage.index == index:
            return stage
    return None


def trace_distinct(configs: Sequence[PvtConfig], tracer: Callable[[PvtConfig], Trace]) -> list[Trace]:
    """Trace each configuration once: columns with the same architecture share one trace.

    Two configs count as the same architecture when they differ only in their preset name
    (``--variant b2 --linear-sra on`` and ``--variant b2-li``); each returned trace still
    carries its own column's config.
    """
    cache: dict[PvtConfig, Trace] = {}
    traces = []
    for cfg in configs:
        key = dataclasses.replace(cfg, variant="")
        if key not in cache:
            cache[key] = tracer(cfg)
        trace = cache[key]
        traces.append(trace if trace.config == cfg else dataclasses.replace(trace, config=cfg))
    return traces


def _op_key(op: OpRecord) -> tuple[int | None, str, str, str | None]:
    return (op.stage, op.module, op.op, op.label)


def align_ops(op_lists: Sequence[Sequence[OpRecord]]) -> tuple[OpRow, ...]:
    """Align ops of several traces by (stage, module path, op, label), keeping execution order.

    The first list is the backbone; each further list is aligned to the rows built so far with
    a longest-matching-subsequence alignment (``difflib.SequenceMatcher``, junk heuristics off,
    because repeated keys such as ``permute`` in every block are the norm here). Ops without a
    partner become rows that are absent (None) on the other sides.
    """
    count = len(op_lists)
    rows: list[list[OpRecord | None]] = [[op] + [None] * (count - 1) for op in op_lists[0]]
    keys = [_op_key(op) for op in op_lists[0]]
    for column in range(1, count):
        ops = list(op_lists[column])
        new_keys = [_op_key(op) for op in ops]
        matcher = difflib.SequenceMatcher(None, keys, new_keys, autojunk=False)
        merged_rows: list[list[OpRecord | None]] = []
        merged_keys: list[tuple[int | None, str, str, str | None]] = []
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                    rows[i][column] = ops[j]
                    merged_rows.append(rows[i])
                    merged_keys.append(keys[i])
                continue
            merged_rows.extend(rows[i1:i2])
            merged_keys.extend(keys[i1:i2])
            for j in range(j1, j2):
                row: list[OpRecord | None] = [None] * count
                row[column] = ops[j]
                merged_rows.append(row)
                merged_keys.append(new_keys[j])
        rows, keys = merged_rows, merged_keys
    result = []
    for row in rows:
        first = next(op for op in row if op is not None)
        result.append(OpRow(first.stage, first.module, first.op, first.label, first.kind, tuple(row)))
    return tuple(result)


# ---------------------------------------------------------------------------------- labels
_LABEL_NAMES = {
    "sr_ratios": "sr",
    "mlp_ratios": "mlp-ratios",
    "linear_sra": "linear-sra",
    "qkv_bias": "qkv-bias",
    "in_chans": "in-chans",
    "num_classes": "num-classes",
    "pos_size": "pos-size",
}


def _label_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if name in ("img", "pos_size"):
        return str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"
    if isinstance(value, list | tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


#: Longest default label; longer descriptions fall back to numbered columns (the header still lists them).
MAX_LABEL = 32


def differing_settings(configs: Sequence[PvtConfig]) -> list[str]:
    """Each configuration's settings that differ between them, e.g. ``sr=8,4,2,1``, in PvtConfig field order.

    When the presets differ, settings that each preset implies are not repeated
    (``variant=b2`` and ``variant=b2-li``, not ``... linear-sra=on``). Empty strings when
    nothing differs.
    """
    dicts = [cfg.to_dict() for cfg in configs]
    names = [f.name for f in dataclasses.fields(PvtConfig) if f.name != "warnings"]
    differing = [name for name in names if len({json.dumps(d[name]) for d in dicts}) > 1]
    if "variant" in differing:
        presets = [VARIANTS.get(_preset_key(cfg.variant)) for cfg in configs]

        def implied(name: str) -> bool:
            return all(
                preset is not None and json.dumps(preset.to_dict()[name]) == json.dumps(d[name])
                for preset, d in zip(presets, dicts, strict=True)
            )

        differing = [name for name in differing if name == "variant" or not implied(name)]
    return [" ".join(f"{_LABEL_NAMES.get(n, n)}={_label_value(n, d[n])}" for n in differing) for d in dicts]


def default_labels(configs: Sequence[PvtConfig]) -> list[str]:
    """Name each configuration by the settings that differ between them (:func:`differing_settings`).

    Configurations that cannot be told apart this way, or whose description is longer than
    ``MAX_LABEL`` characters, are numbered instead (``#1``, ``#2``).
    """
    labels = differing_settings(configs)
    if not all(labels) or len(set(labels)) != len(labels) or max(map(len, labels)) > MAX_LABEL:
        return [f"#{i}" for i in range(1, len(configs) + 1)]
    return labels


def _preset_key(name: str) -> str:
    try:
        return resolve_variant_name(name)
    except ConfigError:
        return name


# ---------------------------------------------------------------------------------- summary sentences
def _sig(value: int, as_bytes: bool) -> str:
    """Three significant digits with a unit: 19.7 M, 1.26 G, 600 KiB, 37.5 MiB."""
    text = format_bytes(value) if as_bytes else format_count(value)
    number, _, unit = text.partition(" ")
    if not unit or "e" in number or ("." not in number and len(number) >= 3):
        return text
    magnitude = float(number)
    digits = 2 if magnitude < 10 else 1 if magnitude < 100 else 0
    rounded = f"{magnitude:.{digits}f}"
    if "." in rounded:
        rounded = rounded.rstrip("0").rstrip(".")
    return f"{rounded} {unit}"


def _factor(ratio: float) -> str:
    if ratio >= 10 and abs(ratio - round(ratio)) < 0.05:
        return f"{ratio:.0f}"
    text = f"{ratio:.2f}" if ratio < 10 else f"{ratio:.1f}"
    return text.rstrip("0").rstrip(".")


def _scaling(verb_object: str, change: Change, as_bytes: bool) -> str:
    """'multiplies X by 64 (19.7 M -> 1.26 G)', 'divides X by 4 (...)' or 'leaves X at 19.7 M'."""
    value, base = change.value or 0, change.baseline or 0
    if value == base:
        return f"leaves {verb_object} at {_sig(value, as_bytes)}"
    span = f"({_sig(base, as_bytes)} -> {_sig(value, as_bytes)})"
    up, down = Change(value, base).ratio, Change(base, value).ratio
    if base == 0 or value == 0 or up is None or down is None:
        return f"changes {verb_object} {span}"
    if value > base:
        return f"multiplies {verb_object} by {_factor(up)} {span}"
    return f"divides {verb_object} by {_factor(down)} {span}"


def _causes(diff: TraceDiff, config: int, new: StageSummary, old: StageSummary) -> list[str]:
    """The settings of this stage (and of the whole model) that differ from the baseline, in words."""
    new_cfg, old_cfg = diff.traces[config].config, diff.baseline.config
    causes: list[str] = []
    if new_cfg is not None and old_cfg is not None:
        if new_cfg.variant != old_cfg.variant:
            causes.append(f"variant {old_cfg.variant} -> {new_cfg.variant}")
        if new_cfg.linear_sra != old_cfg.linear_sra:
            causes.append(
                f"linear SRA {'on' if old_cfg.linear_sra else 'off'} -> {'on' if new_cfg.linear_sra else 'off'}"
            )
    for name, text in (("sr_ratio", "sr"), ("dim", "dim"), ("heads", "heads"), ("depth", "depth")):
        if getattr(new, name) != getattr(old, name):
            causes.append(f"{text} {getattr(old, name)} -> {getattr(new, name)}")
    if new_cfg is not None and old_cfg is not None:
        i = new.index - 1
        if i < min(new_cfg.num_stages, old_cfg.num_stages) and new_cfg.mlp_ratios[i] != old_cfg.mlp_ratios[i]:
            causes.append(f"mlp ratio {old_cfg.mlp_ratios[i]:g} -> {new_cfg.mlp_ratios[i]:g}")
        for name in ("batch", "dtype"):
            if getattr(new_cfg, name) != getattr(old_cfg, name):
                causes.append(f"{name} {getattr(old_cfg, name)} -> {getattr(new_cfg, name)}")
    if new.hw != old.hw:
        causes.append(f"grid {old.hw[0]}x{old.hw[1]} -> {new.hw[0]}x{new.hw[1]}")
    if new.kv_tokens != old.kv_tokens:
        causes.append(f"N' {old.kv_tokens} -> {new.kv_tokens}")
    return causes


def summary_lines(diff: TraceDiff) -> list[str]:
    """One plain-language sentence per stage and non-baseline configuration.

    Example: ``stage 1: sr 8 -> 1, N' 49 -> 3136 multiplies attention MACs per block by 64
    (19.7 M -> 1.26 G) and the attention map from 600 KiB to 37.5 MiB; stage MACs x5.64
    (538 M -> 3.03 G)``. With more than two configurations each line names its column.
    """
    lines: list[str] = []
    for stage in diff.stages:
        for config in range(1, len(diff.traces)):
            where = f"stage {stage.index}" if len(diff.traces) == 2 else f"stage {stage.index}, {diff.labels[config]}"
            new, old = stage.stages[config], stage.stages[0]
            if new is None or old is None:
                side = diff.labels[config] if new is None else diff.labels[0]
                lines.append(f"{where}: absent from {side}")
                continue
            causes = _causes(diff, config, new, old)
            subject = ", ".join(causes) if causes else "no setting of this stage changes; it"
            sentence = f"{where}: {subject} " + _scaling(
                "attention MACs per block", stage.per_block(config, StageMetric.ATTENTION_MACS), False
            )
            maps = stage.change(config, StageMetric.ATTENTION_MAP_BYTES)
            if maps.value != maps.baseline:
                sentence += (
                    f" and the attention map from {_sig(maps.baseline or 0, True)} to {_sig(maps.value or 0, True)}"
                )
            macs = stage.change(config, StageMetric.MACS)
            if macs.value != macs.baseline and macs.ratio is not None:
                sentence += f"; stage MACs x{_factor(macs.ratio)} ({_sig(old.macs, False)} -> {_sig(new.macs, False)})"
            lines.append(sentence)
    return lines


# ---------------------------------------------------------------------------------- saved inputs
def load_diff_input(path: str, *, retrace: Callable[[PvtConfig], Trace] | None = None) -> tuple[Trace, list[str]]:
    """Read a saved trace (``pvttrace.trace/1``) or snapshot (``pvttrace.snapshot/1``) for comparison.

    A snapshot is read by the snapshot parser (:mod:`pvttrace.snapshot.data`) and its stored stages,
    totals and ops are used as they are (so two snapshots are compared as written, not as today's code
    would trace them); what a snapshot leaves out (op indices, output bytes) is filled in. Only when the
    rest of a snapshot is unreadable is its ``config`` traced again with ``retrace``, and a note says so.

    Returns:
        The trace and notes for the user (empty when the file was read as it is).

    Raises:
        TraceFileError: missing, unreadable, not JSON, wrong schema, or malformed content.
    """
    data = read_json(path, what="trace or snapshot")
    schema = data.get("schema") if isinstance(data, Mapping) else None
    if schema == TRACE_SCHEMA:
        try:
            return Trace.from_dict(data), []
        except TraceFileError as exc:
            raise TraceFileError(f"{path}: {exc}") from None
    if schema == SNAPSHOT_SCHEMA:
        try:
            return parse_snapshot(data, origin=path).to_trace(), []
        except TraceFileError as exc:
            try:
                config, _ = recover_config(data)
            except (TraceFileError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
                config = None
            if config is None or retrace is None:
                reason = str(exc).removeprefix(f"{path} ")
                raise TraceFileError(f"{path}: malformed snapshot content ({reason})") from None
            return retrace(config), [f"{path}: snapshot has no readable stages/totals; traced its config again"]
    found = repr(schema) if isinstance(data, Mapping) else repr(type(data).__name__)
    found = found if len(found) <= 80 else found[:76] + "...'"
    raise TraceFileError(f"{path}: schema={found} is not {TRACE_SCHEMA!r} or {SNAPSHOT_SCHEMA!r}")


def file_labels(paths: Iterable[str]) -> list[str]:
    """Column names for saved inputs: file names without ``.json``, or the paths when names repeat."""
    paths = list(paths)
    for labels in ([os.path.basename(p).removesuffix(".json") or p for p in paths], paths):
        if len(set(labels)) == len(labels):
            return labels
    return [f"#{i} {p}" for i, p in enumerate(paths, start=1)]
