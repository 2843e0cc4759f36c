"""The GitHub Actions example runs: its ``run:`` steps, in order, in a fresh directory.

The directory is laid out as the workflow's header says a project is: ``tests/test_pvt_snapshots.py``
(copied from ``examples/``) with its snapshots written once by the documented local command. Then
every ``run:`` step of ``examples/github-actions-snapshot.yml`` runs through ``bash -e`` with the
installed pvttrace: ``PVTTRACE_SPEC=pvttrace`` and ``PIP_NO_INDEX=1`` make the install step find
every package already installed (offline, and without touching the environment), exactly as the
workflow's header documents. A step that fails, or a path that the steps disagree on, fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # pyyaml: declared in the test extra

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples" / "github-actions-snapshot.yml"


def _steps() -> list[dict[str, Any]]:
    document = yaml.safe_load(WORKFLOW.read_text())
    (job,) = document["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def _shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_workflow_installs_what_its_steps_use() -> None:
    runs = "\n".join(step.get("run", "") for step in _steps())
    install = next(step["run"] for step in _steps() if "pip install" in step.get("run", ""))
    assert "pytest" in install and "PVTTRACE_SPEC" in install and "torch" in install
    assert "python -m pytest" in runs and "pvttrace snapshot check tests/snapshots/" in runs
    assert '"snapshots/' in (ROOT / "examples" / "test_pvt_snapshots.py").read_text()  # relative to tests/


def test_workflow_steps_pass_in_a_fresh_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "test_pvt_snapshots.py", project / "tests" / "test_pvt_snapshots.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PVTTRACE"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PVTTRACE_SPEC="pvttrace",
        PIP_NO_INDEX="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    # The local step of the workflow's header: write the snapshots once.
    first = _shell(
        "python -m pytest -q -p no:cacheprovider tests/test_pvt_snapshots.py --pvttrace-update", project, env
    )
    assert first.returncode == 0, first.stdout + first.stderr
    written = sorted(p.name for p in (project / "tests" / "snapshots").glob("*.json"))
    assert written == ["b0-224.json", "b2-800x1333-backbone.json", "b2-sr-4-2-1-1-512.json"]
    ran = []
    for step in _steps():
        if "run" not in step:
            continue
        result = _shell(step["run"], project, {**env, **{str(k): str(v) for k, v in step.get("env", {}).items()}})
        assert result.returncode == 0, (step.get("name"), result.stdout[-2000:], result.stderr[-2000:])
        ran.append((step.get("name"), result.stdout))
    assert len(ran) == 3
    check_out = ran[1][1]
    assert check_out.count("ok tests/snapshots/") == 3, check_out
    assert "4 passed" in ran[2][1]
