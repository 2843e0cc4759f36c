"""Shape snapshots: what a trace is pinned to in CI, compared and checked against budgets.

``pvttrace.snapshot`` is a public import path; the names below are its API.
"""

from __future__ import annotations

from pvttrace.snapshot.core import *  # noqa: F403
from pvttrace.snapshot.core import __all__ as __all__
