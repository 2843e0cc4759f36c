"""Layer 5: rich renderables, markdown, CSV and plots made from the data of the layers below.

``view`` (:mod:`pvttrace.render.views`) is loaded on first use, so importing one renderer imports no rich.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    # ``pvttrace.render.view``: loaded lazily, so importing one renderer (tabular, plot) imports no rich.
    if name == "view":
        return importlib.import_module("pvttrace.render.views").view
    raise AttributeError(f"module 'pvttrace.render' has no attribute {name!r}")
