"""``pvttrace run`` (one configuration's trace, as a table, JSON, markdown or CSV) and ``pvttrace variants``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pvttrace.base.errors import UserInputError
from pvttrace.cli.common import (
    AmpOpt,
    Convention,
    ConventionOpt,
    CoverageOpt,
    Device,
    DeviceOpt,
    GpuSettingOpt,
    HeadOpt,
    HeadWidthOpt,
    OptimizerOpt,
    OutputFormat,
    QuietOpt,
    StageOpt,
    TrainOpt,
    WidthOpt,
    app,
    errors_to_exit_codes,
    head_options,
    make_console,
    training_options,
    warn,
    warn_config,
)
from pvttrace.cli.guard import TimeoutOpt, check_timeout, tracing
from pvttrace.cli.options import ModelOptions, model_options
from pvttrace.cli.parsing import parse_kinds, parse_repeated_ints

if TYPE_CHECKING:
    from pvttrace.tracing.target import ModelSpec


# ---------------------------------------------------------------------------------- commands
@app.command()
@model_options(sources=("model", "input_shape", "model_option", "inputs"))
def run(
    options: ModelOptions,
    device: DeviceOpt = Device.META,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table, json, markdown or csv (one row per op).")
    ] = OutputFormat.TABLE,
    show_all: Annotated[bool, typer.Option("--all", help="Show every op (no block collapsing).")] = False,
    ops: Annotated[
        bool,
        typer.Option("--ops", help="One block per stage with its entry and exit ops (default: stage 1's attention)."),
    ] = False,
    stage: StageOpt = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only these op kinds, e.g. reshape,permute,sr_conv,matmul.")
    ] = None,
    source: Annotated[bool, typer.Option("--source", help="Add the model source line of each op.")] = False,
    modules: Annotated[bool, typer.Option("--modules", help="Print torchinfo's module-level summary instead.")] = False,
    memory: Annotated[
        bool, typer.Option("--memory", help="Add a per-stage memory table and a block timeline.")
    ] = False,
    train: TrainOpt = False,
    optimizer: OptimizerOpt = None,
    width: WidthOpt = None,
    convention: ConventionOpt = Convention.MACS,
    coverage: CoverageOpt = False,
    head: HeadOpt = None,
    head_width: HeadWidthOpt = None,
    gpu_setting: GpuSettingOpt = None,
    amp: AmpOpt = False,
    quiet: QuietOpt = False,
    depth: Annotated[
        int, typer.Option("--depth", help="With --modules --model: how deep the module tree goes (0 = the model).")
    ] = 3,
    timeout: TimeoutOpt = None,
) -> None:
    """Trace one configuration (or any model with --model) and show its stages, ops and peak memory.

    By default the table view fits one screen: the header, the stage table and stage 1's attention
    walkthrough; --ops, --all, --stage and --kind show more.

    Example: pvttrace run --variant tiny --img 224 --memory; pvttrace run --model timm:pvt_v2_b0 --convention fvcore
    Example: pvttrace run --head segformer --variant mit-b2 --img 512 --batch 2 --train
    """
    with errors_to_exit_codes():
        spec = options.spec()
        kinds = parse_kinds(kind)
        stages = parse_repeated_ints(stage, "stage")
        cfg = spec.config
        if head is not None or head_width is not None:
            if cfg is None:
                raise UserInputError(f"head={head!r} works on built-in variants only (not with --model)")
            from dataclasses import replace

            spec = replace(spec, head=head_options(head, head_width, options.num_classes, cfg))
        if stages and cfg is not None:
            _check_stages(stages, cfg.num_stages)
        if cfg is not None:
            warn_config(cfg.warnings, quiet)
        optimizer_name = training_options(train, optimizer)
        _check_gpu_setting(spec, gpu_setting, train)
        if amp and gpu_setting is None:
            raise UserInputError("amp=True needs --gpu-setting (mixed precision applies to the GPU prediction)")
        if modules:
            if cfg is None:
                _print_module_view(spec, depth, convention.value, device.value, width)
                return
            from pvttrace.tracing.torchinfo_view import module_summary

            sys.stdout.write(module_summary(cfg, width=make_console(width).width) + "\n")
            return
        check_timeout(timeout)
        from pvttrace.costs.coverage import uncosted_summary
        from pvttrace.tracing.target import trace_target

        with tracing(f"tracing {spec.name}", timeout):
            trace = trace_target(
                spec,
                convention=convention,
                device=device,
                on_note=lambda note: warn([note]),
                train=train,
                optimizer=optimizer_name,
            )
        gpu_peak = _gpu_peak(spec, gpu_setting, optimizer_name, amp=amp)
        if stages and cfg is None:
            _check_stages(stages, len(trace.stages))
        missing = uncosted_summary(trace)
        if missing:
            warn([missing])
    if coverage:
        _print_coverage(trace, output_format, width)
        return
    if output_format == OutputFormat.JSON:
        from pvttrace.records import dumps_json, filtered_document

        sys.stdout.write(dumps_json(filtered_document(trace, stages=stages, kinds=kinds)))
    elif output_format == OutputFormat.MARKDOWN:
        from pvttrace.render.trace import trace_markdown

        sys.stdout.write(trace_markdown(trace, show_all=show_all, stages=stages or None, kinds=kinds))
        if memory:
            from pvttrace.render.memory import memory_markdown

            sys.stdout.write(memory_markdown(trace))
    elif output_format == OutputFormat.CSV:
        from pvttrace.render.tabular import trace_csv

        sys.stdout.write(trace_csv(trace, stages=stages or None, kinds=kinds))
    else:
        from pvttrace.render.trace import render_trace

        console = make_console(width)
        brief = not (show_all or ops or stages or kinds is not None)
        console.print(
            render_trace(trace, show_all=show_all, stages=stages or None, kinds=kinds, with_source=source, brief=brief)
        )
        if memory:
            from pvttrace.render.memory import render_memory

            console.print(render_memory(trace))
    if gpu_peak is not None:
        from pvttrace.base.units import format_bytes

        precision = ", mixed precision" if amp else ""
        line = (
            f"predicted torch.cuda.max_memory_allocated ({gpu_peak.setting}{precision}): "
            f"{format_bytes(gpu_peak.peak)} "
            f"(forward+backward {format_bytes(gpu_peak.forward_backward_peak)}, "
            f"optimizer step {format_bytes(gpu_peak.step_peak)})\n"
        )
        # Machine-readable formats keep stdout parseable; the line goes to stderr there.
        (sys.stdout if output_format == OutputFormat.TABLE else sys.stderr).write(line)


def _check_gpu_setting(spec: ModelSpec, setting: str | None, train: bool) -> None:
    """Validate ``--gpu-setting`` before any tracing."""
    if setting is None:
        return
    from pvttrace.memory.gpustep import FRAMEWORKS

    if spec.head is None or spec.config is None or not train:
        raise UserInputError(f"gpu_setting={setting!r} needs --head and --train")
    if setting not in FRAMEWORKS:
        raise UserInputError(f"gpu_setting={setting!r} must be one of: {', '.join(FRAMEWORKS)}")


def _gpu_peak(spec: ModelSpec, setting: str | None, optimizer: str, *, amp: bool) -> Any:
    """``--gpu-setting``: the GPU peak prediction of a whole model's training step, or None when not asked."""
    if setting is None or spec.head is None or spec.config is None:
        return None
    from pvttrace.memory.gpustep import FRAMEWORKS
    from pvttrace.tracing.heads import predict_gpu_peak

    return predict_gpu_peak(spec.config, spec.head, optimizer=optimizer, setting=FRAMEWORKS[setting], amp=amp)


def _check_stages(stages: list[int], count: int) -> None:
    for s in stages:
        if not 1 <= s <= count:
            raise UserInputError(f"stage={s} must be between 1 and {count}")


def _print_module_view(spec: Any, depth: int, convention: str, device: str, width: int | None) -> None:
    from pvttrace.analyses.module_view import trace_modules
    from pvttrace.render.modules import module_table
    from pvttrace.render.trace import header_panel

    trace, rows = trace_modules(spec, depth=depth, convention=convention, device=device, on_note=lambda n: warn([n]))
    console = make_console(width)
    console.print(header_panel(trace))
    console.print(module_table(rows, title=f"Modules (depth {depth})"))


def _print_coverage(trace: Any, output_format: OutputFormat, width: int | None) -> None:
    if output_format == OutputFormat.JSON:
        from pvttrace.costs.coverage import coverage_document
        from pvttrace.records import dumps_json

        sys.stdout.write(dumps_json(coverage_document(trace)))
    elif output_format == OutputFormat.MARKDOWN:
        from pvttrace.render.trace import coverage_markdown

        sys.stdout.write(coverage_markdown(trace))
    elif output_format == OutputFormat.CSV:
        from pvttrace.costs.coverage import coverage_csv

        sys.stdout.write(coverage_csv(trace))
    else:
        from pvttrace.render.trace import coverage_table

        make_console(width).print(coverage_table(trace))


@app.command()
def variants(width: WidthOpt = None) -> None:
    """List the built-in presets with their hyper-parameters."""
    from rich import box
    from rich.table import Table

    from pvttrace.config import OFFICIAL_NAMES, VARIANTS

    table = Table(title="Built-in PVT variants", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("variant", "official name", "ver", "dims", "heads", "depths", "mlp", "sr", "linear"):
        table.add_column(column, no_wrap=True)
    for name, cfg in VARIANTS.items():
        table.add_row(
            name,
            OFFICIAL_NAMES[name],
            f"v{cfg.version}",
            ",".join(map(str, cfg.dims)),
            ",".join(map(str, cfg.heads)),
            ",".join(map(str, cfg.depths)),
            ",".join(f"{r:g}" for r in cfg.mlp_ratios),
            ",".join(map(str, cfg.sr_ratios)),
            "yes" if cfg.linear_sra else "",
        )
    from pvttrace.render.fitwidth import fitted

    make_console(width).print(fitted(table, ("official name", "ver", "linear")))
