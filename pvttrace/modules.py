"""Module-level view through torchinfo, one of our chosen dependencies.

torchinfo is good at what it was built for: a tree of modules with output shapes and
parameter counts (tied parameters counted once). We use it for ``pvttrace run --modules``
and as an independent cross-check of our parameter totals in the tests. We do not use its
"Mult-Adds" column: it multiplies parameters by output size, misses every parameter-free
op (``q @ k^T``, ``attn @ v``) and is off by about 10x on transformers (reference peers.md).
"""

from __future__ import annotations

import torchinfo

from pvttrace.config import PvtConfig
from pvttrace.model import build_model

__all__ = ["module_summary", "torchinfo_param_count"]


def _summary(cfg: PvtConfig, depth: int) -> torchinfo.ModelStatistics:
    model = build_model(cfg, device="meta")
    return torchinfo.summary(
        model,
        input_size=cfg.input_shape,
        device="meta",
        depth=depth,
        verbose=0,
        col_names=("output_size", "num_params"),
        dtypes=None,
    )


def module_summary(cfg: PvtConfig, *, depth: int = 4) -> str:
    """torchinfo's module table for ``cfg`` (built and run on the meta device)."""
    return str(_summary(cfg, depth))


def torchinfo_param_count(cfg: PvtConfig) -> int:
    """Total parameters as torchinfo counts them."""
    return int(_summary(cfg, 1).total_params)
