"""pytest integration: assert that a PVT configuration still traces to its stored shape snapshot.

Registered as a pytest plugin through the ``pytest11`` entry point, so installing pvttrace is
enough; without the entry point, enable it with ``-p pvttrace.pytest_plugin``. It adds

* the ``pvt_snapshot`` fixture::

      def test_backbone_shapes(pvt_snapshot):
          cfg = resolve_config("b2", img=(800, 1333), task="backbone")
          pvt_snapshot(cfg)                                  # snapshots/<test file>/<test name>.json
          pvt_snapshot(cfg, "snapshots/b2-det.json", max_macs="160G")   # a path of your own, a budget

      def test_my_model_shapes(pvt_snapshot):                # any model: the spec pvttrace run --model takes
          pvt_snapshot("mypkg.models:build_net", input_shape=(1, 3, 224, 224))

  A mismatch fails the test with the report ``pvttrace snapshot check`` prints (stages, ops,
  ``stored -> current``); a missing or unreadable snapshot fails with its reason.
* ``pytest --pvttrace-update``: write missing snapshots and rewrite the ones that differ (budgets
  still fail); the terminal summary lists every file written.

Each configuration is traced once per session, however many tests use it. Snapshot files are the
same ``pvttrace.snapshot/1`` files the command line reads, so CI can also check them with
``pvttrace snapshot check``. Importing this module does not import torch.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from pvttrace.base.errors import PvtTraceError, TraceFileError
from pvttrace.config import PvtConfig
from pvttrace.records import Trace
from pvttrace.snapshot import (
    Budgets,
    Snapshot,
    damaged_own_snapshot,
    load_snapshot,
    snapshot_from_trace,
    verify_snapshot,
)
from pvttrace.snapshot.report import result_lines

__all__ = ["PvtSnapshot", "pvt_snapshot"]

_WRITTEN = pytest.StashKey[list[str]]()
_TRACES = pytest.StashKey[dict[object, Trace]]()
_NAMES = pytest.StashKey[dict[str, str]]()
_WHAT_TO_PASS = (
    "pass a config (resolve_config('b2', img=512)) or a model spec ('package.module:factory' or 'timm:NAME', "
    "with input_shape=(1, 3, 224, 224))"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--pvttrace-update``."""
    group = parser.getgroup("pvttrace", "pvttrace shape snapshots")
    group.addoption(
        "--pvttrace-update",
        action="store_true",
        default=False,
        help="Write missing pvttrace snapshots and rewrite the ones that differ.",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Start the session's list of written files and its trace cache."""
    config.stash[_WRITTEN] = []
    config.stash[_TRACES] = {}
    config.stash[_NAMES] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """List the snapshot files this session wrote."""
    written = config.stash.get(_WRITTEN, [])
    if written:
        terminalreporter.write_sep("-", f"pvttrace: {len(written)} snapshot(s) written")
        for path in written:
            terminalreporter.write_line(path)


def _budget(value: int | str | None, field: str, parse: Callable[[str, str], int]) -> int | None:
    return value if value is None or isinstance(value, int) else parse(value, field)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def snapshot_name(test_name: str) -> str:
    """The file-name stem for a test: its name with unsafe characters replaced by ``_``, made injective.

    Brackets alone (``test_x[b2]`` -> ``test_x_b2``) keep the readable name. When any other character is
    replaced, or the name starts with a dot, eight hex digits of the name's SHA-256 are appended, so
    that ids such as ``"a b"`` and ``"a_b"`` never share a file.
    """
    name = _UNSAFE.sub("_", test_name).strip("_") or "test"
    lossless = (
        _UNSAFE.sub("_", test_name.replace("[", "_").replace("]", "_")) == test_name.replace("[", "_").replace("]", "_")
        and test_name.count("[") <= 1
        and test_name.endswith("]") == ("[" in test_name)
    )
    if lossless and "__" not in name and not test_name.startswith("."):
        return name
    return f"{name}-{hashlib.sha256(test_name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


class PvtSnapshot:
    """What the ``pvt_snapshot`` fixture returns: call it (or :meth:`assert_match`) with a config or a trace."""

    def __init__(self, *, test_dir: Path, default_stem: Path, update: bool, config: pytest.Config) -> None:
        self._test_dir = test_dir
        self._default_stem = default_stem
        self._update = update
        self._config = config
        self._calls = 0

    def _path(self, path: str | os.PathLike[str] | None) -> Path:
        self._calls += 1
        if path is not None:
            given = Path(path)
            return given if given.is_absolute() else self._test_dir / given
        suffix = "" if self._calls == 1 else f"-{self._calls}"
        return self._default_stem.with_name(self._default_stem.name + suffix + ".json")

    def _trace(self, config: PvtConfig) -> Trace:
        cache = self._config.stash[_TRACES]
        if config not in cache:
            from pvttrace.tracing.target import builtin_spec, trace_target

            cache[config] = trace_target(builtin_spec(config))
        return cache[config]

    def _trace_spec(self, text: str, input_shape: Sequence[int] | str | None) -> Trace:
        from pvttrace.cli.parsing import parse_model_spec
        from pvttrace.tracing.target import trace_target

        shape = input_shape if input_shape is None or isinstance(input_shape, str) else ",".join(map(str, input_shape))
        spec = parse_model_spec(text, input_shape=shape)
        cache = self._config.stash[_TRACES]
        if spec not in cache:
            cache[spec] = trace_target(spec)
        return cache[spec]

    def _resolve(self, model: object, input_shape: Sequence[int] | str | None) -> Trace:
        """The trace to compare: a config or a model spec traced once per session, or the given trace."""
        try:
            if isinstance(model, str):
                return self._trace_spec(model, input_shape)
            if input_shape is not None:
                raise PvtTraceError("input_shape goes with a model spec string, not with a config or a trace")
            if isinstance(model, PvtConfig):
                return self._trace(model)
            if isinstance(model, Trace):
                if model.config is None and not model.model:
                    raise PvtTraceError("this trace (from trace_model) names no config or model to re-trace")
                return model
            raise PvtTraceError(f"got {type(model).__name__}")
        except PvtTraceError as exc:
            pytest.fail(f"pvt_snapshot: {exc}; {_WHAT_TO_PASS}", pytrace=False)

    def assert_match(
        self,
        model: PvtConfig | Trace | str,
        path: str | os.PathLike[str] | None = None,
        *,
        input_shape: Sequence[int] | str | None = None,
        rtol: float = 0.0,
        max_macs: int | str | None = None,
        max_params: int | str | None = None,
        max_attention_map: int | str | None = None,
        limit: int = 10,
    ) -> None:
        """Fail the test unless ``model`` (a config, traced on the meta device, or a trace) matches its snapshot.

        Args:
            model: the configuration; a model spec as ``pvttrace run --model`` takes it
                (``"package.module:factory"`` or ``"timm:NAME"``), traced on the meta device; or
                an already computed trace of either.
            path: snapshot file, relative to the test file's directory; default
                ``snapshots/<test file>/<test name>.json`` (``-2``, ``-3`` ... for later calls in one test).
            input_shape: with a model spec, the input tensor shape (default ``(1, 3, 224, 224)``
                or the model's own size).
            rtol: relative tolerance on costs; shapes are always exact.
            max_macs, max_params, max_attention_map: budgets (``"2G"``, ``"15M"``, ``"64MiB"`` or ints),
                checked together with the budgets stored in the snapshot.
            limit: op lines shown per stage in the failure report (0: all).
        """
        from pvttrace.cli.parsing import parse_bytes, parse_count  # budgets such as "2G" are text a user typed

        target = self._path(path)
        trace = self._resolve(model, input_shape)
        budgets = Budgets(
            max_macs=_budget(max_macs, "max_macs", parse_count),
            max_params=_budget(max_params, "max_params", parse_count),
            max_attention_map=_budget(max_attention_map, "max_attention_map", parse_bytes),
        )
        stored: Snapshot | None = None
        unreadable = ""
        try:
            stored = load_snapshot(str(target))
        except TraceFileError as exc:
            unreadable = str(exc)
        if unreadable and not self._update:
            action = "write it" if not target.exists() else "rewrite it (or fix it by hand)"
            hint = f"run pytest --pvttrace-update to {action}"
            pytest.fail(f"pvttrace snapshot: {unreadable}; {hint}", pytrace=False)
        if unreadable and os.path.lexists(target) and not damaged_own_snapshot(str(target)):
            # As `pvttrace snapshot check --update`: never overwrite a file that is not a pvttrace snapshot
            # this version may rewrite (a hand-written file, a newer schema, a FIFO); the config comes from
            # the test, so a damaged snapshot of ours may be rewritten.
            pytest.fail(f"pvttrace snapshot: {unreadable}; --pvttrace-update leaves it alone", pytrace=False)
        current = snapshot_from_trace(trace, stored.budgets if stored else Budgets())
        result = verify_snapshot(
            str(target), stored, current, rtol=rtol, budgets=budgets, update=self._update, budgets_given_as="argument"
        )
        if result.written:
            self._config.stash[_WRITTEN].append(str(target))
        if not result.passed:
            hint = "\n(run pytest --pvttrace-update to accept the current trace)" if not result.violations else ""
            text = "\n".join(result_lines(result, limit=limit, show_all_hint="limit=0 shows all"))
            pytest.fail(text + hint, pytrace=False)

    __call__ = assert_match


@pytest.fixture
def pvt_snapshot(request: pytest.FixtureRequest) -> PvtSnapshot:
    """Assert that a PVT configuration's trace matches its stored shape snapshot (see the module docstring)."""
    test_file = Path(str(request.node.path))
    name = snapshot_name(request.node.name)
    owners = request.config.stash[_NAMES]
    stem = test_file.parent / "snapshots" / test_file.stem / name
    owner = owners.setdefault(str(stem), request.node.nodeid)
    if owner != request.node.nodeid:
        pytest.fail(f"pvttrace snapshot: {request.node.nodeid} and {owner} would share {stem}.json", pytrace=False)
    return PvtSnapshot(
        test_dir=test_file.parent,
        default_stem=test_file.parent / "snapshots" / test_file.stem / name,
        update=bool(request.config.getoption("pvttrace_update")),
        config=request.config,
    )
