"""The ``pvttrace`` command line. Importing this package registers every command on :data:`app`.

Each command lives in its own module and imports the shared option declarations and error mapping
from :mod:`pvttrace.cli.common`; nothing below this package imports typer.
"""

from __future__ import annotations

from pvttrace.base.gcpause import gc_paused
from pvttrace.cli import diff, fit, formula, run, snapshot, sweep  # noqa: F401  (each registers its commands)
from pvttrace.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point.

    The cyclic garbage collector is paused for the whole command. A command is one short process whose
    objects (torch's modules, imported by the command; a trace's records, events and models) nearly all live
    until it ends, and each automatic collection scans all of them again: about a tenth of importing torch, and
    more in long sweeps. Traces create no reference cycles (tests/test_performance.py), so nothing piles up;
    reference counting frees everything as before.
    """
    with gc_paused():
        app()
