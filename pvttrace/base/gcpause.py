"""Pause Python's cyclic garbage collector around work that allocates many objects that all stay alive.

Parsing a trace or snapshot file, building a model and tracing a forward each create tens of thousands of
objects that live until the work ends. Every automatic collection during that work scans the objects tracked
so far (importing torch alone leaves several hundred thousand), so the collections cost more the bigger the
work: about a quarter of loading the project's snapshots and of building their models. Pausing changes no
result: objects are freed by reference counting as before, and any cycle is collected once the collector
runs again. No torch, rich or typer; nothing printed.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

__all__ = ["gc_paused", "without_gc"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Inside, the cyclic collector does not run; afterwards it is enabled again if it was before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def without_gc(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """``func`` run inside :func:`gc_paused`."""

    @functools.wraps(func)
    def paused(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with gc_paused():
            return func(*args, **kwargs)

    return paused
