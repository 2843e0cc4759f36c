"""Memory analysis: live-bytes timelines, saved-for-backward bytes, training peak, "what fits".

Pure functions over op records and storage lifetime events. This module must not import torch,
rich or typer: the events come from :mod:`pvttrace.tracing.lifetimes`, which watches real tensor
storages during a traced forward (and backward) and reports when each is allocated and freed.

What is counted (the estimate is backend-independent; the CPU tests check it against
``torch.profiler`` memory events and ``saved_tensors_hooks`` on real tensors):

* **Activations** are every tensor storage the forward creates, from the op that allocates it to
  the moment the last tensor, view or autograd reference to it lets go, plus the model input
  (it is alive during the whole forward, so it counts as an activation). Temporaries that an
  op allocates and frees inside itself (matmul's expanded copies, layer_norm's mean/rstd) are
  included when the dispatcher sees them.
* **Parameters and buffers** are reported separately (``Totals.param_bytes``/``buffer_bytes``).
* Not included: scratch memory that kernels allocate internally (oneDNN reorders and im2col
  buffers on CPU, cuDNN workspaces on CUDA), allocator rounding and fragmentation, and the CUDA
  context. Keep some headroom when a budget is tight.

Per op: ``live_bytes`` is what is alive once the op has returned and the forward has dropped the
tensors it no longer needs (just before the next op starts); ``peak_bytes`` is the highest value
while the op ran. The trace's ``peak_activation_bytes`` is the highest ``peak_bytes``.

Training (one step: forward with grad, backward, optimizer step)::

    peak = params + buffers + grads + optimizer state + max(forward peak, backward peak)
    backward peak = saved activations + backward transient

``saved activations`` are the storages autograd holds for backward at the end of the forward,
each counted once however many ops saved it (parameters that autograd saves are reported
apart: they cost nothing extra). The ``backward peak`` is measured by running the backward on
the traced device: saved tensors are released node by node while activation gradients and
temporaries come and go; the ``backward transient`` is how far that rises above the saved
activations. Gradients are counted in full for the whole step (= trainable param bytes; with
``zero_grad(set_to_none=True)`` they are freed between steps, so this is an upper bound), and the
optimizer state is 0 (none, sgd), 1x (sgd-momentum: momentum buffer) or 2x (adam, adamw: exp_avg
and exp_avg_sq) the trainable param bytes; Adam's per-parameter step counters (a few bytes each)
are left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, Protocol, Self, TypeVar

from pvttrace.base.errors import ConfigError, UserInputError
from pvttrace.base.units import format_bytes, spell_bytes
from pvttrace.records import OpRecord, Totals, Trace, TrainingMemory

__all__ = [
    "IMG_STEP",
    "OPTIMIZER_STATE_FACTOR",
    "ActivationTimeline",
    "FitAnswer",
    "FitResult",
    "FitSearch",
    "LifetimeLog",
    "Optimizer",
    "SavedTensor",
    "StorageEvent",
    "StorageKind",
    "activation_timeline",
    "attention_extra_bytes",
    "backward_peak",
    "fit_config",
    "fit_largest",
    "live_peak",
    "optimizer_state_bytes",
    "saved_bytes_by_op",
    "with_activation_memory",
    "with_training_memory",
]


class Optimizer(StrEnum):
    """Optimizers whose state ``--optimizer`` accounts for."""

    NONE = "none"
    SGD = "sgd"
    SGD_MOMENTUM = "sgd-momentum"
    ADAM = "adam"
    ADAMW = "adamw"


#: State tensors per trainable parameter tensor, each the size of the parameter.
OPTIMIZER_STATE_FACTOR: dict[Optimizer, int] = {
    Optimizer.NONE: 0,
    Optimizer.SGD: 0,
    Optimizer.SGD_MOMENTUM: 1,  # momentum_buffer
    Optimizer.ADAM: 2,  # exp_avg, exp_avg_sq
    Optimizer.ADAMW: 2,
}


def optimizer_state_bytes(optimizer: Optimizer | str, trainable_param_bytes: int) -> int:
    """Bytes of optimizer state for ``trainable_param_bytes`` of parameters.

    Raises:
        UserInputError: an unknown optimizer name.
    """
    try:
        kind = Optimizer(optimizer)
    except ValueError:
        known = ", ".join(o.value for o in Optimizer)
        raise UserInputError(f"optimizer={optimizer!r} must be one of: {known}") from None
    return OPTIMIZER_STATE_FACTOR[kind] * trainable_param_bytes


class StorageKind(StrEnum):
    """What a tracked storage holds."""

    INPUT = "input"
    ACTIVATION = "activation"
    PARAM = "param"
    BUFFER = "buffer"
    GRAD = "grad"
    EMULATION = "emulation"
    """A copy the tracer makes on meta only to reproduce a real backend's layout (never counted)."""


#: Kinds whose bytes count as activations.
ACTIVATION_KINDS = frozenset({StorageKind.INPUT, StorageKind.ACTIVATION})


class StorageEvent(NamedTuple):
    """One storage allocated (``delta > 0``) or freed (``delta < 0``).

    ``op`` is the index of the op that was running when ``inside`` is true; otherwise the event
    happened between ops, before op ``op`` started (``op == number of ops`` after the last one).
    A named tuple rather than a frozen dataclass: a trace makes one or two per op, and a tuple is made in
    about a quarter of the time.
    """

    key: int
    delta: int
    op: int
    inside: bool
    backward: bool = False


@dataclass(frozen=True, slots=True)
class SavedTensor:
    """A tensor autograd saved for backward while op ``op`` ran (its storage ``key`` and size)."""

    op: int
    key: int
    nbytes: int


@dataclass(frozen=True, slots=True)
class LifetimeLog:
    """Everything a lifetime tracker saw: events in order, what each storage is, what autograd saved."""

    events: tuple[StorageEvent, ...]
    kinds: dict[int, StorageKind]
    saved: tuple[SavedTensor, ...] = ()

    def kind(self, key: int) -> StorageKind:
        """The kind of storage ``key`` (untagged storages are activations)."""
        return self.kinds.get(key, StorageKind.ACTIVATION)


@dataclass(frozen=True, slots=True)
class ActivationTimeline:
    """Activation bytes over a forward, per op (see the module docstring for the definitions)."""

    start_bytes: int
    """Alive before the first op (the input)."""
    live_bytes: tuple[int, ...]
    peak_bytes: tuple[int, ...]
    end_bytes: int
    """Alive after the forward returned (its outputs and the input)."""

    @property
    def peak(self) -> int:
        """Highest activation bytes at any moment."""
        return max((self.start_bytes, self.end_bytes, *self.peak_bytes))

    @property
    def peak_op(self) -> int | None:
        """The first op during which the peak occurs (None when it occurs outside every op)."""
        peak = self.peak
        return next((i for i, value in enumerate(self.peak_bytes) if value == peak), None)


def activation_timeline(log: LifetimeLog, n_ops: int) -> ActivationTimeline:
    """Replay the forward's events (backward events are ignored) into per-op live and peak bytes."""
    # Tagged storages that are not activations (params, buffers, grads ...); untagged ones are activations.
    # One set lookup per event rather than a kind lookup: a trace has one or two events per op.
    not_counted = {key for key, kind in log.kinds.items() if kind not in ACTIVATION_KINDS}
    live = 0
    before = [0] * (n_ops + 1)  # live just before op i starts; [n_ops]: after the forward
    filled = 0  # before[:filled] are final (event ops never decrease)
    peaks = [0] * n_ops
    for key, delta, op, inside, backward in log.events:
        if backward:
            continue
        # Ops before this event's op (and the op itself, once it runs) can no longer change their start.
        last = min(op + 1 if inside else op, n_ops)
        while filled < last:
            before[filled] = live
            filled += 1
        if key not in not_counted:
            live += delta
        if inside and op < n_ops and live > peaks[op]:
            peaks[op] = live
    starts = before[:filled] + [live] * (n_ops + 1 - filled)
    return ActivationTimeline(
        start_bytes=starts[0],
        live_bytes=tuple(starts[1:]),
        peak_bytes=tuple(map(max, peaks, starts)),  # starts has one more entry: map stops with peaks
        end_bytes=live,
    )


def backward_peak(log: LifetimeLog) -> int:
    """Highest activation bytes alive from the start of backward on (parameter gradients excluded)."""
    live = 0
    peak: int | None = None
    for event in log.events:
        if event.backward and peak is None:
            peak = live
        if log.kind(event.key) in ACTIVATION_KINDS:
            live += event.delta
        if event.backward and peak is not None:
            peak = max(peak, live)
    return live if peak is None else peak


def live_peak(log: LifetimeLog, kinds: frozenset[StorageKind] = ACTIVATION_KINDS) -> int:
    """Highest bytes alive at once over the whole log, counting storages of ``kinds``.

    With gradients included this replays a first training step as it happened (parameter
    gradients appear one by one during backward), which is what the CPU tests compare with
    ``torch.profiler``; the training peak itself counts all gradients (see the module docstring).
    """
    live = peak = 0
    for event in log.events:
        if log.kind(event.key) in kinds:
            live += event.delta
            peak = max(peak, live)
    return peak


def saved_bytes_by_op(log: LifetimeLog, n_ops: int) -> tuple[list[int], int, int]:
    """Saved-for-backward bytes: per op (storages it saved first), activation total, param/buffer total.

    Each storage counts once, however many ops saved it or views of it.
    """
    per_op = [0] * n_ops
    seen: set[int] = set()
    activations = params = 0
    for saved in log.saved:
        if saved.key in seen:
            continue
        seen.add(saved.key)
        if log.kind(saved.key) in (StorageKind.PARAM, StorageKind.BUFFER):
            params += saved.nbytes
            continue
        activations += saved.nbytes
        if 0 <= saved.op < n_ops:
            per_op[saved.op] += saved.nbytes
    return per_op, activations, params


def attention_extra_bytes(ops: Sequence[OpRecord], stage: int) -> int:
    """How far activations rise above their level before the attention of the stage's first block:
    q, k, v, the score map and its softmax (explicit), or q, k, v, the output and logsumexp (SDPA)."""
    block = [op for op in ops if op.stage == stage and op.block == 0]
    attention = [op for op in block if ".attn" in op.module or op.module.endswith("attn")]
    if not attention:
        return 0
    first = attention[0].index
    before = ops[first - 1].live_bytes if first > 0 else 0
    return max(op.peak_bytes for op in attention) - before


def with_activation_memory(
    ops: Sequence[OpRecord],
    totals: Totals,
    timeline: ActivationTimeline,
    input_bytes: int,
) -> tuple[tuple[OpRecord, ...], Totals]:
    """Copies of ops and totals carrying the inference memory of ``timeline``.

    Stage summaries read their activation peak off the ops (``pvttrace.stages.summary``), so they are
    built after this.
    """
    new_ops = tuple(
        op.with_memory(live_bytes=live, peak_bytes=peak, saved_bytes=op.saved_bytes)
        for op, live, peak in zip(ops, timeline.live_bytes, timeline.peak_bytes, strict=True)
    )
    peak_op = timeline.peak_op
    new_totals = dataclasses.replace(
        totals,
        input_bytes=input_bytes,
        peak_activation_bytes=timeline.peak,
        peak_op=peak_op,
        peak_stage=None if peak_op is None else new_ops[peak_op].stage,
        peak_memory_bytes=totals.param_bytes + totals.buffer_bytes + timeline.peak,
    )
    return new_ops, new_totals


def with_training_memory(
    ops: Sequence[OpRecord],
    totals: Totals,
    log: LifetimeLog,
    *,
    optimizer: Optimizer | str,
    trainable_params: int,
    trainable_param_bytes: int,
) -> tuple[tuple[OpRecord, ...], Totals, TrainingMemory]:
    """Attach a training step's memory (from the forward-with-grad + backward ``log``) to a trace's ops and totals.

    Stage summaries read their saved bytes off the ops (``pvttrace.stages.summary``), so they are built after this.
    """
    per_op, saved_activations, saved_params = saved_bytes_by_op(log, len(ops))
    new_ops = tuple(
        op.with_memory(live_bytes=op.live_bytes, peak_bytes=op.peak_bytes, saved_bytes=saved)
        for op, saved in zip(ops, per_op, strict=True)
    )
    forward_peak = activation_timeline(log, len(ops)).peak
    backward = backward_peak(log)
    state = optimizer_state_bytes(optimizer, trainable_param_bytes)
    grads = trainable_param_bytes
    peak = totals.param_bytes + totals.buffer_bytes + grads + state + max(forward_peak, backward)
    training = TrainingMemory(
        optimizer=Optimizer(optimizer).value,
        trainable_params=trainable_params,
        grad_bytes=grads,
        optimizer_state_bytes=state,
        saved_activation_bytes=saved_activations,
        saved_param_bytes=saved_params,
        forward_peak_bytes=forward_peak,
        backward_peak_bytes=backward,
        peak_bytes=peak,
    )
    return new_ops, dataclasses.replace(totals, peak_memory_bytes=peak), training


# ---------------------------------------------------------------------------------- what fits
@dataclass(frozen=True, slots=True)
class FitResult:
    """The largest value that fits a budget, with the peaks measured around it."""

    value: int
    """Largest fitting value of the searched quantity (batch size, or image side / step)."""
    peak_bytes: int
    """Peak at ``value``."""
    next_peak_bytes: int | None
    """Peak at ``value + 1`` (None when the search stopped at ``limit``)."""
    measured: tuple[tuple[int, int], ...]
    """Every (value, peak) traced, in order."""


def fit_largest(
    budget: int,
    peak_at: Callable[[int], int],
    *,
    linear_hint: bool = True,
    limit: int = 1 << 20,
) -> FitResult | None:
    """Largest ``n >= 1`` with ``peak_at(n) <= budget``, for a peak that grows with ``n``; None when 1 does not fit.

    With ``linear_hint`` (memory is nearly linear in the batch size) the first candidate comes
    from the peaks at 1 and 2; otherwise the search doubles. Either way the answer is verified by
    tracing: ``n`` fits and ``n + 1`` does not (binary search between the closest known values).
    """
    cache: dict[int, int] = {}
    order: list[tuple[int, int]] = []

    def peak(n: int) -> int:
        if n not in cache:
            cache[n] = peak_at(n)
            order.append((n, cache[n]))
        return cache[n]

    if peak(1) > budget:
        return None
    lo = 1  # fits
    hi: int | None = None  # does not fit
    if linear_hint and limit >= 2:
        slope = peak(2) - peak(1)
        if peak(2) > budget:
            hi = 2
        else:
            lo = 2
            guess = 1 + (budget - peak(1)) // slope if slope > 0 else limit
            guess = max(lo, min(guess, limit))
            for candidate in (guess, guess + 1):
                if candidate > limit:
                    break
                if peak(candidate) <= budget:
                    lo = max(lo, candidate)
                else:
                    hi = candidate
                    break
    while hi is None:
        if lo >= limit:
            break
        candidate = min(limit, lo * 2)
        if peak(candidate) <= budget:
            lo = candidate
        else:
            hi = candidate
    while hi is not None and hi - lo > 1:
        middle = (lo + hi) // 2
        if peak(middle) <= budget:
            lo = middle
        else:
            hi = middle
    next_peak = None
    if lo < limit:
        next_peak = peak(lo + 1)
    return FitResult(value=lo, peak_bytes=peak(lo), next_peak_bytes=next_peak, measured=tuple(order))


class FitSearch(StrEnum):
    """What ``fit`` searches: the batch size, or the side of a square image (multiples of 32)."""

    BATCH = "batch"
    IMG = "img"


#: Image sides searched by ``fit --img auto`` are multiples of this.
IMG_STEP = 32


@dataclass(frozen=True, slots=True)
class FitAnswer:
    """The largest batch (or square image side) whose estimated peak fits a budget."""

    budget: int
    search: FitSearch
    value: int
    """Largest fitting batch size, or image side in pixels."""
    trace: Trace
    """The trace at ``value`` (its totals hold the breakdown)."""
    next_value: int | None
    """The next candidate (value + 1, or + 32 pixels), which does not fit; None at the search limit."""
    next_peak_bytes: int | None
    traced: tuple[tuple[int, int], ...]
    """Every (value, peak) traced during the search, in order."""
    reserve: int = 0
    """Bytes set aside (CUDA context, allocator headroom) before ``budget``, which is what is left for the model."""


def _impossible(budget: int, memory: int, trace: Trace) -> UserInputError:
    totals = trace.totals
    static = totals.param_bytes + totals.buffer_bytes
    label = "parameters and buffers"
    if trace.training is not None:
        static += trace.training.grad_bytes + trace.training.optimizer_state_bytes
        label = f"parameters, gradients and {trace.training.optimizer} state"
    if static > budget:
        return UserInputError(
            f"memory={spell_bytes(memory)} is smaller than the {label} alone ({format_bytes(static)})"
        )
    what = f"batch {trace.input_shape[0]} at {trace.input_shape[2]}x{trace.input_shape[3]}"
    return UserInputError(
        f"memory={spell_bytes(memory)} is too small: the smallest candidate ({what}) needs "
        f"{format_bytes(totals.peak_memory_bytes)}"
    )


_Sized = TypeVar("_Sized", bound="Resizable")


class Resizable(Protocol):
    """What :func:`fit_config` searches over: a ``PvtConfig``, or a model spec (``pvttrace.tracing.target``)."""

    def with_overrides(self, *, batch: int = ..., img: tuple[int, int] = ...) -> Self:
        """A copy at another batch size or image size (ConfigError when it does not accept it)."""
        ...


def fit_config(
    cfg: _Sized,
    memory: int,
    *,
    trace: Callable[[_Sized], Trace],
    search: FitSearch = FitSearch.BATCH,
    limit: int = 1 << 20,
    reserve: int = 0,
) -> FitAnswer:
    """Largest batch (or square image side) of ``cfg`` whose traced peak memory fits ``memory`` bytes.

    ``trace`` traces a config (e.g. ``functools.partial(trace_config, train=True)``); its
    ``totals.peak_memory_bytes`` is compared with the budget. Batch search starts from the
    near-linear growth of memory with batch size, then verifies by tracing (the answer fits,
    answer + 1 does not); image search doubles, then bisects, over multiples of 32 pixels
    (starting at the smallest side the config accepts).

    ``reserve`` bytes (e.g. ``2**30``) are taken off the budget first: what the CUDA context and
    the caching allocator's rounding and fragmentation hold, which no trace sees.

    Raises:
        UserInputError: a budget that is not positive, a reserve not below the budget, or a budget
            that not even the smallest candidate fits (smaller than the parameters, or than the
            first candidate's peak).
    """
    if memory <= 0:
        raise UserInputError(f"memory={memory} must be a positive number of bytes")
    if reserve < 0:
        raise UserInputError(f"reserve={reserve} must not be negative")
    if reserve >= memory:
        raise UserInputError(f"reserve={spell_bytes(reserve)!r} must be smaller than memory={spell_bytes(memory)!r}")
    budget = memory - reserve
    traces: dict[int, Trace] = {}
    first_side = _smallest_valid_side(cfg) if search == FitSearch.IMG else 0

    def to_value(n: int) -> int:
        """Search index (1, 2, ...) -> batch size or image side."""
        return n if search == FitSearch.BATCH else first_side + (n - 1) * IMG_STEP

    def config_at(n: int) -> _Sized:
        value = to_value(n)
        return cfg.with_overrides(batch=value) if search == FitSearch.BATCH else cfg.with_overrides(img=(value, value))

    def peak_at(n: int) -> int:
        traced = trace(config_at(n))
        traces[n] = traced
        return traced.totals.peak_memory_bytes

    result = fit_largest(budget, peak_at, linear_hint=search == FitSearch.BATCH, limit=limit)
    if result is None:
        raise _impossible(budget, memory, traces[1])
    at_limit = result.next_peak_bytes is None
    return FitAnswer(
        budget=budget,
        search=search,
        value=to_value(result.value),
        trace=traces[result.value],
        next_value=None if at_limit else to_value(result.value + 1),
        next_peak_bytes=result.next_peak_bytes,
        traced=tuple((to_value(n), peak) for n, peak in result.measured),
        reserve=reserve,
    )


def _smallest_valid_side(cfg: Resizable) -> int:
    """The smallest multiple of 32 pixels the config accepts as a square image side."""
    for side in range(IMG_STEP, 64 * IMG_STEP + 1, IMG_STEP):
        try:
            cfg.with_overrides(img=(side, side))
        except ConfigError:
            continue
        return side
    raise UserInputError(f"img=auto: no square image side up to {64 * IMG_STEP} is valid for this configuration")
