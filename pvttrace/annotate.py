"""Walkthrough labels that a model's forward attaches to the ops it issues.

The built-in model wraps each step of its forward in ``step("split heads")`` or
``stage_scope(1)``; the tracer reads the innermost label and stage when it records an op.
Outside a trace the cost is one list append and pop per step, so the model stays an
ordinary ``nn.Module``. Models that do not use these helpers are labelled by rules
in ``pvttrace.trace`` instead.

This module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["current_label", "current_stage", "stage_scope", "step"]

_labels: list[str] = []
_stages: list[int] = []


@contextmanager
def step(label: str) -> Iterator[None]:
    """Label every op issued inside the block, e.g. ``with step("scores q@k^T"): ...``."""
    _labels.append(label)
    try:
        yield
    finally:
        _labels.pop()


@contextmanager
def stage_scope(stage: int) -> Iterator[None]:
    """Attribute every op issued inside the block to 1-based pyramid ``stage``."""
    _stages.append(stage)
    try:
        yield
    finally:
        _stages.pop()


def current_label() -> str | None:
    """The innermost active ``step`` label, or None."""
    return _labels[-1] if _labels else None


def current_stage() -> int | None:
    """The innermost active ``stage_scope`` stage, or None."""
    return _stages[-1] if _stages else None
