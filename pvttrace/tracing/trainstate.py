"""Keep a user's model unchanged by a training trace.

A training trace runs the model's forward in train mode with grad enabled. Two things differ from
the inference forward for models with batch-norm layers (``nn.BatchNorm*``, timm's ``BatchNormAct2d``,
SegFormer's fuse conv norm):

* the layer issues ``num_batches_tracked.add_(1)``, an op the inference forward does not, and
* ``F.batch_norm`` writes the batch statistics into ``running_mean``/``running_var``.

In train mode a batch-norm layer normalises with the batch statistics whether or not it tracks
running ones, so switching ``track_running_stats`` off for the traced forward issues the same
ops as inference, computes the same values and memory, and mutates no buffer. The flags are put
back afterwards, and any other buffer a forward might write to is restored from a copy (real
devices only: meta buffers hold no values). Gradients the user's parameters already hold are set
aside during the trace (its backward would add to them) and put back, and so is each submodule's
train/eval mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from pvttrace.tracing.tree import ModelTree

__all__ = ["preserved_state"]


@contextmanager
def preserved_state(tree: ModelTree, *, train: bool) -> Iterator[None]:
    """On exit every submodule of the model ``tree`` walked is back in its train/eval mode. With ``train``,
    inside, batch-norm layers do not track running statistics and parameters hold no gradient; on exit every
    buffer holds its old value and every parameter its old ``.grad``."""
    modules = [module for _, module in tree.modules]
    toggled = [m for m in modules if getattr(m, "track_running_stats", False) is True] if train else []
    saved = [(b, b.detach().clone()) for b in tree.buffers if not b.is_meta] if train else []
    grads = [(p, p.grad) for _, p in tree.params] if train else []
    modes = [(m, m.training) for m in modules]  # a frozen BN inside a training model stays frozen
    for module in toggled:
        setattr(module, "track_running_stats", False)  # noqa: B010 - nn.Module attribute typing
    for param, _ in grads:
        param.grad = None
    try:
        yield
    finally:
        for module in toggled:
            setattr(module, "track_running_stats", True)  # noqa: B010
        for param, grad in grads:
            param.grad = grad
        for module, mode in modes:
            module.training = mode
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
