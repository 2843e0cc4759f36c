"""Run pvttrace commands in-process inside a sandbox directory and check the hardening invariants.

Every invocation, whatever its arguments or input files, must:

* end with exit code 0, 1 or 2, and let no exception but ``SystemExit`` escape (no traceback);
* write only ``error: ...`` and ``warning: ...`` lines to stderr; on exit 2 exactly one ``error:`` line
  (``snapshot check`` of several files: at most one per file), on exit 0 none;
* change no file unless the command is meant to write it: a file named on the command line by a
  writing command (``snapshot write PATH``, ``--plot FILE``, ``snapshot check --update``); such a file
  must then hold a loadable snapshot (plots excepted), ``snapshot write`` without ``--force`` must
  leave an existing file that is not a snapshot alone, and no temporary file may be left behind.

The sandbox is a directory of seed files (valid, stale and broken snapshots, a trace, garbage) that
the generated command lines name; it is restored after every case.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer.main
from typer.testing import CliRunner

from pvttrace.base.errors import TraceFileError
from pvttrace.cli import app

#: Commands that write the files named on their command line (as command paths).
WRITING_COMMANDS = frozenset({("snapshot", "write")})
#: Options that make any command write the files named on its command line.
WRITING_OPTIONS = frozenset({"--plot", "--update"})
#: How ``snapshot write`` is told to replace a file that is not a snapshot.
FORCE_OPTION = "--force"

#: The configuration of the seed snapshots: 4 stages, 1 block each, 32x32 input (about 10 ms to trace).
SMALL_CONFIG = {"variant": "b0", "depths": "1,1,1,1", "img": "32"}
#: A 1-stage v1 classifier, for a second, structurally different seed.
ONE_STAGE_CONFIG = {
    "variant": "tiny",
    "dims": "8",
    "heads": "2",
    "depths": "1",
    "mlp_ratios": "2",
    "sr": "1",
    "patch": "4",
    "img": "16x12",
    "num_classes": 5,
}


class InvocationTimeout(BaseException):
    """Raised by the alarm when one invocation runs past its time limit (a hang is a finding too)."""


@dataclass(frozen=True)
class Outcome:
    """What one invocation did."""

    args: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    error: str | None
    """The traceback of an exception other than SystemExit, or None."""


def _seed_texts() -> dict[str, bytes]:
    """The sandbox's seed files (traced once per process)."""
    import json

    from pvttrace.cli.options import config_from_text
    from pvttrace.records import dumps_json
    from pvttrace.snapshot import Budgets, dumps_snapshot, snapshot_from_trace
    from pvttrace.tracing.recorder import trace_config

    small = trace_config(config_from_text(**SMALL_CONFIG))
    one_stage = trace_config(config_from_text(**ONE_STAGE_CONFIG))
    good = dumps_snapshot(snapshot_from_trace(small))
    stale = json.loads(good)
    stale["totals"]["macs"] += 1
    budget = dumps_snapshot(snapshot_from_trace(small, Budgets(max_macs=1)))
    texts = {
        "good.json": good,
        "one-stage.json": dumps_snapshot(snapshot_from_trace(one_stage)),
        "stale.json": dumps_json(stale),
        "budget.json": budget,
        "trace.json": dumps_json(small.to_dict()),
        "trace-one-stage.json": dumps_json(one_stage.to_dict()),
        "garbage.json": "this is not JSON {\n",
        "empty.json": "",
        "snaps/a.json": good,
        "snaps/b.json": dumps_json(stale),
    }
    seeds = {name: text.encode() for name, text in texts.items()}
    seeds["latin1.json"] = b'{"schema": "pvttrace.snapshot/1", "caf\xe9": 1}\n'
    return seeds


_SEEDS: dict[str, bytes] | None = None


def seed_files() -> dict[str, bytes]:
    """Relative path -> bytes of every seed file (built once per process)."""
    global _SEEDS
    if _SEEDS is None:
        _SEEDS = _seed_texts()
    return dict(_SEEDS)


#: Directories the sandbox holds besides those of its seed files.
SEED_DIRECTORIES = ("emptydir",)
#: Entries that are not regular files (issue 18): a FIFO, links to a device, and a link to a seed snapshot.
SEED_FIFOS = ("fifo.json",)
SEED_LINKS = {"zero.json": "/dev/zero", "null.json": "/dev/null", "link.json": "good.json"}
#: Lines the hostile zoo's models print (their stdout goes to stderr while they are traced).
MODEL_OUTPUT = ("hello from the factory", "hello from the model's forward")


class Sandbox:
    """A directory of seed files that commands run in; :meth:`restore` undoes whatever a case did."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seeds = seed_files()
        self.restore()

    def files(self) -> dict[str, bytes]:
        """Relative path -> bytes of every file now in the sandbox."""
        found: dict[str, bytes] = {}
        for directory, _dirs, names in os.walk(self.root):
            for name in names:
                path = os.path.join(directory, name)
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    data = b"<link to " + os.fsencode(os.readlink(path)) + b">"
                elif not stat.S_ISREG(info.st_mode):
                    data = b"<not a regular file: %o>" % stat.S_IFMT(info.st_mode)
                else:
                    data = Path(path).read_bytes()
                found[os.path.relpath(path, self.root)] = data
        return found

    def restore(self) -> None:
        """Put back the seed files and remove everything else."""
        for entry in self.root.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for relative, data in self.seeds.items():
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for relative in SEED_DIRECTORIES:
            (self.root / relative).mkdir(exist_ok=True)
        for relative in SEED_FIFOS:
            os.mkfifo(self.root / relative)
        for relative, target in SEED_LINKS.items():
            os.symlink(target, self.root / relative)

    def write(self, relative: str, data: bytes) -> None:
        """Add (or replace) one file for the next case; :meth:`restore` removes it again."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run with the sandbox as the working directory."""
        previous = os.getcwd()
        os.chdir(self.root)
        try:
            yield
        finally:
            os.chdir(previous)


_COMMAND: Any = None


def _command() -> Any:
    """The click command of the app, built once (typer rebuilds it on every CliRunner.invoke)."""
    global _COMMAND
    if _COMMAND is None:
        _COMMAND = typer.main.get_command(app)
    return _COMMAND


def _on_alarm(signum: int, frame: Any) -> None:
    raise InvocationTimeout


def invoke(args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout_s: int = 0) -> Outcome:
    """Run ``pvttrace ARGS`` in this process, as ``typer.testing.CliRunner.invoke`` does.

    ``timeout_s`` > 0 arms SIGALRM (main thread only): an invocation that runs longer is recorded as a hang.
    """
    runner = CliRunner()
    error: str | None = None
    exit_code = 0
    with runner.isolation(env=env) as streams:
        previous = signal.signal(signal.SIGALRM, _on_alarm) if timeout_s else None
        if timeout_s:
            signal.alarm(timeout_s)
        try:
            _command().main(args=list(args), prog_name="pvttrace")
        except SystemExit as exc:
            code = exc.code
            exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        except InvocationTimeout:
            error = f"hang: still running after {timeout_s} s"
            exit_code = -1
        except Exception:
            error = traceback.format_exc()
            exit_code = -1
        finally:
            if timeout_s:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, previous)
            sys.stdout.flush()
            sys.stderr.flush()
            stdout = streams[0].getvalue().decode("utf-8", "replace")
            stderr = streams[1].getvalue().decode("utf-8", "replace")
    return Outcome(tuple(args), exit_code, stdout, stderr, error)


# ---------------------------------------------------------------------------------- invariants
def command_path(args: Sequence[str]) -> tuple[str, ...]:
    """The (sub)command names at the start of ``args``, e.g. ``("snapshot", "check")``."""
    path: list[str] = []
    group: Any = _command()
    for token in args:
        if token == "--":  # click reads the subcommand after "--" all the same: "snapshot -- write"
            continue
        commands = getattr(group, "commands", None)
        if not commands or token not in commands:
            break
        path.append(token)
        group = commands[token]
    return tuple(path)


def _option_names(args: Sequence[str]) -> set[str]:
    return {token.split("=", 1)[0] for token in args if token.startswith("-")}


def _named_files(args: Sequence[str], root: Path) -> set[str]:
    """Sandbox-relative paths the command line names (``--opt=value`` values included)."""
    named: set[str] = set()
    for token in args:
        for value in (token, token.split("=", 1)[-1]):
            if not value or "\x00" in value:
                continue
            try:
                full = os.path.normpath(os.path.join(root, value))
            except ValueError:
                continue
            relative = os.path.relpath(full, root)
            if not relative.startswith(".."):
                named.add(relative)
                if os.path.islink(full):  # a write goes through a symlink to its target
                    target = os.path.relpath(os.path.realpath(full), os.path.realpath(root))
                    if not target.startswith(".."):
                        named.add(target)
    return named


def _under(path: str, named: set[str]) -> bool:
    return path in named or any(n == "." or path.startswith(n.rstrip("/") + "/") for n in named)


def _loads_as_snapshot(data: bytes) -> bool:
    from pvttrace.snapshot import loads_snapshot

    try:
        loads_snapshot(data.decode("utf-8"))
    except (TraceFileError, UnicodeDecodeError):
        return False
    return True


@dataclass
class Check:
    """The problems found in one outcome (empty: every invariant held)."""

    problems: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.problems.append(message)


def _where_raised(error: str) -> str:
    """`` at pvttrace/x.py:12 in f``: the innermost pvttrace frame of a formatted traceback."""
    frames = re.findall(r'File "([^"]*)", line (\d+), in (\S+)', error)
    ours = [f for f in frames if "/pvttrace/" in f[0]] or frames
    if not ours:
        return ""
    file, line, function = ours[-1]
    return f" at {file[file.rfind('pvttrace/') :] if 'pvttrace/' in file else file}:{line} in {function}"


def check_outcome(outcome: Outcome, before: Mapping[str, bytes], after: Mapping[str, bytes], root: Path) -> list[str]:
    """Every invariant of the module docstring that ``outcome`` breaks, as one line each."""
    check = Check()
    if outcome.error is not None:
        check.fail(f"exception escaped{_where_raised(outcome.error)}: {outcome.error.strip().splitlines()[-1]}")
        return check.problems
    if outcome.exit_code not in (0, 1, 2):
        check.fail(f"exit code {outcome.exit_code} is not 0, 1 or 2")
    for stream, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
        if "Traceback (most recent call last)" in text:
            check.fail(f"traceback printed on {stream}")
    lines = outcome.stderr.splitlines()
    if outcome.stderr and not outcome.stderr.endswith("\n"):
        check.fail("stderr does not end with a newline")
    strays = [line for line in lines if not line.startswith(("error: ", "warning: ")) and line not in MODEL_OUTPUT]
    if strays and outcome.exit_code == 2:  # notes such as "plot written to FILE" only on success
        check.fail(f"exit 2 with a stderr line that is neither 'error: ' nor 'warning: ': {strays[0][:200]!r}")
    errors = [line for line in lines if line.startswith("error: ")]
    path = command_path(outcome.args)
    named = _named_files(outcome.args, root)
    if outcome.exit_code == 2:
        # snapshot check reports each invalid file (directories expand to many) on its own line.
        expected = len(errors) >= 1 if path == ("snapshot", "check") else len(errors) == 1
        if not expected:
            check.fail(f"exit 2 with {len(errors)} 'error:' lines on stderr")
    if outcome.exit_code == 0 and errors:
        check.fail(f"exit 0 with an error line: {errors[0][:200]!r}")
    if outcome.exit_code == 1 and not (outcome.stdout.strip() or errors):
        check.fail("exit 1 without a report on stdout or an error line")
    _check_files(check, outcome, before, after, path, named)
    return check.problems


def _check_files(
    check: Check,
    outcome: Outcome,
    before: Mapping[str, bytes],
    after: Mapping[str, bytes],
    path: tuple[str, ...],
    named: set[str],
) -> None:
    options = _option_names(outcome.args)
    writer = path in WRITING_COMMANDS or bool(options & WRITING_OPTIONS)
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if os.path.basename(name).startswith(".") and name.endswith(".tmp"):
            check.fail(f"temporary file left behind: {name}")
            continue
        if new is None:
            check.fail(f"file removed: {name}")
            continue
        if not (writer and _under(name, named)):
            check.fail(f"file {'changed' if old is not None else 'created'} without --update or a write: {name}")
            continue
        if path in WRITING_COMMANDS and old is not None and FORCE_OPTION not in options and not _loads_as_snapshot(old):
            check.fail(f"snapshot write replaced {name}, which was not a snapshot, without --force")
        if "--plot" not in options and not _loads_as_snapshot(new):
            check.fail(f"{name} was written but does not load as a snapshot")


def run_case(
    sandbox: Sandbox, args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout_s: int = 0
) -> tuple[Outcome, list[str]]:
    """Invoke ``args`` in ``sandbox``, check every invariant, restore the sandbox."""
    before = sandbox.files()
    try:
        with sandbox.inside():
            outcome = invoke(args, env=env, timeout_s=timeout_s)
        problems = check_outcome(outcome, before, sandbox.files(), sandbox.root)
    finally:
        sandbox.restore()
    return outcome, problems


def describe_failure(outcome: Outcome, problems: Sequence[str]) -> str:
    """A readable report of a failed case, with the command line to reproduce it."""
    import shlex

    tail = "\n    ".join((outcome.error or "").strip().splitlines()[-6:])
    shown = [arg if len(arg) <= 80 else f"{arg[:40]}...({len(arg)} chars)" for arg in outcome.args]
    return (
        f"pvttrace {shlex.join(shown)}\n  exit {outcome.exit_code}\n  "
        + "\n  ".join(problems)
        + f"\n  stderr: {outcome.stderr[-1000:]!r}"
        + (f"\n  traceback (end):\n    {tail}" if tail else "")
    )


def failure_key(problem: str) -> str:
    """A problem line with its quoted values and numbers blanked, so that one bug counts once."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", problem)[:160]
