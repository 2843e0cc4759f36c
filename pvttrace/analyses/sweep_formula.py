"""Sweeps that cost one symbolic trace per configuration: derive the formula, evaluate it at every size.

Pure data (no torch, rich or typer): deriving is injected (``derive``), as tracing is in
:mod:`pvttrace.analyses.sweep`. A size where the formula does not apply (a guard torch recorded fails
there: a branch the forward takes differently) gets a second formula, derived at that size;
every formula is evaluated wherever it applies, so a sweep costs one trace per branch taken.

Growth exponents come twice: the least-squares fit (as for traced sweeps) and the formula's
leading term (``leading_exponent``: the top degree in H*W, exact as sizes grow).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TypeVar

from pvttrace.analyses.formula import FormulaValues, ModelFormula, growth
from pvttrace.analyses.sweep import Metric, SweepColumn, SweepPoint, SweepResult, SweepSeries, fit_power_law
from pvttrace.config import PvtConfig
from pvttrace.records import Provenance

__all__ = ["FORMULA_METRICS", "formula_metric_exponent", "run_formula_sweep"]

#: Metrics a formula gives exactly; others (activation peaks) need a trace per size.
FORMULA_METRICS = (
    "macs",
    "attention_macs",
    "sr_macs",
    "projection_macs",
    "mlp_macs",
    "attention_map_bytes",
    "params",
    "param_bytes",
)
_CATEGORY = {"attention_macs": "attention", "sr_macs": "sr", "projection_macs": "projection", "mlp_macs": "mlp"}

T = TypeVar("T")

#: A --model formula's dtype, from its element size (2 bytes: float16 and bfloat16 cost the same).
_ELEMENT_DTYPES = {8: "float64", 4: "float32", 2: "16-bit float"}


def _formula_dtype(config: object | None, formula: ModelFormula) -> str:
    """The dtype of a column: its config's, else named from the formula's element size."""
    if isinstance(config, PvtConfig):
        return config.dtype
    return _ELEMENT_DTYPES.get(formula.element_bytes, "unknown")


def _values(metric: str, values: FormulaValues, element_bytes: int) -> tuple[int, tuple[int, ...]]:
    """A metric's total and per-stage values at one size, as a trace would report them."""
    stages = values.stages
    if metric == "macs":
        return values.macs, tuple(s.macs["total"] for s in stages)
    if metric in _CATEGORY:
        per = tuple(s.macs[_CATEGORY[metric]] for s in stages)
        return sum(per), per
    if metric == "attention_map_bytes":
        per = tuple(s.attention_map_bytes for s in stages)
        return max(per, default=0), per
    if metric == "params":
        return values.params, tuple(s.params for s in stages)
    if metric == "param_bytes":
        return values.params * element_bytes, tuple(s.params * element_bytes for s in stages)
    raise ValueError(f"metric {metric!r} has no formula")


def formula_metric_exponent(formula: ModelFormula, metric: str) -> tuple[float, str] | None:
    """The growth exponent in N (stage-1 tokens, which grow as H*W) from the formula's leading term."""
    if metric in ("params", "param_bytes"):
        return 0.0, "constant"
    if metric == "macs":
        exprs = [formula.macs]
    elif metric in _CATEGORY:
        exprs = [sum((s.macs[_CATEGORY[metric]] for s in formula.stages), formula.macs * 0)]
    elif metric == "attention_map_bytes":
        exprs = [s.attention_map_bytes for s in formula.stages]
    else:
        return None
    leads = [g for g in (growth(e, formula.symbols) for e in exprs) if g is not None]
    if not leads:
        return (0.0, "constant") if all(e == 0 or not e.free_symbols for e in exprs) else None
    top = max(leads, key=lambda g: g.degree)
    return top.exponent, str(top.term)


def _dominant(values: tuple[int, ...]) -> int | None:
    if not values or max(values) <= 0:
        return None
    return values.index(max(values)) + 1


def run_formula_sweep(
    columns: Sequence[SweepColumn],
    sizes: Sequence[tuple[int, int]],
    metrics: Sequence[Metric],
    targets: Sequence[Sequence[T]],
    *,
    derive: Callable[[T, tuple[int, int] | None], ModelFormula],
    batch: Callable[[T], int],
    configs: Sequence[object | None],
    warnings: Sequence[str] = (),
    inputs: Sequence[tuple[int, ...]] = (),
) -> tuple[SweepResult, int]:
    """Evaluate each column's formula at every size; derive another formula only where one does not apply.

    Args:
        columns, sizes, metrics: as for :func:`pvttrace.analyses.sweep.run_sweep`.
        targets: per column, the target (config or model spec) at each size.
        derive: target and the size to trace it at (None: the first formula, at a size that
            takes no special branch) -> formula with symbolic H, W.
        batch: a target's batch (the formula's fixed B must match it).
        configs: what the result records per column (as ``SweepResult.configs``).

    Returns:
        The result and the number of formulas derived (one per column when no guard fails).

    Raises:
        ValueError: a metric without a formula (callers choose metrics from :data:`FORMULA_METRICS`).
    """
    for metric in metrics:
        if metric.name not in FORMULA_METRICS:
            raise ValueError(f"metric {metric.name!r} has no formula")
    series: list[SweepSeries] = []
    evaluated: list[list[tuple[FormulaValues, ModelFormula, int]]] = []
    derived = 0
    for column_targets in targets:
        pieces: list[ModelFormula] = []
        row = []
        for target, size in zip(column_targets, sizes, strict=True):
            b = batch(target)
            chosen = None
            for piece in pieces:
                if piece.fixed_match(size, b) and piece.check(piece.sizes_at(size, b)) is None:
                    chosen = piece
                    break
            if chosen is None and not pieces:
                generic = derive(target, None)
                derived += 1
                pieces.append(generic)
                if generic.fixed_match(size, b) and generic.check(generic.sizes_at(size, b)) is None:
                    chosen = generic
            if chosen is None:
                chosen = derive(target, size)
                derived += 1
                pieces.append(chosen)
            values = chosen.evaluate(chosen.sizes_at(size, b))
            row.append((values, chosen, values.tokens))
        evaluated.append(row)
    for metric in metrics:
        for column, row in zip(columns, evaluated, strict=True):
            points = []
            for size, (values, piece, n) in zip(sizes, row, strict=True):
                total, per_stage = _values(metric.name, values, piece.element_bytes)
                points.append(
                    SweepPoint(
                        img=size, tokens=n, value=total, stage_values=per_stage, dominant_stage=_dominant(per_stage)
                    )
                )
            fit = fit_power_law([p.tokens for p in points], [p.value or 0 for p in points])
            # The leading term of the formula at the largest size (the branch large sizes take).
            lead = formula_metric_exponent(row[-1][1], metric.name)
            item = SweepSeries(metric, column, tuple(points), fit)
            if lead is not None:
                item = dataclasses.replace(item, leading_exponent=lead[0], leading_term=lead[1])
            series.append(item)
    result = SweepResult(
        sizes=tuple(sizes),
        columns=tuple(columns),
        configs=tuple(configs),  # type: ignore[arg-type]
        metrics=tuple(metrics),
        series=tuple(series),
        warnings=tuple(warnings),
        inputs=tuple(inputs),
        # A formula is derived from a symbolic trace on the meta device, in the default convention.
        provenances=tuple(
            Provenance("macs", _formula_dtype(cfg, row[0][1]), "meta")
            for cfg, row in zip(configs, evaluated, strict=True)
        ),
    )
    return result, derived
