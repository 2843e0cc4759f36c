"""Every command, in every format, at 80, 100 and 160 columns: no number is ever cut.

At a narrow width a table drops whole low-priority columns (and says so in one dim line) instead
of cutting cells, so ``894.66 K`` never turns into ``894.… K`` and a ratio never into ``…``.
These tests render each command through the CLI and check, line by line, that nothing is wider
than the console, that no cell holding ``…`` held a digit, and that key values appear whole.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pvttrace.cli import app

WIDTHS = (80, 100, 160)

#: (name, arguments, values that must appear whole at every width). Table formats get --width.
COMMANDS: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("run", ["run", "--variant", "tiny", "--img", "224"], ("894.66 K", "600.25 KiB", "[1, 1, 3136, 49]", "12.85 M")),
    ("run --ops", ["run", "--variant", "tiny", "--ops"], ("537.89 M", "411.04 M", "784 KiB", "copy", "view")),
    ("run --all", ["run", "--variant", "b0", "--all"], ("[1, 32, 56, 56]",)),
    ("run --stage", ["run", "--variant", "tiny", "--stage", "1,2", "--source"], ("401.41 K",)),
    ("run --kind", ["run", "--variant", "tiny", "--kind", "sr_conv,matmul"], ("12.85 M", "9.83 M")),
    ("run big", ["run", "--variant", "tiny", "--img", "800x1333", "--ops", "-q"], ("[1, 1, 66600, 1025]",)),
    ("run --memory", ["run", "--variant", "tiny", "--memory", "--train"], ("65.59 MiB", "<- peak")),
    ("run --coverage", ["run", "--variant", "tiny", "--coverage"], ("nn.functional.conv2d",)),
    ("run --modules", ["run", "--variant", "tiny", "--modules"], ("Total params: 13,229,288", "[1, 3136, 64]")),
    ("variants", ["variants"], ("64,128,320,512", "3,6,40,3")),
    ("diff", ["diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1"], ("37.52 MiB  x64", "x2.49", "3.04 G x5.65")),
    (
        "diff --ops",
        ["diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "--ops", "--stage", "2"],
        ("[1, 2, 784, 784]", "* shape"),
    ),
    ("diff 3", ["diff", "--variant", "b0", "--variant", "b1", "--variant", "b2"], ("x7.11", "x6.92")),
    ("sweep", ["sweep", "--variant", "tiny", "--img", "224,512"], ("N^",)),
    ("fit", ["fit", "--memory", "2GiB", "--variant", "tiny"], ("largest batch that fits",)),
    ("fit --train", ["fit", "--memory", "4GiB", "--variant", "b0", "--train"], ("adamw state",)),
]
FORMATS = {
    "run": ("markdown", "csv", "json"),
    "run --ops": ("markdown",),
    "diff": ("markdown", "csv", "json"),
    "diff --ops": ("markdown",),
    "sweep": ("markdown", "csv", "json"),
    "fit": ("json",),
}

_CELL_SPLIT = re.compile(r"\s{2,}|[│┃|]")


def cut_numbers(text: str) -> list[str]:
    """Cells (runs between column separators) where ``…`` sits next to, or in a cell with, a digit."""
    bad = []
    for line in text.splitlines():
        if "…" not in line:
            continue
        for cell in _CELL_SPLIT.split(line):
            if "…" in cell and re.search(r"\d", cell):
                bad.append(cell.strip())
    return bad


@pytest.fixture(scope="module")
def module_runner() -> CliRunner:
    return CliRunner()


def _run(runner: CliRunner, args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return result.stdout


@pytest.mark.parametrize(("name", "args", "values"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_tables_fit_without_cutting_a_number(
    module_runner: CliRunner, name: str, args: list[str], values: tuple[str, ...]
) -> None:
    for width in WIDTHS:
        out = _run(module_runner, [*args, "--width", str(width)])
        too_wide = [line for line in out.splitlines() if len(line) > width]
        assert not too_wide, (name, width, too_wide[:3])
        assert not cut_numbers(out), (name, width, cut_numbers(out))
        for value in values:
            assert value in out, (name, width, value)
        dropped = [line for line in out.splitlines() if line.startswith("(not shown at")]
        for line in dropped:
            assert line.startswith(f"(not shown at {width} columns: ")
        if width == 160 and name in ("run", "run --ops", "diff", "variants"):
            assert not dropped, (name, out)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_keeps_whole_numbers(module_runner: CliRunner, name: str) -> None:
    args = next(a for n, a, _ in COMMANDS if n == name)
    for fmt in FORMATS[name]:
        out = _run(module_runner, [*args, "--format", fmt])
        assert "…" not in out, (name, fmt)
        if fmt == "json":
            json.loads(out)
        if fmt == "csv":
            rows = out.splitlines()
            assert len({row.count(",") for row in rows[:2]}) == 1 or '"' in out


def test_snapshot_reports_fit_and_format_every_value(module_runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "tiny.json"
    _run(module_runner, ["snapshot", "write", str(path), "--variant", "tiny"])
    document = json.loads(path.read_text())
    document["totals"]["peak_memory_bytes"] += 9_854_440
    document["totals"]["peak_op"] = 20
    path.write_text(json.dumps(document))
    result = module_runner.invoke(app, ["snapshot", "check", str(path)])
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if "peak" in line]
    assert any(re.search(r"peak memory \d[\d.]* MiB -> \d[\d.]* MiB \(x", line) for line in lines), lines
    assert any("peak op #20 -> #" in line and "(x" not in line for line in lines), lines
    assert not cut_numbers(result.stdout)


def test_default_run_fits_one_screen_with_the_attention_walkthrough(module_runner: CliRunner) -> None:
    out = _run(module_runner, ["run", "--variant", "tiny", "--img", "224", "--width", "80"])
    lines = out.splitlines()
    assert len(lines) <= 50, len(lines)
    for step, op, shape in (
        ("q projection", "linear", "[1, 3136, 64]"),
        ("SR conv", "conv2d", "[1, 64, 7, 7]"),
        ("kv projection", "linear", "[1, 49, 128]"),
        ("scores q@k^T", "@", "[1, 1, 3136, 49]"),
        ("attention@v", "@", "[1, 1, 3136, 64]"),
    ):
        assert any(step in line and f" {op} " in line and shape in line for line in lines), step
    assert "block1.0.attn" in out
    assert lines[-1].startswith("more: --ops") and "--all" in lines[-1] and "--stage" in lines[-1]


def test_piped_output_uses_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    from pvttrace.cli import common as cli

    monkeypatch.setattr(cli, "terminal_width", lambda: 91)
    assert cli.make_console(None).width == 91
    monkeypatch.setenv("COLUMNS", "85")
    assert cli.make_console(None).width == 85
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr(cli, "terminal_width", lambda: None)
    assert cli.make_console(None).width == 120
    assert cli.make_console(70).width == 70


def test_a_pipe_from_a_real_terminal_takes_its_width() -> None:
    """stdout piped (``| less``) while the user's terminal, 90 columns wide, is still there (here: stdin)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    leader, follower = pty.openpty()
    try:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 90, 0, 0))
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        cli = os.path.join(os.path.dirname(sys.executable), "pvttrace")
        done = subprocess.run(
            [cli, "variants"], stdin=follower, capture_output=True, text=True, env=env, check=True, timeout=120
        )
    finally:
        os.close(leader)
        os.close(follower)
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 90
    assert any("official name" in line for line in lines)  # 90 columns: the official names fit
    assert len(lines[3]) > 80
