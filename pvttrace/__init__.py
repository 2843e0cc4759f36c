"""pvttrace: see, op by op, how tensors flow through a Pyramid Vision Transformer.

The public API is re-exported here lazily, so ``import pvttrace`` (and ``pvttrace --help``)
does not import torch; torch loads the first time a tracing function is used.

Example:
    >>> import pvttrace
    >>> trace = pvttrace.trace_config(pvttrace.get_variant("tiny"))
    >>> trace.totals.params, trace.totals.macs
    (13229288, 1932911616)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "PvtConfig": "pvttrace.config",
    "VARIANTS": "pvttrace.config",
    "get_variant": "pvttrace.config",
    "OpRecord": "pvttrace.records",
    "StageSummary": "pvttrace.records",
    "Trace": "pvttrace.records",
    "load_trace": "pvttrace.records",
    "build_model": "pvttrace.tracing.model",
    "trace_config": "pvttrace.tracing.recorder",
    "trace_model": "pvttrace.tracing.recorder",
    "register_cost_rule": "pvttrace.costs.registry",
    "PvtTraceError": "pvttrace.base.errors",
    "ConfigError": "pvttrace.base.errors",
    "TraceError": "pvttrace.base.errors",
    "view": "pvttrace.render.views",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pvttrace' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
