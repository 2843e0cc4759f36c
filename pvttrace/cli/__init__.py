"""The ``pvttrace`` command line. :data:`app` is the typer application with every command registered.

Each command lives in its own module, which registers it on :data:`pvttrace.cli.common.app` when imported, and
imports the shared option declarations and error mapping from :mod:`pvttrace.cli.common`; nothing below this
package imports typer.

A command line that names its command (``pvttrace run ...``) imports and builds only that command's module:
typer turns every registered command into a click command before parsing, and the other modules' imports and
option specs are a fixed cost that ``run`` would otherwise pay (25-45 ms measured, against a floor of ``import
torch``). Anything else (``pvttrace --help``, an unknown or misspelt command) registers every command. Commands are
listed in the order their modules were first imported: a process that registers one command and later all of them
(a test, not the console script, which runs one command line) lists that one first.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pvttrace.base.gcpause import gc_paused

if TYPE_CHECKING:
    import typer

__all__ = ["COMMAND_MODULES", "app", "command_app", "main"]

#: The module under :mod:`pvttrace.cli` that registers each command. Modules are imported in this order, which is
#: the order ``pvttrace --help`` lists their commands (command groups such as ``snapshot`` after the commands).
COMMAND_MODULES: Mapping[str, str] = {
    "diff": "diff",
    "fit": "fit",
    "formula": "formula",
    "run": "run",
    "variants": "run",
    "snapshot": "snapshot",
    "sweep": "sweep",
}


def command_app(argv: Sequence[str] | None = None) -> typer.Typer:
    """The application, with the commands that the command line ``argv`` (without the program name) can reach.

    Only the named command's module when ``argv`` starts with a command name; every command otherwise (or when
    ``argv`` is None). The root takes no option with a value, so the first word is the command or an option.
    """
    named = COMMAND_MODULES.get(argv[0]) if argv else None
    modules = [named] if named is not None else list(dict.fromkeys(COMMAND_MODULES.values()))
    for module in modules:
        importlib.import_module(f"{__name__}.{module}")
    from pvttrace.cli.common import app

    return app


def __getattr__(name: str) -> typer.Typer:
    # ``from pvttrace.cli import app``: the application with every command (tests, typer's CliRunner).
    if name == "app":
        return command_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point.

    The cyclic garbage collector is paused for the whole command. A command is one short process whose
    objects (torch's modules, imported by the command; a trace's records, events and models) nearly all live
    until it ends, and each automatic collection scans all of them again: about a tenth of importing torch, and
    more in long sweeps. Traces create no reference cycles (tests/test_performance.py), so nothing piles up;
    reference counting frees everything as before.
    """
    with gc_paused():
        command_app(sys.argv[1:])()
