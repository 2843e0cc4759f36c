"""The non-tensor facts of a traced call that some cost rules need.

Shapes alone cost most ops. A few need an argument that is not a tensor: the einsum
equation, ``nn.MultiheadAttention``'s embed dim and whether it returns its weights, an
upsampling mode, whether a norm is affine or a conv has a bias. Which op needs which facts is the
registry's decision (``CostEntry.facts``); this module only reads them off the call, which needs
torch. The tracer calls :func:`call_facts` for every recorded op; the result is handed to the
registry's counts and is not stored in the trace.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from pvttrace.costs.registry import FactsNeeded, facts_needed

__all__ = ["call_facts"]

_signatures: dict[Any, inspect.Signature | None] = {}


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    if func not in _signatures:
        try:
            _signatures[func] = inspect.signature(func)
        except (TypeError, ValueError):
            _signatures[func] = None
    return _signatures[func]


def _bound(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Arguments by parameter name (defaults applied); {} when the function has no Python signature."""
    signature = _signature(func)
    if signature is None:
        return {}
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return {}
    bound.apply_defaults()
    return dict(bound.arguments)


_positions: dict[tuple[Any, str], tuple[int, Any] | None] = {}


def _argument(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> Any:
    """The argument ``name`` of a call (its default when not passed), as :func:`_bound` would give it.

    Read by position where the signature allows (the parameter and all before it positional-or-keyword),
    without binding the whole call: norms are common ops, and binding cost more than recording them.
    """
    key = (func, name)
    if key not in _positions:
        signature = _signature(func)
        position = None
        if signature is not None and name in signature.parameters:
            params = list(signature.parameters.values())
            index = params.index(signature.parameters[name])
            positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            if all(p.kind in positional for p in params[: index + 1]):
                default = params[index].default
                position = (index, None if default is inspect.Parameter.empty else default)
        _positions[key] = position
    position = _positions[key]
    if position is None:
        return _bound(func, args, kwargs).get(name)
    index, default = position
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _positional(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def call_facts(name: str, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """What the cost rules need to know about one call beyond its tensor shapes (often nothing)."""
    needed = facts_needed(name)
    if needed == FactsNeeded.EINSUM:
        equation = args[0] if args and isinstance(args[0], str) else kwargs.get("equation", "")
        return {"equation": equation}
    if needed == FactsNeeded.MHA:
        bound = _bound(func, args, kwargs)
        extra_keys = int(bound.get("bias_k") is not None) + int(bool(bound.get("add_zero_attn")))
        masked = bound.get("attn_mask") is not None or bound.get("key_padding_mask") is not None
        return {
            "embed_dim": int(bound.get("embed_dim_to_check", args[0].shape[-1])),
            "num_heads": int(bound.get("num_heads", 1)),
            "extra_keys": extra_keys,
            "need_weights": bool(bound.get("need_weights", True)),
            "masked": masked,
        }
    if needed == FactsNeeded.INTERPOLATE:
        bound = _bound(func, args, kwargs)
        return {"mode": str(bound.get("mode", "nearest"))}
    if needed == FactsNeeded.NORM:
        return {"affine": _argument(func, args, kwargs, "weight") is not None}
    if needed == FactsNeeded.NORM_TRAINING:
        bound = _bound(func, args, kwargs)
        training = bool(bound.get("training", bound.get("use_input_stats", False)))
        return {"affine": bound.get("weight") is not None, "training": training}
    if needed == FactsNeeded.BIAS:
        return {"bias": isinstance(_positional(args, kwargs, 2, "bias"), torch.Tensor)}
    return {}
