"""``pvttrace snapshot write|check``: shape snapshots for CI.

Parsing, printing and exit codes only; the work is done by :mod:`pvttrace.snapshot`. Torch is
imported inside the commands, after every option has been validated.

Exit codes of ``check``: 0 every file matches (or was updated); 1 a file differs or a budget is
exceeded; 2 a file is missing or invalid, or an option is bad. Every file is checked even when an
earlier one failed; the worst code wins.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from pvttrace.base.errors import TraceError, TraceFileError, UserInputError
from pvttrace.cli.common import (
    EXIT_CHECK_FAILED,
    QuietOpt,
    app,
    errors_to_exit_codes,
    exit_code,
    print_error,
    warn,
    warn_config,
)
from pvttrace.cli.guard import TimeoutOpt, check_timeout, tracing
from pvttrace.cli.options import ModelOptions, model_options
from pvttrace.cli.parsing import parse_bytes, parse_count

if TYPE_CHECKING:
    from pvttrace.records import Trace
    from pvttrace.snapshot import Budgets, Snapshot

snapshot_app = typer.Typer(
    name="snapshot",
    help="Write shape snapshots and check them in CI (exit 1 with a report when a shape or cost changes).",
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(snapshot_app, name="snapshot")


@snapshot_app.callback(invoke_without_command=True)
def _snapshot_root(ctx: typer.Context) -> None:
    """Plain ``pvttrace snapshot`` prints its help (exit 0), as plain ``pvttrace`` does."""
    if ctx.invoked_subcommand is None:
        sys.stdout.write(ctx.get_help() + "\n")
        raise typer.Exit(0)


MaxMacsOpt = Annotated[str | None, typer.Option("--max-macs", help="Budget: total MACs at most this, e.g. 2G.")]
MaxParamsOpt = Annotated[str | None, typer.Option("--max-params", help="Budget: parameters at most this, e.g. 15M.")]
MaxMapOpt = Annotated[
    str | None,
    typer.Option(
        "--max-attention-map",
        help="Budget: largest materialised attention score map of one block at most this, e.g. 64MiB.",
    ),
]


def _parse_budgets(max_macs: str | None, max_params: str | None, max_attention_map: str | None) -> Budgets:
    """The budget options as :class:`pvttrace.snapshot.Budgets` (raises UserInputError on a bad value)."""
    from pvttrace.snapshot import Budgets

    return Budgets(
        max_macs=None if max_macs is None else parse_count(max_macs, "max_macs"),
        max_params=None if max_params is None else parse_count(max_params, "max_params"),
        max_attention_map=None if max_attention_map is None else parse_bytes(max_attention_map, "max_attention_map"),
    )


@snapshot_app.command("write")
@model_options()
def write(
    path: Annotated[
        str, typer.Argument(metavar="PATH", help="Snapshot file to write, e.g. snapshots/b2-800x1333.json.")
    ],
    options: ModelOptions,
    max_macs: MaxMacsOpt = None,
    max_params: MaxParamsOpt = None,
    max_attention_map: MaxMapOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Overwrite PATH even when it is not a readable snapshot or holds another configuration."
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Trace one configuration (the run options) and store its snapshot at PATH, atomically.

    Budgets given here are stored and enforced by every later check; budgets already stored in PATH
    are kept unless given again. An unchanged snapshot is not rewritten.

    Example: pvttrace snapshot write snapshots/b2.json --variant b2 --img 800x1333 --task backbone --max-macs 160G
    Example: pvttrace snapshot write snapshots/timm-b0.json --model timm:pvt_v2_b0 --input-shape 1,3,224,224
    """
    with errors_to_exit_codes():
        spec = options.spec()
        budgets = _parse_budgets(max_macs, max_params, max_attention_map)
        from pvttrace.snapshot import Budgets, load_snapshot, snapshot_from_trace, write_snapshot

        kept = Budgets()
        existing = None
        if os.path.lexists(path):
            try:
                existing = load_snapshot(path)
                kept = existing.budgets
            except TraceFileError as exc:
                if not force:
                    raise TraceFileError(f"{exc}; refusing to overwrite it (pass --force)") from None
        if spec.config is not None:
            warn_config(spec.config.warnings, quiet)
        from pvttrace.tracing.target import trace_target

        with tracing(f"tracing {spec.name}"):
            traced = trace_target(spec, on_note=lambda note: warn([note]))
        snapshot = snapshot_from_trace(traced, kept.overridden_by(budgets))
        if existing is not None and not force and _subject(existing) != _subject(snapshot):
            raise UserInputError(
                f"{path} holds a snapshot of another configuration ({existing.describe()}); pass --force to "
                f"replace it with {snapshot.describe()}"
            )
        written = write_snapshot(path, snapshot)
    from pvttrace.base.units import format_count
    from pvttrace.snapshot import check_budgets
    from pvttrace.snapshot.report import budget_line

    totals = snapshot.totals
    sys.stdout.write(
        f"{'wrote' if written else 'unchanged'} {path}: {snapshot.describe()}; {totals.ops} ops, "
        f"MACs {format_count(totals.macs)}, params {format_count(totals.params)}\n"
    )
    warn([f"{budget_line(v)}; the snapshot is written, but checks will fail" for v in check_budgets(snapshot)])


def _subject(snapshot: Snapshot) -> tuple[object, ...]:
    """What a snapshot is of: its config, or its model spec and input shape."""
    return (snapshot.config, snapshot.model, None if snapshot.config is not None else snapshot.input_shape)


def _model_tracer(path: str, allowed: frozenset[str], allow_all: bool) -> Callable[[str, tuple[int, ...]], Trace]:
    """Re-trace a --model snapshot's spec at its stored input shape, if the command line allows its import.

    A snapshot is data that arrives through pull requests; ``pkg.mod:factory`` would import a module
    from the working directory and call it, so that runs only for specs the user named with
    ``--allow-model SPEC`` or for any with ``--allow-model-import``. ``timm:NAME`` builds a model of the
    installed timm package (no code from the checkout) and is always allowed.
    """

    def trace_model(model: str, input_shape: tuple[int, ...]) -> Trace:
        from pvttrace.cli.parsing import parse_model_spec
        from pvttrace.tracing.target import trace_target

        spec = parse_model_spec(model, input_shape=",".join(map(str, input_shape)))
        if spec.source == "import" and not allow_all and spec.target not in allowed:
            from pvttrace.base.jsonio import printable

            shown = printable(model)
            raise UserInputError(
                f"{path} names model {shown!r}, which would import and run Python code from the working directory; "
                f"allow it with --allow-model {shown} (or --allow-model-import for every model)"
            )
        return trace_target(spec, on_note=lambda note: warn([note]))

    return trace_model


def _snapshot_files(paths: list[str]) -> list[str]:
    """Files as given; directories expand to the ``*.json`` files below them, sorted."""
    files: list[str] = []
    for path in paths:
        if not path.strip():
            raise UserInputError(f"path={path!r} is empty; give a snapshot file or a directory")
        if not os.path.isdir(path):
            files.append(path)
            continue
        found = sorted(
            os.path.join(root, name)
            for root, _dirs, names in os.walk(path)
            for name in names
            if name.endswith(".json") and not name.startswith(".")
        )
        if not found:
            raise UserInputError(f"{path} is a directory with no snapshot files (*.json)")
        files.extend(found)
    return files


@snapshot_app.command("check")
def check(
    paths: Annotated[
        list[str], typer.Argument(metavar="PATH...", help="Snapshot files, or directories searched for *.json files.")
    ],
    rtol: Annotated[
        float,
        typer.Option("--rtol", help="Relative tolerance on costs (MACs, bytes, params); shapes are always exact."),
    ] = 0.0,
    update: Annotated[
        bool, typer.Option("--update", help="Rewrite files that differ (or are unreadable but keep their config).")
    ] = False,
    max_macs: MaxMacsOpt = None,
    max_params: MaxParamsOpt = None,
    max_attention_map: MaxMapOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Op lines shown per stage (0: all).")] = 10,
    allow_model: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-model",
            help="Allow --model snapshots of this PACKAGE.MODULE:FACTORY spec to import and run it (repeatable).",
        ),
    ] = None,
    allow_model_import: Annotated[
        bool,
        typer.Option(
            "--allow-model-import",
            help="Allow every --model snapshot to import and run its PACKAGE.MODULE:FACTORY (trusted files only).",
        ),
    ] = False,
    timeout: TimeoutOpt = None,
) -> None:
    """Re-trace the configuration stored in each snapshot (one trace per file) and compare.

    Exit 0 when all match, 1 with a report naming stages and ops when something differs or a budget
    (stored in the file, or given here) is exceeded, 2 when a file is missing or invalid.

    Example: pvttrace snapshot check snapshots/ --max-macs 5G
    """
    with errors_to_exit_codes():
        if not math.isfinite(rtol) or rtol < 0:
            raise UserInputError(f"rtol={rtol} must be a finite number >= 0")
        if limit < 0:
            raise UserInputError(f"limit={limit} must be 0 (show all) or positive")
        budgets = _parse_budgets(max_macs, max_params, max_attention_map)
        check_timeout(timeout)
        from pvttrace.cli.parsing import parse_model_spec

        allowed = frozenset(parse_model_spec(spec).target for spec in allow_model or [])
        files = _snapshot_files(paths)
    from pvttrace.snapshot import check_snapshot_file
    from pvttrace.snapshot.report import result_lines
    from pvttrace.tracing.target import builtin_spec, trace_target

    worst = 0
    failed = invalid = 0
    for path in files:
        try:
            with tracing(f"checking {path}", timeout):
                result = check_snapshot_file(
                    path,
                    trace=lambda config: trace_target(builtin_spec(config)),
                    rtol=rtol,
                    budgets=budgets,
                    update=update,
                    trace_model=_model_tracer(path, allowed, allow_model_import),
                )
        except (UserInputError, TraceError) as exc:
            message = str(exc)
            # Name the file, also when the error comes from re-tracing its model (an import that fails).
            print_error(message if path in message else f"{path}: {message}")
            worst, invalid = max(worst, exit_code(exc)), invalid + 1
            continue
        sys.stdout.write("\n".join(result_lines(result, limit=limit)) + "\n")
        if not result.passed:
            worst, failed = max(worst, EXIT_CHECK_FAILED), failed + 1
    if len(files) > 1:
        ok = len(files) - failed - invalid
        sys.stdout.write(f"{len(files)} snapshot(s): {ok} ok, {failed} failed, {invalid} invalid\n")
    if worst:
        raise typer.Exit(worst)
