"""The 50-size exactness check of cost formulas (the CI property test runs 2 sizes per variant).

For every built-in variant (cls and backbone) and the --model models given, draw N odd, non-square
sizes from 33..4095 (seeded), and compare the formula with a concrete trace at each size: MACs and
params exactly, per stage and category. A size outside every formula derived so far gets its own
formula (a symbolic trace at that size), as ``pvttrace sweep`` does; the report counts them.

Usage: python benchmarks/formula_check.py [--sizes 50] [--model timm:pvt_v2_b0 ...] [--no-builtins]
Prints one line per model and a summary; exit 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from typing import Any


def _check(
    name: str,
    derive: Callable[[tuple[int, int] | None], Any],
    trace: Callable[[tuple[int, int]], Any],
    sizes: list[tuple[int, int]],
    *,
    new_pieces: bool,
) -> tuple[int, int, int, int]:
    """(sizes equal, mismatches, formulas derived, sizes no formula covered)."""
    pieces = [derive(None)]
    equal = wrong = uncovered = 0
    for h, w in sizes:
        at = {"H": h, "W": w}
        formula = next((f for f in pieces if f.check(at) is None), None)
        if formula is None:
            if not new_pieces:
                uncovered += 1
                continue
            formula = derive((h, w))
            pieces.append(formula)
        values = formula.evaluate(at)
        result = trace((h, w))
        same = (
            values.macs == result.totals.macs
            and values.params == result.totals.params
            and all(
                v.macs["total"] == s.macs and v.macs["attention"] == s.attention_macs and v.macs["sr"] == s.sr_macs
                for v, s in zip(values.stages, result.stages, strict=True)
            )
        )
        equal += same
        wrong += not same
        if not same:
            print(f"  MISMATCH {name} at {h}x{w}: formula {values.macs} trace {result.totals.macs}", flush=True)
    return equal, wrong, len(pieces), uncovered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--no-builtins", action="store_true")
    parser.add_argument("--no-new-pieces", action="store_true", help="Only count sizes the first formula covers.")
    args = parser.parse_args(argv)

    from pvttrace.analyses.formula import derive_formula
    from pvttrace.analyses.sweep import model_spec_at
    from pvttrace.cli.parsing import parse_model_spec
    from pvttrace.config import VARIANTS, resolve_config
    from pvttrace.tracing.recorder import trace_config
    from pvttrace.tracing.target import trace_target

    rng = random.Random(args.seed)
    sizes: list[tuple[int, int]] = []
    while len(sizes) < args.sizes:
        h, w = rng.randrange(33, 4096, 2), rng.randrange(33, 4096, 2)
        if h != w:
            sizes.append((h, w))
    jobs: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = []
    if not args.no_builtins:
        for variant in VARIANTS:
            for task in ("cls", "backbone"):

                def config(size: tuple[int, int], variant: str = variant, task: str = task) -> Any:
                    return resolve_config(variant=variant, task=task, img=size)

                jobs.append(
                    (
                        f"{variant} {task}",
                        lambda at, config=config: derive_formula(config(at or (1021, 767)), hint=at),
                        lambda size, config=config: trace_config(config(size)),
                    )
                )
    for model in args.model:
        spec = parse_model_spec(model)
        jobs.append(
            (
                model,
                lambda at, spec=spec: derive_formula(spec, hint=at),
                lambda size, spec=spec: trace_target(model_spec_at(spec, size)),
            )
        )
    failures = 0
    start = time.perf_counter()
    for name, derive, trace in jobs:
        began = time.perf_counter()
        equal, wrong, pieces, uncovered = _check(name, derive, trace, sizes, new_pieces=not args.no_new_pieces)
        failures += wrong
        print(
            f"{name}: {equal}/{len(sizes)} sizes equal, {wrong} mismatches, {pieces} formula(s), "
            f"{uncovered} size(s) outside every formula, {time.perf_counter() - began:.1f} s",
            flush=True,
        )
    print(f"total: {len(jobs)} models x {len(sizes)} sizes, {failures} mismatches, {time.perf_counter() - start:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
