"""Run many fuzzed cases and report what happened (``python benchmarks/fuzz.py --help``).

Two campaigns:

* ``cli``: whole command lines from :func:`fuzz.cli_strategies.command_lines`, with an odd environment
  in a share of them;
* ``files``: one damaged snapshot or trace file per case (:func:`fuzz.file_strategies.fuzzed_files`),
  read by ``snapshot check``, ``diff`` or overwritten by ``snapshot write``.

Every case is checked by :func:`fuzz.harness.check_outcome`. Failures are collected rather than raised,
so one run reports every distinct failure it met; hypothesis does not shrink them here (the bounded
run in tests/test_fuzz.py raises and shrinks instead). Each invocation has a time limit (SIGALRM), so
a hang is reported as a failure, not waited out.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from fuzz.cli_strategies import command_lines, environments
from fuzz.file_strategies import FUZZED, file_commands, fuzzed_files
from fuzz.harness import Outcome, Sandbox, command_path, describe_failure, failure_key, run_case


@dataclass
class Report:
    """Counts of one campaign."""

    kind: str
    cases: int = 0
    exit_codes: Counter[int] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    distinct: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)
    """First problem line -> the first failing case that showed it."""
    seconds: float = 0.0
    slowest: tuple[float, str] = (0.0, "")

    def record(self, outcome: Outcome, problems: list[str], seconds: float, label: str, key: str) -> None:
        self.cases += 1
        self.exit_codes[outcome.exit_code] += 1
        self.commands[label] += 1
        self.distinct.add(key)
        if seconds > self.slowest[0]:
            self.slowest = (seconds, shlex.join(outcome.args)[:300])
        if problems:
            self.failures.setdefault(failure_key(problems[0]), describe_failure(outcome, problems))

    def summary(self) -> str:
        codes = ", ".join(f"exit {code}: {count}" for code, count in sorted(self.exit_codes.items()))
        commands = ", ".join(f"{name}: {count}" for name, count in self.commands.most_common())
        lines = [
            f"{self.kind}: {self.cases} cases in {self.seconds:.0f} s "
            f"({1000 * self.seconds / max(1, self.cases):.1f} ms per case), {len(self.distinct)} distinct; {codes}",
            f"  by command: {commands}",
            f"  slowest case: {self.slowest[0]:.2f} s: {self.slowest[1]}",
            f"  distinct failures: {len(self.failures)}",
        ]
        lines.extend("  FAIL " + text.replace("\n", "\n       ") for text in self.failures.values())
        return "\n".join(lines)


def _label(args: list[str]) -> str:
    return " ".join(command_path(args)) or "(root)"


def run_campaign(
    kind: str, examples: int, *, seed_value: int, timeout_s: int, progress: Callable[[str], Any]
) -> Report:
    """Run ``examples`` cases of ``kind`` (``cli`` or ``files``) and return the counts."""
    report = Report(kind)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"pvttrace-fuzz-{kind}-") as directory:
        sandbox = Sandbox(Path(directory))
        step = max(1, examples // 20)

        def one(args: list[str], env: dict[str, str], data: bytes | None) -> None:
            if data is not None:
                sandbox.write(FUZZED, data)
            begin = time.perf_counter()
            outcome, problems = run_case(sandbox, args, env=env, timeout_s=timeout_s)
            label = _label(args) if data is None else "file: " + _label(args)
            key = shlex.join(args) + repr(sorted(env.items())) + (hashlib.sha1(data).hexdigest() if data else "")
            report.record(outcome, problems, time.perf_counter() - begin, label, key)
            if report.cases % step == 0:
                progress(f"{kind}: {report.cases}/{examples} cases, {time.perf_counter() - started:.0f} s, "
                         f"{len(report.failures)} distinct failures")

        config = settings(
            max_examples=examples,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        if kind == "cli":
            strategy = st.tuples(command_lines(), environments, st.none())
        else:
            strategy = st.tuples(file_commands(), st.just({}), fuzzed_files())

        @seed(seed_value)
        @config
        @given(strategy)
        def campaign(case: tuple[list[str], dict[str, str], bytes | None]) -> None:
            one(*case)

        campaign()
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; exit 1 when any case failed."""
    parser = argparse.ArgumentParser(description="Fuzz the pvttrace CLI and its snapshot/trace files.")
    parser.add_argument("--cli", type=int, default=1000, help="fuzzed command lines to run (default 1000)")
    parser.add_argument("--files", type=int, default=1000, help="fuzzed snapshot/trace files to run (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    parser.add_argument("--timeout", type=int, default=60, help="seconds one invocation may take (default 60)")
    parser.add_argument("--max-memory-gib", type=float, default=8.0,
                        help="address-space limit of this process (RLIMIT_AS), so a blow-up fails instead of swapping")
    options = parser.parse_args(argv)
    limit = int(options.max_memory_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    failed = False
    for kind, count in (("cli", options.cli), ("files", options.files)):
        if count <= 0:
            continue
        report = run_campaign(kind, count, seed_value=options.seed, timeout_s=options.timeout,
                              progress=lambda line: print(line, file=sys.stderr, flush=True))
        print(report.summary(), flush=True)
        failed = failed or bool(report.failures)
    return 1 if failed else 0
