"""Public tracing API: ``from pvttrace.trace import trace_config, trace_model``.

The recorder lives in :mod:`pvttrace.tracing.recorder`; this module keeps the import path users know.
"""

from __future__ import annotations

from pvttrace.tracing.recorder import architecture_key, memory_log, record_ops, trace_config, trace_model

__all__ = ["architecture_key", "memory_log", "record_ops", "trace_config", "trace_model"]
