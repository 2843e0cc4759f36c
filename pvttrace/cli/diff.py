"""``pvttrace diff``: compare configurations (or saved traces) side by side.

Each repeated option defines one configuration column; an option given once applies to
every column. Repeated options must come in equal counts. Parsing and printing only: the
comparison is :mod:`pvttrace.analyses.diff`, the views are :mod:`pvttrace.render.diff`.

``--linear-sra`` takes a value here (``on`` or ``off``) instead of being the
``--linear-sra/--no-linear-sra`` flag pair of ``run``: a flag cannot be repeated, so a
per-column on/off needs a value (``--linear-sra off --linear-sra on``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pvttrace.base.errors import UserInputError
from pvttrace.cli.common import (
    ClassesOpt,
    Device,
    DeviceOpt,
    HeadOpt,
    HeadWidthOpt,
    InChansOpt,
    OutputFormat,
    PatchOpt,
    PosSizeOpt,
    QkvBiasOpt,
    QuietOpt,
    TaskOpt,
    TrainOpt,
    WidthOpt,
    app,
    errors_to_exit_codes,
    head_options,
    make_console,
    warn,
)
from pvttrace.cli.parsing import closest, parse_repeated_ints

if TYPE_CHECKING:
    from collections.abc import Callable

    from pvttrace.analyses.diff import TraceDiff
    from pvttrace.config import PvtConfig
    from pvttrace.records import Trace
    from pvttrace.tracing.target import ModelSpec

_ON = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}

ColumnsOpt = list[str] | None


def _pick(values: list[Any] | None, column: int) -> Any:
    if not values:
        return None
    return values[column] if len(values) > 1 else values[0]


def _on_off(value: str | None) -> bool | None:
    if value is None:
        return None
    flag = _ON.get(value.strip().lower())
    if flag is None:
        raise UserInputError(f"linear-sra={value!r} must be on or off (also true/false, yes/no, 1/0)")
    return flag


def _configs_from_options(repeated: dict[str, list[Any] | None], once: dict[str, Any]) -> list[PvtConfig]:
    from pvttrace.analyses.sweep import column_count
    from pvttrace.cli.parsing import config_from_text

    columns = column_count(repeated)
    if columns < 2:
        raise UserInputError(
            "diff needs at least two configurations: repeat an option such as --sr "
            "(--sr 8,4,2,1 --sr 1,1,1,1) or give two trace files"
        )
    configs = []
    for column in range(columns):
        picked = {name.removeprefix("--").replace("-", "_"): _pick(values, column) for name, values in repeated.items()}
        picked["linear_sra"] = _on_off(picked["linear_sra"])
        picked["variant"] = picked["variant"] or "tiny"
        configs.append(config_from_text(**picked, **once))
    return configs


#: Options that go with --model columns (they set the input or the attention switch); the rest describe built-ins.
_MODEL_INPUT_OPTIONS = ("--img", "--batch", "--attention", "in_chans")


def _specs_from_options(
    models: list[str] | None,
    input_shapes: list[str] | None,
    repeated: dict[str, list[Any] | None],
    once: dict[str, Any],
) -> list[ModelSpec]:
    """One :class:`ModelSpec` per ``--model`` column; built-in-only options are an error.

    Raises:
        UserInputError: no --model, built-in options given, or a bad spec or input option.
    """
    from pvttrace.analyses.sweep import column_count
    from pvttrace.cli.parsing import parse_model_spec

    if not models:
        raise UserInputError("input_shape needs --model; built-in variants take --img/--batch/--in-chans")
    given = [flag for flag, values in repeated.items() if values and flag not in _MODEL_INPUT_OPTIONS]
    given += [
        f"--{name.replace('_', '-')}"
        for name, value in once.items()
        if value is not None and name not in _MODEL_INPUT_OPTIONS
    ]
    if given:
        raise UserInputError(
            f"model={models[0]!r} cannot be combined with {', '.join(given)}: those options describe built-in variants"
        )
    per_column = {
        "--model": models,
        "--input-shape": input_shapes,
        "--img": repeated["--img"],
        "--batch": repeated["--batch"],
        "--attention": repeated["--attention"],
    }
    return [
        parse_model_spec(
            _pick(models, column),
            input_shape=_pick(input_shapes, column),
            img=_pick(repeated["--img"], column),
            batch=_pick(repeated["--batch"], column),
            in_chans=once["in_chans"],
            attention=_pick(repeated["--attention"], column),
        )
        for column in range(column_count(per_column))
    ]


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
    """Trace each distinct spec once (torch is imported here)."""
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
    """A tracer on ``device`` (of the whole model with ``head``; with a training step when ``train``);
    torch is imported on its first call only."""

    def trace(cfg: PvtConfig) -> Trace:
        if head is not None or head_width is not None:
            from pvttrace.tracing.heads import trace_dense

            return trace_dense(cfg, head_options(head, head_width, num_classes, cfg), device=device, train=train)
        from pvttrace.tracing.recorder import trace_config

        return trace_config(cfg, device=device, train=train)

    return trace


@app.command()
def diff(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="Saved traces to compare (pvttrace run --format json, or pvttrace.snapshot/1 files).",
            show_default=False,
        ),
    ] = None,
    variant: Annotated[
        ColumnsOpt, typer.Option("--variant", "-v", help="Preset per configuration (repeatable).")
    ] = None,
    img: Annotated[
        ColumnsOpt, typer.Option("--img", help="Image size per configuration: 224 or HxW (repeatable).")
    ] = None,
    batch: Annotated[list[int] | None, typer.Option("--batch", help="Batch size (repeatable).")] = None,
    dims: Annotated[
        ColumnsOpt, typer.Option("--dims", help="Embedding dims per stage, e.g. 64,128,320,512 (repeatable).")
    ] = None,
    heads: Annotated[ColumnsOpt, typer.Option("--heads", help="Heads per stage (repeatable).")] = None,
    depths: Annotated[ColumnsOpt, typer.Option("--depths", help="Blocks per stage (repeatable).")] = None,
    mlp_ratios: Annotated[ColumnsOpt, typer.Option("--mlp-ratios", help="MLP ratio per stage (repeatable).")] = None,
    sr: Annotated[ColumnsOpt, typer.Option("--sr", help="Spatial-reduction ratios, e.g. 8,4,2,1 (repeatable).")] = None,
    linear_sra: Annotated[
        ColumnsOpt,
        typer.Option(
            "--linear-sra", help="Linear SRA on or off (repeatable; takes a value because flags cannot repeat)."
        ),
    ] = None,
    dtype: Annotated[ColumnsOpt, typer.Option("--dtype", help="float32, float16 or bfloat16 (repeatable).")] = None,
    in_chans: InChansOpt = None,
    patch: PatchOpt = None,
    qkv_bias: QkvBiasOpt = None,
    num_classes: ClassesOpt = None,
    task: TaskOpt = None,
    pos_size: PosSizeOpt = None,
    attention: Annotated[
        ColumnsOpt, typer.Option("--attention", help="explicit (materialised map) or sdpa (fused), repeatable.")
    ] = None,
    model: Annotated[
        ColumnsOpt,
        typer.Option(
            "--model",
            help="Any model per column instead of built-in variants: PACKAGE.MODULE:FACTORY or "
            "timm:NAME (repeatable; not with --variant, --sr, ... options).",
        ),
    ] = None,
    input_shape: Annotated[
        ColumnsOpt,
        typer.Option("--input-shape", help="With --model: input tensor shape, e.g. 1,3,224,224 (repeatable)."),
    ] = None,
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
        check_labels,
        default_labels,
        diff_traces,
        file_labels,
        load_diff_input,
        trace_distinct,
    )

    repeated: dict[str, list[Any] | None] = {
        "--variant": variant,
        "--img": img,
        "--batch": batch,
        "--dims": dims,
        "--heads": heads,
        "--depths": depths,
        "--mlp-ratios": mlp_ratios,
        "--sr": sr,
        "--linear-sra": linear_sra,
        "--dtype": dtype,
        "--attention": attention,
    }
    once: dict[str, Any] = {
        "in_chans": in_chans,
        "patch": patch,
        "qkv_bias": qkv_bias,
        "num_classes": num_classes,
        "task": task,
        "pos_size": pos_size,
    }
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
            given = [
                name for name, values in {**repeated, "--model": model, "--input-shape": input_shape}.items() if values
            ]
            given += [f"--{name.replace('_', '-')}" for name, value in once.items() if value is not None]
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
        elif (model or input_shape) and (head or train):
            raise UserInputError("--head and --train compare built-in configurations (not with --model)")
        elif model or input_shape:
            specs = _specs_from_options(model, input_shape, repeated, once)
            names = label or _spec_labels(specs)
            check_labels(names, len(specs))
            traces = _trace_specs(specs, device.value)
            _check_stages(stage_list, max(len(t.stages) for t in traces))
        else:
            configs = _configs_from_options(repeated, once)
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
            traces = trace_distinct(configs, config_tracer(device.value, head, head_width, num_classes, train))
        result = diff_traces(traces, names, with_ops=ops)
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
