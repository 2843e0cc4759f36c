"""``pvttrace sweep``: trace configurations across image sizes; tables, growth exponents, charts and plots.

CLI only: parse, validate everything up front, call the library, print. Torch is imported in
the command body (through ``pvttrace.tracing.recorder``), matplotlib only when ``--plot`` is given.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pvttrace.analyses.sweep import DEFAULT_SIZES
from pvttrace.base.errors import UserInputError
from pvttrace.cli.common import (
    HeadOpt,
    HeadWidthOpt,
    OutputFormat,
    QuietOpt,
    TrainOpt,
    WidthOpt,
    app,
    errors_to_exit_codes,
    make_console,
    warn,
)
from pvttrace.cli.options import ModelColumns, model_options

if TYPE_CHECKING:
    from pvttrace.analyses.sweep import SweepResult

__all__ = ["sweep"]

_REPEAT = "Repeatable."

# From this many sizes on, sweep evaluates a formula by default (one symbolic trace per configuration costs about
# as much as 20-40 ordinary traces, measured on b0/b2/b2-li).
FORMULA_MIN_SIZES = 32


@app.command()
@model_options(repeated=True, exclude=("img",), no_short=("model",))
def sweep(
    columns: ModelColumns,
    img: Annotated[
        str, typer.Option("--img", help="Image sizes to sweep, comma-separated: 224,512 or 800x1333,1024.")
    ] = DEFAULT_SIZES,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="Name of each configuration (one per configuration).")
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            help="Metrics, comma-separated: macs, attention_macs, sr_macs, projection_macs, mlp_macs, "
            "attention_map_bytes, largest_activation_bytes, peak_activation_bytes (when available), params, "
            "param_bytes. Default: macs, attention_macs, attention_map_bytes, params (and peak_activation_bytes "
            "when available).",
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table (with charts), json, markdown or csv.")
    ] = OutputFormat.TABLE,
    plot: Annotated[
        str | None, typer.Option("--plot", help="Also write a log-log plot: FILE.png or FILE.svg (needs matplotlib).")
    ] = None,
    dpi: Annotated[int, typer.Option("--dpi", help="Resolution of a PNG --plot (50-1200).")] = 110,
    step: Annotated[
        int | None, typer.Option("--step", help="With a range --img 224..2048: the step between sizes, e.g. 8.")
    ] = None,
    exact_trace: Annotated[
        bool,
        typer.Option("--exact-trace", help="Trace every size instead of evaluating one symbolic trace's formula."),
    ] = False,
    formula: Annotated[
        bool,
        typer.Option(
            "--formula",
            help=f"Evaluate one symbolic trace's formula at every size (the default from {FORMULA_MIN_SIZES} sizes on; "
            "a symbolic trace costs about as much as 20-40 ordinary ones).",
        ),
    ] = False,
    chart: Annotated[bool, typer.Option("--chart/--no-chart", help="Terminal charts under the tables.")] = True,
    width: WidthOpt = None,
    head: HeadOpt = None,
    head_width: HeadWidthOpt = None,
    train: TrainOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Trace configurations at several image sizes: how MACs, attention and memory grow with resolution.

    One table per metric (rows: sizes, columns: configurations), the fitted growth exponent k
    (value ~ N^k, N = stage-1 tokens), the dominant stage, and a log-log chart.

    Each configuration is traced once with symbolic sizes and its formula evaluated at every size
    (a size outside the formula's guards gets its own trace); the leading k row is the formula's
    exact exponent. --exact-trace traces every size instead (needed for peak_activation_bytes).

    A repeatable option given k times makes k configurations (every repeated option must be
    given the same k times); given once, it applies to all; the value '-' keeps the preset's.

    Example: pvttrace sweep --variant b2 --variant b2 --variant b2-li --sr 8,4,2,1 --sr 1,1,1,1 --sr -
    Example: pvttrace sweep --model timm:pvt_v2_b0 --img 224,512
    Example: pvttrace sweep --head segformer --variant mit-b0 --img 512,1024 --train --metric peak_memory_bytes
    """
    from pvttrace.analyses.sweep import build_columns, plan_sweep, run_sweep
    from pvttrace.cli.parsing import parse_metrics, parse_sizes

    with errors_to_exit_codes():
        sizes = parse_sizes(img, step)
        if step is not None and ".." not in img:
            raise UserInputError(f"step={step} needs a range such as --img 224..2048")
        metrics = parse_metrics(metric)
        if exact_trace and formula:
            raise UserInputError("--exact-trace and --formula exclude each other")
        if head is not None or train:
            if formula:
                raise UserInputError("--formula works on backbones at inference (not with --head or --train)")
            exact_trace = True  # whole models and training steps have no formula: trace every size
        elif not formula and not exact_trace:
            exact_trace = len(sizes) < FORMULA_MIN_SIZES  # below that, tracing each size is the cheaper way
        notes: list[str] = []  # printed once every input is validated
        if not exact_trace:
            # Only here: the formula module imports sympy (about 0.4 s), which a traced sweep never needs.
            from pvttrace.analyses.sweep_formula import FORMULA_METRICS

            if metric is None:
                dropped = [m.name for m in metrics if m.name not in FORMULA_METRICS]
                metrics = tuple(m for m in metrics if m.name in FORMULA_METRICS)
                if dropped:
                    notes.append(
                        f"{', '.join(dropped)}: not a closed form, left out of the formula sweep "
                        "(--exact-trace adds it)"
                    )
            elif any(m.name not in FORMULA_METRICS for m in metrics):
                names = ", ".join(m.name for m in metrics if m.name not in FORMULA_METRICS)
                notes.append(f"{names}: not a closed form, so every size is traced (as with --exact-trace)")
                exact_trace = True
        given_model = bool(columns["model"] or columns["input_shape"])
        specs = [column.spec() for column in columns.columns()] if given_model else None
        configs = build_columns(columns.typed_lists(), labels=label) if specs is None else ()
        if plot is not None:
            from pvttrace.render.plot import plot_format, require_matplotlib

            plot_format(plot)
            require_matplotlib()
            if not 50 <= dpi <= 1200:
                raise UserInputError(f"dpi={dpi} must be from 50 to 1200")
        if specs is not None and (head or head_width or train):
            raise UserInputError("--head and --train sweep built-in configurations (not with --model)")
        if specs is None:
            plan_sweep(configs, sizes)  # every config validated before the first trace
        warn(notes)
        from pvttrace.cli.guard import tracing

        with tracing("sweeping"):  # a progress line on a terminal when it takes long
            if specs is not None:
                result = None if exact_trace else _model_formula_sweep(specs, sizes, metrics, label)
                if result is None:
                    from pvttrace.analyses.sweep import run_model_sweep
                    from pvttrace.tracing.target import trace_target

                    result = run_model_sweep(
                        specs,
                        sizes,
                        metrics,
                        labels=label,
                        trace=lambda spec: trace_target(spec, on_note=lambda n: warn([n])),
                    )
            elif exact_trace:
                plan_sweep(configs, sizes)  # every config validated before the first trace
                if head is not None or train:
                    from pvttrace.cli.diff import config_tracer

                    tracer = config_tracer("meta", head, head_width, columns.column(0).num_classes, train)
                else:
                    from pvttrace.analyses.sweep import size_tracer

                    tracer = size_tracer(metrics)
                result = run_sweep(configs, sizes, metrics, trace=tracer)
            else:
                result = _formula_sweep(configs, sizes, metrics)
        if not quiet:
            from pvttrace.base.notes import grouped_by_prefix

            warn(grouped_by_prefix(result.warnings))
        if plot is not None:
            from pvttrace.render.plot import plot_sweep, save_figure

            save_figure(plot_sweep(result), plot, dpi=dpi)
    if output_format == OutputFormat.JSON:
        from pvttrace.records import dumps_json

        sys.stdout.write(dumps_json(result.to_dict()))
    elif output_format == OutputFormat.MARKDOWN:
        from pvttrace.render.sweep import sweep_markdown

        sys.stdout.write(sweep_markdown(result))
    elif output_format == OutputFormat.CSV:
        from pvttrace.render.sweep import sweep_csv

        sys.stdout.write(sweep_csv(result))
    else:
        from pvttrace.render.sweep import render_sweep

        make_console(width).print(render_sweep(result, chart=chart))
    if plot is not None:
        sys.stderr.write(f"plot written to {plot}\n")


def _formula_sweep(columns: Any, sizes: Any, metrics: Any) -> SweepResult:
    """Built-in columns: one symbolic trace per column (more only where a guard fails), evaluated at every size."""
    from pvttrace.analyses.formula import derive_formula
    from pvttrace.analyses.sweep import plan_sweep
    from pvttrace.analyses.sweep_formula import run_formula_sweep

    grid = plan_sweep(columns, sizes)
    notes = [
        f"{c.label} at {cfg.img[0]}x{cfg.img[1]}: {w}"
        for c, row in zip(columns, grid, strict=True)
        for cfg in row
        for w in cfg.warnings
    ]
    result, _ = run_formula_sweep(
        columns,
        sizes,
        metrics,
        grid,
        derive=lambda cfg, at: derive_formula(cfg, hint=at),
        batch=lambda cfg: cfg.batch,
        configs=[row[0] for row in grid],
        warnings=notes,
    )
    return result


def _model_formula_sweep(specs: Any, sizes: Any, metrics: Any, labels: list[str] | None) -> SweepResult | None:
    """--model columns through their formulas; None (with a warning) when one cannot be traced symbolically."""
    from pvttrace.analyses.formula import DEFAULT_HINT, derive_formula
    from pvttrace.analyses.sweep import SweepColumn, model_spec_at
    from pvttrace.analyses.sweep_formula import run_formula_sweep
    from pvttrace.base.errors import TraceError

    if labels and len(labels) != len(specs):
        return None  # run_model_sweep reports it
    names = list(labels) if labels else [spec.name for spec in specs]
    if len(set(names)) != len(names):
        return None
    grid = [[model_spec_at(spec, size) for size in sizes] for spec in specs]
    columns = tuple(SweepColumn(name, (("model", spec.name),)) for name, spec in zip(names, specs, strict=True))
    try:
        result, _ = run_formula_sweep(
            columns,
            sizes,
            metrics,
            grid,
            derive=lambda spec, at: derive_formula(spec, hint=at or DEFAULT_HINT),
            batch=lambda spec: (spec.input_shape[0] if spec.input_shape else spec.batch) or 1,
            configs=[None for _ in specs],
        )
    except TraceError as exc:
        warn([f"{exc}; tracing every size instead"])
        return None
    shapes = []
    for spec in specs:
        first = model_spec_at(spec, sizes[0])
        shapes.append(first.input_shape or (first.batch or 1, first.in_chans or 3, *sizes[0]))
    return dataclasses.replace(result, inputs=tuple(shapes))
