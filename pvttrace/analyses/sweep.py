"""Sweeps: how a model's costs grow with image size, for several configurations side by side.

Pure data. This module must not import torch, rich, typer or matplotlib: it plans the sweep
(configurations x sizes, validated before any tracing), reads metrics out of traces through
a registry, and fits growth exponents with plain least squares. Tracing is injected (the
``trace`` argument of :func:`run_sweep`), so tests can reuse traces and the CLI decides
when torch is imported.

Growth exponent: for each metric and configuration, the slope ``k`` of the least-squares
line through ``(log N, log value)``, where ``N`` is stage 1's token count (``(H/4) * (W/4)``
for the usual stride-4 stem). ``value ~ c * N**k``: full attention's score and apply
matmuls cost ``N**2`` per stage, spatial-reduction attention still ``N**2`` but ``R**2``
times less (``N' = N / R**2``), linear SRA ``N`` (``N' = 49``). Metrics that mix terms (total
MACs = linear layers ~N + attention ~N**2) get an in-between exponent; ``end_slope`` (the
slope between the two largest sizes) shows where the curve is heading, and ``r_squared``
how well one power law fits.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pvttrace.base.errors import ConfigError, UserInputError
from pvttrace.base.units import format_bytes, format_count, format_shape
from pvttrace.config import PvtConfig, resolve_config
from pvttrace.records import CONVENTIONS, Provenance, Totals, Trace

if TYPE_CHECKING:
    from pvttrace.tracing.target import ModelSpec

__all__ = [
    "DEFAULT_METRICS",
    "DEFAULT_SIZES",
    "METRICS",
    "SWEEP_SCHEMA",
    "Metric",
    "MetricUnit",
    "PowerFit",
    "SweepColumn",
    "SweepPoint",
    "SweepResult",
    "SweepSeries",
    "available_metrics",
    "build_columns",
    "column_count",
    "fit_power_law",
    "metric_available",
    "model_spec_at",
    "needs_memory",
    "plan_sweep",
    "run_model_sweep",
    "run_sweep",
]

SWEEP_SCHEMA = "pvttrace.sweep/1"
DEFAULT_SIZES = "224,320,512,800,1024,1600,2048"


def column_options() -> tuple[str, ...]:
    """What a sweep column can vary: every keyword of :func:`pvttrace.config.resolve_config` but ``img``.

    Read off the signature, so that a new model option is sweepable without a second list of options;
    the image size is the sweep's axis, not a column's. A keyword's CLI flag is ``--`` + the keyword
    with ``-`` for ``_``.
    """
    return tuple(name for name in inspect.signature(resolve_config).parameters if name != "img")


class MetricUnit(StrEnum):
    """What a metric counts; decides formatting and axis labels."""

    MACS = "MACs"
    BYTES = "bytes"
    PARAMS = "parameters"


StageValues = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Metric:
    """One number read out of a trace, with its per-stage split (for the dominant stage)."""

    name: str
    title: str
    """Short human name, e.g. ``attention MACs``."""
    unit: MetricUnit
    description: str
    """What exactly is counted, one sentence (shown under tables and in JSON)."""
    total: Callable[[Trace], int | None]
    stages: Callable[[Trace], StageValues | None]
    """Per-stage values, or None when the trace does not split this metric by stage."""
    requires: str | None = None
    """``Totals`` field the metric needs; the metric is available only when traces have it."""

    def format(self, value: float | None) -> str:
        """A value with its unit prefix: ``1.93 G`` (MACs, parameters) or ``600.25 KiB`` (bytes)."""
        if value is None:
            return "n/a"
        return format_bytes(value) if self.unit == MetricUnit.BYTES else format_count(value)


def _sum_stages(attr: str) -> Callable[[Trace], int | None]:
    return lambda trace: sum(getattr(s, attr) for s in trace.stages)


def _per_stage(attr: str) -> Callable[[Trace], StageValues | None]:
    return lambda trace: tuple(getattr(s, attr) for s in trace.stages)


def _optional_total(attr: str) -> Callable[[Trace], int | None]:
    def read(trace: Trace) -> int | None:
        value = getattr(trace.totals, attr, None)
        return value if isinstance(value, int) else None

    return read


def _optional_per_stage(attr: str) -> Callable[[Trace], StageValues | None]:
    def read(trace: Trace) -> StageValues | None:
        values = [getattr(s, attr, None) for s in trace.stages]
        return tuple(v for v in values if isinstance(v, int)) if all(isinstance(v, int) for v in values) else None

    return read


def _stage_param_bytes(trace: Trace) -> StageValues | None:
    if trace.config is None:
        return None
    return tuple(s.params * trace.config.dtype_bytes for s in trace.stages)


def _stage_largest_activation(trace: Trace) -> StageValues | None:
    largest = dict.fromkeys((s.index for s in trace.stages), 0)
    for op in trace.ops:
        if op.stage in largest:
            largest[op.stage] = max(largest[op.stage], op.out_bytes)
    return tuple(largest.values())


def _largest_map(trace: Trace) -> int | None:
    return max((s.attention_map_bytes for s in trace.stages), default=0)


#: Every metric a sweep can show, by name.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "macs",
            "MACs",
            MetricUnit.MACS,
            "multiply-accumulates of every conv, linear and matmul (papers' 'FLOPs')",
            lambda t: t.totals.macs,
            _per_stage("macs"),
        ),
        Metric(
            "attention_macs",
            "attention MACs",
            MetricUnit.MACS,
            "MACs of the attention matmuls q@k^T and attn@v (or SDPA), all blocks",
            _sum_stages("attention_macs"),
            _per_stage("attention_macs"),
        ),
        Metric(
            "sr_macs",
            "SR conv MACs",
            MetricUnit.MACS,
            "MACs of the spatial-reduction convs that shrink keys and values",
            _sum_stages("sr_macs"),
            _per_stage("sr_macs"),
        ),
        Metric(
            "projection_macs",
            "projection MACs",
            MetricUnit.MACS,
            "MACs of the q, kv and output projections",
            _sum_stages("projection_macs"),
            _per_stage("projection_macs"),
        ),
        Metric(
            "mlp_macs",
            "MLP MACs",
            MetricUnit.MACS,
            "MACs of the MLPs (fc1, depthwise conv, fc2)",
            _sum_stages("mlp_macs"),
            _per_stage("mlp_macs"),
        ),
        Metric(
            "attention_map_bytes",
            "attention map bytes",
            MetricUnit.BYTES,
            "bytes of the largest single score map [B, heads, N, N'] one block materialises (0 with fused SDPA)",
            _largest_map,
            _per_stage("attention_map_bytes"),
        ),
        Metric(
            "largest_activation_bytes",
            "largest activation",
            MetricUnit.BYTES,
            "bytes of the largest single op output",
            lambda t: t.totals.largest_activation_bytes,
            _stage_largest_activation,
        ),
        Metric(
            "peak_activation_bytes",
            "peak activation bytes",
            MetricUnit.BYTES,
            "activation bytes alive at the forward's peak (inference)",
            _optional_total("peak_activation_bytes"),
            _optional_per_stage("peak_activation_bytes"),
            requires="peak_activation_bytes",
        ),
        Metric(
            "peak_memory_bytes",
            "peak memory",
            MetricUnit.BYTES,
            "params + buffers + activations at the inference peak, or the training step's peak (sweep --train)",
            _optional_total("peak_memory_bytes"),
            _optional_per_stage("saved_activation_bytes"),
            requires="peak_memory_bytes",
        ),
        Metric(
            "params",
            "parameters",
            MetricUnit.PARAMS,
            "learned parameters (head included)",
            lambda t: t.totals.params,
            _per_stage("params"),
        ),
        Metric(
            "param_bytes",
            "parameter bytes",
            MetricUnit.BYTES,
            "bytes of the parameters in the traced dtype",
            lambda t: t.totals.param_bytes,
            _stage_param_bytes,
        ),
    )
}

#: Shown when ``--metric`` is not given (those available in this build).
DEFAULT_METRICS = ("macs", "attention_macs", "attention_map_bytes", "peak_activation_bytes", "params")


def metric_available(metric: Metric) -> bool:
    """Whether this build's traces carry what ``metric`` reads."""
    return metric.requires is None or metric.requires in {f.name for f in fields(Totals)}


def needs_memory(metrics: Sequence[Metric]) -> bool:
    """Whether any of ``metrics`` reads a memory figure (the others need no storage tracking)."""
    return any(metric.requires is not None for metric in metrics)


def size_tracer(metrics: Sequence[Metric]) -> Callable[[PvtConfig], Trace]:
    """A tracer for a sweep's cells: one model build per architecture, reused at every size, and storage
    tracking only when one of ``metrics`` reads a memory figure (torch is imported on the first call)."""
    memory_figures = needs_memory(metrics)
    models: dict[tuple[object, ...], Any] = {}

    def trace(cfg: PvtConfig) -> Trace:
        from pvttrace.tracing.model import build_model
        from pvttrace.tracing.recorder import architecture_key
        from pvttrace.tracing.target import builtin_spec, trace_target

        key = architecture_key(cfg)
        if key not in models:
            models[key] = build_model(cfg)
        return trace_target(builtin_spec(cfg), memory_figures=memory_figures, model=models[key])

    return trace


def available_metrics() -> tuple[str, ...]:
    """Names of the metrics that this build's traces can provide."""
    return tuple(name for name, metric in METRICS.items() if metric_available(metric))


# ---------------------------------------------------------------------------------- columns
@dataclass(frozen=True, slots=True)
class SweepColumn:
    """One configuration of a sweep: a label and the ``resolve_config`` options it uses (img aside)."""

    label: str
    options: tuple[tuple[str, Any], ...]

    def describe(self) -> str:
        """The options in words: ``variant b2, sr 1,1,1,1, linear-sra`` (``preset tiny`` when none)."""
        parts = [f"variant {value}" if name == "variant" else _label_part(name, value) for name, value in self.options]
        return ", ".join(parts) if parts else "preset tiny"

    def config(self, img: tuple[int, int]) -> PvtConfig:
        """The validated config of this column at one image size.

        Raises:
            ConfigError: the options break a rule at this size.
        """
        kwargs = dict(self.options)
        return resolve_config(img=img, **kwargs)


def column_count(repeated: Mapping[str, Sequence[Any] | None]) -> int:
    """How many configurations repeated command-line options make (``diff``, ``sweep``).

    ``repeated`` maps each option's flag (``--sr``) to the values given for it: none or one value
    applies to every configuration; options given k > 1 times must all be given the same k times.

    Raises:
        ConfigError: two options repeated a different number of times.
    """
    multi = {flag: len(values) for flag, values in repeated.items() if values and len(values) > 1}
    if len(set(multi.values())) > 1:
        spelled = ", ".join(f"{flag} {count} times" for flag, count in multi.items())
        raise ConfigError(
            f"repeated options must come in equal counts (one per configuration), got {spelled}; "
            "give an option once to apply it to every configuration"
        )
    return max(multi.values(), default=1)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _label_part(name: str, value: Any) -> str:
    if name == "variant":
        return str(value)
    if isinstance(value, bool):
        return _flag(name)[2:] if value else "no-" + _flag(name)[2:]
    return f"{_flag(name)[2:]} {_value_text(name, value)}"


def _value_text(name: str, value: Any) -> str:
    """A typed option value as the command line spells it: ``8,4,2,1``, ``4.5,4``, ``512`` or ``800x1333``."""
    if name == "pos_size" and isinstance(value, tuple) and len(value) == 2:
        return str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"
    if isinstance(value, (tuple, list)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def build_columns(
    options: Mapping[str, Sequence[Any]],
    *,
    labels: Sequence[str] | None = None,
) -> tuple[SweepColumn, ...]:
    """Turn repeated options into sweep columns.

    ``options`` maps a ``resolve_config`` keyword (``variant``, ``sr``, ``dims`` ...) to the values
    given for it, typed as ``resolve_config`` takes it: none (the preset's value), one (applies to
    every column) or k (one per column; every repeated option must be given the same k times). The
    value None keeps the preset's value for that column. Labels name each column by the options that
    differ between columns.

    Example:
        >>> [c.label for c in build_columns({"variant": ["b2"], "sr": [(8, 4, 2, 1), (1, 1, 1, 1)]})]
        ['sr 8,4,2,1', 'sr 1,1,1,1']

    Raises:
        UserInputError: unequal repeat counts, an unknown option, labels that do not match,
            or two columns with the same options.
    """
    known = column_options()
    for name in options:
        if name not in known:
            raise UserInputError(f"option {name!r} cannot vary in a sweep; options: {', '.join(known)}")
    repeated = {name: list(values) for name, values in options.items() if len(values) > 1}
    count = column_count({_flag(name): values for name, values in options.items()})
    if labels and len(labels) != count:
        raise UserInputError(f"label is given {len(labels)} time(s) but there are {count} configuration(s)")
    columns: list[SweepColumn] = []
    for i in range(count):
        chosen: list[tuple[str, Any]] = []
        parts: list[str] = []
        for name, values in options.items():
            if not values:
                continue
            value = values[i] if len(values) > 1 else values[0]
            if value is None:  # this configuration keeps the preset's value
                continue
            chosen.append((name, value))
            if name in repeated:
                parts.append(_label_part(name, value))
        if labels:
            label = labels[i]
        elif parts:
            label = " ".join(parts)
        else:
            label = str(dict(chosen).get("variant", "tiny"))
        columns.append(SweepColumn(label, tuple(chosen)))
    seen: dict[str, int] = {}
    for i, column in enumerate(columns):
        if column.label in seen:
            raise UserInputError(
                f"configurations {seen[column.label] + 1} and {i + 1} share the label {column.label!r}; "
                "give each its own --label"
            )
        seen[column.label] = i
    return tuple(columns)


def plan_sweep(columns: Sequence[SweepColumn], sizes: Sequence[tuple[int, int]]) -> tuple[tuple[PvtConfig, ...], ...]:
    """Resolve and validate every (column, size) config before anything is traced.

    Returns one tuple of configs per column, in size order.

    Raises:
        ConfigError: a config breaks a rule; the message names the column and the size.
        UserInputError: two columns resolve to the same model.
    """
    if not columns:
        raise UserInputError("a sweep needs at least one configuration")
    grid: list[tuple[PvtConfig, ...]] = []
    for column in columns:
        row: list[PvtConfig] = []
        for size in sizes:
            try:
                row.append(column.config(size))
            except ConfigError as exc:
                where = f"{column.label!r} at img {size[0]}x{size[1]}"
                raise ConfigError(f"{where}: {exc}") from None
        grid.append(tuple(row))
    for i in range(len(grid)):
        for j in range(i):
            if grid[i] == grid[j]:
                raise UserInputError(
                    f"configurations {columns[j].label!r} and {columns[i].label!r} are the same model; "
                    "vary an option between them"
                )
    return tuple(grid)


# ---------------------------------------------------------------------------------- fitting
@dataclass(frozen=True, slots=True)
class PowerFit:
    """Least-squares fit of ``log y = log c + k log x``."""

    exponent: float
    """``k``: the growth exponent (slope in log-log space)."""
    coefficient: float
    """``c``: value at ``x = 1``."""
    r_squared: float
    """Share of the variance of ``log y`` the line explains (1.0: an exact power law)."""
    end_slope: float
    """Slope between the two largest ``x`` (the local exponent where the curve ends)."""
    points: int


def fit_power_law(xs: Sequence[float], ys: Sequence[float]) -> PowerFit | None:
    """Fit ``y = c * x**k`` by least squares on logarithms (plain Python, no numpy).

    Returns None when there are fewer than two distinct positive ``x`` or any ``y`` is not
    positive (a zero cannot be placed on a log scale).

    Example:
        >>> fit = fit_power_law([1, 2, 4], [3, 12, 48])
        >>> round(fit.exponent, 6), round(fit.coefficient, 6), fit.r_squared
        (2.0, 3.0, 1.0)
    """
    if len(xs) != len(ys) or len(xs) < 2:
        return None
    if any(x <= 0 for x in xs) or any(y <= 0 for y in ys) or len(set(xs)) < 2:
        return None
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    n = len(lx)
    mean_x, mean_y = sum(lx) / n, sum(ly) / n
    sxx = sum((x - mean_x) ** 2 for x in lx)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(lx, ly, strict=True))
    # A constant series (parameters) is exactly flat; do not let rounding make it -1e-31.
    slope = 0.0 if len(set(ly)) == 1 else sxy / sxx
    intercept = mean_y - slope * mean_x
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(lx, ly, strict=True))
    ss_tot = sum((y - mean_y) ** 2 for y in ly)
    r_squared = 1.0 if ss_tot <= 1e-24 else max(0.0, 1.0 - ss_res / ss_tot)
    ordered = sorted(zip(lx, ly, strict=True))
    (x0, y0), (x1, y1) = ordered[-2], ordered[-1]
    end_slope = (y1 - y0) / (x1 - x0) if x1 != x0 else slope
    return PowerFit(exponent=slope, coefficient=math.exp(intercept), r_squared=r_squared, end_slope=end_slope, points=n)


# ---------------------------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One metric of one configuration at one size."""

    img: tuple[int, int]
    tokens: int
    """N: stage 1's token count at this size (the fit's x)."""
    value: int | None
    """None when the trace lacks this metric."""
    stage_values: StageValues | None
    dominant_stage: int | None
    """1-based stage with the largest share, or None (no split, or all zero)."""


@dataclass(frozen=True, slots=True)
class SweepSeries:
    """One metric of one configuration across all sizes, with its growth fit."""

    metric: Metric
    column: SweepColumn
    points: tuple[SweepPoint, ...]
    fit: PowerFit | None
    leading_exponent: float | None = None
    """Formula sweeps: the exponent of the formula's leading term in N (exact as sizes grow)."""
    leading_term: str | None = None
    """Formula sweeps: that leading term in H and W, e.g. ``H**2*W**2/64``."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        fit = self.fit

        def rounded(value: float) -> float:
            return round(value, 6) or 0.0  # never "-0.0"

        leading = (
            {}
            if self.leading_exponent is None
            else {
                "leading_exponent": self.leading_exponent,
                "leading_term": self.leading_term,
            }
        )
        return {
            **leading,
            "label": self.column.label,
            "exponent": None if fit is None else rounded(fit.exponent),
            "coefficient": None if fit is None else float(f"{fit.coefficient:.6g}"),
            "r_squared": None if fit is None else rounded(fit.r_squared),
            "end_slope": None if fit is None else rounded(fit.end_slope),
            "points": [
                {
                    "img": list(p.img),
                    "tokens": p.tokens,
                    "value": p.value,
                    "stage_values": None if p.stage_values is None else list(p.stage_values),
                    "dominant_stage": p.dominant_stage,
                }
                for p in self.points
            ],
        }


@dataclass(frozen=True, slots=True)
class SweepResult:
    """Everything a sweep measured: sizes, columns, and one series per (metric, column)."""

    sizes: tuple[tuple[int, int], ...]
    columns: tuple[SweepColumn, ...]
    configs: tuple[PvtConfig | None, ...]
    """Each column's config at the first size (for titles and the JSON record); None for a --model column."""
    metrics: tuple[Metric, ...]
    series: tuple[SweepSeries, ...]
    """Metric-major: all columns of the first metric, then the next metric."""
    warnings: tuple[str, ...] = ()
    inputs: tuple[tuple[int, ...], ...] = ()
    """--model columns only: each column's input shape at the first size."""
    provenances: tuple[Provenance, ...] = ()
    """Each column's convention, dtype and device, read from its traces (empty: not recorded)."""

    def __repr__(self) -> str:
        """One line: what was swept, over which sizes and metrics."""
        sizes = ",".join(f"{h}" if h == w else f"{h}x{w}" for h, w in self.sizes)
        metrics = ",".join(m.name for m in self.metrics)
        return f"<SweepResult {self.title}: sizes {sizes}; metrics {metrics}>"

    def series_of(self, metric: Metric | str) -> tuple[SweepSeries, ...]:
        """The series of one metric, one per column, in column order."""
        name = metric if isinstance(metric, str) else metric.name
        return tuple(s for s in self.series if s.metric.name == name)

    @property
    def title(self) -> str:
        """The model(s) swept, e.g. ``b2 / b2-li (PVT v2, cls, batch 1, float32)``."""
        if any(cfg is None for cfg in self.configs):
            shape = format_shape(self.inputs[0]) if self.inputs else "?"
            return f"{' / '.join(c.label for c in self.columns)} (input {shape} at the first size)"
        configs = [cfg for cfg in self.configs if cfg is not None]
        variants: list[str] = []
        for cfg in configs:
            if cfg.variant not in variants:
                variants.append(cfg.variant)
        first = configs[0]
        versions = sorted({f"v{cfg.version}" for cfg in configs})
        return f"{' / '.join(variants)} (PVT {'/'.join(versions)}, {first.task}, batch {first.batch}, {first.dtype})"

    def to_dict(self) -> dict[str, Any]:
        """The ``pvttrace.sweep/1`` JSON document."""
        configs = []
        for i, (column, cfg) in enumerate(zip(self.columns, self.configs, strict=True)):
            if cfg is None:
                model = dict(column.options)["model"]
                configs.append(
                    {"label": column.label, "config": None, "model": model, "input_shape": list(self.inputs[i])}
                )
                continue
            config = cfg.to_dict()
            config.pop("img")
            configs.append({"label": column.label, "config": config})
        for entry, made in zip(configs, self.provenances, strict=False):
            entry.update(made.to_dict())
        conventions = {made.convention for made in self.provenances}
        return {
            "schema": SWEEP_SCHEMA,
            # The shared convention line (null when the columns differ or did not record it).
            "convention": CONVENTIONS[conventions.pop()] if len(conventions) == 1 else None,
            "sizes": [list(s) for s in self.sizes],
            "columns": configs,
            "growth_variable": "tokens of stage 1 (N)",
            "metrics": [
                {
                    "name": m.name,
                    "title": m.title,
                    "unit": m.unit.value,
                    "description": m.description,
                    "series": [s.to_dict() for s in self.series_of(m)],
                }
                for m in self.metrics
            ],
            "warnings": list(self.warnings),
        }


def _dominant(values: StageValues | None) -> int | None:
    if not values or max(values) <= 0:
        return None
    return values.index(max(values)) + 1


def run_sweep(
    columns: Sequence[SweepColumn],
    sizes: Sequence[tuple[int, int]],
    metrics: Sequence[Metric],
    *,
    trace: Callable[[PvtConfig], Trace],
) -> SweepResult:
    """Trace every column at every size and collect the metrics with their growth fits.

    Args:
        columns: the configurations (see :func:`build_columns`).
        sizes: image sizes, (H, W), in the order rows should appear.
        metrics: what to read from each trace.
        trace: turns a config into a trace (``pvttrace.tracing.recorder.trace_config``, or a cache of it).

    Raises:
        ConfigError, UserInputError: from :func:`plan_sweep`, before any tracing.
    """
    grid = plan_sweep(columns, sizes)
    warnings: list[str] = []
    traces: list[list[Trace]] = []
    for column, configs in zip(columns, grid, strict=True):
        row = []
        for cfg in configs:
            warnings.extend(f"{column.label} at {cfg.img[0]}x{cfg.img[1]}: {w}" for w in cfg.warnings)
            row.append(trace(cfg))
        traces.append(row)
    tokens = [[cfg.geometry()[0].tokens for cfg in configs] for configs in grid]
    return SweepResult(
        sizes=tuple(sizes),
        columns=tuple(columns),
        configs=tuple(configs[0] for configs in grid),
        metrics=tuple(metrics),
        series=_collect_series(columns, sizes, metrics, traces, tokens),
        warnings=tuple(warnings),
        provenances=tuple(row[0].provenance for row in traces),
    )


def _collect_series(
    columns: Sequence[SweepColumn],
    sizes: Sequence[tuple[int, int]],
    metrics: Sequence[Metric],
    traces: Sequence[Sequence[Trace]],
    tokens: Sequence[Sequence[int]],
) -> tuple[SweepSeries, ...]:
    """One series per (metric, column): each size's value, stage values and the growth fit."""
    series: list[SweepSeries] = []
    for metric in metrics:
        for column, column_traces, column_tokens in zip(columns, traces, tokens, strict=True):
            points = []
            for size, tr, n in zip(sizes, column_traces, column_tokens, strict=True):
                stage_values = metric.stages(tr)
                points.append(
                    SweepPoint(
                        img=size,
                        tokens=n,
                        value=metric.total(tr),
                        stage_values=stage_values,
                        dominant_stage=_dominant(stage_values),
                    )
                )
            fit = None
            if all(p.value is not None for p in points):
                fit = fit_power_law([p.tokens for p in points], [p.value or 0 for p in points])
            series.append(SweepSeries(metric, column, tuple(points), fit))
    return tuple(series)


# ---------------------------------------------------------------------------------- any model
def model_spec_at(spec: ModelSpec, size: tuple[int, int]) -> ModelSpec:
    """``spec`` at image size ``size``: the last two dims of its input shape, else its ``img``.

    Raises:
        UserInputError: an input shape with fewer than three dims (no H and W to vary).
    """
    if spec.input_shape is None:
        return dataclasses.replace(spec, img=size)
    if len(spec.input_shape) < 3:
        raise UserInputError(
            f"input_shape={','.join(map(str, spec.input_shape))} needs at least 3 dims to sweep (the last two are H, W)"
        )
    return dataclasses.replace(spec, input_shape=(*spec.input_shape[:-2], *size))


def run_model_sweep(
    specs: Sequence[ModelSpec],
    sizes: Sequence[tuple[int, int]],
    metrics: Sequence[Metric],
    *,
    trace: Callable[[ModelSpec], Trace],
    labels: Sequence[str] | None = None,
) -> SweepResult:
    """Trace each ``--model`` spec at every size (see :func:`model_spec_at`) and collect the metrics.

    The growth variable is stage 1's tokens where the trace found stages, else the input's H*W.
    Columns are labelled by ``labels`` or the specs' names.

    Raises:
        UserInputError: labels that do not fit, two columns with one label, or an input shape
            without H and W. ``trace`` raises what :func:`pvttrace.tracing.target.trace_target` raises.
    """
    if not specs:
        raise UserInputError("a sweep needs at least one configuration")
    if labels and len(labels) != len(specs):
        raise UserInputError(f"label is given {len(labels)} time(s) but there are {len(specs)} configuration(s)")
    names = list(labels) if labels else [spec.name for spec in specs]
    if len(set(names)) != len(names):
        repeated = next(name for name in names if names.count(name) > 1)
        raise UserInputError(f"two configurations share the label {repeated!r}; give each its own --label")
    grid = [[model_spec_at(spec, size) for size in sizes] for spec in specs]
    traces = [[trace(spec) for spec in row] for row in grid]
    tokens = [
        [tr.stages[0].tokens if tr.stages else size[0] * size[1] for tr, size in zip(row, sizes, strict=True)]
        for row in traces
    ]
    columns = tuple(SweepColumn(name, (("model", spec.name),)) for name, spec in zip(names, specs, strict=True))
    return SweepResult(
        sizes=tuple(sizes),
        columns=columns,
        configs=tuple(None for _ in specs),
        metrics=tuple(metrics),
        series=_collect_series(columns, sizes, metrics, traces, tokens),
        inputs=tuple(row[0].input_shape for row in traces),
        provenances=tuple(row[0].provenance for row in traces),
    )
