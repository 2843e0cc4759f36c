"""Shape-only stand-ins for aten ops on the ``meta`` device, below autograd.

A training trace runs the forward with grad enabled and then the backward. The torch-level stand-ins
of :mod:`pvttrace.tracing.metashapes` step aside there (autograd has to build its graph), so every op reaches
torch's meta kernels, and most of those are Python: reference decompositions and
``torch._meta_registrations``. They cost about 1 ms a call, and the first ``torch._check`` of a process
imports ``torch.fx.experimental.symbolic_shapes`` (sympy, ``torch._dynamo``): about 2 s and 150 MiB.

These stand-ins sit one level lower, in the storage tracker's dispatch mode, which autograd calls with
the aten ops it decided on: the forward ops (``addmm``, ``convolution``, ``native_layer_norm``...) and
the backward's (``mm``, ``convolution_backward``, ``native_layer_norm_backward``...). Autograd itself is
untouched (same graph, same saved tensors, released at the same moments); only the kernel that makes
each output is replaced by one that allocates the (meta) output directly, with the shape, dtype and
strides the meta kernel would give. An op or an argument combination not handled here returns None and
runs the real kernel.

``tests/test_atenshapes.py`` runs training and inference traces with :data:`CHECK` set, which compares
every stand-in output with the real kernel's (shape, strides, dtype, offset, storage size, aliasing),
and compares whole traces with and without the stand-ins record for record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from pvttrace.tracing.metashapes import broadcast_shape

__all__ = ["CHECK", "ENABLED", "StandInMismatch", "aten_stand_in", "suggest_memory_format"]

aten = torch.ops.aten

_Args = tuple[Any, ...]
_Kwargs = dict[str, Any]
_Out = torch.Tensor | tuple[torch.Tensor | None, ...]

#: When false, every op runs its real kernel (the tests compare whole traces both ways).
ENABLED = True

#: When true, every stand-in output is compared with the real kernel's (tests only: it runs both).
CHECK = False


class StandInMismatch(AssertionError):
    """A stand-in's output differs from the real meta kernel's (raised only with :data:`CHECK`)."""


def suggest_memory_format(x: torch.Tensor) -> torch.memory_format:
    """c10's ``suggest_memory_format``: channels-last when a 4-D (5-D) tensor's strides look NHWC (NDHWC).

    ``torch._prims_common.suggest_memory_format`` computes the same but imports sympy on first use.
    """
    if x.layout != torch.strided or x.dim() not in (4, 5):
        return torch.contiguous_format
    sizes, strides = x.shape, x.stride()
    if strides[1] == 0:
        return torch.contiguous_format
    smallest = 0
    for d in (1, 3, 2, 0) if x.dim() == 4 else (1, 4, 3, 2, 0):
        if sizes[d] == 0 or strides[d] < smallest or (d == 0 and smallest == strides[1]):
            return torch.contiguous_format
        smallest = strides[d] * sizes[d]
    return torch.channels_last if x.dim() == 4 else torch.channels_last_3d


def _arg(args: _Args, kwargs: _Kwargs, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _contiguous_strides(shape: Sequence[int]) -> list[int]:
    strides, step = [0] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        strides[i] = step
        step *= max(shape[i], 1)
    return strides


def _is_dense(t: torch.Tensor) -> bool:
    """Non-overlapping and dense: the strides are a permutation of contiguous strides."""
    order = sorted(range(t.dim()), key=lambda d: (t.stride(d), t.shape[d]))
    step = 1
    for d in order:
        if t.shape[d] != 1 and t.stride(d) != step:
            return False
        step *= max(t.shape[d], 1)
    return True


def _elementwise_strides(shape: tuple[int, ...], operands: list[torch.Tensor]) -> list[int]:
    """The output strides TensorIterator gives an element-wise op: the operands' dimension order.

    Dimensions are sorted innermost first by the operands' strides (first operand first; a
    broadcast dimension has no say), then laid out densely in that order.
    """
    ndim = len(shape)
    if all(tuple(t.shape) == shape and t.is_contiguous() for t in operands):
        return _contiguous_strides(shape)
    strides = []
    for t in operands:
        offset = ndim - t.dim()
        strides.append(
            [
                0 if d < offset or (t.shape[d - offset] == 1 and shape[d] != 1) else t.stride(d - offset)
                for d in range(ndim)
            ]
        )

    def should_swap(dim0: int, dim1: int) -> int:
        for s in strides:
            if s[dim0] == 0 or s[dim1] == 0:
                continue
            if s[dim0] < s[dim1]:
                return -1
            if s[dim0] > s[dim1]:
                return 1
            if shape[dim0] > shape[dim1]:
                return 1
        return 0

    perm = list(range(ndim - 1, -1, -1))  # innermost first
    for i in range(1, ndim):
        dim1 = i
        for dim0 in range(i - 1, -1, -1):
            comparison = should_swap(perm[dim0], perm[dim1])
            if comparison > 0:
                perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
                dim1 = dim0
            elif comparison < 0:
                break
    out, step = [0] * ndim, 1
    for d in perm:
        out[d] = step
        step *= max(shape[d], 1)
    return out


def _empty(shape: Sequence[int], like: torch.Tensor, dtype: torch.dtype | None = None, **kw: Any) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=like.dtype if dtype is None else dtype, device=like.device, **kw)


def _strided(
    shape: Sequence[int], strides: Sequence[int], like: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    return torch.empty_strided(
        tuple(shape), tuple(strides), dtype=like.dtype if dtype is None else dtype, device=like.device
    )


def _pointwise(operands: Sequence[Any], dtype: torch.dtype | None = None) -> torch.Tensor | None:
    tensors = [t for t in operands if isinstance(t, torch.Tensor)]
    if not all(isinstance(v, (torch.Tensor, int, float, bool)) for v in operands):
        return None
    # 0-dim tensors take part in type promotion as scalars and have no say in the layout.
    shaped = [t for t in tensors if t.dim() > 0] or tensors
    shape = broadcast_shape([tuple(t.shape) for t in shaped])
    if shape is None:
        return None
    if dtype is None:
        dtype = operands[0].dtype if len(operands) == 1 else torch.result_type(operands[0], operands[1])
    return _strided(shape, _elementwise_strides(shape, shaped), tensors[0], dtype)


# ---------------------------------------------------------------------------------- element-wise
def _unary(args: _Args, kwargs: _Kwargs) -> _Out | None:
    if set(kwargs) - {"approximate"}:
        return None
    return _pointwise([args[0]])


def _binary(args: _Args, kwargs: _Kwargs) -> _Out | None:
    if kwargs or len(args) != 2:
        return None  # alpha= and friends take the real path
    return _pointwise(args)


def _binary_backward(args: _Args, kwargs: _Kwargs) -> _Out | None:
    """``gelu_backward(grad, self)``, ``threshold_backward(grad, self, threshold)``: grad's dtype."""
    if set(kwargs) - {"approximate"}:
        return None
    grad, x = args[0], args[1]
    if not isinstance(x, torch.Tensor) or grad.dtype != x.dtype:
        return None
    return _pointwise([grad, x], grad.dtype)


def _threshold_backward(args: _Args, kwargs: _Kwargs) -> _Out | None:
    """``threshold_backward(grad, self, threshold)`` is ``where(self <= threshold, 0, grad)``: self's layout first."""
    grad, x = args[0], args[1]
    if kwargs or not isinstance(x, torch.Tensor) or grad.dtype != x.dtype:
        return None
    return _pointwise([x, grad], grad.dtype)


def _clone(args: _Args, kwargs: _Kwargs) -> _Out | None:
    x = args[0]
    fmt = kwargs.get("memory_format", torch.preserve_format)
    if set(kwargs) - {"memory_format"}:
        return None
    if fmt == torch.contiguous_format:
        return _empty(x.shape, x)
    if fmt != torch.preserve_format:
        return None
    return _preserve(x)


def _preserve(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``empty_like`` with ``preserve_format``: a dense input's strides, else the element-wise order."""
    if _is_dense(x):
        return _strided(x.shape, x.stride(), x, dtype)
    return _strided(x.shape, _elementwise_strides(tuple(x.shape), [x]), x, dtype)


def _ones_like(args: _Args, kwargs: _Kwargs) -> _Out | None:
    if (
        any(v not in (None, False) for k, v in kwargs.items() if k != "memory_format")
        or kwargs.get("memory_format", torch.preserve_format) != torch.preserve_format
    ):
        return None
    return _preserve(args[0])


# ---------------------------------------------------------------------------------- matmuls, convs
def _mm(args: _Args, kwargs: _Kwargs) -> _Out | None:
    a, b = args[0], args[1]
    if kwargs or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
        return None
    return _empty((a.shape[0], b.shape[1]), a)


def _addmm(args: _Args, kwargs: _Kwargs) -> _Out | None:
    if len(args) != 3 or set(kwargs) - {"beta", "alpha"}:
        return None
    bias, a, b = args
    if not isinstance(bias, torch.Tensor) or bias.dtype != a.dtype:
        return None
    return _mm((a, b), {})


def _bmm(args: _Args, kwargs: _Kwargs) -> _Out | None:
    a, b = args[0], args[1]
    if kwargs or a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        return None
    if a.dtype != b.dtype:
        return None
    return _empty((a.shape[0], a.shape[1], b.shape[2]), a)


def _convolution(args: _Args, kwargs: _Kwargs) -> _Out | None:
    if kwargs or len(args) != 9:
        return None
    x, weight, _bias, stride, padding, dilation, transposed, _output_padding, groups = args
    if transposed or x.dim() < 3 or weight.dim() != x.dim() or x.shape[1] != weight.shape[1] * groups:
        return None
    spatial = x.dim() - 2
    if not all(len(v) == spatial for v in (stride, padding, dilation)):
        return None
    out = [x.shape[0], weight.shape[0]]
    for i in range(spatial):
        size = x.shape[2 + i] + 2 * padding[i] - dilation[i] * (weight.shape[2 + i] - 1) - 1
        if size < 0:
            return None
        out.append(size // stride[i] + 1)
    return _empty(out, x)  # the meta kernel leaves the format contiguous


def _convolution_backward(args: _Args, kwargs: _Kwargs) -> _Out | None:
    if kwargs or len(args) != 11:
        return None
    grad, x, weight, bias_sizes, *_, transposed, _output_padding, _groups, mask = args
    if transposed or x.dim() != 4:
        return None
    cl = torch.channels_last
    fmt = cl if cl in (suggest_memory_format(x), suggest_memory_format(weight)) else torch.contiguous_format
    return (
        _empty(x.shape, grad, memory_format=fmt) if mask[0] else None,
        _empty(weight.shape, grad, memory_format=fmt) if mask[1] else None,
        _empty(bias_sizes, grad) if mask[2] and bias_sizes is not None else None,
    )


# ---------------------------------------------------------------------------------- norms, softmax
def _layer_norm(args: _Args, kwargs: _Kwargs) -> _Out | None:
    if kwargs or len(args) != 5:
        return None
    x, normalized = args[0], args[1]
    if x.dtype not in (torch.float32, torch.float64) or not 0 < len(normalized) <= x.dim():
        return None
    axis = x.dim() - len(normalized)
    stats = (*x.shape[:axis], *(1,) * len(normalized))
    return _empty(x.shape, x), _empty(stats, x), _empty(stats, x)


def _layer_norm_backward(args: _Args, kwargs: _Kwargs) -> _Out | None:
    if kwargs or len(args) != 8:
        return None
    grad, x, _normalized, _mean, _rstd, weight, bias, mask = args
    if x.dtype not in (torch.float32, torch.float64) or grad.dtype != x.dtype:
        return None
    return (
        _pointwise([grad, x]) if mask[0] else None,
        _empty(weight.shape, weight) if mask[1] and weight is not None else None,
        _empty(bias.shape, bias) if mask[2] and bias is not None else None,
    )


def _softmax(args: _Args, kwargs: _Kwargs) -> _Out | None:
    x, _dim, half_to_float = args
    if kwargs or half_to_float:
        return None
    return _preserve(x)


def _softmax_backward(args: _Args, kwargs: _Kwargs) -> _Out | None:
    grad, output, _dim, input_dtype = args
    if kwargs or grad.dtype != input_dtype or output.dtype != input_dtype:
        return None
    return _pointwise([grad, output], grad.dtype)


def _sdpa_cpu(args: _Args, kwargs: _Kwargs) -> _Out | None:
    q = args[0]
    if set(kwargs) - {"attn_mask", "scale"} or kwargs.get("attn_mask") is not None or q.dim() != 4:
        return None
    if q.dtype not in (torch.float32, torch.float64):
        return None
    batch, heads, length, _ = q.shape
    lse = _empty((batch, length, heads), q, torch.float32 if q.dtype == torch.float32 else q.dtype).transpose(1, 2)
    return _preserve(q), lse


def _sdpa_cpu_backward(args: _Args, kwargs: _Kwargs) -> _Out | None:
    if set(kwargs) - {"attn_mask", "scale"} or kwargs.get("attn_mask") is not None:
        return None
    grads = []
    for t in args[1:4]:
        if t.dim() != 4:
            return None
        b, h, n, d = t.shape
        grads.append(_empty((b, n, h, d), t).transpose(1, 2))
    return tuple(grads)


# ---------------------------------------------------------------------------------- reductions, shapes
def _reduced(x: torch.Tensor, dims: Any, keepdim: bool) -> list[int] | None:
    if dims is None or (isinstance(dims, (list, tuple)) and not dims):
        dims = list(range(x.dim()))
    if isinstance(dims, int):
        dims = [dims]
    if not all(isinstance(d, int) for d in dims) or x.dim() == 0:
        return None
    reduced = {d % x.dim() for d in dims}
    return [1 if i in reduced else n for i, n in enumerate(x.shape) if keepdim or i not in reduced]


def _sum_or_mean(args: _Args, kwargs: _Kwargs) -> _Out | None:
    x = args[0]
    dims = _arg(args, kwargs, 1, "dim")
    keepdim = _arg(args, kwargs, 2, "keepdim", False)
    if _arg(args, kwargs, 3, "dtype") is not None or set(kwargs) - {"dim", "keepdim", "dtype"}:
        return None
    if not x.dtype.is_floating_point:
        return None
    shape = _reduced(x, dims, bool(keepdim))
    return None if shape is None else _empty(shape, x)


def _unsafe_view(args: _Args, kwargs: _Kwargs) -> _Out | None:
    x, size = args[0], args[1]
    if kwargs:
        return None
    try:
        # Below autograd a view carries no view metadata: the same storage, like the real kernel's.
        out: torch.Tensor = aten.view.default(x, size)
    except RuntimeError:
        return None
    return out


def _zeros_backward(args: _Args, kwargs: _Kwargs) -> _Out | None:
    """``select_backward``/``slice_backward``: a contiguous zero tensor of the input's size."""
    if kwargs:
        return None
    return _empty(args[1], args[0])


def _new_empty_strided(args: _Args, kwargs: _Kwargs) -> _Out | None:
    x, size, stride = args[0], args[1], args[2]
    if any(v is not None for v in kwargs.values()) or len(args) > 3:
        return None
    return _strided(size, stride, x)


def _cat(args: _Args, kwargs: _Kwargs) -> _Out | None:
    tensors, dim = args[0], _arg(args, kwargs, 1, "dim", 0)
    if set(kwargs) - {"dim"} or not tensors or not all(t.dim() == tensors[0].dim() > 0 for t in tensors):
        return None
    first = tensors[0]
    dim %= first.dim()
    if any(
        t.dtype != first.dtype or t.shape[:dim] != first.shape[:dim] or t.shape[dim + 1 :] != first.shape[dim + 1 :]
        for t in tensors
    ):
        return None
    formats = {suggest_memory_format(t) for t in tensors}
    fmt = formats.pop() if len(formats) == 1 else torch.contiguous_format
    shape = (*first.shape[:dim], sum(t.shape[dim] for t in tensors), *first.shape[dim + 1 :])
    return _empty(shape, first, memory_format=fmt)


def _upsample_bilinear(args: _Args, kwargs: _Kwargs) -> _Out | None:
    x, size = args[0], args[1]
    if kwargs or x.dim() != 4 or size is None or len(size) != 2:
        return None
    return _empty((x.shape[0], x.shape[1], *size), x, memory_format=suggest_memory_format(x))


def _adaptive_avg_pool(args: _Args, kwargs: _Kwargs) -> _Out | None:
    x, size = args[0], args[1]
    if kwargs or x.dim() != 4 or len(size) != 2:
        return None
    return _empty((*x.shape[:-2], *size), x, memory_format=suggest_memory_format(x))


def _adaptive_avg_pool_backward(args: _Args, kwargs: _Kwargs) -> _Out | None:
    grad, x = args
    if kwargs or x.dim() != 4 or grad.dtype != x.dtype:
        return None
    return _empty(x.shape, x, memory_format=suggest_memory_format(x))


_STAND_INS: dict[Any, Callable[[_Args, _Kwargs], _Out | None]] = {
    aten.addmm.default: _addmm,
    aten.mm.default: _mm,
    aten.bmm.default: _bmm,
    aten.convolution.default: _convolution,
    aten.convolution_backward.default: _convolution_backward,
    aten.native_layer_norm.default: _layer_norm,
    aten.native_layer_norm_backward.default: _layer_norm_backward,
    aten.gelu.default: _unary,
    aten.relu.default: _unary,
    aten.gelu_backward.default: _binary_backward,
    aten.threshold_backward.default: _threshold_backward,
    aten.add.Tensor: _binary,
    aten.mul.Tensor: _binary,
    aten.div.Scalar: _binary,
    aten.div.Tensor: _binary,
    aten.clone.default: _clone,
    aten.ones_like.default: _ones_like,
    aten._softmax.default: _softmax,
    aten._softmax_backward_data.default: _softmax_backward,
    aten._scaled_dot_product_flash_attention_for_cpu.default: _sdpa_cpu,
    aten._scaled_dot_product_flash_attention_for_cpu_backward.default: _sdpa_cpu_backward,
    aten.sum.dim_IntList: _sum_or_mean,
    aten.mean.dim: _sum_or_mean,
    aten._unsafe_view.default: _unsafe_view,
    aten.select_backward.default: _zeros_backward,
    aten.slice_backward.default: _zeros_backward,
    aten.new_empty_strided.default: _new_empty_strided,
    aten.cat.default: _cat,
    aten.upsample_bilinear2d.default: _upsample_bilinear,
    aten._adaptive_avg_pool2d.default: _adaptive_avg_pool,
    aten._adaptive_avg_pool2d_backward.default: _adaptive_avg_pool_backward,
}


def _all_meta(args: _Args) -> bool:
    for a in args:
        if isinstance(a, torch.Tensor):
            if not a.is_meta:
                return False
        elif isinstance(a, (list, tuple)) and not all(t.is_meta for t in a if isinstance(t, torch.Tensor)):
            return False
    return True


def aten_stand_in(func: Any, args: _Args, kwargs: _Kwargs) -> Any:
    """The output ``func(*args, **kwargs)`` would have, for handled aten ops on meta tensors; else None."""
    stand_in = _STAND_INS.get(func) if ENABLED else None
    if stand_in is None or not args or not _all_meta(args):
        return None
    first = args[0][0] if isinstance(args[0], (list, tuple)) and args[0] else args[0]
    if not isinstance(first, torch.Tensor):
        return None
    if any(isinstance(v, torch.Tensor) and not v.is_meta for v in kwargs.values()):
        return None
    out = stand_in(args, kwargs)
    if CHECK and out is not None:
        _check(func, args, kwargs, out)
    return out


def _facts(t: torch.Tensor | None, inputs: set[int]) -> Any:
    if t is None:
        return None
    storage = t.untyped_storage()
    # Strides of size-1 dimensions decide nothing (views, copies, formats), so they are not compared.
    strides = tuple(s if n != 1 else None for s, n in zip(t.stride(), t.shape, strict=True))
    return (tuple(t.shape), strides, t.dtype, t.storage_offset(), storage.nbytes(), storage._cdata in inputs)


def _check(func: Any, args: _Args, kwargs: _Kwargs, ours: Any) -> None:
    real = func(*args, **kwargs)
    flat = [t for a in args for t in (a if isinstance(a, (list, tuple)) else (a,)) if isinstance(t, torch.Tensor)]
    inputs = {t.untyped_storage()._cdata for t in flat}
    mine = [_facts(t, inputs) for t in (ours if isinstance(ours, tuple) else (ours,))]
    theirs = [_facts(t, inputs) for t in (real if isinstance(real, (tuple, list)) else (real,))]
    if mine != theirs:
        raise StandInMismatch(f"{func}: stand-in {mine} != kernel {theirs}")
