"""Shared fixtures: traces of the built-in presets (session-scoped: each is traced once) and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from optional import REASON_PREFIX, in_ci
from typer.testing import CliRunner

from pvttrace.config import PvtConfig, get_variant
from pvttrace.records import Trace


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI=true a skip for an optional dependency that failed to import is a failure."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and REASON_PREFIX in str(report.longrepr):
        report.outcome = "failed"


@pytest.fixture(autouse=True)
def _plain_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering must not depend on the caller's terminal settings."""
    for name in ("FORCE_COLOR", "NO_COLOR", "COLUMNS", "TERM"):
        monkeypatch.delenv(name, raising=False)
    import pvttrace.cli.common

    # Piped output follows the controlling terminal's width; a test run from a terminal must not.
    monkeypatch.setattr(pvttrace.cli.common, "terminal_width", lambda: None)


@pytest.fixture(scope="session")
def trace_of() -> Callable[[PvtConfig], Trace]:
    """Trace a config once per session (memoised by config)."""
    from pvttrace.tracing.recorder import trace_config

    cache: dict[PvtConfig, Trace] = {}

    def get(cfg: PvtConfig) -> Trace:
        if cfg not in cache:
            cache[cfg] = trace_config(cfg)
        return cache[cfg]

    return get


@pytest.fixture(scope="session")
def tiny_trace(trace_of: Callable[[PvtConfig], Trace]) -> Trace:
    return trace_of(get_variant("tiny"))


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()
