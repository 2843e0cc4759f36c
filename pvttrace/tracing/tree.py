"""One walk of a model's module tree, shared by the parts of a trace that need it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ModelTree"]


@dataclass(frozen=True, slots=True)
class ModelTree:
    """What ``named_modules()``, ``named_parameters()`` and ``buffers()`` give, from a single walk.

    A trace used to walk the tree six or seven times (module paths, train/eval modes, storage tags,
    module types, parameter counts, buffer bytes); on a deep model each walk costs about as much as
    recording a few dozen ops. Same order and the same de-duplication as torch's own methods.
    """

    modules: tuple[tuple[str, nn.Module], ...]
    params: tuple[tuple[str, nn.Parameter], ...]
    buffers: tuple[torch.Tensor, ...]

    @classmethod
    def of(cls, model: nn.Module) -> ModelTree:
        """Walk ``model`` once."""
        modules = tuple(model.named_modules())
        params: list[tuple[str, nn.Parameter]] = []
        buffers: list[torch.Tensor] = []
        seen: set[int] = set()
        for prefix, module in modules:
            for name, param in module._parameters.items():
                if param is not None and id(param) not in seen:
                    seen.add(id(param))
                    params.append((f"{prefix}.{name}" if prefix else name, param))
        for _, module in modules:
            for buffer in module._buffers.values():
                if buffer is not None and id(buffer) not in seen:
                    seen.add(id(buffer))
                    buffers.append(buffer)
        return cls(modules, tuple(params), tuple(buffers))
