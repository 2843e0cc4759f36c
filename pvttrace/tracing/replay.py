"""Repeat, rather than re-run, a block whose twin already ran on an identical input.

Every block of a built-in PVT stage is built from the same stage settings, so on the ``meta`` device
two blocks of one stage given inputs of the same shape, strides and dtype issue the same ops, with the
same shapes, costs, labels and source lines, and allocate and free the same storages at the same
points: only the module paths (``block3.7`` for ``block3.6``), the op indices and the storage
identities differ. A trace of PVT-large spends most of its time in its 27 identical third-stage blocks.

:class:`BlockReplay` runs the first block of each such group normally and keeps what it recorded: its
op records, call facts and storage events. A later block of the group whose arguments match is not
run: its records are those of its twin under its own path and indices, its storage events are the
twin's with fresh storage keys, and its output is a new meta tensor of the twin's output layout. A
block is kept as a template only when everything it allocated was freed inside it except the tensor it
returned, so that nothing else of the trace depends on its run. The blocks of a group must also be
called alike (the built-in model's ``for blk in blocks: x = blk(x, h, w)``): who else holds the input
decides where it is freed, which the arguments' layout does not show. ``tests/test_trace.py`` compares
replayed and fully run traces record for record, memory events included, for every variant.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from pvttrace.memory.estimate import StorageEvent
from pvttrace.records import OpRecord
from pvttrace.stages.labels import block_of
from pvttrace.tracing.lifetimes import StorageTracker

__all__ = ["BlockReplay"]


@dataclass(frozen=True, slots=True)
class _Run:
    """What one block's run recorded, to be repeated under another path."""

    path: str
    first_op: int
    records: tuple[OpRecord, ...]
    facts: tuple[dict[str, Any], ...]
    events: list[StorageEvent]
    fresh: list[int]
    """Keys of the storages the block allocated, in order."""
    output_key: int | None
    output_layout: tuple[tuple[int, ...], tuple[int, ...], torch.dtype, torch.device]


def _signature(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    """What a block's run depends on besides its module: one tensor's layout and plain values; None for
    anything else (several tensors, objects), which is always run."""
    parts: list[Any] = []
    tensors = 0
    for item in (*args, *(kwargs[name] for name in sorted(kwargs))):
        if isinstance(item, torch.Tensor):
            tensors += 1
            if tensors > 1 or not item.is_meta or item.requires_grad:
                return None
            parts.append((tuple(item.shape), item.stride(), item.storage_offset(), item.dtype))
        elif item is None or isinstance(item, (bool, int, float, str)):
            parts.append((type(item), item))
        else:
            return None
    return (len(args), tuple(sorted(kwargs)), *parts)


def _dense_nbytes(tensor: torch.Tensor) -> int:
    """Storage bytes of a fresh tensor of ``tensor``'s sizes and strides (``torch.empty_strided``'s)."""
    if tensor.numel() == 0:
        return 0
    span = 1 + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride(), strict=True))
    return span * tensor.element_size()


class BlockReplay:
    """Runs the first block of each group of identical blocks and repeats its run for the others.

    ``groups`` maps module paths to a group: blocks of one group are built alike (one stage's blocks).
    ``records`` and ``facts`` are the recorder's lists, appended to in place; ``tracker`` (None when no
    memory is tracked) receives the repeated storage events.
    """

    def __init__(
        self,
        groups: Mapping[str, Hashable],
        records: list[OpRecord],
        facts: list[dict[str, Any]] | None,
        tracker: StorageTracker | None,
    ) -> None:
        self._groups = groups
        self._records = records
        self._facts = facts
        self._tracker = tracker
        self._runs: dict[tuple[Hashable, tuple[Any, ...]], _Run | None] = {}

    def wrap(self, path: str, forward: Callable[..., Any]) -> Callable[..., Any]:
        """``forward`` of the module at ``path``, repeating a twin's run where it can; unchanged outside groups."""
        group = self._groups.get(path)
        if group is None:
            return forward

        def forward_or_repeat(*args: Any, **kwargs: Any) -> Any:
            signature = _signature(args, kwargs)
            if signature is None:
                return forward(*args, **kwargs)
            key = (group, signature)
            if key not in self._runs:
                return self._run_and_keep(key, path, forward, args, kwargs)
            run = self._runs[key]
            if run is None:  # its first run could not be kept
                return forward(*args, **kwargs)
            return self._repeat(run, path)

        return forward_or_repeat

    def _run_and_keep(
        self,
        key: tuple[Hashable, tuple[Any, ...]],
        path: str,
        forward: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        first_op = len(self._records)
        first_fact = len(self._facts) if self._facts is not None else 0
        first_event = self._tracker.event_count if self._tracker is not None else 0
        out = forward(*args, **kwargs)
        self._runs[key] = self._kept(path, out, first_op, first_fact, first_event)
        return out

    def _kept(self, path: str, out: Any, first_op: int, first_fact: int, first_event: int) -> _Run | None:
        """The run just made, or None when repeating it could differ from running (see the module's notes)."""
        if not isinstance(out, torch.Tensor) or not out.is_meta or out.requires_grad or out.storage_offset() != 0:
            return None
        if out.untyped_storage().nbytes() != _dense_nbytes(out):
            return None
        events: list[StorageEvent] = []
        fresh: list[int] = []
        output_key = None
        if self._tracker is not None:
            events = self._tracker.events_since(first_event)
            alive: set[int] = set()
            for event in events:
                if event.delta > 0:  # storage keys are never reused: a first allocation
                    fresh.append(event.key)
                    alive.add(event.key)
                elif event.delta < 0 and event.key in alive:
                    alive.remove(event.key)
                else:  # an event about a storage from outside the block
                    return None
            output_key = self._tracker.known_key(out)
            if alive != {output_key}:
                return None
        facts = tuple(self._facts[first_fact:]) if self._facts is not None else ()
        layout = (tuple(out.shape), out.stride(), out.dtype, out.device)
        return _Run(path, first_op, tuple(self._records[first_op:]), facts, events, fresh, output_key, layout)

    def _repeat(self, run: _Run, path: str) -> torch.Tensor:
        shift = len(self._records) - run.first_op
        prefix = run.path + "."
        for record in run.records:
            module, block = record.module, record.block
            if module == run.path or module.startswith(prefix):
                module = path + module[len(run.path) :]
                block = block_of(module)
            self._records.append(record.moved(index=record.index + shift, module=module, block=block))
        if self._facts is not None:
            self._facts.extend(run.facts)
        shape, stride, dtype, device = run.output_layout
        with torch._C.DisableTorchFunction():  # not an op of the model: the recorder must not see it
            out = torch.empty_strided(shape, stride, dtype=dtype, device=device)
        if self._tracker is not None and run.output_key is not None:
            self._tracker.replay(run.events, op_shift=shift, fresh=run.fresh, output=(run.output_key, out))
            self._tracker.op_finished(len(self._records))
        return out
