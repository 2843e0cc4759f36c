"""Optional dependencies of the test suite: skip where one is missing, fail in CI.

A skipped test proves nothing, so under ``CI=true`` (where ``.ci/run`` installs every optional
dependency) a test that needs one that does not import fails instead, with the real import error.
Locally, a missing dependency skips with that same error as the reason.
"""

from __future__ import annotations

import importlib
import os
from functools import cache
from types import ModuleType

import pytest

# Every skip reason written here starts with this, so that conftest can turn them into failures in CI.
REASON_PREFIX = "optional dependency"


def in_ci() -> bool:
    """True where CI runs the suite (every optional dependency is installed there)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@cache
def import_error(module: str) -> str | None:
    """The error that importing ``module`` raises, in one line, or None when it imports."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # any failure counts: a broken install is as missing as an absent one
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def _reason(module: str, error: str) -> str:
    return f"{REASON_PREFIX} {module} failed to import: {error}"


def needs(module: str) -> pytest.MarkDecorator:
    """A ``skipif`` marker for tests that need ``module`` (a failure under CI, see conftest)."""
    error = import_error(module)
    return pytest.mark.skipif(error is not None, reason=_reason(module, error or ""))


def require(module: str) -> ModuleType:
    """Import ``module`` inside a test, skipping it (failing it under CI) when the import fails."""
    error = import_error(module)
    if error is not None:
        if in_ci():
            pytest.fail(_reason(module, error))
        pytest.skip(_reason(module, error))
    return importlib.import_module(module)
