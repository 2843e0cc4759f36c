"""``pvttrace fit``: the largest batch (or square image) whose estimated peak memory fits a budget.

Parses, calls :func:`pvttrace.memory.estimate.fit_config` with the one tracing entry point
(:func:`pvttrace.tracing.target.trace_target`, built-in variants and ``--model`` alike), prints. Torch is imported only
inside the command, so ``pvttrace fit --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pvttrace.base.errors import UserInputError
from pvttrace.cli.common import (
    HeadOpt,
    HeadWidthOpt,
    OptimizerOpt,
    OutputFormat,
    QuietOpt,
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
from pvttrace.cli.options import ModelOptions, model_options

__all__ = ["fit"]


@app.command()
@model_options(
    sources=("model", "input_shape", "model_option"),
    help={"img": "Image size (224, 800x1333), or auto: search the largest square side."},
)
def fit(
    memory: Annotated[
        str, typer.Option("--memory", help="Memory budget: 24GiB or 512MiB (powers of 1024), 80GB (powers of 1000).")
    ],
    options: ModelOptions,
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
    Example: pvttrace fit --memory 24GiB --model timm:pvt_v2_b0 --img 512 --train
    """
    from dataclasses import replace

    from pvttrace.cli.parsing import parse_bytes
    from pvttrace.memory.estimate import FitSearch, fit_config
    from pvttrace.tracing.target import trace_target

    with errors_to_exit_codes():
        img = options.img
        search = FitSearch.IMG if img is not None and img.strip().lower() == "auto" else FitSearch.BATCH
        if search == FitSearch.BATCH and options.batch is not None:
            raise UserInputError(
                f"batch={options.batch} cannot be given: fit searches the batch size (use --img auto to search the "
                "image size at a fixed batch)"
            )
        if output_format == OutputFormat.MARKDOWN:
            raise UserInputError("format='markdown' is not available for fit; use table or json")
        spec = (options if search == FitSearch.BATCH else options.replaced(img=None)).spec()
        optimizer_name = training_options(train, optimizer)
        if head is not None or head_width is not None:
            if spec.config is None:
                raise UserInputError(f"head={head!r} works on built-in variants only (not with --model)")
            spec = replace(spec, head=head_options(head, head_width, options.num_classes, spec.config))
        budget, held = parse_bytes(memory, "memory"), 0 if reserve is None else parse_bytes(reserve, "reserve")
        answer = fit_config(
            spec,
            budget,
            trace=lambda candidate: trace_target(
                candidate, train=train, optimizer=optimizer_name, on_note=lambda note: warn([note])
            ),
            search=search,
            reserve=held,
        )
        warn_config(answer.trace.config.warnings if answer.trace.config is not None else (), quiet)
    if output_format == OutputFormat.JSON:
        from pvttrace.records import dumps_json
        from pvttrace.render.memory import fit_document

        sys.stdout.write(dumps_json(fit_document(answer)))
    else:
        from pvttrace.render.memory import render_fit

        make_console(width).print(render_fit(answer))
