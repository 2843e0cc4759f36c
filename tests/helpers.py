"""Helpers shared by the test files: the CLI invoker, the pinned console and the golden-file check.

Golden files live in ``tests/expected``. After an intended change to a view, rewrite them with
``PVTTRACE_UPDATE_EXPECTED=1 python -m pytest tests/...`` and review the diff before committing.
"""

from __future__ import annotations

import io
import os
import pathlib

from rich.console import Console
from typer.testing import CliRunner

EXPECTED = pathlib.Path(__file__).parent / "expected"
#: Set PVTTRACE_UPDATE_EXPECTED=1 to rewrite the golden files instead of comparing with them.
UPDATE_EXPECTED = os.environ.get("PVTTRACE_UPDATE_EXPECTED") == "1"


def invoke(*args: str) -> tuple[int, str, str]:
    """Run ``pvttrace ARGS`` in this process: (exit code, stdout, stderr)."""
    from pvttrace.cli import app  # here, so that a test file that only renders does not load every command

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def pinned_console(width: int) -> Console:
    """A console that renders the same bytes on every machine: fixed width, no colour, no environment."""
    return Console(width=width, file=io.StringIO(), color_system=None, _environ={}, highlight=False)


def rendered(renderable: object, width: int) -> str:
    """What ``renderable`` prints on a :func:`pinned_console` of ``width`` columns."""
    console = pinned_console(width)
    console.print(renderable)
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def check_expected(name: str, text: str) -> None:
    """``text`` equals the golden file ``tests/expected/NAME`` (written instead under PVTTRACE_UPDATE_EXPECTED=1)."""
    path = EXPECTED / name
    if UPDATE_EXPECTED:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with PVTTRACE_UPDATE_EXPECTED=1 to create it"
    assert text == path.read_text(encoding="utf-8")
