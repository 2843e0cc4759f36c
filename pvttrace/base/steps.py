"""Walkthrough labels that a model's forward attaches to the ops it issues.

The built-in model wraps each step of its forward in ``step("split heads")`` or
``stage_scope(1)``; the tracer reads the innermost label and stage when it records an op.
Outside a trace the cost is one context-variable set and reset per step, so the model stays an
ordinary ``nn.Module``. Models that do not use these helpers are labelled by rules
in ``pvttrace.tracing.recorder`` instead.

The stacks live in context variables, not module-level lists: each thread (and each asyncio task)
has its own, so traces running at the same time in several threads never see each other's labels.

This module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["current_label", "current_stage", "stage_scope", "step"]

_labels: ContextVar[tuple[str, ...]] = ContextVar("pvttrace_labels", default=())
_stages: ContextVar[tuple[int, ...]] = ContextVar("pvttrace_stages", default=())


@contextmanager
def step(label: str) -> Iterator[None]:
    """Label every op issued inside the block, e.g. ``with step("scores q@k^T"): ...``."""
    token = _labels.set((*_labels.get(), label))
    try:
        yield
    finally:
        _labels.reset(token)


@contextmanager
def stage_scope(stage: int) -> Iterator[None]:
    """Attribute every op issued inside the block to 1-based pyramid ``stage``."""
    token = _stages.set((*_stages.get(), stage))
    try:
        yield
    finally:
        _stages.reset(token)


def current_label() -> str | None:
    """The innermost active ``step`` label, or None."""
    labels = _labels.get()
    return labels[-1] if labels else None


def current_stage() -> int | None:
    """The innermost active ``stage_scope`` stage, or None."""
    stages = _stages.get()
    return stages[-1] if stages else None
