"""What ``torch.cuda.max_memory_allocated`` reads over steady-state training steps, from a training trace.

Pure functions. This module must not import torch, rich or typer. Input: the storage log of a
forward-with-grad + backward (:class:`pvttrace.memory.estimate.LifetimeLog`) and the sizes of the model's
parameter and buffer tensors. The peak is the larger of two phases of a step after the first
(optimizer state exists; the first step is no higher, since its state is created inside the step):

* **forward + backward**: parameters, buffers, optimizer state, the gradients (all of them when the
  framework keeps them between steps, ``zero_grad(set_to_none=False)``; otherwise as the backward
  creates them), DistributedDataParallel's gradient buckets when trained on several GPUs (a second
  copy of the gradients, ``gradient_as_bucket_view=False``), and the activations replayed storage by
  storage from the log;
* **optimizer step**: parameters, buffers, gradients, state and the optimizer's temporaries. PyTorch's
  multi-tensor (``foreach``) Adam/AdamW makes one ``sqrt(exp_avg_sq)`` tensor per parameter at once
  (1x the parameter bytes); the per-parameter loop makes ``sqrt`` and its quotient for one parameter at
  a time (2x the largest parameter). SGD's foreach path makes none without weight decay.

Every storage is counted as the caching allocator holds it: rounded up to a multiple of 512 bytes.
Not modelled: cuDNN/cuBLAS workspaces (their size depends on the algorithm cuDNN picks), the
allocator's block splitting (a reused cached block may be up to 1 MiB larger than the request), the
CUDA context and memory cached but free (neither is "allocated").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pvttrace.memory.estimate import LifetimeLog, Optimizer, StorageKind

__all__ = ["BLOCK", "FRAMEWORKS", "GpuPeak", "GpuSetting", "gpu_training_peak", "rounded"]

#: The caching allocator's block size: every allocation is a multiple of it.
BLOCK = 512


def rounded(nbytes: int, block: int = BLOCK) -> int:
    """``nbytes`` as the caching allocator holds it (0 stays 0)."""
    return -(-nbytes // block) * block


@dataclass(frozen=True, slots=True)
class GpuSetting:
    """How a training framework runs a step, as far as memory goes."""

    name: str
    grads_kept: bool
    """Gradients survive between steps (``zero_grad(set_to_none=False)``, PyTorch < 2.0 and MMCV 1.x)."""
    foreach: bool
    """Multi-tensor optimizer step (PyTorch >= 2.0 default on CUDA) rather than the per-parameter loop."""
    ddp_buckets: bool
    """Multi-GPU DistributedDataParallel: gradient buckets hold a second copy of the gradients."""
    softmax_saves_input: bool
    """PyTorch < 1.11: softmax/log-softmax keep their input for backward (:mod:`pvttrace.tracing.legacy`)."""


#: Documented settings, one per framework convention (see docs/dense-models.md).
FRAMEWORKS: dict[str, GpuSetting] = {
    "mmcv1-ddp": GpuSetting("mmcv1-ddp", grads_kept=True, foreach=False, ddp_buckets=True, softmax_saves_input=True),
    "torch2": GpuSetting("torch2", grads_kept=False, foreach=True, ddp_buckets=False, softmax_saves_input=False),
    "torch2-ddp": GpuSetting("torch2-ddp", grads_kept=False, foreach=True, ddp_buckets=True, softmax_saves_input=False),
}


@dataclass(frozen=True, slots=True)
class GpuPeak:
    """The predicted ``max_memory_allocated`` of a training step and its parts (bytes, 512-rounded)."""

    setting: str
    params: int
    buffers: int
    grads: int
    optimizer_state: int
    ddp_buckets: int
    forward_backward_peak: int
    """Whole-step bytes at the highest moment of the forward + backward."""
    step_peak: int
    """Whole-step bytes during the optimizer step (with its temporaries)."""
    optimizer_temporaries: int

    @property
    def peak(self) -> int:
        """The prediction: the higher of the two phases."""
        return max(self.forward_backward_peak, self.step_peak)


def gpu_training_peak(
    log: LifetimeLog,
    *,
    param_sizes: Sequence[int],
    trainable_sizes: Sequence[int],
    buffer_sizes: Sequence[int],
    optimizer: Optimizer | str,
    setting: GpuSetting,
) -> GpuPeak:
    """Predict ``torch.cuda.max_memory_allocated`` over training steps (see the module docstring).

    ``param_sizes``/``trainable_sizes``/``buffer_sizes`` are the byte sizes of each parameter, each
    trainable parameter, each buffer tensor.
    """
    kind = Optimizer(optimizer)
    params = sum(rounded(n) for n in param_sizes)
    buffers = sum(rounded(n) for n in buffer_sizes)
    grads = sum(rounded(n) for n in trainable_sizes) if kind != Optimizer.NONE else 0
    factor = {Optimizer.NONE: 0, Optimizer.SGD: 0, Optimizer.SGD_MOMENTUM: 1, Optimizer.ADAM: 2, Optimizer.ADAMW: 2}
    state = factor[kind] * grads
    buckets = grads if setting.ddp_buckets else 0
    if kind in (Optimizer.ADAM, Optimizer.ADAMW):
        temps = grads if setting.foreach else 2 * max((rounded(n) for n in trainable_sizes), default=0)
    else:
        temps = 0
    counted = {StorageKind.INPUT, StorageKind.ACTIVATION}
    if not setting.grads_kept:
        counted.add(StorageKind.GRAD)
    live = high = 0
    for event in log.events:
        if log.kind(event.key) in counted:
            live += rounded(event.delta) if event.delta > 0 else -rounded(-event.delta)
            high = max(high, live)
    static = params + buffers + state + buckets
    forward_backward = static + high + (grads if setting.grads_kept else 0)
    return GpuPeak(
        setting=setting.name,
        params=params,
        buffers=buffers,
        grads=grads,
        optimizer_state=state,
        ddp_buckets=buckets,
        forward_backward_peak=forward_backward,
        step_peak=static + grads + temps,
        optimizer_temporaries=temps,
    )
