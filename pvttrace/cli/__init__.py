"""The ``pvttrace`` command line. Importing this package registers every command on :data:`app`.

Each command lives in its own module and imports the shared option declarations and error mapping
from :mod:`pvttrace.cli.common`; nothing below this package imports typer.
"""

from __future__ import annotations

from pvttrace.cli import diff, fit, formula, run, snapshot, sweep  # noqa: F401  (each registers its commands)
from pvttrace.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
