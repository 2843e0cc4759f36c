"""PyTorch < 1.11 autograd, as far as memory goes: softmax and log-softmax also save their input.

Until PyTorch 1.11, the backward of ``_softmax`` and ``_log_softmax`` took the forward's input as an
argument (``_softmax_backward_data(grad, output, dim, self)``, used only for its dtype), so autograd
kept the input alive until the backward, next to the output. Frameworks' published memory tables
measured on those versions (MMSegmentation's SegFormer table, 2021) include one more attention score
map per block and the input of the loss's log-softmax. Inside :func:`legacy_softmax_autograd`,
``softmax``, ``log_softmax`` and ``cross_entropy`` run through an autograd function that saves
(input, output), reproducing that; values are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["legacy_softmax_autograd"]


class _SoftmaxKeepingInput(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int, log: bool) -> torch.Tensor:
        out = torch._log_softmax(x, dim, False) if log else torch._softmax(x, dim, False)
        ctx.save_for_backward(x, out)
        ctx.dim = dim
        ctx.log = log
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        x, out = ctx.saved_tensors
        if ctx.log:
            return torch._log_softmax_backward_data(grad, out, ctx.dim, x.dtype), None, None
        return torch._softmax_backward_data(grad, out, ctx.dim, x.dtype), None, None


def _dim(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if dim is None:
        raise ValueError("softmax without dim is not supported under legacy autograd")
    return int(dim)


class _LegacyMode(TorchFunctionMode):
    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        x = args[0] if args else None
        if isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled():
            if func in (torch.Tensor.softmax, F.softmax, torch.softmax):
                return _SoftmaxKeepingInput.apply(x, _dim(args, kwargs), False)
            if func in (torch.Tensor.log_softmax, F.log_softmax, torch.log_softmax):
                return _SoftmaxKeepingInput.apply(x, _dim(args, kwargs), True)
            if func is F.cross_entropy and len(args) >= 2:
                log_p = _SoftmaxKeepingInput.apply(x, 1, True)
                rest = {k: v for k, v in kwargs.items() if k in ("weight", "ignore_index", "reduction")}
                return F.nll_loss(log_p, args[1], **rest)
        return func(*args, **kwargs)


@contextmanager
def legacy_softmax_autograd(enabled: bool = True) -> Iterator[None]:
    """Inside (when ``enabled``), softmax-type ops save their input too (see the module docstring)."""
    if not enabled:
        yield
        return
    with _LegacyMode():
        yield
