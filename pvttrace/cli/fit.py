"""``pvttrace fit``: the largest batch (or square image) whose estimated peak memory fits a budget.

Parses, calls :func:`pvttrace.memory.estimate.fit_config` with the tracer, prints. Torch is imported only
inside the command, so ``pvttrace fit --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pvttrace.base.errors import UserInputError
from pvttrace.cli.common import (
    AttentionOpt,
    BatchOpt,
    ClassesOpt,
    DepthsOpt,
    DimsOpt,
    DtypeOpt,
    HeadOpt,
    HeadsOpt,
    HeadWidthOpt,
    InChansOpt,
    LinearOpt,
    MlpOpt,
    OptimizerOpt,
    OutputFormat,
    PatchOpt,
    PosSizeOpt,
    QkvBiasOpt,
    QuietOpt,
    SrOpt,
    TaskOpt,
    TrainOpt,
    VariantOpt,
    WidthOpt,
    app,
    config_options,
    errors_to_exit_codes,
    head_options,
    make_console,
    training_options,
    warn_config,
)

__all__ = ["fit"]


@app.command()
def fit(
    memory: Annotated[
        str, typer.Option("--memory", help="Memory budget: 24GiB or 512MiB (powers of 1024), 80GB (powers of 1000).")
    ],
    variant: VariantOpt = "tiny",
    img: Annotated[
        str | None, typer.Option("--img", help="Image size (224, 800x1333), or auto: search the largest square side.")
    ] = None,
    batch: BatchOpt = None,
    in_chans: InChansOpt = None,
    dims: DimsOpt = None,
    heads: HeadsOpt = None,
    depths: DepthsOpt = None,
    mlp_ratios: MlpOpt = None,
    sr: SrOpt = None,
    patch: PatchOpt = None,
    qkv_bias: QkvBiasOpt = None,
    linear_sra: LinearOpt = None,
    num_classes: ClassesOpt = None,
    dtype: DtypeOpt = None,
    task: TaskOpt = None,
    pos_size: PosSizeOpt = None,
    attention: AttentionOpt = None,
    train: TrainOpt = False,
    optimizer: OptimizerOpt = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", "-f", help="table or json.")] = OutputFormat.TABLE,
    width: WidthOpt = None,
    head: HeadOpt = None,
    head_width: HeadWidthOpt = None,
    reserve: Annotated[
        str | None,
        typer.Option("--reserve", help="Set aside for the CUDA context and allocator headroom, e.g. 1GiB (default 0)."),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Find the largest batch size (or, with --img auto, square image side) that fits a memory budget.

    Every candidate is traced on the meta device: the answer fits and the next one does not.

    Example: pvttrace fit --memory 24GiB --variant b2 --img 512 --train --optimizer adamw
    Example: pvttrace fit --memory 16GiB --head segformer --variant mit-b2 --img 1024 --train
    """
    import functools

    from pvttrace.cli.parsing import config_from_text, parse_bytes
    from pvttrace.memory.estimate import FitSearch, fit_config

    with errors_to_exit_codes():
        search = FitSearch.IMG if img is not None and img.strip().lower() == "auto" else FitSearch.BATCH
        if search == FitSearch.BATCH and batch is not None:
            raise UserInputError(
                f"batch={batch} cannot be given: fit searches the batch size (use --img auto to search the "
                "image size at a fixed batch)"
            )
        if output_format == OutputFormat.MARKDOWN:
            raise UserInputError("format='markdown' is not available for fit; use table or json")
        cfg = config_from_text(
            **config_options(
                variant,
                None if search == FitSearch.IMG else img,
                batch,
                in_chans,
                dims,
                heads,
                depths,
                mlp_ratios,
                sr,
                patch,
                qkv_bias,
                linear_sra,
                num_classes,
                dtype,
                task,
                pos_size,
                attention,
            )
        )
        optimizer_name = training_options(train, optimizer)
        from pvttrace.tracing.recorder import trace_config

        tracer = functools.partial(trace_config, train=train, optimizer=optimizer_name)
        whole = head_options(head, head_width, num_classes, cfg)
        if whole is not None:
            from pvttrace.tracing.heads import trace_dense

            tracer = functools.partial(trace_dense, head=whole, train=train, optimizer=optimizer_name)
        budget, held = parse_bytes(memory, "memory"), 0 if reserve is None else parse_bytes(reserve, "reserve")
        answer = fit_config(cfg, budget, trace=tracer, search=search, reserve=held)
        warn_config(answer.trace.config.warnings if answer.trace.config is not None else (), quiet)
    if output_format == OutputFormat.JSON:
        from pvttrace.records import dumps_json
        from pvttrace.render.memory import fit_document

        sys.stdout.write(dumps_json(fit_document(answer)))
    else:
        from pvttrace.render.memory import render_fit

        make_console(width).print(render_fit(answer))
