"""The pytest plugin (``pvt_snapshot`` fixture, ``--pvttrace-update``), run inside pytester.

The plugin is enabled with ``-p pvttrace.pytest_plugin``, so these tests work whether or not the
``pytest11`` entry point of an installed pvttrace is active; one test installs the entry point
declared in pyproject.toml into a throw-away site directory and checks that it alone loads the plugin.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tomllib

import pytest

# pytester's in-process runs unload modules first imported inside them, and torch cannot be imported a
# second time in one process: import it out here, before any run.
import pvttrace.tracing.recorder  # noqa: F401

pytest_plugins = ["pytester"]

ROOT = pathlib.Path(__file__).resolve().parents[1]
PLUGIN = ("-p", "pvttrace.pytest_plugin")
# Inner runs also skip plugins that would be re-imported on every run (hypothesis' alone costs ~1 s).
INNER = (*PLUGIN, "-p", "no:hypothesispytest", "-p", "no:cacheprovider")

TINY_TEST = """
from pvttrace.config import get_variant

def test_tiny(pvt_snapshot):
    pvt_snapshot(get_variant("tiny"))
"""


def test_missing_snapshot_fails_then_update_writes_it_then_it_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_probe_tiny=TINY_TEST)
    snapshot = pytester.path / "snapshots" / "test_probe_tiny" / "test_tiny.json"
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*pvttrace snapshot: {snapshot} does not exist; run pytest --pvttrace-update*"])
    assert not snapshot.exists()

    result = pytester.runpytest(*INNER, "--pvttrace-update")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*pvttrace: 1 snapshot(s) written*", str(snapshot)])
    assert snapshot.read_bytes() == (ROOT / "tests" / "snapshots" / "tiny-224-cls.json").read_bytes()

    result = pytester.runpytest(*INNER)
    result.assert_outcomes(passed=1)
    assert "snapshot(s) written" not in result.stdout.str()


def test_a_changed_configuration_fails_with_the_report(pytester: pytest.Pytester) -> None:
    changed = 'get_variant("tiny").with_overrides(sr_ratios=(4, 4, 2, 1))'
    pytester.makepyfile(test_probe_tiny=TINY_TEST.replace('get_variant("tiny")', changed))
    target = pytester.path / "snapshots" / "test_probe_tiny" / "test_tiny.json"
    target.parent.mkdir(parents=True)
    shutil.copyfile(ROOT / "tests" / "snapshots" / "tiny-224-cls.json", target)
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"FAIL {target}: tiny (PVT v1, cls) @ 224x224, batch 1, float32 (convention macs, device meta)",
            "  30 op(s) changed, 0 added, 0 removed; 13 figure(s) differ (stored -> current)",
            "  config:",
            "    config sr_ratios [[]8,4,2,1] -> [[]4,4,2,1]",
            "  stage 1: 8 figure(s), 30 op(s) differ",
            "    stage 1 kv tokens 49 -> 196 (x4)",
            '    stage 1, blocks 0-1, attn: matmul "scores q@k^T" output [[]1,1,3136,49] -> [[]1,1,3136,196]*',
            "(run pytest --pvttrace-update to accept the current trace)",
        ]
    )
    before = target.read_bytes()
    assert pytester.runpytest(*INNER, "--pvttrace-update").ret == 0
    assert target.read_bytes() != before and pytester.runpytest(*INNER).ret == 0


def test_budgets_and_explicit_paths(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_probe_budget="""
        from pvttrace.config import get_variant

        def test_budget(pvt_snapshot):
            pvt_snapshot(get_variant("tiny"), "golden/tiny.json", max_macs="1G", max_attention_map=2**20)
        """
    )
    result = pytester.runpytest(*INNER, "--pvttrace-update")
    result.assert_outcomes(failed=1)  # the snapshot is written, but a rewrite cannot fix a cost
    result.stdout.fnmatch_lines(
        [
            f"FAIL {pytester.path / 'golden' / 'tiny.json'}: tiny (PVT v1, cls) @ 224x224, batch 1, float32 "
            "(convention macs, device meta)",
            "  budget: MACs 1.93 G (1,932,911,616) over the limit 1 G (max_macs=)",
            "*pvttrace: 1 snapshot(s) written*",
        ]
    )
    assert "--pvttrace-update to accept" not in result.stdout.str()
    assert json.loads((pytester.path / "golden" / "tiny.json").read_text())["totals"]["macs"] == 1932911616


def test_a_corrupt_snapshot_fails_and_is_kept_without_update(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_probe_tiny=TINY_TEST)
    target = pytester.path / "snapshots" / "test_probe_tiny" / "test_tiny.json"
    target.parent.mkdir(parents=True)
    target.write_text('{"schema": "pvttrace.snapshot/1", "ops": [')
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"*pvttrace snapshot: {target} is truncated: the JSON ends early*; run pytest --pvttrace-update to rewrite*"]
    )
    assert target.read_text() == '{"schema": "pvttrace.snapshot/1", "ops": ['
    assert pytester.runpytest(*INNER, "--pvttrace-update").ret == 0
    assert pytester.runpytest(*INNER).ret == 0


def test_the_example_test_module_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_pvt_snapshots=(ROOT / "examples" / "test_pvt_snapshots.py").read_text())
    result = pytester.runpytest(*INNER, "--pvttrace-update")
    result.assert_outcomes(passed=4)
    assert sorted(p.name for p in (pytester.path / "snapshots").iterdir()) == [
        "b0-224.json",
        "b2-800x1333-backbone.json",
        "b2-sr-4-2-1-1-512.json",
    ]
    pytester.runpytest(*INNER).assert_outcomes(passed=4)


def test_the_entry_point_alone_loads_the_plugin_once(tmp_path: pathlib.Path) -> None:
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    assert entry_points == {"pvttrace.pytest_plugin": "pvttrace.pytest_plugin"}
    site = tmp_path / "site"
    dist = site / "pvttrace_entry_point_probe-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pvttrace-entry-point-probe\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(
        "[pytest11]\n" + "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    )
    tests = tmp_path / "probe"
    tests.mkdir()
    (tests / "test_probe.py").write_text(
        "def test_fixture_is_there(pvt_snapshot, pytestconfig):\n"
        "    assert callable(pvt_snapshot)\n"
        "    assert pytestconfig.getoption('pvttrace_update') is False\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    env.pop("PYTEST_ADDOPTS", None)
    for extra in ([], list(PLUGIN)):  # with -p as well: registered once, no "already registered" error
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, str(tests)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 passed" in result.stdout


USER_MODEL = """
import torch
from torch import nn


def build_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 15 * 15, 10))
"""


def test_a_model_spec_of_the_users_own_model(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(usermodels=USER_MODEL)
    pytester.makepyfile(
        test_probe_user="""
def test_net(pvt_snapshot):
    pvt_snapshot("usermodels:build_net", "snapshots/net.json", input_shape=(1, 3, 32, 32))
"""
    )
    result = pytester.runpytest(*INNER, "--pvttrace-update")
    result.assert_outcomes(passed=1)
    stored = json.loads((pytester.path / "snapshots" / "net.json").read_text())
    assert stored["config"] is None and stored["model"] == "usermodels:build_net"
    assert stored["input_shape"] == [1, 3, 32, 32] and stored["outputs"] == [[1, 10]]
    assert stored["totals"]["macs"] == 8 * 27 * 15 * 15 + 8 * 15 * 15 * 10
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (
            "pvt_snapshot(trace_model(nn.Linear(4, 2), torch.zeros(1, 4)))",
            "this trace (from trace_model) names no config or model to re-trace",
        ),
        (
            "pvt_snapshot(get_variant('tiny'), input_shape=(1, 3, 64, 64))",
            "input_shape goes with a model spec string, not with a config or a trace",
        ),
        ("pvt_snapshot('not a spec')", "model='not a spec' must be PACKAGE.MODULE:FACTORY"),
        ("pvt_snapshot(42)", "got int"),
    ],
)
def test_what_to_pass_is_one_line(pytester: pytest.Pytester, call: str, reason: str) -> None:
    pytester.makepyfile(
        test_probe_bad=f"""
import torch
from torch import nn
from pvttrace.config import get_variant
from pvttrace.tracing.recorder import trace_model

def test_bad(pvt_snapshot):
    {call}
"""
    )
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(failed=1)
    lines = [line for line in result.stdout.lines if "pvt_snapshot: " in line and "E " not in line[:2]]
    assert any(
        reason in line and "pass a config (resolve_config('b2', img=512)) or a model spec" in line for line in lines
    ), result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_update_applies_the_clis_protections(pytester: pytest.Pytester) -> None:
    """Issue 18: --pvttrace-update never overwrites a hand-written file or a newer-schema snapshot."""
    pytester.makepyfile(
        test_probe_guard="""
from pvttrace.config import get_variant

def test_notes(pvt_snapshot):
    pvt_snapshot(get_variant("tiny"), "notes.txt")

def test_newer(pvt_snapshot):
    pvt_snapshot(get_variant("tiny"), "newer.json")
"""
    )
    notes = pytester.path / "notes.txt"
    notes.write_text("hand-written notes\n")
    newer = pytester.path / "newer.json"
    newer.write_text(json.dumps({"schema": "pvttrace.snapshot/2", "config": None}))
    before = (notes.read_bytes(), newer.read_bytes())
    result = pytester.runpytest(*INNER, "--pvttrace-update")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*notes.txt is not valid JSON*--pvttrace-update leaves it alone*"])
    result.stdout.fnmatch_lines(
        ["*newer.json was written by pvttrace*upgrade pvttrace; --pvttrace-update leaves it alone*"]
    )
    assert (notes.read_bytes(), newer.read_bytes()) == before


def test_parametrized_ids_get_distinct_files(pytester: pytest.Pytester) -> None:
    """Issue 18: ids that differ only in characters a file name drops ("a b", "a_b") never share a file."""
    pytester.makepyfile(
        test_probe_ids="""
import pytest
from pvttrace.config import get_variant

@pytest.mark.parametrize("name", ["a b", "a_b", "a/b"])
def test_id(pvt_snapshot, name):
    pvt_snapshot(get_variant("tiny"))
"""
    )
    result = pytester.runpytest(*INNER, "--pvttrace-update")
    result.assert_outcomes(passed=3)
    written = sorted(p.name for p in (pytester.path / "snapshots" / "test_probe_ids").iterdir())
    assert len(written) == 3 and "test_id_a_b.json" in written, written
    from pvttrace.pytest_plugin import snapshot_name

    assert len({snapshot_name(n) for n in ("test_id[a b]", "test_id[a_b]", "test_id[a/b]", "test_id_a_b")}) == 3
    assert snapshot_name("test_id[b2]") == "test_id_b2" and snapshot_name("test_tiny") == "test_tiny"
