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
from typer.core import TyperGroup

from pvttrace import __version__
from pvttrace.base.errors import CheckFailed, PvtTraceError, UserInputError
from pvttrace.config import Device
from pvttrace.costs.conventions import Convention

if TYPE_CHECKING:
    from rich.console import Console

    from pvttrace.memory.estimate import Optimizer

__all__ = ["Convention", "Device", "app"]


class _OneLineErrors(TyperGroup):
    """Command group whose usage errors print as one ``error:`` line with exit code 2 (no usage box)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
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
            argv = args[0] if args else kwargs.get("args")
            _fail(format_message() + usage_hint(list(argv) if argv is not None else sys.argv[1:]), exit_code)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        # Click prints an empty line and raises Abort on KeyboardInterrupt; one line is enough.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted from None


class _Interrupted(Exception):
    """Ctrl-C (or a KeyboardInterrupt from the model's code) while a command ran."""


def usage_hint(argv: Sequence[str]) -> str:
    """A hint for the slips a newcomer makes first: ``run tiny`` (a variant without --variant),
    ``run --memory 24GiB``."""
    from pvttrace.config import OFFICIAL_NAMES

    words = [str(a) for a in argv]
    for i, word in enumerate(words):
        if i > 0 and words[i - 1] == "--memory" and words[0] != "fit" and word[:1].isdigit():
            return (
                f"; --memory is a switch of {words[0]} (a memory table); for a budget use: pvttrace fit --memory {word}"
            )
        is_variant = word in OFFICIAL_NAMES or word in OFFICIAL_NAMES.values()
        if i > 0 and is_variant and not words[i - 1].startswith("-"):
            return f"; to pick a variant write --variant {word}"
    return ""


def _fail(message: str, code: int) -> NoReturn:
    print_error(message)
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


#: Exit codes: a check that failed (a snapshot differs, a budget is exceeded), and bad input.
EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 1, 2


def exit_code(exc: PvtTraceError) -> int:
    """The exit code of a library error: 1 for a failed check, 2 for bad input or a trace that failed."""
    return EXIT_CHECK_FAILED if isinstance(exc, CheckFailed) else EXIT_BAD_INPUT


def print_error(message: str) -> None:
    """One ``error: ...`` line on stderr (whitespace folded), for an error that does not end the command."""
    one_line = " ".join(str(message).split())
    sys.stderr.write(f"error: {one_line}\n")


@contextmanager
def errors_to_exit_codes() -> Iterator[None]:
    """Map library errors to one-line messages and exit codes (:func:`exit_code`); the only such mapping."""
    try:
        yield
    except PvtTraceError as exc:
        _fail(str(exc), exit_code(exc))


def terminal_width() -> int | None:
    """The width of the controlling terminal (as ``stty size`` reads it), or None when there is none.

    Used when stdout is a pipe (``| less``, ``| head``): the reader still sits at that terminal.
    """
    for stream in (sys.stderr, sys.stdin):
        try:
            return os.get_terminal_size(stream.fileno()).columns or None
        except (AttributeError, OSError, ValueError):
            continue
    try:
        with open("/dev/tty", "rb") as tty:
            return os.get_terminal_size(tty.fileno()).columns or None
    except OSError:
        return None


def make_console(width: int | None) -> Console:
    """A stdout console: ``--width``; else the terminal's width; in a pipe ``COLUMNS``, the controlling terminal's
    width, or 120 when there is no terminal at all (CI logs)."""
    from rich.console import Console

    if width is None and not sys.stdout.isatty():
        columns = os.environ.get("COLUMNS", "").strip()
        valid = columns.isascii() and columns.isdigit() and len(columns) <= 4 and MIN_WIDTH <= int(columns) <= MAX_WIDTH
        width = int(columns) if valid else terminal_width()
        if width is None or not MIN_WIDTH <= width <= MAX_WIDTH:
            width = 120
    return Console(width=width, highlight=False, soft_wrap=False)


class OutputFormat(StrEnum):
    """Output formats of ``run`` and ``sweep``."""

    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    CSV = "csv"


# ---------------------------------------------------------------------------------- shared options
# One Annotated alias per shared option, so that every command spells and documents them alike. The model
# options (--variant, --img, --model ...) are declared in :mod:`pvttrace.cli.options`.
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
ConventionOpt = Annotated[
    Convention,
    typer.Option(
        "--convention",
        help="macs (ours: conv/linear/matmul/attention multiply-accumulates), fvcore (fvcore's count), timm "
        "(fvcore with explicit attention: timm's published GMACs) or paper (the PVT authors' get_flops.py: "
        "mmcv hooks + closed-form attention).",
    ),
]
CoverageOpt = Annotated[
    bool, typer.Option("--coverage", help="List every op name seen with its count and cost rule (or none).")
]

HeadOpt = Annotated[
    str | None,
    typer.Option("--head", help="Whole model: segformer, retinanet or semantic-fpn on the PVT (standard settings)."),
]
HeadWidthOpt = Annotated[
    int | None,
    typer.Option(
        "--head-width", help="With --head: decoder width (segformer) or FPN width (default: the standard one)."
    ),
]


GpuSettingOpt = Annotated[
    str | None,
    typer.Option(
        "--gpu-setting",
        help="With --head --train: also predict torch.cuda.max_memory_allocated of the step under a framework "
        "setting: torch2, torch2-ddp or mmcv1-ddp (docs/dense-models.md).",
    ),
]


AmpOpt = Annotated[
    bool, typer.Option("--amp", help="With --gpu-setting: mixed precision (autocast float16, float32 master weights).")
]


def head_options(head: str | None, head_width: int | None, num_classes: int | None, cfg: Any) -> Any:
    """The :class:`pvttrace.tracing.dense.HeadConfig` of ``--head`` (``--num-classes`` sets the head's classes),
    or None."""
    if head is None:
        if head_width is not None:
            raise UserInputError(f"head_width={head_width} needs --head")
        return None
    from pvttrace.tracing.dense import resolve_head

    return resolve_head(head, cfg, num_classes=num_classes, channels=head_width)


TrainOpt = Annotated[
    bool, typer.Option("--train", help="Also estimate a training step: saved activations, grads, optimizer state.")
]
OptimizerOpt = Annotated[
    str | None,
    typer.Option("--optimizer", help="With --train: none, sgd, sgd-momentum, adam or adamw (default adamw)."),
]


def training_options(train: bool, optimizer: str | None) -> Optimizer:
    """Validate ``--train``/``--optimizer``; return the optimizer (adamw when not given)."""
    from pvttrace.memory.estimate import Optimizer, optimizer_state_bytes

    if optimizer is None:
        return Optimizer.ADAMW
    if not train:
        raise UserInputError(f"optimizer={optimizer!r} needs --train (optimizer state exists only in training)")
    optimizer_state_bytes(optimizer, 0)
    return Optimizer(optimizer)


def warn(messages: Sequence[str]) -> None:
    """Print non-fatal notes to stderr, one line each."""
    for message in messages:
        sys.stderr.write(f"warning: {message}\n")


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Do not print warnings about uneven sizes.")]
StageOpt = Annotated[
    list[str] | None, typer.Option("--stage", help="Only these 1-based stages: 1,2 (or --stage 1 --stage 2).")
]


def warn_config(warnings: Sequence[str], quiet: bool) -> None:
    """A configuration's geometry warnings, several folded into one line; none with ``--quiet``."""
    if not quiet:
        from pvttrace.base.notes import grouped_warnings

        warn(grouped_warnings(warnings))
