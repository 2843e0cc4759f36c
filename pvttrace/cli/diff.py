"""``pvttrace diff``: compare configurations (or saved traces) side by side.

Each repeated option defines one configuration column; an option given once applies to
every column. Repeated options must come in equal counts. Parsing and printing only: the
comparison is :mod:`pvttrace.analyses.diff`, the views are :mod:`pvttrace.render.diff`.

The options are :mod:`pvttrace.cli.options`' declarations, repeatable here; a boolean option is
the same ``--x/--no-x`` flag pair as in ``run``, one occurrence per column
(``--variant b2 --variant b2 --no-linear-sra --linear-sra``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from pvttrace.base.errors import UserInputError
from pvttrace.cli.common import (
    Device,
    DeviceOpt,
    HeadOpt,
    HeadWidthOpt,
    OutputFormat,
    QuietOpt,
    TrainOpt,
    WidthOpt,
    app,
    errors_to_exit_codes,
    head_options,
    make_console,
    warn,
)
from pvttrace.cli.options import ModelColumns, model_options
from pvttrace.cli.parsing import closest, parse_repeated_ints

if TYPE_CHECKING:
    from collections.abc import Callable

    from pvttrace.analyses.diff import TraceDiff
    from pvttrace.config import PvtConfig
    from pvttrace.records import Trace
    from pvttrace.tracing.target import ModelSpec

ColumnsOpt = list[str] | None


def _configs(columns: ModelColumns) -> list[PvtConfig]:
    """One built-in configuration per column (at least two).

    Raises:
        UserInputError: fewer than two columns, or repeat counts that differ.
        ConfigError: a configuration that breaks a rule.
    """
    if columns.count() < 2:
        raise UserInputError(
            "diff needs at least two configurations: repeat an option such as --sr "
            "(--sr 8,4,2,1 --sr 1,1,1,1) or give two trace files"
        )
    return [column.config() for column in columns.columns()]


def _spec_labels(specs: list[ModelSpec]) -> list[str]:
    """Each column's model name, plus its input where two columns trace the same model."""
    names = [spec.name for spec in specs]
    if len(set(names)) == len(names):
        return names
    inputs = []
    for spec in specs:
        parts = [f"input={'x'.join(map(str, spec.input_shape))}" if spec.input_shape else ""]
        parts += [f"img={spec.img[0]}x{spec.img[1]}" if spec.img else "", f"batch={spec.batch}" if spec.batch else ""]
        parts += [f"attention={spec.attention}" if spec.attention else ""]
        inputs.append(" ".join(part for part in parts if part))
    labels = [f"{name} {where}".strip() for name, where in zip(names, inputs, strict=True)]
    return labels if len(set(labels)) == len(labels) else [f"#{i}" for i in range(1, len(specs) + 1)]


def _trace_specs(specs: list[ModelSpec], device: str) -> list[Trace]:
    """Trace each distinct spec once, through the one entry point (torch is imported here)."""
    from pvttrace.cli.guard import tracing
    from pvttrace.tracing.target import trace_target

    cache: dict[ModelSpec, Trace] = {}
    for spec in specs:
        if spec not in cache:
            with tracing(f"tracing {spec.name}"):
                cache[spec] = trace_target(spec, device=device, on_note=lambda note: warn([note]))
    return [cache[spec] for spec in specs]


def _check_stages(stages: list[int] | None, count: int) -> None:
    for s in stages or ():
        if not 1 <= s <= count:
            raise UserInputError(f"stage={s} must be between 1 and {count}")


def config_tracer(
    device: str,
    head: str | None = None,
    head_width: int | None = None,
    num_classes: int | None = None,
    train: bool = False,
) -> Callable[[PvtConfig], Trace]:
    """A tracer of built-in configs on ``device`` (the whole model with ``head``; with a training step when
    ``train``) through the one entry point; torch is imported on its first call only."""

    def trace(cfg: PvtConfig) -> Trace:
        from pvttrace.tracing.target import builtin_spec, trace_target

        whole = head_options(head, head_width, num_classes, cfg) if head is not None or head_width is not None else None
        return trace_target(builtin_spec(cfg, whole), device=device, train=train)

    return trace


@app.command()
@model_options(repeated=True)
def diff(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="Saved traces to compare (pvttrace run --format json, or pvttrace.snapshot/1 files).",
            show_default=False,
        ),
    ] = None,
    *,
    columns: ModelColumns,
    device: DeviceOpt = Device.META,
    label: Annotated[
        ColumnsOpt, typer.Option("--label", help="Column name per configuration (default: what differs).")
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table, json, markdown or csv.")
    ] = OutputFormat.TABLE,
    ops: Annotated[bool, typer.Option("--ops", help="Add the op-level side-by-side table.")] = False,
    stage: Annotated[
        list[str] | None, typer.Option("--stage", help="With --ops: only these 1-based stages: 1,2 (or repeated).")
    ] = None,
    changed_only: Annotated[bool, typer.Option("--changed-only", help="With --ops: only ops that differ.")] = False,
    plot: Annotated[
        str | None,
        typer.Option("--plot", help="Also draw grouped bars per stage to FILE (.png or .svg; needs matplotlib)."),
    ] = None,
    plot_metric: Annotated[
        str,
        typer.Option(
            "--plot-metric",
            help="What --plot draws: macs, attention_macs, sr_macs, attention_map_bytes, kv_tokens, params.",
        ),
    ] = "macs",
    width: WidthOpt = None,
    head: HeadOpt = None,
    head_width: HeadWidthOpt = None,
    train: TrainOpt = False,
    quiet: QuietOpt = False,
    dpi: Annotated[int, typer.Option("--dpi", help="Resolution of a PNG --plot (50-1200).")] = 110,
    mixed_conventions: Annotated[
        bool,
        typer.Option(
            "--mixed-conventions",
            help="Compare traces counted under different conventions anyway (refused by default: exit 2).",
        ),
    ] = False,
) -> None:
    """Compare configurations side by side: per-stage N, N', attention map and MACs, totals, and what changed.

    Each repeated option makes one column; options given once apply to every column; the
    first column is the baseline.

    Example: pvttrace diff --sr 8,4,2,1 --sr 1,1,1,1
    Example: pvttrace diff --variant b2 --variant b2-li --img 512
    Example: pvttrace diff before.json after.json
    Example: pvttrace diff --model timm:pvt_v2_b0 --model timm:pvt_v2_b1
    Example: pvttrace diff --head segformer --variant mit-b2 --sr 8,4,2,1 --sr 4,2,1,1 --train
    """
    from pvttrace.analyses.diff import (
        MixedConventions,
        check_labels,
        default_labels,
        diff_traces,
        file_labels,
        load_diff_input,
        trace_distinct,
    )

    with errors_to_exit_codes():
        stage_list = parse_repeated_ints(stage, "stage")
        if plot is not None:
            from pvttrace.render.diff import PLOT_METRICS
            from pvttrace.render.plot import plot_format, require_matplotlib

            if plot_metric not in PLOT_METRICS:
                raise UserInputError(
                    f"plot-metric={plot_metric!r} must be one of: {', '.join(PLOT_METRICS)}"
                    f"{closest(plot_metric, list(PLOT_METRICS))}"
                )
            plot_format(plot)
            require_matplotlib()
            if not 50 <= dpi <= 1200:
                raise UserInputError(f"dpi={dpi} must be from 50 to 1200")
        if paths and (head or train):
            raise UserInputError("--head and --train trace configurations; saved trace files are compared as they are")
        if paths:
            if columns["linear_sra"] or columns["qkv_bias"]:
                # `--linear-sra off` reads as the flag and a file named off.
                raise UserInputError(
                    f"linear_sra={paths[0]!r}: --linear-sra and --qkv-bias are flags, one per configuration "
                    "(--linear-sra for on, --no-linear-sra for off), and trace files take no configuration options"
                )
            given = columns.given()
            if given:
                raise UserInputError(
                    f"give either trace files or configuration options, not both (got files and {', '.join(given)})"
                )
            if len(paths) < 2:
                raise UserInputError(f"diff needs at least two trace files, got {len(paths)}: {paths[0]}")
            names = label or file_labels(paths)
            check_labels(names, len(paths))
            loaded = [load_diff_input(path, retrace=config_tracer(device.value)) for path in paths]
            traces = [trace for trace, _ in loaded]
            _check_stages(stage_list, max(len(t.stages) for t in traces))
            warn([note for _, notes in loaded for note in notes])
        elif (columns["model"] or columns["input_shape"]) and (head or train):
            raise UserInputError("--head and --train compare built-in configurations (not with --model)")
        elif columns["model"] or columns["input_shape"]:
            specs = [column.spec() for column in columns.columns()]
            names = label or _spec_labels(specs)
            check_labels(names, len(specs))
            traces = _trace_specs(specs, device.value)
            _check_stages(stage_list, max(len(t.stages) for t in traces))
        else:
            configs = _configs(columns)
            names = label or default_labels(configs)
            check_labels(names, len(configs))
            _check_stages(stage_list, max(cfg.num_stages for cfg in configs))
            if not quiet:
                from pvttrace.base.notes import grouped_warnings

                warn(
                    [
                        f"{n}: {line}"
                        for n, cfg in zip(names, configs, strict=True)
                        for line in grouped_warnings(cfg.warnings)
                    ]
                )
            traces = trace_distinct(
                configs, config_tracer(device.value, head, head_width, columns.column(0).num_classes, train)
            )
        try:
            result = diff_traces(traces, names, with_ops=ops, mixed_conventions=mixed_conventions)
        except MixedConventions as exc:
            raise UserInputError(f"{exc}; pass --mixed-conventions to compare them anyway") from None
        if plot is not None:
            _write_plot(result, plot, plot_metric, dpi)
            sys.stderr.write(f"plot written to {plot}\n")
    if output_format == OutputFormat.CSV:
        from pvttrace.render.diff import diff_csv

        sys.stdout.write(diff_csv(result))
    elif output_format == OutputFormat.JSON:
        from pvttrace.records import dumps_json

        sys.stdout.write(dumps_json(result.to_dict()))
    elif output_format == OutputFormat.MARKDOWN:
        from pvttrace.render.diff import diff_markdown

        sys.stdout.write(diff_markdown(result, ops=ops, stages=stage_list or None, changed_only=changed_only))
    else:
        from pvttrace.render.diff import render_diff

        make_console(width).print(render_diff(result, ops=ops, stages=stage_list or None, changed_only=changed_only))
    if train and output_format in (OutputFormat.TABLE, OutputFormat.MARKDOWN):
        from pvttrace.render.dense import training_parts_markdown, training_parts_table

        if output_format == OutputFormat.MARKDOWN:
            sys.stdout.write(training_parts_markdown(traces, names))
        else:
            make_console(width).print(training_parts_table(traces, names))


def _write_plot(result: TraceDiff, path: str, metric: str, dpi: int) -> None:
    """Grouped bars of one per-stage metric, one bar per configuration; the title states the shared settings."""
    from pvttrace.render.diff import PLOT_METRICS, diff_plot_data
    from pvttrace.render.plot import plot_stage_bars, save_figure, shared_settings

    _, ylabel, unit = PLOT_METRICS[metric]
    stages, values = diff_plot_data(result, metric)
    configs = [t.config for t in result.traces if t.config is not None]
    model = (
        shared_settings(configs)
        if len(configs) == len(result.traces)
        else ", ".join(sorted({t.model or "model" for t in result.traces}))
    )
    flat = [v for row in values.values() for v in row]
    # A log axis only where every bar is positive and they span orders of magnitude.
    log = min(flat) > 0 and max(flat) / min(flat) > 20
    figure = plot_stage_bars(stages, values, title=f"{ylabel} per stage\n{model}", ylabel=ylabel, unit=unit, log=log)
    save_figure(figure, path, dpi=dpi)
