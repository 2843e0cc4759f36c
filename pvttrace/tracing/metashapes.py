"""Shape-only stand-ins for a few torch functions on the ``meta`` device.

On ``meta`` tensors, torch runs ``layer_norm``, ``conv2d``, ``linear``, ``gelu``, bilinear ``interpolate`` and
element-wise ``add``/``sub``/``mul``, ``cat``, ``mean`` and batched ``matmul`` through Python reference
decompositions: about 1 ms per call, and the first ``add`` of a process imports ``torch._dynamo`` (about 1 s).
Index-grid code (``arange``, in-place shifts, ``.long()``, rows taken by an index tensor, as in relative-position
biases) goes through Python meta kernels too, at 0.1-0.2 ms a call. That is most of a trace's wall time, though a
trace only needs the output's shape, dtype and layout. Here each such op gets a stand-in that allocates the (meta)
output directly with the layout torch's kernel would give: contiguous for norms, convs and interpolation, the
input's layout for element-wise activations.

``tests/test_trace.py`` checks that meta traces, which use these stand-ins, equal CPU traces,
which run the real kernels, record for record (shapes, dtype, views and allocation sizes);
``tests/test_metashapes.py`` compares the newer stand-ins with the CPU kernels call by call (strides too).
Anything a stand-in does not handle exactly (unusual arguments) returns None and falls back
to the real function. Stand-ins also allocate (and free) the scratch tensors the CPU kernels
allocate inside the op (layer norm statistics, matmul's operand copies, SDPA's log-sum-exp), so
the memory tracker sees the same in-op peaks as on a real device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["New", "meta_stand_in"]

_Args = tuple[Any, ...]
_Kwargs = dict[str, Any]
New = Callable[..., torch.Tensor]
"""How a stand-in allocates: ``torch.empty``'s signature (the memory tracker's also records the allocation)."""


def _arg(args: _Args, kwargs: _Kwargs, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None


def _layer_norm(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    x = args[0]
    normalized = _arg(args, kwargs, 1, "normalized_shape")
    if not isinstance(normalized, (tuple, list, torch.Size)) or not 0 < len(normalized) <= x.dim():
        return None
    # The CPU kernel also allocates mean and rstd (input dtype), alive together with the output.
    stats = (*x.shape[: x.dim() - len(normalized)], *(1,) * len(normalized))
    scratch = [new(stats, dtype=x.dtype, device=x.device) for _ in range(2)]
    out = new(x.shape, dtype=x.dtype, device=x.device)
    del scratch
    return out


def _elementwise(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    x = args[0]
    if kwargs.get("inplace") is True:
        return None
    # torch.empty rather than empty_like: on meta, empty_like runs a Python reference that imports
    # sympy. Element-wise kernels keep a dense input's layout, so a transposed input (v2's MLP after
    # the depthwise conv) gives an output with the same strides.
    if x.is_contiguous():
        return new(x.shape, dtype=x.dtype, device=x.device)
    order = sorted(range(x.dim()), key=lambda d: -x.stride(d))
    if [x.stride(d) for d in order] != _dense_strides([x.shape[d] for d in order]):
        return None
    dense = new([x.shape[d] for d in order], dtype=x.dtype, device=x.device)
    return dense.permute([order.index(d) for d in range(x.dim())])


def _dense_strides(sizes: list[int]) -> list[int]:
    strides, step = [], 1
    for size in reversed(sizes):
        strides.append(step)
        step *= max(size, 1)
    return strides[::-1]


def _linear(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    x, weight = args[0], _arg(args, kwargs, 1, "weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or x.dim() < 2 or x.shape[-1] != weight.shape[1]:
        return None
    shape = (*x.shape[:-1], weight.shape[0])
    scratch = []
    if x.dim() >= 3 and not x.is_contiguous():
        # A non-contiguous token matrix (v2's MLP after the depthwise conv) misses linear's fused
        # addmm: torch runs matmul, copying the input first if it cannot be flattened as a view,
        # into a temporary product, then adds the bias into the output.
        try:
            x.view(-1, x.shape[-1])
        except RuntimeError:
            scratch.append(new(x.shape, dtype=x.dtype, device=x.device))
        if _arg(args, kwargs, 2, "bias") is not None:
            scratch.append(new(shape, dtype=x.dtype, device=x.device))
    out = new(shape, dtype=x.dtype, device=x.device)
    del scratch
    return out


def _binary(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    if len(args) != 2 or kwargs:
        return None  # alpha=, out= and friends take the real path
    a, b = args
    tensors = [t for t in (a, b) if isinstance(t, torch.Tensor)]
    if not all(t.is_meta for t in tensors) or not all(isinstance(v, (torch.Tensor, int, float)) for v in (a, b)):
        return None
    shape = broadcast_shape([tuple(t.shape) for t in tensors])
    if shape is None:
        return None
    # TensorIterator follows the first operand's layout when it has the full shape, so a contiguous one makes
    # the output contiguous. Operands that broadcast against each other give a contiguous output when each has
    # exactly the standard strides: every stride TensorIterator compares is then decreasing or broadcast.
    first = tensors[0]
    if not (first.is_contiguous() and tuple(first.shape) == shape) and not all(_standard(t) for t in tensors):
        return None
    return new(shape, dtype=torch.result_type(a, b), device=first.device)


def _subtract(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    out = _binary(args, kwargs, new)
    if out is not None and out.dtype == torch.bool:
        return None  # torch refuses to subtract booleans: let it raise
    return out


def _in_place(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    """``x.add_(y)`` and friends: ``x`` itself, when ``y`` broadcasts to it and its type casts to ``x``'s."""
    if len(args) != 2 or kwargs or torch.is_grad_enabled():
        return None  # with grad on, autograd's version counters must see the write
    x: torch.Tensor = args[0]
    y = args[1]
    if not _standard(x) or not isinstance(y, (torch.Tensor, int, float)):
        return None  # an overlapping or non-dense target takes the real path (which may refuse it)
    if isinstance(y, torch.Tensor):
        if not y.is_meta or broadcast_shape([tuple(x.shape), tuple(y.shape)]) != tuple(x.shape):
            return None
        if y.untyped_storage()._cdata == x.untyped_storage()._cdata and y is not x:
            return None  # operands that share memory: torch checks for partial overlap
    if not torch.can_cast(torch.result_type(x, y), x.dtype):
        return None
    return x


def _standard(t: torch.Tensor) -> bool:
    """``t`` has exactly the strides ``torch.empty`` gives its shape (no size-1 or zero-size exceptions)."""
    return list(t.stride()) == _dense_strides(list(t.shape))


def _to_dtype(dtype: torch.dtype) -> Callable[[_Args, _Kwargs, New], torch.Tensor | None]:
    """``x.long()`` and friends: ``x`` itself when it has that type already, else a copy in ``x``'s layout."""

    def convert(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
        if len(args) != 1 or kwargs:
            return None
        x: torch.Tensor = args[0]
        if x.dtype == dtype:
            return x
        if not _standard(x):
            return None  # the copy keeps a dense input's strides; leave other layouts to torch
        return new(x.shape, dtype=dtype, device=x.device)

    return convert


def _take_rows(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    """``x[index]`` with one integer index tensor: the rows of ``x`` it names, in the index's shape."""
    if len(args) != 2 or kwargs:
        return None
    x, index = args
    if not isinstance(index, torch.Tensor) or not index.is_meta or index.dtype != torch.int64 or index.dim() == 0:
        return None
    if x.dim() == 0 or not _standard(x) or not _standard(index):
        return None
    return new((*index.shape, *x.shape[1:]), dtype=x.dtype, device=x.device)


def _arange(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    """``torch.arange`` with integer bounds on an explicit meta device."""
    device = kwargs.get("device")
    if device is None or set(kwargs) - {"device", "dtype"} or not 1 <= len(args) <= 3:
        return None
    if not all(type(v) is int for v in args) or torch.device(device).type != "meta":
        return None
    start, end, step = (0, args[0], 1) if len(args) == 1 else (*args, 1) if len(args) == 2 else args
    if step == 0:
        return None
    length = -((start - end) // step)  # ceil((end - start) / step)
    if length < 0:
        return None  # torch raises: the bounds contradict the step's sign
    return new((length,), dtype=kwargs.get("dtype") or torch.int64, device=device)


def broadcast_shape(shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    """NumPy broadcasting of shapes; None when they do not broadcast (the real op then raises)."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(ndim):
        sizes = {s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _cat(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    tensors = args[0]
    dim = _arg(args, kwargs, 1, "dim", 0)
    if not isinstance(tensors, (list, tuple)) or not tensors or not isinstance(dim, int) or set(kwargs) - {"dim"}:
        return None
    if not all(isinstance(t, torch.Tensor) and t.is_meta and t.dim() == tensors[0].dim() for t in tensors):
        return None
    first = tensors[0]
    dim = dim % first.dim()
    if any(t.shape[:dim] != first.shape[:dim] or t.shape[dim + 1 :] != first.shape[dim + 1 :] for t in tensors):
        return None
    dtype = first.dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    shape = (*first.shape[:dim], sum(t.shape[dim] for t in tensors), *first.shape[dim + 1 :])
    return new(shape, dtype=dtype, device=first.device)


def _mean(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    x = args[0]
    dim = _arg(args, kwargs, 1, "dim")
    keepdim = _arg(args, kwargs, 2, "keepdim", False)
    if set(kwargs) - {"dim", "keepdim"} or not x.dtype.is_floating_point or not isinstance(keepdim, bool):
        return None
    dims = (dim,) if isinstance(dim, int) else dim
    if not isinstance(dims, (tuple, list)) or not dims or not all(isinstance(d, int) for d in dims):
        return None
    reduced = {d % x.dim() for d in dims}
    shape = [1 if i in reduced else n for i, n in enumerate(x.shape) if keepdim or i not in reduced]
    return new(shape, dtype=x.dtype, device=x.device)


def _matmul(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    if len(args) != 2 or kwargs or not all(isinstance(t, torch.Tensor) and t.is_meta for t in args):
        return None
    a, b = args
    if a.dim() < 3 or b.dim() < 3 or a.shape[-1] != b.shape[-2] or a.dtype != b.dtype:
        return None  # 1-D/2-D operands take other matmul paths; leave them to torch
    batch = broadcast_shape([tuple(a.shape[:-2]), tuple(b.shape[:-2])])
    if batch is None:
        return None
    # torch.matmul expands both operands to the common batch and flattens it for one bmm; an
    # operand whose layout does not allow that as a view (a permuted q, a transposed k) is copied
    # first. Those copies live until the bmm is done, so they count towards the op's peak.
    scratch = [copy for copy in (_bmm_operand(a, batch, new), _bmm_operand(b, batch, new)) if copy is not None]
    out = new((*batch, a.shape[-2], b.shape[-1]), dtype=a.dtype, device=a.device)
    del scratch
    return out


def _bmm_operand(t: torch.Tensor, batch: tuple[int, ...], new: New) -> torch.Tensor | None:
    """The contiguous copy matmul makes of ``t`` for its bmm, or None when a view suffices."""
    rows, cols = t.shape[-2], t.shape[-1]
    expanded = t.expand(*batch, rows, cols)
    try:
        expanded.view(-1, rows, cols)
        return None
    except RuntimeError:
        count = 1
        for size in batch:
            count *= size
        return new((count, rows, cols), dtype=t.dtype, device=t.device)


def _sdpa(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    q = args[0]
    k = _arg(args, kwargs, 1, "key")
    v = _arg(args, kwargs, 2, "value")
    if not all(isinstance(t, torch.Tensor) and t.is_meta and t.dim() == 4 for t in (q, k, v)):
        return None
    if _arg(args, kwargs, 3, "attn_mask") is not None or kwargs.get("enable_gqa"):
        return None
    batch, heads, length, _ = q.shape
    # The fused CPU kernel also returns the softmax's log-sum-exp [B, heads, L] in float32.
    scratch = new((batch, heads, length), dtype=torch.float32, device=q.device)
    # The CPU (and CUDA flash) kernels write the output in the query's layout: for a query made by
    # permuting [B, N, heads, d] tokens the output is [B, N, heads, dv] transposed, so the "merge
    # heads" reshape after it is a free view. torch's meta kernel returns a contiguous tensor
    # instead; follow the real kernels.
    out: torch.Tensor | None = None
    if q.is_contiguous():
        out = new((batch, heads, length, v.shape[-1]), dtype=q.dtype, device=q.device)
    elif q.transpose(1, 2).is_contiguous():
        out = new((batch, length, heads, v.shape[-1]), dtype=q.dtype, device=q.device).transpose(1, 2)
    del scratch
    return out


def _conv2d(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    x, weight = args[0], args[1]
    if x.dim() != 4 or not weight.is_contiguous():
        return None
    # torch's conv gives a channels-last output for an input whose strides look channels-last (the
    # SR conv's input, a permuted token matrix, is one), which decides whether the reshape after it
    # is a view. "Look channels-last" is c10's stride rule, replicated below; any other layout
    # gives a contiguous output.
    memory_format = torch.channels_last if _strides_like_channels_last(x) else torch.contiguous_format
    stride = _pair(_arg(args, kwargs, 3, "stride", 1))
    padding = _pair(_arg(args, kwargs, 4, "padding", 0))
    dilation = _pair(_arg(args, kwargs, 5, "dilation", 1))
    groups = _arg(args, kwargs, 6, "groups", 1)
    if stride is None or padding is None or dilation is None or not isinstance(groups, int):
        return None
    if x.shape[1] != weight.shape[1] * groups:
        return None  # let the real kernel raise its own error
    out_hw = []
    for i in range(2):
        size = x.shape[2 + i] + 2 * padding[i] - dilation[i] * (weight.shape[2 + i] - 1) - 1
        if size < 0:
            return None
        out_hw.append(size // stride[i] + 1)
    shape = (x.shape[0], weight.shape[0], *out_hw)
    return new(shape, dtype=x.dtype, device=x.device, memory_format=memory_format)


def _strides_like_channels_last(x: torch.Tensor) -> bool:
    """c10's ``is_channels_last_strides_2d_s4``: the layout rule torch's conv uses to pick its output format."""
    sizes, strides = x.shape, x.stride()
    if strides[1] == 0:
        return False
    smallest = 0
    for d in (1, 3, 2, 0):
        if sizes[d] == 0 or strides[d] < smallest:
            return False
        if d == 0 and smallest == strides[1]:
            return False
        smallest = strides[d] * (sizes[d] if sizes[d] > 1 else 1)
    return True


def _interpolate(args: _Args, kwargs: _Kwargs, new: New) -> torch.Tensor | None:
    x = args[0]
    size = _pair(_arg(args, kwargs, 1, "size"))
    if x.dim() != 4 or size is None or _arg(args, kwargs, 2, "scale_factor") is not None:
        return None
    return new((x.shape[0], x.shape[1], *size), dtype=x.dtype, device=x.device)


_STAND_INS: dict[Callable[..., Any], Callable[[_Args, _Kwargs, New], torch.Tensor | None]] = {
    F.layer_norm: _layer_norm,
    F.gelu: _elementwise,
    F.relu: _elementwise,
    torch.relu: _elementwise,
    torch.Tensor.relu: _elementwise,
    F.silu: _elementwise,
    torch.sigmoid: _elementwise,
    torch.Tensor.sigmoid: _elementwise,
    torch.tanh: _elementwise,
    torch.Tensor.tanh: _elementwise,
    torch.Tensor.softmax: _elementwise,
    torch.softmax: _elementwise,
    F.softmax: _elementwise,
    F.conv2d: _conv2d,
    F.interpolate: _interpolate,
    F.linear: _linear,
    torch.Tensor.add: _binary,
    torch.Tensor.__add__: _binary,
    torch.Tensor.__radd__: _binary,
    torch.Tensor.mul: _binary,
    torch.Tensor.__mul__: _binary,
    torch.Tensor.__rmul__: _binary,
    torch.add: _binary,
    torch.cat: _cat,
    torch.Tensor.mean: _mean,
    F.scaled_dot_product_attention: _sdpa,
    torch.Tensor.matmul: _matmul,
    torch.Tensor.__matmul__: _matmul,
    torch.matmul: _matmul,
    torch.mul: _binary,
    torch.Tensor.sub: _subtract,
    torch.Tensor.__sub__: _subtract,
    torch.Tensor.__rsub__: _subtract,
    torch.sub: _subtract,
    torch.Tensor.add_: _in_place,
    torch.Tensor.sub_: _in_place,
    torch.Tensor.mul_: _in_place,
    torch.Tensor.long: _to_dtype(torch.int64),
    torch.Tensor.int: _to_dtype(torch.int32),
    torch.Tensor.float: _to_dtype(torch.float32),
    torch.Tensor.__getitem__: _take_rows,
}

#: Stand-ins for factory functions (no tensor argument; the device is named).
_FACTORIES: dict[Callable[..., Any], Callable[[_Args, _Kwargs, New], torch.Tensor | None]] = {torch.arange: _arange}


def meta_stand_in(
    func: Callable[..., Any], args: _Args, kwargs: _Kwargs, new: New = torch.empty
) -> torch.Tensor | None:
    """The output ``func(*args, **kwargs)`` would have, for supported ops on meta tensors; else None.

    Every tensor the stand-in makes (its output and the kernel's scratch tensors) is made by ``new``.
    """
    stand_in = _STAND_INS.get(func)
    if stand_in is None:
        factory = _FACTORIES.get(func)
        return factory(args, kwargs, new) if factory is not None else None
    if not args:
        return None
    first = args[0][0] if func is torch.cat and isinstance(args[0], (list, tuple)) and args[0] else args[0]
    if not isinstance(first, torch.Tensor) or not first.is_meta:
        return None
    flat = [t for a in args for t in (a if isinstance(a, (list, tuple)) else (a,))]
    if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in flat):
        return None  # autograd must see the real op (saved tensors, grad_fn)
    return stand_in(args, kwargs, new)
