"""What the command line does around a trace that runs the user's code: stdout, progress, timeout, Ctrl-C.

* The model's own ``print`` output goes to stderr while it is traced, so it can never corrupt a
  ``--format json`` report on stdout.
* A trace still running after :data:`PROGRESS_AFTER_S` seconds shows a progress line on stderr
  (rich's spinner and elapsed time), only when stderr is a terminal; it disappears when done.
* ``--timeout SECONDS`` stops a trace that runs longer (main thread, POSIX interval timer).

Ctrl-C is turned into one ``error: interrupted`` line by :mod:`pvttrace.cli.common`.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pvttrace.base.errors import TraceError, UserInputError

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["PROGRESS_AFTER_S", "TimeoutOpt", "check_timeout", "tracing"]

#: Seconds after which a running trace shows a progress line (on a terminal).
PROGRESS_AFTER_S = 2.0

TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", help="Stop with an error when tracing takes longer than this many seconds."),
]


class _TimedOut(BaseException):
    """Raised by the timer; a BaseException, so that no ``except Exception`` in the model swallows it."""


def check_timeout(timeout: float | None) -> None:
    """``--timeout`` is a positive, finite number of seconds (raises UserInputError otherwise)."""
    if timeout is not None and not (math.isfinite(timeout) and 0 < timeout <= 7 * 24 * 3600):
        raise UserInputError(f"timeout={timeout} must be a positive number of seconds, at most one week")


@contextlib.contextmanager
def _progress(label: str) -> Iterator[None]:
    if not sys.stderr.isatty():
        yield
        return
    began = time.monotonic()
    lock = threading.Lock()
    state: dict[str, Any] = {"progress": None, "done": False}

    def start() -> None:
        with lock:
            if not state["done"]:
                state["progress"] = _progress_line(label, began)
                state["progress"].start()

    timer = threading.Timer(PROGRESS_AFTER_S, start)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["progress"] is not None:
                state["progress"].stop()


def _progress_line(label: str, began: float) -> Progress:
    """The progress line of a trace that began at ``began`` (``time.monotonic``), not yet started.

    Built only once the trace has run :data:`PROGRESS_AFTER_S`: most traces end sooner, and importing and building it
    would cost each of them a few milliseconds.
    """
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    task = progress.add_task(label, total=None)  # the label is shown as it is: no markup, no format fields
    progress.tasks[task].start_time = began  # the elapsed time counts from the trace's start, not the line's
    return progress


@contextlib.contextmanager
def _deadline(timeout: float | None, label: str) -> Iterator[None]:
    if timeout is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise _TimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    # An outer timer (a test harness's alarm) is put back afterwards with the time it had left.
    outer, _interval = signal.setitimer(signal.ITIMER_REAL, timeout)
    started = time.monotonic()
    try:
        yield
    except _TimedOut:
        raise TraceError(f"{label} took longer than --timeout {timeout:g} s; stopped") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001))


@contextlib.contextmanager
def tracing(label: str, timeout: float | None = None) -> Iterator[None]:
    """Run the block (which traces ``label``) with the model's stdout on stderr, a progress line and a deadline."""
    with _deadline(timeout, label), _progress(label), contextlib.redirect_stdout(sys.stderr):
        yield
