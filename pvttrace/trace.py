"""Public tracing API: ``from pvttrace.trace import trace_config, trace_model, trace_target``.

:func:`trace_target` is the one entry point the command line uses (a :class:`ModelSpec`: a built-in
config, with or without a head, or any model); :func:`trace_config` (a built-in config) and
:func:`trace_model` (a built model and its input) are the recorder's own functions, which it calls.
The recorder lives in :mod:`pvttrace.tracing.recorder`; this module keeps the import path users know.
"""

from __future__ import annotations

from pvttrace.tracing.recorder import architecture_key, memory_log, record_ops, trace_config, trace_model
from pvttrace.tracing.target import ModelSpec, builtin_spec, trace_target

__all__ = [
    "ModelSpec",
    "architecture_key",
    "builtin_spec",
    "memory_log",
    "record_ops",
    "trace_config",
    "trace_model",
    "trace_target",
]
