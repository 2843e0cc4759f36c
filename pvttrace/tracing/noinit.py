"""Build models on the ``meta`` device without running their weight initialisers.

A model's constructor fills every parameter: ``reset_parameters`` (``kaiming_uniform_`` and friends),
or the model's own scheme (timm's ``trunc_normal_``: ``uniform_``, ``erfinv_``, ``mul_``, ``add_``,
``clamp_`` on each tensor). On meta tensors those calls compute nothing, yet each goes through
torch's dispatch, many through Python reference kernels: on a large timm model (mvitv2_huge_cls)
they are about 80% of the build. A trace needs only shapes, so while a model is built on meta,
:func:`skip_meta_init` answers the in-place *value-filling* calls on meta tensors by returning the
tensor untouched. Calls that change a tensor's shape or strides (``resize_``, ``t_``, ``unsqueeze_``,
``as_strided_`` ...) are not in the list and run as usual, so shapes, parameter counts and the
module tree are exactly what a normal build gives (tests/test_performance.py compares them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["default_device_without_init", "skip_meta_init"]

_Args = tuple[Any, ...]
_Kw = dict[str, Any] | None

#: In-place tensor methods that only write values (never shape, strides or dtype).
_FILLS = frozenset(
    {
        "uniform_", "normal_", "bernoulli_", "exponential_", "geometric_", "log_normal_", "cauchy_", "random_",
        "fill_", "zero_", "fill_diagonal_", "copy_", "erfinv_", "mul_", "add_", "sub_", "div_", "clamp_",
        "clamp_min_", "clamp_max_", "abs_", "sqrt_", "exp_", "neg_", "sign_", "addcmul_", "addcdiv_",
    }
)  # fmt: skip

#: ``torch.nn.init`` functions that torch dispatches as one call (``nn.Linear`` and ``nn.Conv*`` run
#: ``kaiming_uniform_`` in ``reset_parameters``). Their inner ``uniform_`` runs with this mode paused, so
#: it would go through torch's Python meta kernels unless the whole initialiser is answered here.
#: ``kaiming_uniform_`` raises for tensors of fewer than 2 dimensions: those still run, and raise as usual.
_INITIALISERS = frozenset({"kaiming_uniform_"})


def _skipped_fill(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    """The meta tensor a value-filling call would fill (to return untouched), or None when the call must run."""
    name = getattr(func, "__name__", "")
    if name in _FILLS or name in _INITIALISERS:
        # ``torch.nn.init`` functions pass their tensor by keyword (``tensor=``), tensor methods first.
        target = args[0] if args else kwargs.get("tensor")
        if isinstance(target, torch.Tensor) and target.is_meta and (name in _FILLS or target.dim() >= 2):
            return target
    return None


class _SkipFills(TorchFunctionMode):
    """Returns meta tensors untouched from value-filling in-place calls; everything else runs."""

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: _Args = (), kwargs: _Kw = None) -> Any:
        kwargs = kwargs or {}
        target = _skipped_fill(func, args, kwargs)
        return target if target is not None else func(*args, **kwargs)


@contextmanager
def skip_meta_init(device: str | torch.device) -> Iterator[None]:
    """While building a model on ``device``: skip weight initialisation if that is ``meta``, else do nothing."""
    if torch.device(device).type != "meta":
        yield
        return
    with _SkipFills():
        yield


def _meta_default_device() -> Callable[[], AbstractContextManager[None]] | None:
    """A default-device context for ``meta`` that also skips fills, as one torch-function mode.

    ``with torch.device("meta")`` is itself a torch-function mode, so building under it and
    :func:`skip_meta_init` sends every torch call of a constructor through two Python handlers (a
    large model makes tens of thousands). Extending torch's own context keeps its bookkeeping
    (the current default device, its place at the bottom of the mode stack) and adds the skip.
    ``DeviceContext`` is not public API: without it, the two contexts are stacked.
    """
    try:
        from torch.utils._device import DeviceContext, _device_constructors
    except ImportError:  # pragma: no cover - every torch this project supports has it
        return None

    class _MetaBuild(DeviceContext):
        def __torch_function__(self, func: Callable[..., Any], types: Any, args: _Args = (), kwargs: _Kw = None) -> Any:
            kwargs = kwargs or {}
            if func in _device_constructors():
                if kwargs.get("device") is None:
                    kwargs["device"] = self.device
                return func(*args, **kwargs)
            target = _skipped_fill(func, args, kwargs)
            return target if target is not None else func(*args, **kwargs)

    return lambda: _MetaBuild(torch.device("meta"))


@contextmanager
def default_device_without_init(device: str | torch.device) -> Iterator[None]:
    """``with torch.device(device)`` for building a model; on ``meta``, weight initialisation is skipped too."""
    if torch.device(device).type != "meta":
        with torch.device(device):
            yield
        return
    combined = _meta_default_device()
    if combined is None:  # pragma: no cover
        with torch.device(device), skip_meta_init(device):
            yield
        return
    with combined():
        yield
