"""The ``pvttrace`` command line: parse, call the library, print, map errors to exit codes.

Exit codes: 0 ok; 1 a check failed; 2 bad input (a one-line ``error: ...`` on stderr, no
traceback). Torch is imported only inside commands that trace, so ``pvttrace --help`` and
every subcommand's ``--help`` stay fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from pvttrace import __version__
from pvttrace.cli_guard import TimeoutOpt, check_timeout, tracing
from pvttrace.errors import CheckFailed, PvtTraceError, TraceError, UserInputError

if TYPE_CHECKING:
    from pvttrace.target import ModelSpec

__all__ = ["app", "main"]


class _OneLineErrors(TyperGroup):
    """Command group whose usage errors print as one ``error:`` line with exit code 2 (no usage box)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102 - the group's own signature
        kwargs["standalone_mode"] = False
        # Non-UTF-8 bytes in argv (file names) arrive as lone surrogates; echo them as \udcXX escapes
        # (valid JSON escapes, too) instead of failing in the middle of the output.
        reconfigure = getattr(sys.stdout, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
        try:
            result = super().main(*args, **kwargs)
        except _Interrupted:
            _fail("interrupted", 130)
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
        except typer.Abort:
            _fail("aborted", 1)
        except Exception as exc:
            # Click-style usage errors (typer vendors click in recent releases, so match by shape).
            format_message = getattr(exc, "format_message", None)
            exit_code = getattr(exc, "exit_code", None)
            if format_message is None or not isinstance(exit_code, int):
                raise
            _fail(format_message(), exit_code)
        sys.exit(result if isinstance(result, int) else 0)


    def invoke(self, ctx: Any) -> Any:  # noqa: D102 - the group's own signature
        # Click prints an empty line and raises Abort on KeyboardInterrupt; one line is enough.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted from None


class _Interrupted(Exception):
    """Ctrl-C (or a KeyboardInterrupt from the model's code) while a command ran."""


def _fail(message: str, code: int) -> NoReturn:
    one_line = " ".join(str(message).split())
    sys.stderr.write(f"error: {one_line}\n")
    sys.exit(code)


app = typer.Typer(
    cls=_OneLineErrors,
    name="pvttrace",
    help="Trace shapes, MACs and memory op by op through a Pyramid Vision Transformer (PVT v1/v2).",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


def main() -> None:
    """Console-script entry point."""
    app()


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"pvttrace {__version__}\n")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Trace shapes, MACs and memory op by op through a Pyramid Vision Transformer (PVT v1/v2)."""
    if ctx.invoked_subcommand is None:
        sys.stdout.write(ctx.get_help() + "\n")
        raise typer.Exit(0)


@contextmanager
def errors_to_exit_codes() -> Iterator[None]:
    """Map library errors to one-line messages and exit codes (input 2, failed check 1)."""
    try:
        yield
    except (UserInputError, TraceError) as exc:
        _fail(str(exc), 2)
    except CheckFailed as exc:
        _fail(str(exc), 1)
    except PvtTraceError as exc:
        _fail(str(exc), 2)


def make_console(width: int | None) -> Console:
    """A stdout console: the terminal's width when interactive, else ``width`` or 120 (stable bytes in pipes)."""
    if width is None and not sys.stdout.isatty():
        columns = os.environ.get("COLUMNS", "").strip()
        valid = columns.isascii() and columns.isdigit() and len(columns) <= 4 and MIN_WIDTH <= int(columns) <= MAX_WIDTH
        width = int(columns) if valid else 120
    return Console(width=width, highlight=False, soft_wrap=False)


class OutputFormat(StrEnum):
    """Output formats of ``run`` and ``sweep``."""

    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    CSV = "csv"


class Device(StrEnum):
    """Where tensors live during the trace."""

    META = "meta"
    CPU = "cpu"
    CUDA = "cuda"


class Convention(StrEnum):
    """Counting conventions (``pvttrace.records.CONVENTIONS``)."""

    MACS = "macs"
    FVCORE = "fvcore"
    PAPER = "paper"


# ---------------------------------------------------------------------------------- shared options
# One Annotated alias per model option, so that every command spells and documents them alike.
VariantOpt = Annotated[
    str, typer.Option("--variant", "-v", help="Preset: tiny small medium large b0 b1 b2 b2-li b3 b4 b5 (or pvt_v2_b2 ...).")
]
ImgOpt = Annotated[str | None, typer.Option("--img", help="Image size: 224, or HxW such as 800x1333.")]
BatchOpt = Annotated[int | None, typer.Option("--batch", help="Batch size.")]
InChansOpt = Annotated[int | None, typer.Option("--in-chans", help="Input channels.")]
DimsOpt = Annotated[str | None, typer.Option("--dims", help="Embedding dim per stage, e.g. 64,128,320,512.")]
HeadsOpt = Annotated[str | None, typer.Option("--heads", help="Attention heads per stage, e.g. 1,2,5,8.")]
DepthsOpt = Annotated[str | None, typer.Option("--depths", help="Blocks per stage, e.g. 2,2,2,2.")]
MlpOpt = Annotated[str | None, typer.Option("--mlp-ratios", help="MLP ratio per stage, e.g. 8,8,4,4.")]
SrOpt = Annotated[str | None, typer.Option("--sr", help="Spatial-reduction ratio per stage, e.g. 8,4,2,1.")]
PatchOpt = Annotated[
    str | None, typer.Option("--patch", help="Patch stride: one value for stage 1 (official patch_size) or one per stage.")
]
QkvBiasOpt = Annotated[bool | None, typer.Option("--qkv-bias/--no-qkv-bias", help="Bias in the q and kv projections.")]
LinearOpt = Annotated[bool | None, typer.Option("--linear-sra/--no-linear-sra", help="Linear SRA (v2): 7x7 pooled keys.")]
ClassesOpt = Annotated[int | None, typer.Option("--num-classes", help="Classifier outputs (task cls).")]
DtypeOpt = Annotated[str | None, typer.Option("--dtype", help="float32, float16 or bfloat16.")]
TaskOpt = Annotated[
    str | None, typer.Option("--task", help="cls: ImageNet classifier (papers' tables); backbone: four pyramid maps.")
]
PosSizeOpt = Annotated[str | None, typer.Option("--pos-size", help="v1: image size the positional tables are sized for.")]
AttentionOpt = Annotated[
    str | None, typer.Option("--attention", help="explicit (official: materialises the map) or sdpa (fused).")
]
DeviceOpt = Annotated[Device, typer.Option("--device", help="meta (no tensor memory, default), cpu or cuda.")]
MIN_WIDTH, MAX_WIDTH = 20, 1000


def _check_width(value: int | None) -> int | None:
    # rich prints nothing at width <= 0 and runs out of memory padding lines to a huge width.
    if value is not None and not MIN_WIDTH <= value <= MAX_WIDTH:
        raise typer.BadParameter(f"width={value} must be from {MIN_WIDTH} to {MAX_WIDTH} columns")
    return value


WidthOpt = Annotated[
    int | None,
    typer.Option("--width", callback=_check_width, help="Console width for tables (default: terminal, or 120)."),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Trace any model instead of a built-in variant: PACKAGE.MODULE:FACTORY (a callable returning an "
        "nn.Module) or timm:NAME (needs timm). Input from --input-shape, or --img/--batch/--in-chans.",
    ),
]
InputShapeOpt = Annotated[
    str | None, typer.Option("--input-shape", help="With --model: the input tensor shape, e.g. 1,3,224,224.")
]
ConventionOpt = Annotated[
    Convention,
    typer.Option(
        "--convention",
        help="macs (ours: conv/linear/matmul/attention multiply-accumulates), fvcore (fvcore's count) or "
        "paper (the PVT authors' get_flops.py: mmcv hooks + closed-form attention).",
    ),
]
CoverageOpt = Annotated[
    bool, typer.Option("--coverage", help="List every op name seen with its count and cost rule (or none).")
]

#: Options that describe a built-in variant; they cannot be combined with --model.
BUILTIN_ONLY_OPTIONS = (
    "variant", "dims", "heads", "depths", "mlp_ratios", "sr", "patch", "qkv_bias", "linear_sra", "num_classes",
    "dtype", "task", "pos_size",
)


def resolve_spec(
    ctx: typer.Context,
    model: str | None,
    input_shape: str | None,
    config_kwargs: dict[str, Any],
) -> ModelSpec:
    """The model a command traces: ``--model`` (with its input options) or the built-in variant options.

    ``config_kwargs`` is :func:`config_options`' result. With ``--model``, a built-in-only option
    given on the command line is an error, as is ``--input-shape`` without ``--model``.

    Raises:
        UserInputError: conflicting or invalid options (exit 2).
    """
    from pvttrace.target import builtin_spec, parse_model_spec

    if model is None:
        if input_shape is not None:
            raise UserInputError("input_shape needs --model; built-in variants take --img/--batch/--in-chans")
        from pvttrace.config import resolve_config

        return builtin_spec(resolve_config(**config_kwargs))
    given = [
        name for name in BUILTIN_ONLY_OPTIONS
        if (source := ctx.get_parameter_source(name)) is not None and source.name != "DEFAULT"
    ]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UserInputError(f"model={model!r} cannot be combined with {flags}: those options describe built-in variants")
    return parse_model_spec(
        model,
        input_shape=input_shape,
        img=config_kwargs.get("img"),
        batch=config_kwargs.get("batch"),
        in_chans=config_kwargs.get("in_chans"),
        attention=config_kwargs.get("attention"),
    )
TrainOpt = Annotated[
    bool, typer.Option("--train", help="Also estimate a training step: saved activations, grads, optimizer state.")
]
OptimizerOpt = Annotated[
    str | None,
    typer.Option("--optimizer", help="With --train: none, sgd, sgd-momentum, adam or adamw (default adamw)."),
]


def training_options(train: bool, optimizer: str | None) -> str:
    """Validate ``--train``/``--optimizer``; return the optimizer name (adamw when not given)."""
    from pvttrace.memory import optimizer_state_bytes

    if optimizer is None:
        return "adamw"
    if not train:
        raise UserInputError(f"optimizer={optimizer!r} needs --train (optimizer state exists only in training)")
    optimizer_state_bytes(optimizer, 0)
    return optimizer


def config_options(
    variant: str,
    img: str | None,
    batch: int | None,
    in_chans: int | None,
    dims: str | None,
    heads: str | None,
    depths: str | None,
    mlp_ratios: str | None,
    sr: str | None,
    patch: str | None,
    qkv_bias: bool | None,
    linear_sra: bool | None,
    num_classes: int | None,
    dtype: str | None,
    task: str | None,
    pos_size: str | None,
    attention: str | None,
) -> dict[str, Any]:
    """The model options of a command as keyword arguments of :func:`pvttrace.config.resolve_config`."""
    return {
        "variant": variant,
        "img": img,
        "batch": batch,
        "in_chans": in_chans,
        "dims": dims,
        "heads": heads,
        "depths": depths,
        "mlp_ratios": mlp_ratios,
        "sr": sr,
        "patch": patch,
        "qkv_bias": qkv_bias,
        "linear_sra": linear_sra,
        "num_classes": num_classes,
        "dtype": dtype,
        "task": task,
        "pos_size": pos_size,
        "attention": attention,
    }


def warn(messages: Sequence[str]) -> None:
    """Print non-fatal notes to stderr, one line each."""
    for message in messages:
        sys.stderr.write(f"warning: {message}\n")


def _parse_kinds(text: str | None) -> list[str] | None:
    if text is None:
        return None
    from pvttrace.records import OpKind

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    known = [k.value for k in OpKind]
    for kind in kinds:
        if kind not in known:
            raise UserInputError(f"kind={kind!r} is not an op kind; known kinds: {', '.join(known)}")
    if not kinds:
        raise UserInputError("kind='' must name at least one op kind")
    return kinds


# ---------------------------------------------------------------------------------- commands
@app.command()
def run(
    ctx: typer.Context,
    variant: VariantOpt = "tiny",
    img: ImgOpt = None,
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
    device: DeviceOpt = Device.META,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table, json, markdown or csv (one row per op).")
    ] = OutputFormat.TABLE,
    show_all: Annotated[bool, typer.Option("--all", help="Show every op (no block collapsing).")] = False,
    stage: Annotated[list[int] | None, typer.Option("--stage", help="Only this 1-based stage (repeatable).")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only these op kinds, e.g. reshape,permute,sr_conv,matmul.")] = None,
    source: Annotated[bool, typer.Option("--source", help="Add the model source line of each op.")] = False,
    modules: Annotated[bool, typer.Option("--modules", help="Print torchinfo's module-level summary instead.")] = False,
    memory: Annotated[bool, typer.Option("--memory", help="Add a per-stage memory table and a block timeline.")] = False,
    train: TrainOpt = False,
    optimizer: OptimizerOpt = None,
    width: WidthOpt = None,
    model: ModelOpt = None,
    input_shape: InputShapeOpt = None,
    convention: ConventionOpt = Convention.MACS,
    coverage: CoverageOpt = False,
    timeout: TimeoutOpt = None,
) -> None:
    """Trace one configuration (or any model with --model) and show its stages, ops and peak memory.

    Example: pvttrace run --variant tiny --img 224 --memory; pvttrace run --model timm:pvt_v2_b0 --convention fvcore
    """
    with errors_to_exit_codes():
        spec = resolve_spec(ctx, model, input_shape, config_options(
            variant, img, batch, in_chans, dims, heads, depths, mlp_ratios, sr, patch,
            qkv_bias, linear_sra, num_classes, dtype, task, pos_size, attention,
        ))
        kinds = _parse_kinds(kind)
        cfg = spec.config
        if stage and cfg is not None:
            _check_stages(stage, cfg.num_stages)
        if cfg is not None:
            warn(cfg.warnings)
        optimizer_name = training_options(train, optimizer)
        if modules:
            if cfg is None:
                raise UserInputError("--modules works with built-in variants only (not with --model)")
            from pvttrace.modules import module_summary

            sys.stdout.write(module_summary(cfg) + "\n")
            return
        check_timeout(timeout)
        from pvttrace.coverage import uncosted_summary
        from pvttrace.target import trace_target

        with tracing(f"tracing {spec.name}", timeout):
            trace = trace_target(
                spec,
                convention=convention.value,
                device=device.value,
                on_note=lambda note: warn([note]),
                train=train,
                optimizer=optimizer_name,
            )
        if stage and cfg is None:
            _check_stages(stage, len(trace.stages))
        missing = uncosted_summary(trace)
        if missing:
            warn([missing])
    if coverage:
        _print_coverage(trace, output_format, width)
        return
    if output_format == OutputFormat.JSON:
        from pvttrace.records import dumps_json

        sys.stdout.write(dumps_json(trace.to_dict()))
    elif output_format == OutputFormat.MARKDOWN:
        from pvttrace.render import trace_markdown

        sys.stdout.write(trace_markdown(trace, show_all=show_all, stages=stage or None, kinds=kinds))
        if memory:
            from pvttrace.render_memory import memory_markdown

            sys.stdout.write(memory_markdown(trace))
    elif output_format == OutputFormat.CSV:
        from pvttrace.tabular import trace_csv

        sys.stdout.write(trace_csv(trace, stages=stage or None, kinds=kinds))
    else:
        from pvttrace.render import render_trace

        console = make_console(width)
        console.print(render_trace(trace, show_all=show_all, stages=stage or None, kinds=kinds, with_source=source))
        if memory:
            from pvttrace.render_memory import render_memory

            console.print(render_memory(trace))


def _check_stages(stages: list[int], count: int) -> None:
    for s in stages:
        if not 1 <= s <= count:
            raise UserInputError(f"stage={s} must be between 1 and {count}")


def _print_coverage(trace: Any, output_format: OutputFormat, width: int | None) -> None:
    if output_format == OutputFormat.JSON:
        from pvttrace.coverage import coverage_document
        from pvttrace.records import dumps_json

        sys.stdout.write(dumps_json(coverage_document(trace)))
    elif output_format == OutputFormat.MARKDOWN:
        from pvttrace.render import coverage_markdown

        sys.stdout.write(coverage_markdown(trace))
    elif output_format == OutputFormat.CSV:
        from pvttrace.coverage import coverage_csv

        sys.stdout.write(coverage_csv(trace))
    else:
        from pvttrace.render import coverage_table

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
    make_console(width).print(table)


from pvttrace import cli_diff as _cli_diff  # noqa: E402,F401  (registers commands)
from pvttrace import cli_fit as _cli_fit  # noqa: E402,F401  (registers commands)
from pvttrace import cli_snapshot as _cli_snapshot  # noqa: E402,F401  (registers commands)
from pvttrace import cli_sweep as _cli_sweep  # noqa: E402,F401  (registers commands)
