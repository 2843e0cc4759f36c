"""Per-module view of any traced model: params, MACs and activation memory of each module to a chosen depth.

torchinfo's module tree (``pvttrace.tracing.torchinfo_view``) has parameters and output shapes but no MACs of
parameter-free ops (``q @ k^T``) and no memory; this view is read off a pvttrace trace instead, so
its MACs are the trace's (any convention) and they add up: each op counts in the module that issued
it and in every ancestor. :func:`module_rows` is pure data; :func:`trace_modules` traces through the one
entry point (:func:`pvttrace.tracing.target.trace_target`, torch imported there) and reads the rows off.
No rich or typer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pvttrace.base.errors import UserInputError
from pvttrace.records import Shape, Trace

if TYPE_CHECKING:
    from torch import nn

    from pvttrace.tracing.target import ModelSpec

__all__ = ["MAX_DEPTH", "ModuleRow", "module_rows", "trace_modules"]

MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class ModuleRow:
    """One module: where it sits, what it holds and what its forward cost."""

    path: str
    """State-dict path ("" is the model itself)."""
    type: str
    """Class name."""
    depth: int
    """0 for the model, 1 for its children ..."""
    params: int
    """Parameters of the module and its descendants."""
    macs: int
    """MACs of every op the module (or a descendant) issued."""
    ops: int
    output: Shape | None
    """Output of the last op it issued (its result, for a module that ends with an op)."""
    alloc_bytes: int
    """New activation storage its ops allocated (views cost 0)."""
    peak_bytes: int
    """Highest activation bytes alive while its ops ran (the whole model's, input included)."""


def _depth(path: str) -> int:
    return 0 if not path else path.count(".") + 1


def module_rows(
    trace: Trace, params: Mapping[str, int], types: Mapping[str, str], *, depth: int
) -> tuple[ModuleRow, ...]:
    """Rows for the modules at most ``depth`` deep that ran, in the order their first op ran.

    ``params`` maps each module path to its own parameters (not its descendants'); ``types`` to its class name.

    Raises:
        UserInputError: ``depth`` outside 0..MAX_DEPTH.
    """
    if not 0 <= depth <= MAX_DEPTH:
        raise UserInputError(f"depth={depth} must be from 0 to {MAX_DEPTH}")
    first: dict[str, int] = {}
    macs: dict[str, int] = {}
    count: dict[str, int] = {}
    alloc: dict[str, int] = {}
    peak: dict[str, int] = {}
    last: dict[str, Shape] = {}
    for op in trace.ops:
        parts = op.module.split(".") if op.module else []
        for n in range(min(len(parts), depth) + 1):
            path = ".".join(parts[:n])
            first.setdefault(path, op.index)
            macs[path] = macs.get(path, 0) + op.macs
            count[path] = count.get(path, 0) + 1
            alloc[path] = alloc.get(path, 0) + op.alloc_bytes
            peak[path] = max(peak.get(path, 0), op.peak_bytes)
            last[path] = op.output
    totals: dict[str, int] = {}
    for path, own in params.items():
        parts = path.split(".") if path else []
        for n in range(min(len(parts), depth) + 1):
            prefix = ".".join(parts[:n])
            totals[prefix] = totals.get(prefix, 0) + own
    return tuple(
        ModuleRow(
            path=path,
            type=types.get(path, "?"),
            depth=_depth(path),
            params=totals.get(path, 0),
            macs=macs[path],
            ops=count[path],
            output=last.get(path),
            alloc_bytes=alloc[path],
            peak_bytes=peak[path],
        )
        for path in sorted(first, key=lambda p: (first[p], _depth(p)))
    )


def trace_modules(
    spec: ModelSpec,
    *,
    depth: int,
    convention: str = "macs",
    device: str = "meta",
    on_note: Callable[[str], None] | None = None,
) -> tuple[Trace, tuple[ModuleRow, ...]]:
    """Trace ``spec`` and return the trace with its per-module rows to ``depth`` (see :func:`module_rows`).

    Raises:
        UserInputError: a bad depth, spec or convention.
        TraceError: the model failed to build or run.
    """
    from pvttrace.tracing.target import module_facts, trace_target

    if not 0 <= depth <= MAX_DEPTH:
        raise UserInputError(f"depth={depth} must be from 0 to {MAX_DEPTH}")
    traced: list[nn.Module] = []
    trace = trace_target(spec, convention=convention, device=device, on_note=on_note, on_model=traced.append)
    params, types = module_facts(traced[-1])
    return trace, module_rows(trace, params, types, depth=depth)
