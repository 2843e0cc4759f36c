"""Watch the real lifetimes of tensor storages while a model runs: when each is allocated and freed.

The events feed :mod:`pvttrace.memory.estimate` (pure analysis). How they are observed:

* **Allocations.** A ``TorchDispatchMode`` sees the outputs of every aten op, including the
  temporaries a user-level op creates and frees inside itself (matmul's expanded copies,
  layer_norm's mean/rstd) and every op of the backward; a storage not seen before is an
  allocation of ``storage.nbytes()`` bytes. On the meta device storages exist (with sizes) but
  hold no memory, so this costs nothing at any image size.
  An inference trace does not keep the mode on throughout: passing through it costs more per op than
  recording the op. The tracer's shape stand-ins allocate through :meth:`StorageTracker.empty`, which
  records each tensor they make (outputs and the kernel's scratch tensors alike); ops known to allocate
  nothing but their outputs (views and reshapes: :func:`allocates_only_outputs`) run
  without the mode and have their outputs tracked; every other op runs inside it (:meth:`StorageTracker.run`).
  A training trace keeps the mode on throughout, as autograd and the backward need.
* **Frees.** PyTorch keeps one Python object per storage for as long as the C++ storage lives
  (PyObject preservation), so a weak reference's callback on it fires exactly when the last tensor,
  view or autograd saved variable holding the storage lets go. (A plain ``weakref.ref`` held by the
  tracker, not ``weakref.finalize``: the same callback at about a fifth of the cost per storage.)
* **Saved for backward.** ``torch.autograd.graph.saved_tensors_hooks`` reports each tensor
  autograd saves; the pack hook returns the tensor unchanged, so nothing is copied or kept longer.

The tracker stores storage keys and sizes only, never tensors, so it does not change lifetimes.
Scratch memory that kernels allocate internally (oneDNN, im2col, cuDNN workspaces) is invisible
here (see :mod:`pvttrace.memory.estimate`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from pvttrace.memory.estimate import LifetimeLog, SavedTensor, StorageEvent, StorageKind
from pvttrace.tracing.atenshapes import aten_stand_in
from pvttrace.tracing.tree import ModelTree

__all__ = ["StorageTracker", "allocates_only_outputs", "register_model", "report_saved_tensors", "run_backward"]


def _storage(tensor: torch.Tensor) -> Any:
    try:
        return tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse or nested tensors have no single storage
        return None


class StorageTracker(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's mode is untyped
    """Records storage allocations and frees, positioned by the op the tracer is recording.

    The tracer calls :meth:`op_started` before each user-level op and :meth:`op_finished` after
    it; events in between are "inside" that op. Use as a context manager around the forward
    (and backward), then read :meth:`log` and call :meth:`close`.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a dispatch mode's handler in dynamo's "disable" unless the mode opts out (the
        # documented switch); the wrapper imports torch._dynamo on first use, about 1 s per process.
        # This mode never runs under torch.compile, so it opts out.
        return False

    def __init__(self, *, always_on: bool = False) -> None:
        """``always_on``: the caller keeps the mode entered around the whole run (training traces)."""
        super().__init__()  # type: ignore[no-untyped-call]
        self.always_on = always_on
        self._keys: dict[int, tuple[int, int]] = {}  # id(storage object) -> (key, nbytes), while alive
        self._sizes: dict[int, int] = {}  # key -> nbytes
        self._kinds: dict[int, StorageKind] = {}
        self._events: list[StorageEvent] = []
        self._saved: list[SavedTensor] = []
        self._refs: dict[int, weakref.ref[Any]] = {}  # id(storage object) -> its weak reference, while alive
        self._next_key = 0
        self.op = 0
        self.inside = False
        self.backward = False
        self._open = True

    # ------------------------------------------------------------------ tracer hooks
    def op_started(self, index: int) -> None:
        """The tracer is about to run the op that will get ``index``."""
        self.op = index
        self.inside = True

    def op_finished(self, ops_recorded: int) -> None:
        """The op returned; ``ops_recorded`` ops are recorded now."""
        self.op = ops_recorded
        self.inside = False

    # ------------------------------------------------------------------ storages
    def key_of(self, tensor: torch.Tensor, kind: StorageKind = StorageKind.ACTIVATION) -> int | None:
        """The key of ``tensor``'s storage, registering it (an allocation event) when it is new."""
        try:  # _storage inlined: this runs once or twice per op
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return None
        storage_id = id(storage)
        known = self._keys.get(storage_id)
        if known is not None:
            return known[0]
        key = self._next_key
        self._next_key += 1
        nbytes = int(storage.nbytes())
        self._keys[storage_id] = (key, nbytes)
        self._sizes[key] = nbytes
        if kind != StorageKind.ACTIVATION:
            self._kinds[key] = kind
        self._events.append(StorageEvent(key, nbytes, self.op, self.inside, self.backward))
        self._refs[storage_id] = weakref.ref(storage, partial(self._freed, storage_id))
        return key

    def empty(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``torch.empty(*args, **kwargs)``, recorded as an allocation (for stand-ins that run outside the mode)."""
        tensor = torch.empty(*args, **kwargs)
        self.key_of(tensor)
        return tensor

    def run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``func(*args, **kwargs)`` with every storage it allocates recorded.

        Inside the mode unless it is on already, or ``func`` on these arguments is known to allocate nothing
        but its outputs, which are then recorded directly.
        """
        if self.always_on:
            return func(*args, **kwargs)
        if allocates_only_outputs(func, args, kwargs):
            return self._outputs_tracked(func(*args, **kwargs))
        with self:
            return func(*args, **kwargs)

    @property
    def event_count(self) -> int:
        """How many events are logged so far (a position to slice :meth:`events_since` from)."""
        return len(self._events)

    def events_since(self, start: int) -> list[StorageEvent]:
        """The events logged from position ``start`` on."""
        return self._events[start:]

    def replay(
        self, events: list[StorageEvent], *, op_shift: int, fresh: list[int], output: tuple[int, torch.Tensor]
    ) -> None:
        """Log ``events`` again ``op_shift`` ops later, each storage key in ``fresh`` under a new key.

        For a block whose run is repeated rather than re-run (:mod:`pvttrace.tracing.replay`): ``fresh`` are
        the storages the block allocated, in order; ``output`` pairs the key of the one it returned with the
        tensor standing in for it now, made outside the tracker's sight, whose later free is then logged.
        """
        renamed: dict[int, int] = {}
        for key in fresh:
            renamed[key] = self._next_key
            self._sizes[self._next_key] = self._sizes[key]
            if key in self._kinds:
                self._kinds[self._next_key] = self._kinds[key]
            self._next_key += 1
        self._events.extend(
            StorageEvent(renamed.get(e.key, e.key), e.delta, e.op + op_shift, e.inside, e.backward) for e in events
        )
        output_key, tensor = output
        storage = tensor.untyped_storage()
        storage_id = id(storage)
        key = renamed[output_key]
        self._keys[storage_id] = (key, self._sizes[key])
        self._refs[storage_id] = weakref.ref(storage, partial(self._freed, storage_id))

    def known_key(self, tensor: torch.Tensor) -> int | None:
        """The key of ``tensor``'s storage if it is tracked, without registering it."""
        storage = _storage(tensor)
        known = self._keys.get(id(storage)) if storage is not None else None
        return known[0] if known is not None else None

    def relayout(self, old: torch.Tensor, new: torch.Tensor) -> None:
        """The tracer copied ``old`` into ``new`` to emulate a backend's output layout: ``old`` is not memory."""
        self.mark(old, StorageKind.EMULATION)
        self.key_of(new)

    def mark(self, tensor: torch.Tensor, kind: StorageKind) -> None:
        """Tag an already tracked (or new) storage, e.g. a parameter's gradient after backward."""
        key = self.key_of(tensor, kind)
        if key is not None:
            self._kinds[key] = kind

    def _freed(self, storage_id: int, _ref: object = None) -> None:
        del self._refs[storage_id]
        key, nbytes = self._keys.pop(storage_id)
        if self._open:
            self._events.append(StorageEvent(key, -nbytes, self.op, self.inside, self.backward))

    def saved(self, tensor: torch.Tensor) -> torch.Tensor:
        """``saved_tensors_hooks`` pack hook: note the saved storage, return the tensor unchanged."""
        key = self.key_of(tensor)
        if key is not None:
            self._saved.append(SavedTensor(self.op, key, self._sizes[key]))
        return tensor

    # ------------------------------------------------------------------ dispatch
    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = aten_stand_in(func, args, kwargs)
        if out is None:
            out = func(*args, **kwargs)
        return self._outputs_tracked(out)

    def _outputs_tracked(self, out: Any) -> Any:
        """``out`` (a tensor, or a tuple or list holding some), each new storage in it recorded."""
        if isinstance(out, torch.Tensor):
            self.key_of(out)
        elif isinstance(out, (tuple, list)):
            for item in out:
                if isinstance(item, torch.Tensor):
                    self.key_of(item)
        return out

    # ------------------------------------------------------------------ results
    def log(self) -> LifetimeLog:
        """Everything seen so far."""
        return LifetimeLog(tuple(self._events), dict(self._kinds), tuple(self._saved))

    def close(self) -> None:
        """Stop recording: later frees (when the caller drops outputs) are not events."""
        self._open = False
        self._refs.clear()  # a dropped weak reference never calls back


#: Calls that allocate at most their outputs, on any backend: views, reshapes (a copy when no view fits, into the
#: output) and ``contiguous`` (likewise). Read by :func:`allocates_only_outputs`. Metadata reads (``x.shape``,
#: ``x.size()``) never get here: the recorder runs them before any observer sees them.
_OUTPUTS_ONLY: frozenset[Any] = frozenset(
    {
        torch.Tensor.view, torch.Tensor.reshape, torch.reshape, torch.Tensor.permute, torch.permute,
        torch.Tensor.transpose, torch.transpose, torch.Tensor.flatten, torch.flatten, torch.Tensor.unflatten,
        torch.Tensor.squeeze, torch.squeeze, torch.Tensor.unsqueeze, torch.unsqueeze, torch.Tensor.expand,
        torch.Tensor.contiguous, torch.Tensor.chunk, torch.chunk, torch.Tensor.split, torch.split,
        torch.Tensor.unbind, torch.unbind,
    }
)  # fmt: skip


def allocates_only_outputs(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether ``func(*args, **kwargs)`` on meta tensors allocates nothing but its outputs (no scratch).

    Besides the listed views and reshapes: basic indexing (no tensor among the indices: advanced
    indexing may build index tensors) and dropout outside training (it returns its input). Only for
    meta tensors, so that CPU traces, which tests compare with meta traces, always run inside the mode.
    """
    if not args or not isinstance(args[0], torch.Tensor) or not args[0].is_meta:
        return False
    if func in _OUTPUTS_ONLY:
        return True
    if func is torch.Tensor.__getitem__:
        index = args[1] if len(args) > 1 else None
        items = index if isinstance(index, tuple) else (index,)
        return not any(isinstance(item, (torch.Tensor, list)) for item in items)
    if func is F.dropout:
        training = args[2] if len(args) > 2 else kwargs.get("training", True)
        return training is False and not (args[3] if len(args) > 3 else kwargs.get("inplace", False))
    return False


def register_model(tracker: StorageTracker, tree: ModelTree, example: torch.Tensor) -> None:
    """Tag parameters and buffers (never activations) and the input (an activation alive throughout)."""
    for _, param in tree.params:
        tracker.mark(param, StorageKind.PARAM)
    for buffer in tree.buffers:
        tracker.mark(buffer, StorageKind.BUFFER)
    tracker.mark(example, StorageKind.INPUT)


@contextmanager
def report_saved_tensors(tracker: StorageTracker) -> Iterator[None]:
    """Inside, every tensor autograd saves for backward is reported to ``tracker`` (wrap the forward with grad)."""
    with torch.autograd.graph.saved_tensors_hooks(tracker.saved, _unpack):
        yield


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _backward(roots: list[torch.Tensor], seeds: list[torch.Tensor]) -> None:
    """``torch.autograd.backward(roots, seeds)`` without its seed validation, which imports sympy (about 2 s
    and 150 MiB on first use): each seed is ``ones_like`` its root, so there is nothing to validate."""
    engine_run = getattr(torch.autograd.graph, "_engine_run_backward", None)
    if engine_run is None:  # a torch without the private entry point: the public one does the same
        torch.autograd.backward(roots, seeds)
        return
    engine_run(tuple(roots), tuple(seeds), False, False, (), allow_unreachable=True, accumulate_grad=True)


def run_backward(tracker: StorageTracker, model: nn.Module, outputs: list[torch.Tensor]) -> None:
    """Backward from ``outputs`` (seeded with ones, like a loss gradient), then tag parameter grads.

    The seeds are allocated inside the backward phase; every parameter's ``.grad`` storage is
    tagged as a gradient so it counts as ``grad_bytes``, not as an activation.
    """
    tracker.backward = True
    tracker.inside = False
    roots = [t for t in outputs if t.requires_grad]
    seeds = [torch.ones_like(t) for t in roots]
    _backward(roots, seeds)
    del seeds, roots
    for param in model.parameters():
        if param.grad is not None:
            tracker.mark(param.grad, StorageKind.GRAD)
