"""Shape-only stand-ins for torch calls during a symbolic trace (see :mod:`pvttrace.analyses.formula`).

Under ``FakeTensorMode`` with a ``ShapeEnv`` torch's fake kernels reason about every size, stride
and layout with sympy. That costs twice:

* time: each view, slice or elementwise op asks torch's range analysis about strides made of
  nested floor divisions (torchvision's Swin spent 77 of 111 s in 96 slices);
* guards that decide a layout only, never a shape, yet narrow where the formula holds. Swin pads
  each map to a multiple of its window, attends, and slices the padding off again; whether that
  slice is already contiguous depends on whether there was any padding, so ``.contiguous()``
  recorded ``(W//4) % 7 != 0`` and the formula held at 24 of 50 random sizes (the other branch of
  a layout decision, with the same shapes and costs).

A stand-in returns an empty fake tensor of the output shape, computed from the input shapes with
the op's own size rule, so no stride is reasoned about and no layout guard is recorded. What the
shape depends on stays exact: a slice's length is computed only where the clamping Python applies
is decided without a guard (``statically_known_true``), else the real kernel runs. Where the
forward would fail (a view whose sizes do not multiply to the input's, tensors concatenated that
disagree in another dim) the condition becomes a guard unless torch proves it, so the formula does
not apply where the concrete forward raises; at the traced size itself the real kernel runs and
raises. Writes into tensors (``__setitem__``) are skipped: values never matter.

Costs are untouched: the recorder (outside this mode) costs each call from the shapes it sees, and
they are the shapes the real kernels give. Branches in model code (``if window >= padded_size``)
are not torch calls and still become guards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensor, in_kernel_invocation_manager
from torch.fx.experimental.symbolic_shapes import statically_known_true
from torch.overrides import TorchFunctionMode

__all__ = ["symbolic_stand_ins"]


def _expr(value: Any) -> Any:
    return value.node.expr if isinstance(value, torch.SymInt) else value


def _same(a: Any, b: Any) -> bool:
    """Structural equality of two sizes, without asking torch (which would record a guard)."""
    return bool(_expr(a) == _expr(b))


def _known(condition: Any) -> bool:
    """True when torch can prove ``condition`` without recording a guard."""
    if isinstance(condition, bool):
        return condition
    return bool(statically_known_true(condition))


def _empty(shape: Sequence[Any], like: torch.Tensor, dtype: Any = None) -> torch.Tensor:
    dtype = dtype if dtype is not None else like.dtype
    mode = getattr(like, "fake_mode", None)
    if isinstance(like, FakeTensor) and mode is not None:
        # What the fake mode itself does to build a result (a meta tensor wrapped as fake), without
        # dispatching torch.empty through it first: that takes about 2.5 times as long per call.
        with in_kernel_invocation_manager(mode):
            meta = torch.empty(tuple(shape), dtype=dtype, device="meta")
        return FakeTensor(mode, meta, like.device)
    return torch.empty(tuple(shape), dtype=dtype, device=like.device)


def _dim(d: Any, ndim: int) -> int | None:
    if not isinstance(d, int) or isinstance(d, bool):
        return None
    d = d + ndim if d < 0 else d
    return d if 0 <= d < max(ndim, 1) else None


# ------------------------------------------------------------------ slicing
def _slice_length(n: Any, s: slice) -> Any | None:
    """Length of ``range(n)[s]`` where it is decided without a guard, else None."""
    step = 1 if s.step is None else s.step
    if not isinstance(step, int) or step < 1:
        return None
    start = 0 if s.start is None else s.start
    if s.stop is None and isinstance(start, int) and 0 <= start < step:
        # x[1::2]: ceil((n - start) / step), and 0 for every n < start too (no clamping to decide).
        return (n - start + step - 1) // step
    if isinstance(start, int) and start < 0:
        if not _known(n + start >= 0):
            return None
        start = n + start
    elif not _known(start <= n):
        return None
    if s.stop is None:
        stop = n
    else:
        stop = s.stop
        if isinstance(stop, int) and stop < 0:
            if not _known(n + stop >= 0):
                return None
            stop = n + stop
        elif not _known(stop <= n):
            if not _known(stop >= n):
                return None
            stop = n
    # ceil((stop - start) / step), which is also 0 down to stop - start = -(step - 1).
    if not _known(stop - start + step - 1 >= 0):
        return None
    return (stop - start + step - 1) // step


def _getitem_shape(x: torch.Tensor, index: Any) -> list[Any] | None:
    items = index if isinstance(index, tuple) else (index,)
    if not all(isinstance(i, (int, slice, torch.SymInt)) or i is None or i is Ellipsis for i in items):
        return None
    if any(isinstance(i, bool) for i in items) or sum(i is Ellipsis for i in items) > 1:
        return None
    consumed = sum(1 for i in items if i is not None and i is not Ellipsis)
    if consumed > x.dim():
        return None
    shape = list(x.shape)
    out: list[Any] = []
    dim = 0
    for item in items:
        if item is None:
            out.append(1)
        elif item is Ellipsis:
            skip = x.dim() - consumed
            out.extend(shape[dim : dim + skip])
            dim += skip
        elif isinstance(item, slice):
            length = _slice_length(shape[dim], item)
            if length is None:
                return None
            out.append(length)
            dim += 1
        else:  # an integer index drops the dim
            dim += 1
    out.extend(shape[dim:])
    return out


# ------------------------------------------------------------------ views
def _sizes(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> list[Any] | None:
    sizes = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else args
    if not sizes and name in kwargs:
        sizes = kwargs[name]
    if not all(isinstance(s, (int, torch.SymInt)) for s in sizes):
        return None
    return list(sizes)


def _require(condition: Any) -> bool:
    """False where ``condition`` fails at the traced size (the real kernel then raises); else True, with
    the condition a guard where torch cannot prove it (the formula does not apply where the forward fails)."""
    if isinstance(condition, bool):
        return condition
    if _known(condition):
        return True
    hint = condition.node.hint
    if hint is None or not hint:
        return False
    torch._check(condition)
    return True


def _view_shape(x: torch.Tensor, sizes: list[Any]) -> list[Any] | None:
    free = [i for i, s in enumerate(sizes) if isinstance(s, int) and s == -1]
    if len(free) > 1:
        return None
    known: Any = 1
    for i, s in enumerate(sizes):
        if i not in free:
            known = known * s
    if free:
        if isinstance(known, int) and known == 0:
            return None
        sizes = list(sizes)
        sizes[free[0]] = x.numel() // known
        if not _require(x.numel() % known == 0):
            return None
    elif not (_same(x.numel(), known) or _require(x.numel() == known)):
        return None
    return sizes


def _flatten_shape(x: torch.Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
    names = ("start_dim", "end_dim")
    given = dict(zip(names, args, strict=False)) | kwargs
    if set(given) - set(names) or x.dim() == 0:
        return None
    start, end = _dim(given.get("start_dim", 0), x.dim()), _dim(given.get("end_dim", -1), x.dim())
    if start is None or end is None or end < start:
        return None
    shape = list(x.shape)
    merged: Any = 1
    for s in shape[start : end + 1]:
        merged = merged * s
    return [*shape[:start], merged, *shape[end + 1 :]]


# ------------------------------------------------------------------ elementwise
def _broadcast(a: Sequence[Any], b: Sequence[Any]) -> list[Any] | None:
    out: list[Any] = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if _same(da, db) or (isinstance(db, int) and db == 1):
            out.append(da)
        elif isinstance(da, int) and da == 1:
            out.append(db)
        else:
            return None
    return out[::-1]


_COMPARISONS = frozenset(
    {
        torch.Tensor.__eq__,
        torch.Tensor.__ne__,
        torch.Tensor.__lt__,
        torch.Tensor.__le__,
        torch.Tensor.__gt__,
        torch.Tensor.__ge__,
        torch.eq,
        torch.ne,
    }
)
_ARITHMETIC = frozenset(
    {
        torch.Tensor.__add__,
        torch.Tensor.__radd__,
        torch.Tensor.__sub__,
        torch.Tensor.__rsub__,
        torch.Tensor.__mul__,
        torch.Tensor.__rmul__,
        torch.Tensor.__truediv__,
        torch.Tensor.add,
        torch.Tensor.sub,
        torch.Tensor.mul,
        torch.Tensor.div,
        torch.add,
        torch.sub,
        torch.mul,
        torch.div,
    }
)
_SAME_SHAPE = frozenset(
    {
        F.gelu,
        F.relu,
        F.silu,
        torch.Tensor.softmax,
        F.softmax,
        F.dropout,
        F.layer_norm,
        torch.Tensor.contiguous,
        torch.Tensor.clone,
        torch.clone,
        torch.Tensor.roll,
        torch.roll,
        torch.Tensor.exp,
        torch.Tensor.sigmoid,
        torch.sigmoid,
        F.normalize,
    }
)
_VIEWS = frozenset({torch.Tensor.view, torch.Tensor.reshape, torch.reshape})


def _output(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The stand-in's result, or NotImplemented: run the real (fake) kernel."""
    if func in (torch.cat, torch.concat, torch.concatenate):
        return _cat(args, kwargs)
    x = args[0]
    if not isinstance(x, torch.Tensor):
        return NotImplemented
    if func in _SAME_SHAPE:
        return _empty(x.shape, x)
    if func is torch.Tensor.__getitem__ and len(args) == 2:
        shape = _getitem_shape(x, args[1])
        return NotImplemented if shape is None else _empty(shape, x)
    if func is torch.Tensor.__setitem__:
        return None  # values never matter; the shapes of x and of the value do not change
    if func in _VIEWS:
        rest = args[1:]
        sizes = _sizes(rest, kwargs, "shape")
        if sizes is None or (
            func is torch.Tensor.view and len(rest) == 1 and not isinstance(rest[0], (tuple, list, torch.Size, int))
        ):
            return NotImplemented  # view(dtype)
        shape = _view_shape(x, sizes)
        return NotImplemented if shape is None else _empty(shape, x)
    if func in (torch.Tensor.permute, torch.permute):
        dims = _sizes(args[1:], kwargs, "dims")
        if dims is None or len(dims) != x.dim():
            return NotImplemented
        order = [_dim(d, x.dim()) for d in dims]
        if None in order or len(set(order)) != x.dim():
            return NotImplemented
        return _empty([x.shape[d] for d in order if d is not None], x)
    if func in (torch.Tensor.transpose, torch.transpose) and len(args) == 3 and not kwargs:
        a, b = _dim(args[1], x.dim()), _dim(args[2], x.dim())
        if a is None or b is None:
            return NotImplemented
        shape = list(x.shape)
        shape[a], shape[b] = shape[b], shape[a]
        return _empty(shape, x)
    if func in (torch.Tensor.flatten, torch.flatten):
        shape = _flatten_shape(x, args[1:], kwargs)
        return NotImplemented if shape is None else _empty(shape, x)
    if func in (torch.Tensor.unsqueeze, torch.unsqueeze) and len(args) == 2 and not kwargs:
        d = _dim(args[1], x.dim() + 1)
        if d is None:
            return NotImplemented
        shape = list(x.shape)
        shape.insert(d, 1)
        return _empty(shape, x)
    if func is torch.Tensor.masked_fill and len(args) == 3 and not kwargs:
        mask = args[1]
        shape = _broadcast(x.shape, mask.shape) if isinstance(mask, torch.Tensor) else None
        if shape is not None and len(shape) == x.dim() and all(map(_same, shape, x.shape)):
            return _empty(x.shape, x)
        return NotImplemented
    if (func in _ARITHMETIC or func in _COMPARISONS) and len(args) == 2 and not kwargs:
        other = args[1]
        other_shape = other.shape if isinstance(other, torch.Tensor) else ()
        if not isinstance(other, (torch.Tensor, int, float)) or isinstance(other, bool):
            return NotImplemented
        shape = _broadcast(x.shape, other_shape)
        if shape is None:
            return NotImplemented
        dtype = torch.bool if func in _COMPARISONS else torch.result_type(x, other)
        return _empty(shape, x, dtype)
    if func is F.linear:
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        if isinstance(weight, torch.Tensor) and weight.dim() == 2 and x.dim() >= 1:
            return _empty((*x.shape[:-1], weight.shape[0]), x)
    if func in (torch.Tensor.__matmul__, torch.Tensor.matmul, torch.matmul) and len(args) == 2 and not kwargs:
        b = args[1]
        if isinstance(b, torch.Tensor) and x.dim() >= 2 and b.dim() >= 2:
            batch_a, batch_b = x.shape[:-2], b.shape[:-2]
            if len(batch_a) == len(batch_b) and all(_same(i, j) for i, j in zip(batch_a, batch_b, strict=True)):
                return _empty((*batch_a, x.shape[-2], b.shape[-1]), x)
    if func is F.scaled_dot_product_attention and len(args) >= 3:
        q, v = args[0], args[2]
        if isinstance(v, torch.Tensor) and q.dim() == v.dim() == 4 and not kwargs.get("enable_gqa"):
            return _empty((*q.shape[:-1], v.shape[-1]), q)
    if func is F.conv2d and x.dim() == 4 and len(args) >= 2:
        conv = _conv2d_shape(args, kwargs)
        return NotImplemented if conv is None else _empty(conv, x)
    if func is F.adaptive_avg_pool2d and x.dim() in (3, 4):
        size = args[1] if len(args) > 1 else kwargs.get("output_size")
        size = (size, size) if isinstance(size, int) else size
        if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) for s in size):
            return _empty((*x.shape[:-2], *size), x)
    return NotImplemented


def _cat(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """torch.cat: the sizes along ``dim`` add up; the others must agree (a guard where torch cannot prove it)."""
    tensors = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if set(kwargs) - {"dim"} or not isinstance(tensors, (tuple, list)) or not tensors:
        return NotImplemented
    if not all(isinstance(t, torch.Tensor) and t.dim() == tensors[0].dim() for t in tensors):
        return NotImplemented
    first = tensors[0]
    d = _dim(dim, first.dim())
    if d is None or len({t.dtype for t in tensors}) != 1:
        return NotImplemented
    for t in tensors[1:]:
        for i in range(first.dim()):
            if i != d and not (_same(t.shape[i], first.shape[i]) or _require(t.shape[i] == first.shape[i])):
                return NotImplemented
    shape = list(first.shape)
    total: Any = 0
    for t in tensors:
        total = total + t.shape[d]
    shape[d] = total
    return _empty(shape, first)


def _conv2d_shape(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    x, weight = args[0], args[1]
    names = ("bias", "stride", "padding", "dilation", "groups")
    given = dict(zip(names, args[2:], strict=False)) | kwargs
    pairs = []
    for name, default in (("stride", 1), ("padding", 0), ("dilation", 1)):
        value = given.get(name, default)
        value = (value, value) if isinstance(value, int) else value
        if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value)):
            return None  # "same"/"valid" padding strings and friends take the real kernel
        pairs.append(value)
    (sh, sw), (ph, pw), (dh, dw) = pairs
    if not isinstance(given.get("groups", 1), int):
        return None
    # torch's own output-size rule (floor division), as in aten's conv_output_size.
    kh, kw = weight.shape[2], weight.shape[3]
    h = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return (x.shape[0], weight.shape[0], h, w)


def _symbolic(values: Any) -> bool:
    return isinstance(values, (tuple, list)) and any(isinstance(v, torch.SymInt) for v in values)


class _StandIns(TorchFunctionMode):
    """Output shapes for ops whose eager kernels reject symbolic sizes (resize to (h, w), padding by a
    size) and, to save time and layout guards, for the common ops whose shapes follow from their inputs'."""

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.interpolate and args:
            x = args[0]
            size = kwargs.get("size", args[1] if len(args) > 1 else None)
            if isinstance(size, (tuple, list)) and _symbolic(size) and x.dim() == 2 + len(size):
                return torch.empty((*x.shape[:2], *size), dtype=x.dtype, device=x.device)
        if func is F.pad and args and _symbolic(args[1] if len(args) > 1 else kwargs.get("pad")):
            x = args[0]
            pad = list(args[1] if len(args) > 1 else kwargs["pad"])
            mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
            if mode == "constant" and len(pad) % 2 == 0 and len(pad) // 2 <= x.dim():
                sizes = list(x.shape)
                for i in range(len(pad) // 2):
                    sizes[-1 - i] = sizes[-1 - i] + pad[2 * i] + pad[2 * i + 1]
                return torch.empty(sizes, dtype=x.dtype, device=x.device)
        if args and isinstance(args[0], (torch.Tensor, tuple, list)) and not kwargs.get("inplace"):
            out = _output(func, args, kwargs)
            if out is not NotImplemented:
                return out
        return func(*args, **kwargs)


def symbolic_stand_ins() -> TorchFunctionMode:
    """A ``TorchFunctionMode`` to enter inside the recorder and the fake mode of a symbolic trace."""
    return _StandIns()
