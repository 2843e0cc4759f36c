"""The tracer: run a model's forward once and record every op with its module, shapes and cost.

Two mechanisms work together:

* forward pre/post hooks on every named submodule keep a stack of module paths, so each op
  knows which module's forward issued it;
* a ``TorchFunctionMode`` sees each user-level torch call exactly once (``Tensor.reshape``,
  ``@``, ``softmax``, ``F.linear``, ``F.conv2d`` ...): calls nested inside a handled call are not
  re-reported, so the trace has no aten noise and ``nn.Linear`` shows up as one ``linear``.

Every call that returns a tensor is recorded; costs come from ``pvttrace.costs.registry``. On the
``meta`` device no tensor memory is allocated, so a trace at 2048x2048 costs what one at 224
does. Hooks and the mode are removed in ``finally`` blocks even when the forward raises.

Memory: a :class:`pvttrace.tracing.lifetimes.StorageTracker` follows every storage's real lifetime during
the same forward (and, for training traces, a second forward with grad plus the backward); the
analysis is in :mod:`pvttrace.memory.estimate`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode, resolve_name

from pvttrace import __version__
from pvttrace.base.errors import MetaDeviceError, TraceError, UserCodeExit, UserInputError
from pvttrace.base.gcpause import without_gc
from pvttrace.base.steps import current_label, current_stage
from pvttrace.config import Device, PvtConfig
from pvttrace.costs.callfacts import call_facts
from pvttrace.costs.conventions import AttentionStage, Convention, apply_convention, as_convention
from pvttrace.costs.registry import conv_role, cost_entries, cost_entry
from pvttrace.memory import estimate as memory
from pvttrace.memory.estimate import LifetimeLog, Optimizer, StorageKind
from pvttrace.records import CostRule, OpKind, OpRecord, Shape, StageSummary, Totals, Trace
from pvttrace.stages.labels import block_of, is_pvt_like, label_ops, stage_of_module
from pvttrace.stages.structure import StageGeometry, derive_structure
from pvttrace.stages.summary import config_stage_summaries, derived_stage_summaries
from pvttrace.tracing.atenshapes import suggest_memory_format
from pvttrace.tracing.lifetimes import StorageTracker, register_model, report_saved_tensors, run_backward
from pvttrace.tracing.metashapes import meta_stand_in
from pvttrace.tracing.model import build_model, stage_block_groups, torch_dtype
from pvttrace.tracing.replay import BlockReplay
from pvttrace.tracing.trainstate import preserved_state
from pvttrace.tracing.tree import ModelTree

__all__ = ["architecture_key", "memory_log", "record_ops", "trace_config", "trace_model"]

# Property getters and metadata calls that return tensors but are not ops of the model.
_IGNORED = frozenset({"Tensor.data.__get__", "Tensor.grad.__get__", "Tensor.untyped_storage", "Tensor.detach"})

# Metadata reads: they never return a tensor (so are never recorded) and allocate nothing, so the recorder
# runs them straight away. Models read them thousands of times (``x.shape`` before every reshape).
_METADATA_READS: frozenset[Any] = frozenset(
    {
        torch.Tensor.shape.__get__, torch.Tensor.device.__get__, torch.Tensor.dtype.__get__,  # type: ignore[attr-defined]
        torch.Tensor.ndim.__get__, torch.Tensor.is_meta.__get__, torch.Tensor.requires_grad.__get__,  # type: ignore[attr-defined]
        torch.Tensor.size, torch.Tensor.dim, torch.Tensor.stride, torch.Tensor.numel, torch.Tensor.element_size,
        torch.Tensor.is_contiguous,
    }
)  # fmt: skip

_TORCH_DIR = os.path.dirname(torch.__file__)
# This module's own frames (the forward wrappers of _module_paths) are skipped too: matched by the end of the
# path, which does not depend on how the package was imported.
_SKIPPED_FILES = (_TORCH_DIR, os.path.join(os.sep + "pvttrace", "tracing", "recorder.py"), os.sep + "contextlib.py")


def _known_names() -> dict[Any, str]:
    """Map the torch functions named in the cost registry to their names.

    ``torch.overrides.resolve_name`` builds a table of every torch function on first use
    (about 0.2 s); resolving our own few hundred names directly costs almost nothing.
    """
    names: dict[Any, str] = {}
    for name in (entry.op for entry in cost_entries()):
        target: Any = torch
        for part in name.split("."):
            target = getattr(target, part, None)
            if target is None:
                break
        if target is not None:
            names.setdefault(target, name)
    return names


_name_cache: dict[Any, str] = _known_names()


def _op_name(func: Callable[..., Any]) -> str:
    name = _name_cache.get(func)
    if name is None:
        resolved = resolve_name(func) or getattr(func, "__qualname__", None) or repr(func)
        name = resolved.removeprefix("torch.")
        _name_cache[func] = name
    return name


def _stage_of(module: str) -> int | None:
    return stage_of_module(module)


def _block_of(module: str) -> int | None:
    return block_of(module)


def _tensors(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    for value in (*args, *kwargs.values()) if kwargs else args:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend([v for v in value if isinstance(v, torch.Tensor)])
    return found


def _source_file(code: CodeType) -> str | None:
    """The file name a recorded op's source shows for code in ``code``; None for torch's and our own frames."""
    filename = code.co_filename
    if filename.startswith(_SKIPPED_FILES[0]) or filename.endswith(_SKIPPED_FILES[1:]):
        return None
    return os.path.basename(filename)


_UNSEEN: Any = object()


def _source(frame: FrameType | None, files: dict[CodeType, str | None]) -> str | None:
    """``file:line`` of the innermost frame outside torch; ``files`` caches :func:`_source_file` per code object."""
    while frame is not None:
        code = frame.f_code
        name = files.get(code, _UNSEEN)
        if name is _UNSEEN:
            name = files[code] = _source_file(code)
        if name is not None:
            return f"{name}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _fused_sdpa_on_meta(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """SDPA as a fused kernel would run it. On meta, ``F.scaled_dot_product_attention`` falls back to
    the math path, which materialises the [B, h, N, N'] map (and saves it for backward); the fused
    CPU/CUDA kernels do not, and return a [B, N, h, d]-strided output. Same shapes and MACs."""
    if enable_gqa or query.dim() != 4:
        return F.scaled_dot_product_attention(
            query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa
        )
    out: torch.Tensor = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale
    )[0]
    return out


def _conv2d_on_meta(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    *,
    observer: OpObserver | None = None,
) -> torch.Tensor:
    """conv2d with the output layout a real backend gives. oneDNN (CPU) and cuDNN (CUDA) return a
    channels_last output when the input's strides are channels_last (PVT's ``tokens -> map`` views
    are, from batch 2 on); the meta kernel always returns NCHW (torch/_meta_registrations.py says
    so), which would turn later views into copies. The NCHW result is re-laid out and the observer
    told to count only the new storage, as the backend allocates just one."""
    out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    if input.dim() == 4 and suggest_memory_format(input) == torch.channels_last:
        relaid = out.contiguous(memory_format=torch.channels_last)
        if observer is not None:
            observer.relayout(out, relaid)
        out = relaid
    return out


class OpObserver(Protocol):
    """Told when the recorder starts and finishes each op (the memory tracker positions its events so)."""

    def op_started(self, index: int) -> None: ...

    def op_finished(self, ops_recorded: int) -> None: ...

    def relayout(self, old: torch.Tensor, new: torch.Tensor) -> None:
        """``old`` was copied into ``new`` only to give it the layout a real backend produces directly."""

    def empty(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``torch.empty``, for the shape stand-ins: the observer sees each tensor they make."""

    def run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``func(*args, **kwargs)``, run so that the observer sees what it allocates."""


class _Recorder(TorchFunctionMode):
    """Records one ``OpRecord`` per tensor-returning torch call."""

    def __init__(
        self,
        module_stack: list[str],
        facts: list[dict[str, Any]] | None = None,
        observer: OpObserver | None = None,
    ) -> None:
        super().__init__()
        self.module_stack = module_stack
        self.records: list[OpRecord] = []
        self.facts = facts
        self.failed_op: str | None = None
        self.failed_on_meta = False
        """True when the first failing torch call had a meta tensor argument (see :class:`MetaDeviceError`)."""
        self.failed_exc: BaseException | None = None
        self.observer = observer
        # Per-trace caches of pure functions of their keys (a trace has a few hundred distinct modules, code
        # objects and dtypes, and thousands of ops): they save work per op and change no figure.
        self._places: dict[str, tuple[int | None, int | None]] = {}  # module -> (stage by its path, block)
        self._source_files: dict[CodeType, str | None] = {}
        self._dtype_names: dict[torch.dtype, str] = {}

    def _runner(self, func: Callable[..., Any], args: tuple[Any, ...]) -> Callable[..., Any]:
        """The real call, except two meta kernels that would differ from CPU/CUDA in layout or memory."""
        if args and getattr(args[0], "is_meta", False):
            if func is F.scaled_dot_product_attention:
                return _fused_sdpa_on_meta
            if func is F.conv2d:
                return functools.partial(_conv2d_on_meta, observer=self.observer)
        return func

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func in _METADATA_READS:
            try:
                return func(*args, **kwargs)
            except Exception:  # the full path below repeats the call and reports the failure
                pass
        observer = self.observer
        if observer is not None:
            observer.op_started(len(self.records))
        try:
            try:
                out = meta_stand_in(func, args, kwargs, torch.empty if observer is None else observer.empty)
                if out is None:
                    runner = self._runner(func, args)
                    out = runner(*args, **kwargs) if observer is None else observer.run(runner, args, kwargs)
            except Exception as exc:
                if self.failed_op is None:
                    self.failed_op = f"{_op_name(func)} in {self.module_stack[-1] or 'the model'}"
                    self.failed_on_meta = isinstance(exc, (RuntimeError, NotImplementedError)) and any(
                        t.is_meta for t in _tensors(args, kwargs)
                    )
                    self.failed_exc = exc
                raise
            name = _op_name(func)
            if name not in _IGNORED:
                outputs = (
                    [out]
                    if isinstance(out, torch.Tensor)
                    else _tensors(tuple(out), {})
                    if isinstance(out, (list, tuple))
                    else []
                )
                if outputs:
                    facts = call_facts(name, func, args, kwargs)
                    self._record(name, _tensors(args, kwargs), outputs, sys._getframe(1), facts)
                    if self.facts is not None:
                        self.facts.append(facts)
        finally:
            if observer is not None:
                observer.op_finished(len(self.records))
        return out

    def _record(
        self,
        name: str,
        inputs: list[torch.Tensor],
        outputs: list[torch.Tensor],
        frame: FrameType,
        facts: dict[str, Any],
    ) -> None:
        module = self.module_stack[-1]
        label = current_label()
        entry = cost_entry(name)  # what cost_rule, op_kind and record_macs look up, looked up once
        rule = entry.cost_rule if entry is not None else CostRule.NONE
        kind = entry.kind if entry is not None else OpKind.OTHER
        if kind == OpKind.CONV and len(inputs) >= 2:
            depthwise = inputs[1].shape[1] == 1 and inputs[0].shape[1] > 1
            kind = conv_role(kind, module, label, depthwise=depthwise)
        in_shapes = tuple([tuple(t.shape) for t in inputs])
        out_shape = tuple(outputs[0].shape)
        input_storages = {t.untyped_storage()._cdata for t in inputs}
        out_bytes = 0
        alloc_bytes = 0
        aliased = False
        for t in outputs:
            out_bytes += t.numel() * t.element_size()
            storage = t.untyped_storage()
            if storage._cdata in input_storages:
                aliased = True
            else:
                alloc_bytes += storage.nbytes()
        place = self._places.get(module)
        if place is None:
            place = self._places[module] = (_stage_of(module), _block_of(module))
        stage = current_stage()
        if stage is None:
            stage = place[0]
        dtype = outputs[0].dtype
        dtype_name = self._dtype_names.get(dtype)
        if dtype_name is None:
            dtype_name = self._dtype_names[dtype] = str(dtype).removeprefix("torch.")
        self.records.append(
            OpRecord(
                index=len(self.records),
                module=module,
                op=name,
                kind=kind,
                label=label,
                inputs=in_shapes,
                output=out_shape,
                dtype=dtype_name,
                macs=entry.macs(in_shapes, out_shape, facts) if entry is not None and entry.macs is not None else 0,
                out_bytes=out_bytes,
                alloc_bytes=alloc_bytes,
                view=aliased,
                source=_source(frame, self._source_files),
                stage=stage,
                block=place[1],
                cost_rule=rule,
            )
        )


def _path_pushing(forward: Callable[..., Any], path: str, stack: list[str]) -> Callable[..., Any]:
    """``forward`` wrapped to push ``path`` on ``stack`` while it runs (popped also when it raises)."""

    def forward_at_path(*args: Any, **kwargs: Any) -> Any:
        stack.append(path)
        try:
            return forward(*args, **kwargs)
        finally:
            stack.pop()

    return forward_at_path


_NOT_SHADOWED = object()


@contextmanager
def _module_paths(
    modules: list[tuple[str, nn.Module]], stack: list[str], replay: BlockReplay | None = None
) -> Iterator[None]:
    """Push each named submodule's path while its forward runs; leave every module as it was afterwards.

    Each module's ``forward`` is shadowed by an instance attribute that pushes and pops the path, rather than
    forward hooks: any hook sends every module call through ``nn.Module``'s slow path, which cost about as much
    per op as recording it. Script modules, whose attributes cannot be shadowed, get the two hooks instead.
    """
    shadowed: list[tuple[nn.Module, Any]] = []
    with ExitStack() as handles:
        try:
            for path, module in modules:
                if isinstance(module, torch.jit.ScriptModule):

                    def push(_mod: nn.Module, _args: Any, path: str = path) -> None:
                        stack.append(path)

                    def pop(_mod: nn.Module, _args: Any, _out: Any) -> None:
                        stack.pop()

                    handles.callback(module.register_forward_pre_hook(push).remove)
                    handles.callback(module.register_forward_hook(pop, always_call=True).remove)
                    continue
                own = module.__dict__.get("forward", _NOT_SHADOWED)
                forward = module.forward if replay is None else replay.wrap(path, module.forward)
                module.__dict__["forward"] = _path_pushing(forward, path, stack)
                shadowed.append((module, own))
            yield
        finally:
            for module, own in shadowed:
                if own is _NOT_SHADOWED:
                    del module.__dict__["forward"]
                else:
                    module.__dict__["forward"] = own


def _output_shapes(out: Any) -> tuple[Shape, ...]:
    if isinstance(out, torch.Tensor):
        return (tuple(out.shape),)
    if isinstance(out, (list, tuple)):
        return tuple(tuple(t.shape) for t in out if isinstance(t, torch.Tensor))
    if isinstance(out, dict):
        return tuple(tuple(t.shape) for t in out.values() if isinstance(t, torch.Tensor))
    return ()


@dataclass(frozen=True, slots=True)
class ModelInputs:
    """What a forward is called with when it is not one tensor: ``model(*args, **kwargs)``.

    The trace's ``input_shape`` and device are those of the first tensor; every tensor counts as input memory.
    """

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def tensors(self) -> list[torch.Tensor]:
        """The tensor arguments, positional first."""
        return _tensors(self.args, self.kwargs)


def _set_training(model: nn.Module, modules: list[tuple[str, nn.Module]], mode: bool) -> None:
    """``model.train(mode)``, skipped when every module is in that mode already: the call walks the whole
    module tree, which on a deep model costs as much per module as recording its ops."""
    if any(module.training != mode for _, module in modules):
        model.train(mode)


def _as_inputs(example: torch.Tensor | ModelInputs) -> ModelInputs:
    inputs = example if isinstance(example, ModelInputs) else ModelInputs((example,))
    if not inputs.tensors():
        raise UserInputError("inputs must hold at least one tensor (the trace's input shape is the first one's)")
    return inputs


def _run_recorded(
    model: nn.Module,
    example: torch.Tensor | ModelInputs,
    *,
    observer: OpObserver | None = None,
    train: bool = False,
    facts: list[dict[str, Any]] | None = None,
    block_groups: Mapping[str, Hashable] | None = None,
    tree: ModelTree | None = None,
) -> tuple[tuple[OpRecord, ...], Any]:
    """Run ``model(example)`` under the recorder (eval + no_grad, or train mode with grad); records and raw output.

    ``block_groups`` (inference only) names modules built alike: see :class:`pvttrace.tracing.replay.BlockReplay`.
    """
    inputs = _as_inputs(example)
    stack: list[str] = [""]
    recorder = _Recorder(stack, facts, observer)
    replay = None
    if block_groups and not train and (observer is None or isinstance(observer, StorageTracker)):
        replay = BlockReplay(block_groups, recorder.records, facts, observer)
    was_training = model.training
    modules = list(tree.modules if tree is not None else model.named_modules())
    _set_training(model, modules, train)
    try:
        with _module_paths(modules, stack, replay), torch.enable_grad() if train else torch.no_grad(), recorder:
            out = model(*inputs.args, **inputs.kwargs)
    except SystemExit as exc:
        where = f"module {stack[-1]}" if stack[-1] else "the model"
        raise UserCodeExit(f"the forward called sys.exit({exc.code!r}) in {where}") from None
    except Exception as exc:
        where = recorder.failed_op or f"module {stack[-1] or 'the model'}"
        last = recorder.records[-1] if recorder.records else None
        after = f"; last recorded op #{last.index} {last.title} in {last.module or 'the model'}" if last else ""
        message = " ".join(str(exc).split())
        if isinstance(exc, RecursionError):
            message = "it nests modules or calls too deeply for Python's recursion limit"
        # A torch call that failed on meta tensors (and not the model's own Python code) is a meta-device
        # failure: decided by where and how it failed, not by the words of the message.
        error = MetaDeviceError if recorder.failed_on_meta and recorder.failed_exc is exc else TraceError
        raise error(f"the forward failed at {where}: {type(exc).__name__}: {message}{after}") from exc
    finally:
        _set_training(model, modules, was_training)
    return tuple(recorder.records), out


def record_ops(
    model: nn.Module,
    example: torch.Tensor | ModelInputs,
    *,
    facts: list[dict[str, Any]] | None = None,
    observer: OpObserver | None = None,
    block_groups: Mapping[str, Hashable] | None = None,
    tree: ModelTree | None = None,
) -> tuple[tuple[OpRecord, ...], tuple[Shape, ...]]:
    """Run ``model(example)`` under the recorder; return the op records and the output shapes.

    ``facts``, when given, receives each recorded call's non-tensor facts (``callfacts``), one per op;
    ``observer`` (e.g. a :class:`pvttrace.tracing.lifetimes.StorageTracker`) is told when each op starts and ends.

    Raises:
        TraceError: the forward raised; the message names the failing op and module.
    """
    ops, out = _run_recorded(model, example, observer=observer, facts=facts, block_groups=block_groups, tree=tree)
    return ops, _output_shapes(out)


def _output_tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else ()
    return [t for t in values if isinstance(t, torch.Tensor)]


def memory_log(
    model: nn.Module,
    example: torch.Tensor | ModelInputs,
    *,
    train: bool,
    facts: list[dict[str, Any]] | None = None,
    block_groups: Mapping[str, Hashable] | None = None,
    tree: ModelTree | None = None,
) -> tuple[tuple[OpRecord, ...], tuple[Shape, ...], LifetimeLog]:
    """Run one forward (inference) or forward + backward (training) under a storage tracker.

    Returns the op records, the output shapes and the tracker's :class:`pvttrace.memory.estimate.LifetimeLog`
    (every storage allocation and free, what autograd saved).
    Parameter gradients made by the backward are dropped afterwards, so the model is left as it was.
    """
    tree = tree if tree is not None else ModelTree.of(model)
    with preserved_state(tree, train=train):  # outside the tracker: its copies are not memory
        return _memory_log(model, example, train=train, facts=facts, block_groups=block_groups, tree=tree)


def _memory_log(
    model: nn.Module,
    example: torch.Tensor | ModelInputs,
    *,
    train: bool,
    facts: list[dict[str, Any]] | None,
    block_groups: Mapping[str, Hashable] | None,
    tree: ModelTree,
) -> tuple[tuple[OpRecord, ...], tuple[Shape, ...], LifetimeLog]:
    tracker = StorageTracker(always_on=train)
    out: Any = None
    try:
        inputs = _as_inputs(example)
        register_model(tracker, tree, inputs.tensors()[0])
        for extra in inputs.tensors()[1:]:
            tracker.mark(extra, StorageKind.INPUT)
        # Inference: the tracker watches op by op (StorageTracker.run); training: throughout, backward included.
        with tracker if tracker.always_on else nullcontext():
            with report_saved_tensors(tracker) if train else nullcontext():
                ops, out = _run_recorded(
                    model, example, observer=tracker, train=train, facts=facts, block_groups=block_groups, tree=tree
                )
            shapes = _output_shapes(out)
            if train:
                outputs, out = _output_tensors(out), None
                try:
                    run_backward(tracker, model, outputs)
                except Exception as exc:
                    message = " ".join(str(exc).split())
                    raise TraceError(f"the backward failed: {type(exc).__name__}: {message}") from exc
                finally:
                    del outputs
        return ops, shapes, tracker.log()
    finally:
        tracker.close()
        del out  # only now: the outputs are alive after the forward, like the caller's
        if train:
            for param in model.parameters():
                param.grad = None


def _stage_params(model: nn.Module) -> dict[int | None, int]:
    return _stage_param_counts(model.named_parameters())


def _stage_param_counts(named_params: Iterable[tuple[str, nn.Parameter]]) -> dict[int | None, int]:
    counts: dict[int | None, int] = {}
    for name, param in named_params:
        stage = _stage_of(name)
        counts[stage] = counts.get(stage, 0) + param.numel()
    return counts


def _derived_stage_params(
    named_params: Iterable[tuple[str, nn.Parameter]], module_stages: dict[str, int | None]
) -> dict[int | None, int]:
    """Parameters per derived stage: each goes to the stage its module's ops ran in (None when they span several)."""
    counts: dict[int | None, int] = {}
    for name, param in named_params:
        module = name.rpartition(".")[0]
        stage = module_stages.get(module)
        counts[stage] = counts.get(stage, 0) + param.numel()
    return counts


def _attention_stages(
    config: PvtConfig | None, stages: tuple[StageSummary, ...], ops: tuple[OpRecord, ...]
) -> list[AttentionStage]:
    """The stages the paper convention's closed-form attention term covers."""
    if config is not None:
        return [
            AttentionStage(i + 1, config.dims[i], config.sr_ratios[i], config.linear_sra)
            for i in range(config.num_stages)
        ]
    pooled = {op.stage for op in ops if op.label == "SR pool"}
    return [AttentionStage(s.index, s.dim, s.sr_ratio, s.index in pooled) for s in stages if s.attention_map_shape]


# Paused collector: a trace creates a few objects per op that live until it ends (records, events, weak
# references), so automatic collections made the cost per op grow with the number of ops. Storages are freed by
# reference counting (the lifetime tracker relies on that), so pausing changes no figure; tests compare both ways.
@without_gc
def trace_model(
    model: nn.Module,
    example: torch.Tensor | ModelInputs,
    *,
    config: PvtConfig | None = None,
    convention: Convention | str = Convention.MACS,
    model_name: str | None = None,
    notes: list[str] | None = None,
    train: bool = False,
    optimizer: Optimizer | str = Optimizer.ADAMW,
    memory_figures: bool = True,
    block_groups: Mapping[str, Hashable] | None = None,
) -> Trace:
    """Trace ``model`` on ``example``: a built-in model with its ``config``, or any ``nn.Module``.

    Without a config, ops get labels from the rule table (``pvttrace.stages.labels``) and stage summaries
    are read back from the records. ``convention`` re-costs the ops (``pvttrace.costs.conventions``);
    ``notes``, when given, receives non-fatal remarks about the counting.

    Every trace carries its inference memory (per-op live and peak activation bytes, the peak);
    with ``train`` a second forward with grad and a backward add the training-step memory for
    ``optimizer`` (see :mod:`pvttrace.memory.estimate`). ``memory_figures=False`` (inference only) skips the
    storage tracking, which costs about a third of the forward: memory fields are then 0, every other
    figure is the same (for callers such as sweeps that show no memory metric). ``block_groups`` maps the
    paths of modules built alike (a built-in stage's blocks) to a group: the inference forward repeats, rather
    than re-runs, a block whose twin ran on an identical input (:mod:`pvttrace.tracing.replay`); same figures.

    Raises:
        TraceError: the forward (or backward) failed.
        UserInputError: an unknown optimizer.
    """
    memory.optimizer_state_bytes(optimizer, 0)  # validates the name before any work
    convention = as_convention(convention)
    if train and torch.is_inference_mode_enabled():
        # Inference mode makes autograd save nothing: the training memory would read 0 saved bytes.
        raise UserInputError(
            "train=True cannot be traced inside torch.inference_mode(): autograd saves no activations there, so "
            "the training memory would be wrong; call it outside the inference_mode block"
        )
    inputs = _as_inputs(example)
    first = inputs.tensors()[0]
    facts: list[dict[str, Any]] = []
    tree = ModelTree.of(model)
    if memory_figures or train:
        ops, outputs, log = memory_log(model, example, train=False, facts=facts, block_groups=block_groups, tree=tree)
    else:
        ops, outputs = record_ops(model, example, facts=facts, block_groups=block_groups, tree=tree)
        log = None
    module_types = {name: f"{type(m).__module__}.{type(m).__qualname__}" for name, m in tree.modules}
    named_params = list(tree.params)
    stage_params = _stage_param_counts(named_params)
    geometry: tuple[StageGeometry, ...] = ()
    if config is None:
        ops = label_ops(ops)
        derived = derive_structure(ops, module_types, int(first.shape[0]) if first.dim() else 1)
        if derived is not None:
            ops, geometry = derived.ops, derived.stages
            stage_params = _derived_stage_params(named_params, derived.module_stages)
    params = [param for _, param in named_params]

    def stage_summaries(ops: tuple[OpRecord, ...]) -> tuple[StageSummary, ...]:
        if config is not None:
            return config_stage_summaries(config, ops, stage_params)
        return derived_stage_summaries(ops, stage_params, geometry)

    if convention != "macs":
        structure = stage_summaries(ops)
        pvt_like = config is not None or is_pvt_like(name for name, _ in tree.modules)
        if convention == "paper" and not pvt_like and notes is not None:
            notes.append("convention paper: the model is not PVT-like, so no closed-form attention term is added")
        ops = apply_convention(
            convention,
            ops,
            facts,
            module_types,
            input_shape=tuple(first.shape),
            attention_stages=_attention_stages(config, structure, ops) if pvt_like else (),
        )
    totals = Totals(
        params=sum(p.numel() for p in params),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in tree.buffers),
        macs=sum(op.macs for op in ops),
        largest_activation_bytes=max((op.out_bytes for op in ops), default=0),
        ops=len(ops),
        uncosted_ops=sum(1 for op in ops if op.cost_rule == CostRule.NONE),
    )
    input_bytes = sum({t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in inputs.tensors()}.values())
    if log is not None:
        timeline = memory.activation_timeline(log, len(ops))
        ops, totals = memory.with_activation_memory(ops, totals, timeline, input_bytes)
    training = None
    if train:
        train_ops, _, train_log = memory_log(model, inputs, train=True, tree=tree)
        if [op.op for op in train_ops] != [op.op for op in ops]:
            raise TraceError("the forward with grad enabled issued different ops than the inference forward")
        trainable = [p for p in params if p.requires_grad]
        ops, totals, training = memory.with_training_memory(
            ops,
            totals,
            train_log,
            optimizer=optimizer,
            trainable_params=sum(p.numel() for p in trainable),
            trainable_param_bytes=sum(p.numel() * p.element_size() for p in trainable),
        )
    return Trace(
        config=config,
        input_shape=tuple(first.shape),
        outputs=outputs,
        ops=ops,
        stages=stage_summaries(ops),
        totals=totals,
        device=str(first.device.type),
        tool_version=__version__,
        convention=convention,
        model=model_name,
        training=training,
    )


def architecture_key(cfg: PvtConfig) -> tuple[Any, ...]:
    """Every field of ``cfg`` the built model can depend on: all but the input's size and batch."""
    return tuple(getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in ("img", "batch", "warnings"))


def trace_config(
    cfg: PvtConfig,
    *,
    device: Device | str = Device.META,
    convention: Convention | str = Convention.MACS,
    train: bool = False,
    optimizer: Optimizer | str = Optimizer.ADAMW,
    memory_figures: bool = True,
    model: nn.Module | None = None,
) -> Trace:
    """Build the PVT described by ``cfg`` on ``device`` and trace one forward of a ``cfg.input_shape`` batch.

    With ``train``, also a training step's memory (forward with grad, backward, ``optimizer`` state);
    ``memory_figures=False`` leaves the memory fields 0 (see :func:`trace_model`). ``model``, when given, is
    a model already built on ``device`` for ``cfg``'s architecture (see :func:`architecture_key`), e.g. by
    a sweep that traces one architecture at many sizes: the model does not depend on the image size.

    Example:
        >>> from pvttrace.config import get_variant
        >>> trace = trace_config(get_variant("tiny"))
        >>> trace.totals.macs
        1932911616
        >>> trace.stages[0].kv_tokens
        49

    Raises:
        TraceError: the model or its input does not fit on ``device``, or the forward failed.
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError(
            f"device={str(device)!r} is not available: this torch build sees no CUDA GPU (use meta or cpu)"
        )
    try:
        if model is None:
            model = build_model(cfg, device=device)
        example = torch.empty(cfg.input_shape, device=device, dtype=torch_dtype(cfg.dtype))
        if device != "meta":
            example.normal_(generator=torch.Generator(device=device).manual_seed(0))
    except (RuntimeError, MemoryError) as exc:  # real devices: out of memory (meta allocates nothing)
        message = " ".join(str(exc).split())[:300]
        raise TraceError(f"cannot build the model and its input on {device}: {type(exc).__name__}: {message}") from exc
    return trace_model(
        model,
        example,
        config=cfg,
        convention=convention,
        train=train,
        optimizer=optimizer,
        memory_figures=memory_figures,
        # On meta only: a repeated block's output is a fresh tensor, which on a real device would hold no values.
        block_groups=stage_block_groups(cfg) if device == "meta" else None,
    )
