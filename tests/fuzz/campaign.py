"""Run many fuzzed cases and report what happened (``python benchmarks/fuzz.py --help``).

Three campaigns:

* ``cli``: whole command lines from :func:`fuzz.cli_strategies.command_lines`, with an odd environment
  in a share of them;
* ``files``: one damaged snapshot or trace file per case (:func:`fuzz.file_strategies.fuzzed_files`),
  read by ``snapshot check``, ``diff`` or overwritten by ``snapshot write``;
* ``threads``: rounds of 2 to 8 threads tracing built-in presets and any-model specs at the same time,
  each result compared op by op (label, stage, MACs) and stage by stage with a serial trace (issue 18).

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
                progress(
                    f"{kind}: {report.cases}/{examples} cases, {time.perf_counter() - started:.0f} s, "
                    f"{len(report.failures)} distinct failures"
                )

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


def _fingerprint(trace: Any) -> tuple[Any, ...]:
    """What must not depend on other traces running at the same time: every op's label, stage and MACs."""
    return (
        tuple((op.op, op.label, op.stage, op.block, op.macs) for op in trace.ops),
        tuple(
            (s.index, s.attention_macs, s.sr_macs, s.projection_macs, s.mlp_macs, s.other_macs) for s in trace.stages
        ),
        trace.totals.macs,
    )


#: What the concurrency campaign traces: built-in presets (labelled by the model's own step() scopes) and
#: any-model specs (labelled by rules), all on the meta device.
_CONCURRENT_TARGETS = (
    ("builtin", "tiny"),
    ("builtin", "b0"),
    ("builtin", "b2-li"),
    ("model", "anymodel_zoo:mix"),
    ("model", "anymodel_zoo:mix_fused"),
)


def run_threads_campaign(cases: int, *, seed_value: int, progress: Callable[[str], Any]) -> Report:
    """``cases`` rounds of 2 to 8 threads tracing random targets at once, each compared with a serial trace."""
    import random
    import threading

    from pvttrace.cli.parsing import parse_model_spec
    from pvttrace.config import get_variant
    from pvttrace.tracing.recorder import trace_config
    from pvttrace.tracing.target import trace_target

    def trace(target: tuple[str, str]) -> Any:
        kind, name = target
        if kind == "builtin":
            return trace_config(get_variant(name))
        return trace_target(parse_model_spec(name, input_shape="2,3,8,8"))

    report = Report("threads")
    started = time.perf_counter()
    serial = {target: _fingerprint(trace(target)) for target in _CONCURRENT_TARGETS}
    rng = random.Random(seed_value)
    step = max(1, cases // 20)
    for case in range(cases):
        chosen = [rng.choice(_CONCURRENT_TARGETS) for _ in range(rng.randint(2, 8))]
        results: list[Any] = [None] * len(chosen)
        errors: list[str] = []

        def work(i: int, target: tuple[str, str], results: list[Any] = results, errors: list[str] = errors) -> None:
            try:
                results[i] = _fingerprint(trace(target))
            except Exception as exc:
                errors.append(f"{target[1]}: {type(exc).__name__}: {exc}")

        begin = time.perf_counter()
        threads = [threading.Thread(target=work, args=(i, t)) for i, t in enumerate(chosen)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        problems = errors + [
            f"{target[1]} traced in a thread differs from its serial trace"
            for target, result in zip(chosen, results, strict=True)
            if result is not None and result != serial[target]
        ]
        label = " + ".join(name for _, name in chosen)
        outcome = Outcome(tuple(name for _, name in chosen), 0 if not problems else -1, "", "", None)
        report.record(outcome, problems, time.perf_counter() - begin, f"{len(chosen)} threads", label + str(case))
        if report.cases % step == 0:
            progress(
                f"threads: {report.cases}/{cases} cases, {time.perf_counter() - started:.0f} s, "
                f"{len(report.failures)} distinct failures"
            )
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; exit 1 when any case failed."""
    parser = argparse.ArgumentParser(description="Fuzz the pvttrace CLI and its snapshot/trace files.")
    parser.add_argument("--cli", type=int, default=1000, help="fuzzed command lines to run (default 1000)")
    parser.add_argument("--files", type=int, default=1000, help="fuzzed snapshot/trace files to run (default 1000)")
    parser.add_argument(
        "--threads",
        type=int,
        default=100,
        help="rounds of concurrent traces (2 to 8 threads each) compared with serial ones (default 100)",
    )
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    parser.add_argument("--timeout", type=int, default=60, help="seconds one invocation may take (default 60)")
    parser.add_argument(
        "--max-memory-gib",
        type=float,
        default=8.0,
        help="address-space limit of this process (RLIMIT_AS), so a blow-up fails instead of swapping",
    )
    options = parser.parse_args(argv)
    limit = int(options.max_memory_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    failed = False
    for kind, count in (("cli", options.cli), ("files", options.files)):
        if count <= 0:
            continue
        report = run_campaign(
            kind,
            count,
            seed_value=options.seed,
            timeout_s=options.timeout,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
        print(report.summary(), flush=True)
        failed = failed or bool(report.failures)
    if options.threads > 0:
        report = run_threads_campaign(
            options.threads, seed_value=options.seed, progress=lambda line: print(line, file=sys.stderr, flush=True)
        )
        print(report.summary(), flush=True)
        failed = failed or bool(report.failures)
    return 1 if failed else 0
