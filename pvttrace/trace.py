"""The tracer: run a model's forward once and record every op with its module, shapes and cost.

Two mechanisms work together:

* forward pre/post hooks on every named submodule keep a stack of module paths, so each op
  knows which module's forward issued it;
* a ``TorchFunctionMode`` sees each user-level torch call exactly once (``Tensor.reshape``,
  ``@``, ``softmax``, ``F.linear``, ``F.conv2d`` ...): calls nested inside a handled call are not
  re-reported, so the trace has no aten noise and ``nn.Linear`` shows up as one ``linear``.

Every call that returns a tensor is recorded; costs come from ``pvttrace.costs``. On the
``meta`` device no tensor memory is allocated, so a trace at 2048x2048 costs what one at 224
does. Hooks and the mode are removed in ``finally`` blocks even when the forward raises.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from types import FrameType
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode, resolve_name

from pvttrace import __version__
from pvttrace.annotate import current_label, current_stage
from pvttrace.config import PvtConfig
from pvttrace.costs import OP_KINDS, cost_rule, op_macs
from pvttrace.errors import TraceError, UserInputError
from pvttrace.metashapes import meta_stand_in
from pvttrace.model import build_model, torch_dtype
from pvttrace.records import (
    CostRule,
    MacsCategory,
    OpKind,
    OpRecord,
    Shape,
    StageSummary,
    Totals,
    Trace,
    macs_category,
)

__all__ = ["trace_config", "trace_model"]

# Property getters and metadata calls that return tensors but are not ops of the model.
_IGNORED = frozenset({"Tensor.data.__get__", "Tensor.grad.__get__", "Tensor.untyped_storage", "Tensor.detach"})

_STAGE_PATTERNS = (
    re.compile(r"^(?:patch_embed|block|norm|pos_embed|pos_drop)(\d+)(?:\.|$)"),
    re.compile(r"^stages\.(\d+)(?:\.|$)"),
)
_BLOCK_PATTERN = re.compile(r"(?:^|\.)(?:block\d+|blocks)\.(\d+)(?:\.|$)")

_TORCH_DIR = os.path.dirname(torch.__file__)
_SKIPPED_FILES = (_TORCH_DIR, os.path.dirname(__file__) + os.sep + "trace.py", os.sep + "contextlib.py")

def _known_names() -> dict[Any, str]:
    """Map the torch functions named in the cost table to their names.

    ``torch.overrides.resolve_name`` builds a table of every torch function on first use
    (about 0.2 s); resolving our own few hundred names directly costs almost nothing.
    """
    names: dict[Any, str] = {}
    for name in OP_KINDS:
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
    for pattern in _STAGE_PATTERNS:
        match = pattern.match(module)
        if match:
            value = int(match.group(1))
            return value + 1 if pattern.pattern.startswith("^stages") else value
    return None


def _block_of(module: str) -> int | None:
    match = _BLOCK_PATTERN.search(module)
    return int(match.group(1)) if match else None


def _refine_kind(kind: OpKind, module: str, label: str | None, groups_like_dw: bool) -> OpKind:
    """Name convs by their role: patch embedding, SR reduction or depthwise MLP conv."""
    if kind != OpKind.CONV:
        return kind
    leaf = module.rsplit(".", 1)[-1]
    if leaf == "sr" or (label or "").startswith("SR"):
        return OpKind.SR_CONV
    if "dwconv" in module or groups_like_dw:
        return OpKind.DW_CONV
    if "patch_embed" in module or "downsample" in module:
        return OpKind.PATCH_EMBED
    return kind


def _tensors(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, torch.Tensor))
    return found


def _source(frame: FrameType | None) -> str | None:
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_SKIPPED_FILES[0]) and not filename.endswith(_SKIPPED_FILES[1:]):
            return f"{os.path.basename(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


class _Recorder(TorchFunctionMode):
    """Records one ``OpRecord`` per tensor-returning torch call."""

    def __init__(self, module_stack: list[str]) -> None:
        super().__init__()
        self.module_stack = module_stack
        self.records: list[OpRecord] = []
        self.failed_op: str | None = None

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        try:
            out = meta_stand_in(func, args, kwargs)
            if out is None:
                out = func(*args, **kwargs)
        except Exception:
            if self.failed_op is None:
                self.failed_op = f"{_op_name(func)} in {self.module_stack[-1] or 'the model'}"
            raise
        name = _op_name(func)
        if name in _IGNORED:
            return out
        outputs = [out] if isinstance(out, torch.Tensor) else _tensors(tuple(out), {}) if isinstance(out, (list, tuple)) else []
        if outputs:
            self._record(name, _tensors(args, kwargs), outputs, sys._getframe(1))
        return out

    def _record(self, name: str, inputs: list[torch.Tensor], outputs: list[torch.Tensor], frame: FrameType) -> None:
        module = self.module_stack[-1]
        label = current_label()
        rule = cost_rule(name)
        kind = OP_KINDS.get(name, OpKind.OTHER)
        if kind == OpKind.CONV and len(inputs) >= 2:
            weight = inputs[1]
            groups_like_dw = weight.shape[1] == 1 and inputs[0].shape[1] > 1
            kind = _refine_kind(kind, module, label, groups_like_dw)
        in_shapes = tuple(tuple(t.shape) for t in inputs)
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
        stage = current_stage()
        if stage is None:
            stage = _stage_of(module)
        self.records.append(
            OpRecord(
                index=len(self.records),
                module=module,
                op=name,
                kind=kind,
                label=label,
                inputs=in_shapes,
                output=out_shape,
                dtype=str(outputs[0].dtype).removeprefix("torch."),
                macs=op_macs(kind, in_shapes, out_shape) if rule == CostRule.MACS else 0,
                out_bytes=out_bytes,
                alloc_bytes=alloc_bytes,
                view=aliased,
                source=_source(frame),
                stage=stage,
                block=_block_of(module),
                cost_rule=rule,
            )
        )


@contextmanager
def _module_path_hooks(model: nn.Module, stack: list[str]) -> Iterator[None]:
    """Push each named submodule's path while its forward runs; remove every hook afterwards."""
    with ExitStack() as handles:
        for path, module in model.named_modules():

            def push(_mod: nn.Module, _args: Any, path: str = path) -> None:
                stack.append(path)

            def pop(_mod: nn.Module, _args: Any, _out: Any) -> None:
                stack.pop()

            handles.callback(module.register_forward_pre_hook(push).remove)
            handles.callback(module.register_forward_hook(pop, always_call=True).remove)
        yield


def _output_shapes(out: Any) -> tuple[Shape, ...]:
    if isinstance(out, torch.Tensor):
        return (tuple(out.shape),)
    if isinstance(out, (list, tuple)):
        return tuple(tuple(t.shape) for t in out if isinstance(t, torch.Tensor))
    if isinstance(out, dict):
        return tuple(tuple(t.shape) for t in out.values() if isinstance(t, torch.Tensor))
    return ()


def record_ops(model: nn.Module, example: torch.Tensor) -> tuple[tuple[OpRecord, ...], tuple[Shape, ...]]:
    """Run ``model(example)`` under the recorder; return the op records and the output shapes.

    Raises:
        TraceError: the forward raised; the message names the failing op and module.
    """
    stack: list[str] = [""]
    recorder = _Recorder(stack)
    was_training = model.training
    model.eval()
    try:
        with _module_path_hooks(model, stack), torch.no_grad(), recorder:
            out = model(example)
    except Exception as exc:
        where = recorder.failed_op or f"module {stack[-1] or 'the model'}"
        last = recorder.records[-1] if recorder.records else None
        after = f"; last recorded op #{last.index} {last.title} in {last.module or 'the model'}" if last else ""
        message = " ".join(str(exc).split())
        raise TraceError(f"the forward failed at {where}: {type(exc).__name__}: {message}{after}") from exc
    finally:
        model.train(was_training)
    return tuple(recorder.records), _output_shapes(out)


def _stage_params(model: nn.Module) -> dict[int | None, int]:
    counts: dict[int | None, int] = {}
    for name, param in model.named_parameters():
        stage = _stage_of(name)
        counts[stage] = counts.get(stage, 0) + param.numel()
    return counts


def summarise_stages(
    cfg: PvtConfig, ops: tuple[OpRecord, ...], stage_params: dict[int | None, int]
) -> tuple[StageSummary, ...]:
    """Per-stage summaries of a built-in model's trace (geometry from the config, costs from the ops)."""
    summaries = []
    for geo in cfg.geometry():
        i = geo.index - 1
        stage_ops = [op for op in ops if op.stage == geo.index]
        by_category = dict.fromkeys(MacsCategory, 0)
        for op in stage_ops:
            by_category[macs_category(op)] += op.macs
        map_shape: Shape | None = None
        map_bytes = 0
        for op in stage_ops:
            if op.label == "scores q@k^T":
                map_shape, map_bytes = op.output, op.out_bytes
                break
            if op.kind == OpKind.SDPA:
                q, k = op.inputs[0], op.inputs[1]
                map_shape = (*q[:-1], k[-2])
                break
        outputs = [op for op in stage_ops if op.label in ("stage output map", "stage norm")]
        last_op = outputs[-1] if outputs else (stage_ops[-1] if stage_ops else None)
        summaries.append(
            StageSummary(
                index=geo.index,
                hw=geo.hw,
                tokens=geo.tokens,
                kv_tokens=geo.kv_tokens,
                dim=cfg.dims[i],
                heads=cfg.heads[i],
                sr_ratio=cfg.sr_ratios[i],
                depth=cfg.depths[i],
                params=stage_params.get(geo.index, 0),
                macs=sum(op.macs for op in stage_ops),
                attention_macs=by_category[MacsCategory.ATTENTION],
                sr_macs=by_category[MacsCategory.SR],
                projection_macs=by_category[MacsCategory.PROJECTION],
                mlp_macs=by_category[MacsCategory.MLP],
                other_macs=by_category[MacsCategory.OTHER],
                attention_map_shape=map_shape,
                attention_map_bytes=map_bytes,
                output=None if last_op is None else last_op.output,
            )
        )
    return tuple(summaries)


def trace_model(
    model: nn.Module,
    example: torch.Tensor,
    *,
    config: PvtConfig,
) -> Trace:
    """Trace a built-in model (from :func:`pvttrace.model.build_model`) on ``example``.

    Raises:
        TraceError: the forward failed.
    """
    ops, outputs = record_ops(model, example)
    params = list(model.parameters())
    totals = Totals(
        params=sum(p.numel() for p in params),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
        macs=sum(op.macs for op in ops),
        largest_activation_bytes=max((op.out_bytes for op in ops), default=0),
        ops=len(ops),
        uncosted_ops=sum(1 for op in ops if op.cost_rule == CostRule.NONE),
    )
    return Trace(
        config=config,
        input_shape=tuple(example.shape),
        outputs=outputs,
        ops=ops,
        stages=summarise_stages(config, ops, _stage_params(model)),
        totals=totals,
        device=str(example.device.type),
        tool_version=__version__,
    )


def trace_config(cfg: PvtConfig, *, device: str = "meta") -> Trace:
    """Build the PVT described by ``cfg`` on ``device`` and trace one forward of a ``cfg.input_shape`` batch.

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
        raise UserInputError(f"device={device!r} is not available: this torch build sees no CUDA GPU (use meta or cpu)")
    try:
        model = build_model(cfg, device=device)
        example = torch.empty(cfg.input_shape, device=device, dtype=torch_dtype(cfg.dtype))
        if device != "meta":
            example.normal_(generator=torch.Generator(device=device).manual_seed(0))
    except (RuntimeError, MemoryError) as exc:  # real devices: out of memory (meta allocates nothing)
        message = " ".join(str(exc).split())[:300]
        raise TraceError(f"cannot build the model and its input on {device}: {type(exc).__name__}: {message}") from exc
    return trace_model(model, example, config=cfg)

