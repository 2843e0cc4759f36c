"""Mixed precision as ``torch.autocast(device_type="cuda", dtype=torch.float16)`` runs it, on any device.

Autocast has no dispatch key for meta tensors, so its casting policy is applied here at the torch-function
level, which is where it decides (PyTorch's ``autocast_mode.cpp`` lists):

* **float16 ops** (convolutions, ``linear``, matrix products, fused attention): float32 tensor arguments are
  cast to float16 first. Casts of parameters are cached for the whole region, as autocast's weight cache
  keeps them (autograd also saves them for backward); activations are cast at each use.
* **float32 ops** (softmax, log-softmax, layer/group norm, the losses, bilinear/nearest resizing, sums): float16
  arguments are cast to float32, and the op runs and returns in float32.
* everything else runs in its inputs' dtype (adds, GELU, ReLU, batch norm on a float16 map).

Parameters, gradients and optimizer state stay float32 (``torch.cuda.amp``'s convention). Values are
whatever the casts give; pvttrace only needs their memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["autocast_float16"]

_LOW = frozenset(
    {
        F.linear,
        F.conv1d,
        F.conv2d,
        F.conv3d,
        F.conv_transpose2d,
        F.scaled_dot_product_attention,
        torch.matmul,
        torch.Tensor.matmul,
        torch.Tensor.__matmul__,
        torch.bmm,
        torch.Tensor.bmm,
        torch.mm,
        torch.addmm,
        torch.baddbmm,
    }
)
_FP32 = frozenset(
    {
        torch.Tensor.softmax,
        F.softmax,
        torch.softmax,
        torch.Tensor.log_softmax,
        F.log_softmax,
        F.layer_norm,
        F.group_norm,
        F.cross_entropy,
        F.nll_loss,
        F.l1_loss,
        F.binary_cross_entropy_with_logits,
        F.interpolate,
        torch.Tensor.sum,
        torch.sum,
    }
)


class _Autocast(TorchFunctionMode):
    def __init__(self, params: set[int]) -> None:
        super().__init__()
        self.params = params
        self.cache: dict[int, torch.Tensor] = {}

    def _cast(self, value: Any, dtype: torch.dtype) -> Any:
        if isinstance(value, (list, tuple)):
            return type(value)(self._cast(v, dtype) for v in value)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.dtype == dtype:
            return value
        if id(value) in self.params:
            cached = self.cache.get(id(value))
            if cached is None:
                cached = self.cache[id(value)] = value.to(dtype)
            return cached
        return value.to(dtype)

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in _LOW:
            dtype = torch.float16
        elif func in _FP32:
            dtype = torch.float32
        else:
            return func(*args, **kwargs)
        args = tuple(self._cast(a, dtype) for a in args)
        kwargs = {k: self._cast(v, dtype) for k, v in kwargs.items()}
        return func(*args, **kwargs)


@contextmanager
def autocast_float16(model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """Inside (when ``enabled``), ops of ``model``'s forward follow autocast's float16 policy (module docstring).

    The weight cache is dropped on exit, as autocast drops it when its region ends.
    """
    if not enabled:
        yield
        return
    mode = _Autocast({id(p) for p in model.parameters()})
    try:
        with mode:
            yield
    finally:
        mode.cache.clear()
