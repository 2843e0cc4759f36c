"""Module-level view through torchinfo, one of our chosen dependencies.

torchinfo is good at what it was built for: a tree of modules with output shapes and
parameter counts (tied parameters counted once). We use it for ``pvttrace run --modules``
and as an independent cross-check of our parameter totals in the tests. We do not use its
"Mult-Adds" column: it multiplies parameters by output size, misses every parameter-free
op (``q @ k^T``, ``attn @ v``) and is off by about 10x on transformers (reference peers.md).
"""

from __future__ import annotations

import torch
import torchinfo

from pvttrace.config import PvtConfig
from pvttrace.tracing.model import build_model, torch_dtype

__all__ = ["module_summary", "torchinfo_param_count"]


def _summary(cfg: PvtConfig, depth: int, col_width: int = 25) -> torchinfo.ModelStatistics:
    model = build_model(cfg, device="meta")
    # input_data, not input_size: torchinfo makes an input_size batch with torch.rand on the CPU before
    # moving it, which allocates real memory (3 TiB for batch 4096 at 8192x8192).
    return torchinfo.summary(
        model,
        input_data=torch.empty(cfg.input_shape, device="meta", dtype=torch_dtype(cfg.dtype)),
        device="meta",
        depth=depth,
        verbose=0,
        col_names=("output_size", "num_params"),
        col_width=col_width,
        dtypes=None,
    )


def module_summary(cfg: PvtConfig, *, depth: int = 4, width: int = 90) -> str:
    """torchinfo's module table for ``cfg`` (built and run on the meta device), at most ``width`` columns wide.

    torchinfo's layer column is 40 characters; its two value columns share the rest (15 to 25 each).
    """
    return str(_summary(cfg, depth, col_width=min(25, max(15, (width - 40) // 2))))


def torchinfo_param_count(cfg: PvtConfig) -> int:
    """Total parameters as torchinfo counts them."""
    return int(_summary(cfg, 1).total_params)
