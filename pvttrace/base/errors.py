"""The one error hierarchy of pvttrace.

The library raises these; only the CLI turns them into messages and exit codes
(``UserInputError`` and its children: exit 2; ``CheckFailed``: exit 1).
This module imports nothing heavy.
"""

from __future__ import annotations


class PvtTraceError(Exception):
    """Root of every error pvttrace raises on purpose."""


class UserInputError(PvtTraceError, ValueError):
    """Input that pvttrace rejects before doing any work (CLI exit code 2)."""


class ConfigError(UserInputError):
    """A model configuration breaks a rule; the message names field, value and rule."""


class TraceFileError(UserInputError):
    """A saved trace or snapshot file is missing, unreadable or of the wrong schema."""


class TraceError(PvtTraceError):
    """The traced model failed during its forward; the message names the op where it failed."""


class MetaDeviceError(TraceError):
    """A torch call failed on meta tensors (it reads values, or mixes devices): worth a run on the CPU."""


class UserCodeExit(TraceError):
    """The traced model's own code called ``sys.exit``; never a success, whatever its exit code."""


class CheckFailed(PvtTraceError):
    """A comparison or budget check did not hold (CLI exit code 1)."""
