"""Whole-process benchmarks of pvttrace against the import-torch floor and against its peers.

Usage:
    python benchmarks/run.py [--repeat 5] [--quick] [--no-peers] [--baseline DIR] [--output docs/benchmarks.md]

Each case runs as its own process, so start-up (imports) counts the way a user feels it. Cases
run interleaved (case A, B, C, A, B, C, ...) so that drift of the machine spreads over all of
them, and the table reports the median wall time and the median peak RSS of each case, plus the
ratio of both to the floor case (``python -c "import torch"``) measured in the same run.

Peers (``torch.utils.flop_counter`` on real CPU tensors, fvcore's ``FlopCountAnalysis``,
torchinfo's ``summary``) trace the same built-in model at the same sizes; each runs under a
memory cap (``RLIMIT_AS``) and a time limit, and a run that exceeds either is recorded as such,
with the bound. fvcore is optional (``pip install -e '.[bench]'``).

pvttrace's bytecode is compiled first (``compileall``), as pip does when it installs a wheel, so that an
environment with ``PYTHONDONTWRITEBYTECODE=1`` does not recompile every module in every process.

Two more floors: ``import torch, timm`` (for ``--model timm:...``) and the bare stand-in forward (the
model's forward on meta under a mode that only applies pvttrace's shape stand-ins, no recording),
run for tiny with depths 2, 8, 32 and 128 per stage, next to full traces of the same models: the
marginal cost per op between depths is the tracer's cost per op, compared across sizes and with
the bare forward's. Each of those processes times ``INNER_RUNS`` forwards of its model and reports the
fastest; the table gives the median of that over the runs. ``--baseline DIR`` also runs every pvttrace
case from another checkout (e.g. an export of the previous commit), interleaved with the others, for
before/after ratios of one run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
GIB = 2**30


@dataclass
class Case:
    """One command to time as a whole process."""

    name: str
    argv: list[str]
    group: str = "pvttrace"
    timeout_s: float = 120.0
    memory_cap_bytes: int | None = None
    repeat: int | None = None
    """Runs of this case (None: the global --repeat); heavy peer cases run once."""
    walls: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    cwd: Path = ROOT
    """Where the process runs; ``python -m pvttrace`` imports the pvttrace found there."""
    inner: list[float] = field(default_factory=list)
    """Seconds the process reports itself (an ``inner_s=`` line): its fastest traced or bare forward alone."""


SCALING_DEPTHS = (2, 8, 32, 128)

_SCALING_SCRIPT = """
import sys, time, torch
from torch.overrides import TorchFunctionMode
from pvttrace.config import resolve_config
from pvttrace.tracing.metashapes import meta_stand_in
from pvttrace.tracing.model import build_model
from pvttrace.tracing.recorder import trace_model
class Bare(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = meta_stand_in(func, args, kwargs)
        return func(*args, **kwargs) if out is None else out
mode, depth = sys.argv[1], sys.argv[2]
cfg = resolve_config("tiny", depths=(int(depth),) * 4)
model = build_model(cfg)
example = torch.empty(cfg.input_shape, device="meta")
seconds = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    if mode == "trace":
        ops = trace_model(model, example, config=cfg).totals.ops
    else:
        with torch.no_grad(), Bare():
            model(example)
    seconds.append(time.perf_counter() - start)
print(f"inner_s={min(seconds)}")
"""

INNER_RUNS = 3
"""Forwards timed in each scaling process; the fastest is reported. A single forward of a few tenths of a
second moved by 15-25% between processes on a shared 2-core machine, as much as the effect measured."""


def _pvttrace(*args: str) -> list[str]:
    return [PYTHON, "-m", "pvttrace", *args]


_PEER_SCRIPT = """
import sys, torch
from pvttrace.cli.options import config_from_text
from pvttrace.tracing.model import build_model
tool, variant, img, sr, task = sys.argv[1:6]
cfg = config_from_text(variant, img=img, sr=sr or None, task=task)
model = build_model(cfg, device="cpu")
x = torch.randn(cfg.input_shape)
with torch.no_grad():
    if tool == "flop_counter":
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as counter:
            model(x)
        print(counter.get_total_flops() // 2)
    elif tool == "fvcore":
        from fvcore.nn import FlopCountAnalysis
        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        print(analysis.total())
    elif tool == "torchinfo":
        import torchinfo
        print(torchinfo.summary(model, input_data=x, verbose=0).total_mult_adds)
"""


def _peer(tool: str, variant: str, img: str, sr: str = "", task: str = "cls") -> list[str]:
    return [PYTHON, "-c", _PEER_SCRIPT, tool, variant, img, sr, task]


def build_cases(*, quick: bool, peers: bool) -> list[Case]:
    """The benchmark matrix of the performance issue; ``quick`` keeps only the pvttrace side."""
    cases = [
        Case("floor: python -c 'import torch'", [PYTHON, "-c", "import torch"], group="floor"),
        Case("pvttrace --help", _pvttrace("--help")),
        Case("run tiny @224", _pvttrace("run", "--variant", "tiny", "--img", "224")),
        Case("run large @224", _pvttrace("run", "--variant", "large", "--img", "224")),
        Case("run b5 @224", _pvttrace("run", "--variant", "b5", "--img", "224")),
        Case(
            "run b2 backbone @800x1333", _pvttrace("run", "--variant", "b2", "--img", "800x1333", "--task", "backbone")
        ),
        Case("run tiny @1024 sr 1,1,1,1", _pvttrace("run", "--variant", "tiny", "--img", "1024", "--sr", "1,1,1,1")),
        Case("run tiny @2048 sr 1,1,1,1", _pvttrace("run", "--variant", "tiny", "--img", "2048", "--sr", "1,1,1,1")),
        Case("run tiny @224 --format json", _pvttrace("run", "--variant", "tiny", "--format", "json")),
        Case(
            "run segformer mit-b5 @1024 --train",
            _pvttrace("run", "--head", "segformer", "--variant", "mit-b5", "--img", "1024", "--train"),
            group="whole model",  # its own target (5x floor); not under the backbone cases' RSS target
        ),
    ]
    cases += [
        Case(
            "floor: python -c 'import torch, timm'", [PYTHON, "-W", "ignore", "-c", "import torch, timm"], group="floor"
        ),
        Case(
            "run --train --optimizer adamw b2 @224",
            _pvttrace("run", "--variant", "b2", "--img", "224", "--train", "--optimizer", "adamw"),
        ),
        Case(
            "run --train --optimizer adamw b2 @1024",
            _pvttrace("run", "--variant", "b2", "--img", "1024", "--train", "--optimizer", "adamw"),
        ),
        Case("sweep 3 configs x 7 sizes", _pvttrace("sweep", "-v", "tiny", "-v", "b0", "-v", "b2")),
        Case(
            "sweep 3 configs x 7 sizes, MACs only",
            _pvttrace("sweep", "-v", "tiny", "-v", "b0", "-v", "b2", "--metric", "macs,attention_macs,params"),
        ),
        Case(
            "snapshot check (13 project snapshots)",
            _pvttrace(
                "snapshot",
                "check",
                *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "snapshots").glob("*.json")),
            ),
        ),
        Case("run --model timm:mvitv2_huge_cls", _pvttrace("run", "--model", "timm:mvitv2_huge_cls")),
        Case("run --model timm:pvt_v2_b0", _pvttrace("run", "--model", "timm:pvt_v2_b0")),
    ]
    for depth in SCALING_DEPTHS:
        depths = ",".join([str(depth)] * 4)
        cases.append(Case(f"run tiny depths {depth}x4", _pvttrace("run", "--variant", "tiny", "--depths", depths)))
        timed = [str(depth), str(INNER_RUNS)]
        cases.append(Case(f"trace_model tiny depths {depth}x4", [PYTHON, "-c", _SCALING_SCRIPT, "trace", *timed]))
        bare = [PYTHON, "-c", _SCALING_SCRIPT, "bare", *timed]
        cases.append(Case(f"bare stand-in forward tiny depths {depth}x4", bare, group="bare"))
    if _has_command("diff"):
        cases += [
            Case("diff sr 8,4,2,1 vs 1,1,1,1 @224", _pvttrace("diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1")),
            Case(
                "diff sr 8,4,2,1 vs 1,1,1,1 @1024",
                _pvttrace("diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "--img", "1024"),
            ),
        ]
    sweep = (
        "sweep",
        "--variant",
        "b0",
        "--variant",
        "b2",
        "--variant",
        "b2-li",
        "--img",
        "224..2048",
        "--step",
        "8",
        "--metric",
        "macs,attention_macs,params",
        "--format",
        "json",
    )
    cases += [
        Case(SWEEP_CASE, _pvttrace(*sweep), timeout_s=600),
        Case(f"{SWEEP_CASE} --exact-trace", _pvttrace(*sweep, "--exact-trace"), timeout_s=1200, repeat=1),
    ]
    if quick or not peers:
        return cases
    cap = 20 * GIB
    tools = ["flop_counter", "torchinfo"] + (["fvcore"] if _importable("fvcore") else [])
    sizes = [
        ("tiny", "224", "", "cls", None),
        ("large", "224", "", "cls", None),
        ("b5", "224", "", "cls", None),
        ("b2", "800x1333", "", "backbone", 1),
        ("tiny", "768", "1,1,1,1", "cls", 1),
        ("tiny", "1024", "1,1,1,1", "cls", 1),
    ]
    for tool in tools:
        for variant, img, sr, task, repeat in sizes:
            label = (
                f"{tool}: {variant} @{img}" + (f" sr {sr}" if sr else "") + (" backbone" if task == "backbone" else "")
            )
            cases.append(
                Case(
                    label,
                    _peer(tool, variant, img, sr, task),
                    group="peer",
                    timeout_s=180,
                    memory_cap_bytes=cap,
                    repeat=repeat,
                )
            )
    return cases


def _has_command(name: str) -> bool:
    out = subprocess.run(_pvttrace("--help"), capture_output=True, text=True, cwd=ROOT)
    return any(line.strip().startswith(name + " ") for line in out.stdout.splitlines())


def _importable(module: str) -> bool:
    return subprocess.run([PYTHON, "-c", f"import {module}"], capture_output=True).returncode == 0


def _limit(cap: int | None):  # type: ignore[no-untyped-def]
    def apply() -> None:
        if cap is not None:
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    return apply


def run_once(case: Case) -> None:
    """Run ``case`` once as a child process; record wall seconds and peak RSS (or why it failed)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            case.argv, stdout=out, stderr=err, cwd=case.cwd, preexec_fn=_limit(case.memory_cap_bytes)
        )
        try:
            _, status, usage = _wait(proc, case.timeout_s)
        except TimeoutError:
            proc.kill()
            proc.wait()
            case.failures.append(f"timed out (> {case.timeout_s:.0f} s)")
            return
        wall = time.perf_counter() - start
        if status != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")
            oom = any(s in tail for s in ("can't allocate memory", "MemoryError", "out of memory"))
            cap = case.memory_cap_bytes
            reason = f"out of memory (cap {cap / GIB:.0f} GiB)" if oom and cap else f"failed (exit {status})"
            case.failures.append(reason)
            return
        out.seek(0)
        for line in out.read().decode(errors="replace").splitlines():
            if line.startswith("inner_s="):
                case.inner.append(float(line.removeprefix("inner_s=")))
    case.walls.append(wall)
    case.rss.append(usage.ru_maxrss * 1024)


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, int, resource.struct_rusage]:
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return pid, proc.returncode, usage
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.01)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def _versions() -> str:
    probe = (
        "import torch, rich, typer, torchinfo, pvttrace; "
        "print(torch.__version__, typer.__version__, pvttrace.__version__)"
    )
    out = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, cwd=ROOT).stdout.split()
    torch_v, typer_v, ours = [*out, "?", "?", "?"][:3]
    return f"Python {platform.python_version()}, torch {torch_v}, typer {typer_v}, pvttrace {ours}"


def report(cases: list[Case], repeat: int) -> str:
    """Markdown table of medians and ratios to the floor case."""
    floor = cases[0]
    floor_wall = statistics.median(floor.walls)
    floor_rss = statistics.median(floor.rss)
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `python benchmarks/run.py` on {datetime.date.today().isoformat()}.",
        "",
        f"- machine: {_machine()}",
        f"- software: {_versions()}",
        f"- method: every case is a whole process; cases interleaved; median of {repeat} runs (heavy peer cases: 1);",
        "  peak RSS from the child's rusage; ratios are against the floor case of the same run.",
        "",
        "| case | wall (s) | x floor | peak RSS (MiB) | RSS - floor (MiB) | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for case in cases:
        if case.walls:
            wall = statistics.median(case.walls)
            rss = statistics.median(case.rss)
            note = "; ".join(sorted(set(case.failures)))
            if case.inner:
                note = "; ".join(filter(None, (note, f"in-process {statistics.median(case.inner):.2f} s")))
            lines.append(
                f"| {case.name} | {wall:.2f} | {wall / floor_wall:.2f} | {rss / 2**20:.0f} | "
                f"{(rss - floor_rss) / 2**20:+.0f} | {note} |"
            )
        else:
            note = "; ".join(sorted(set(case.failures))) or "not run"
            lines.append(f"| {case.name} | - | - | - | - | {note} |")
    lines += ["", "## Targets (this run)", "", *_targets(cases, floor_wall, floor_rss)]
    if any(case.name.startswith("before: ") for case in cases):
        lines += [
            "",
            "## Targets, baseline checkout (same run)",
            "",
            *_targets(cases, floor_wall, floor_rss, "before: "),
        ]
    return "\n".join(lines) + "\n"


#: 229 sizes x 3 configurations through their formulas (issue 15), and the same traced at every size.
SWEEP_CASE = "sweep b0/b2/b2-li @224..2048 step 8"

#: The performance issues' targets: (case, floor case, limit as a multiple of that floor's wall time).
WALL_TARGETS = (
    ("run tiny @224", "floor: python -c 'import torch'", 1.3),
    ("run large @224", "floor: python -c 'import torch'", 1.5),
    ("run b5 @224", "floor: python -c 'import torch'", 1.25),
    ("run --train --optimizer adamw b2 @1024", "floor: python -c 'import torch'", 1.4),
    ("snapshot check (13 project snapshots)", "floor: python -c 'import torch'", 1.5),
    ("sweep 3 configs x 7 sizes", "floor: python -c 'import torch'", 1.5),
    ("run --model timm:mvitv2_huge_cls", "floor: python -c 'import torch, timm'", 1.15),
    ("run --model timm:pvt_v2_b0", "floor: python -c 'import torch, timm'", 1.2),
    ("run segformer mit-b5 @1024 --train", "floor: python -c 'import torch'", 5.0),
    (SWEEP_CASE, "floor: python -c 'import torch'", 3.0),
)
#: (case, limit on its peak RSS above the import-torch floor, MiB).
RSS_TARGETS = (("run --train --optimizer adamw b2 @1024", 60),)


def _ops_at(depth: int, cwd: Path) -> int:
    """Ops in the trace of tiny with ``depth`` blocks per stage (from the JSON output)."""
    import json

    argv = _pvttrace("run", "--variant", "tiny", "--depths", ",".join([str(depth)] * 4), "--format", "json")
    out = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=True).stdout
    return int(json.loads(out)["totals"]["ops"])


def _targets(cases: list[Case], floor_wall: float, floor_rss: float, prefix: str = "") -> list[str]:
    """The targets of the performance issues, checked against this run's medians (``prefix``: baseline rows)."""
    by_name = {case.name: case for case in cases}

    def wall(name: str) -> float | None:
        case = by_name.get(name)
        return statistics.median(case.walls) if case and case.walls else None

    def rss(name: str) -> float | None:
        case = by_name.get(name)
        return statistics.median(case.rss) if case and case.rss else None

    lines = ["| target | measured | met |", "|---|---|---|"]
    for name, floor_name, limit in WALL_TARGETS:
        value, floor = wall(prefix + name), wall(floor_name)
        if value is not None and floor is not None:
            ratio = value / floor
            floor_label = floor_name.removeprefix("floor: ")
            lines.append(
                f"| {name} wall <= {limit}x {floor_label} | {ratio:.2f}x | {'yes' if ratio <= limit else 'NO'} |"
            )
    for name, limit_mib in RSS_TARGETS:
        value = rss(prefix + name)
        if value is not None:
            over = (value - floor_rss) / 2**20
            lines.append(
                f"| {name} RSS <= floor + {limit_mib} MiB | {over:+.0f} MiB | {'yes' if over <= limit_mib else 'NO'} |"
            )
    help_wall = wall(prefix + "pvttrace --help")
    if help_wall is not None:
        lines.append(f"| pvttrace --help <= 0.3 s | {help_wall:.2f} s | {'yes' if help_wall <= 0.3 else 'NO'} |")
    base = wall(prefix + "run tiny @224")
    for size in ("1024", "2048"):
        value = wall(f"{prefix}run tiny @{size} sr 1,1,1,1")
        if base is not None and value is not None:
            change = value / base - 1
            met = "yes" if abs(change) <= 0.10 else "NO"
            lines.append(f"| tiny @{size} sr 1 within 10% of tiny @224 | {change:+.1%} | {met} |")

    def inner(name: str) -> float | None:
        case = by_name.get(name)
        return statistics.median(case.inner) if case and case.inner else None

    lines += _scaling(inner, prefix)
    timm_rss = rss("floor: python -c 'import torch, timm'")

    def over_floor(case: Case) -> float:
        """Peak RSS above the floor the case is measured against (timm models: import torch, timm)."""
        floor = timm_rss if timm_rss is not None and any("timm:" in a for a in case.argv) else floor_rss
        return statistics.median(case.rss) - floor

    worst = max(
        (
            over_floor(c)
            for c in cases
            if c.group == "pvttrace"
            and c.rss
            and c.name.startswith(prefix)
            and (prefix or not c.name.startswith("before: "))
        ),
        default=0.0,
    )
    verdict = "yes" if worst <= 150e6 else "NO"
    lines.append(f"| every pvttrace case's peak RSS <= its floor + 150 MB | +{worst / 1e6:.0f} MB | {verdict} |")
    return lines


_OPS: dict[int, int] = {}


def _scaling(inner: Callable[[str], float | None], prefix: str) -> list[str]:
    """Marginal tracer cost per op between scaling depths, against the bare stand-in forward's.

    From the seconds each process measures around the traced (or bare) forward alone, so that the
    noise of start-up does not swamp differences of a few seconds.
    """
    traced = [inner(f"{prefix}trace_model tiny depths {d}x4") for d in SCALING_DEPTHS]
    bare = [inner(f"bare stand-in forward tiny depths {d}x4") for d in SCALING_DEPTHS]
    if any(v is None for v in (*traced, *bare)):
        return []
    for depth in SCALING_DEPTHS:
        if depth not in _OPS:
            _OPS[depth] = _ops_at(depth, ROOT)
    ops = [_OPS[d] for d in SCALING_DEPTHS]
    lines = []
    marginal = []
    for i in range(1, len(SCALING_DEPTHS)):
        n = ops[i] - ops[i - 1]
        per_op = (traced[i] - traced[i - 1]) / n  # type: ignore[operator]
        bare_per_op = (bare[i] - bare[i - 1]) / n  # type: ignore[operator]
        marginal.append((per_op, bare_per_op))
        lines.append(
            f"| marginal cost {ops[i - 1]} -> {ops[i]} ops | {per_op * 1e6:.0f} us/op traced, "
            f"{bare_per_op * 1e6:.0f} us/op bare ({per_op / bare_per_op:.1f}x) | |"
        )
    at_4k, at_16k = marginal[-2][0], marginal[-1][0]
    change = at_16k / at_4k - 1
    lines.append(
        f"| marginal cost at ~16k ops within 15% of ~4k | {change:+.1%} | {'yes' if abs(change) <= 0.15 else 'NO'} |"
    )
    ratio = at_16k / marginal[-1][1]
    lines.append(f"| marginal cost at ~16k ops <= 5x bare forward's | {ratio:.1f}x | {'yes' if ratio <= 5 else 'NO'} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (median reported)")
    parser.add_argument("--quick", action="store_true", help="pvttrace cases only")
    parser.add_argument("--no-peers", action="store_true", help="skip the peer tools")
    parser.add_argument("--cases", help="regular expression: keep only matching cases (floors always kept)")
    parser.add_argument("--baseline", type=Path, help="another checkout whose pvttrace cases run interleaved too")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"), help="markdown file to write")
    args = parser.parse_args()
    cases = build_cases(quick=args.quick, peers=not args.no_peers)
    if args.cases:
        keep = re.compile(args.cases)
        cases = [case for case in cases if case.group == "floor" or keep.search(case.name)]
    if args.baseline is not None:
        cases += [
            Case(
                "before: " + case.name,
                case.argv,
                group=case.group,
                timeout_s=case.timeout_s,
                cwd=args.baseline.resolve(),
            )
            for case in cases
            if case.group == "pvttrace" and not case.name.startswith("run tiny depths")  # the in-process ones suffice
        ]
    # An installed wheel comes with its bytecode compiled (pip compiles at install); a checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would recompile every pvttrace module in every process instead.
    for checkout in {case.cwd for case in cases}:
        if (checkout / "pvttrace").is_dir():
            subprocess.run([PYTHON, "-m", "compileall", "-q", str(checkout / "pvttrace")], check=True)
    for i in range(args.repeat):
        for case in cases:
            limit = case.repeat if case.repeat is not None else args.repeat
            if i < limit:
                failures = len(case.failures)
                run_once(case)
                result = case.failures[-1] if len(case.failures) > failures else f"{case.walls[-1]:.2f} s"
                print(f"[{i + 1}/{args.repeat}] {case.name}: {result}", file=sys.stderr)
        text = report(cases, i + 1)  # after every round, so an interrupted run still leaves its medians
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
