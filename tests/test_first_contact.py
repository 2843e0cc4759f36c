"""What a newcomer meets first: no stray warnings, units as written, hints for the usual slips, one filter syntax."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import invoke

from pvttrace.base.errors import UserInputError
from pvttrace.base.units import spell_bytes
from pvttrace.cli.parsing import parse_bytes

ROOT = Path(__file__).resolve().parents[1]


def test_a_run_prints_no_warning_and_numpy_is_a_dependency() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("numpy") for d in deps)
    cli = Path(sys.executable).parent / "pvttrace"
    done = subprocess.run(
        [str(cli), "run", "--variant", "tiny", "--img", "224"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stderr == ""


def test_ci_runs_the_readmes_test_and_lint_commands_verbatim() -> None:
    """What the README tells a contributor to run is what CI runs, with the linters pinned."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Run the tests\n", 1)[1].split("\n## ", 1)[0]
    commands = [
        line
        for block in section.split("```bash\n")[1:]
        for line in block.split("```", 1)[0].splitlines()
        if line.strip()
    ]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert len(commands) == 4 and all(command in ci_lines for command in commands), commands
    assert "'.[test,timm,hf,lint]'" in commands[0] and commands[-1] == "python3 -m mypy --strict pvttrace"
    pins = (ROOT / ".ci" / "constraints.txt").read_text().splitlines()
    assert "ruff==0.17.5" in pins and "mypy==2.4.1" in pins
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert sorted(name.split(">=")[0] for name in extras["lint"]) == ["mypy", "ruff"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24GB", 24 * 10**9),
        ("24GiB", 24 * 2**30),
        ("512MB", 512 * 10**6),
        ("512MiB", 512 * 2**20),
        ("1.5KB", 1500),
        ("2TB", 2 * 10**12),
        ("24G", 24 * 2**30),  # a bare prefix is binary, as memory sizes usually are
        ("100", 100),
    ],
)
def test_decimal_and_binary_byte_units(text: str, expected: int) -> None:
    assert parse_bytes(text, "memory") == expected
    assert parse_bytes(spell_bytes(expected), "memory") == expected  # what fit's messages show reads back


def test_a_bad_size_names_both_kinds_of_unit() -> None:
    with pytest.raises(UserInputError, match="memory='24GX' must be a size such as 512MiB, 24GiB or 80GB"):
        parse_bytes("24GX", "memory")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "tiny"], "error: Got unexpected extra argument(s) (tiny); to pick a variant write --variant tiny\n"),
        (
            ["run", "--memory", "24GiB"],
            "; --memory is a switch of run (a memory table); for a budget use: pvttrace fit --memory 24GiB\n",
        ),
        (["run", "--kind", "srconv"], "kind='srconv' is not an op kind; did you mean 'sr_conv'?"),
        (["sweep", "--metric", "mac", "--img", "224"], "metric='mac' is not a sweep metric; did you mean 'macs'?"),
        (
            ["diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "--plot", "x.png", "--plot-metric", "attention_mac"],
            "did you mean 'attention_macs'?",
        ),
        (["fit", "--memory", "1GB", "--reserve", "1GiB"], "reserve='1GiB' must be smaller than memory='1GB'"),
        (["run", "--stage", "1,x"], "stage='1,x' must be integers separated by commas, e.g. 1,2"),
    ],
)
def test_slips_get_a_hint(args: list[str], message: str) -> None:
    code, _, err = invoke(*args)
    assert code == 2
    assert message in err and err.count("\n") == 1, err


def test_uneven_sizes_warn_in_one_line_and_quiet_hides_it() -> None:
    _, _, err = invoke("run", "--img", "800x1333", "-f", "json")
    assert err == (
        "warning: 6 sizes do not divide evenly: stage 1 patch grid floors to 200x333; stage 1 SR keys floor to "
        "25x41; stage 2 patch grid floors to 100x166; stage 2 SR keys floor to 25x41; stage 3 SR keys floor to "
        "25x41; stage 4 patch grid floors to 25x41 (--quiet hides this)\n"
    )
    assert invoke("run", "--img", "800x1333", "-f", "json", "--quiet")[2] == ""
    _, _, err = invoke("diff", "--variant", "b2", "--variant", "b2-li", "--img", "800x1333")
    assert err.count("\n") == 2 and err.startswith("warning: variant=b2: 4 sizes do not divide evenly: stage 1")


def test_one_list_syntax_and_json_honours_filters() -> None:
    commas = json.loads(invoke("run", "--stage", "1,2", "--kind", "sr_conv", "-f", "json")[1])
    repeated = json.loads(invoke("run", "--stage", "1", "--stage", "2", "--kind", "sr_conv", "-f", "json")[1])
    assert commas == repeated
    assert commas["filters"] == {"stages": [1, 2], "kinds": ["sr_conv"]}
    assert [(op["stage"], op["kind"], op["output"]) for op in commas["ops"]] == [
        (1, "sr_conv", [1, 64, 7, 7]),
        (1, "sr_conv", [1, 64, 7, 7]),
        (2, "sr_conv", [1, 128, 7, 7]),
        (2, "sr_conv", [1, 128, 7, 7]),
    ]
    assert len(commas["stages"]) == 4 and commas["totals"]["macs"] == 1_932_911_616  # whole-model figures stay
    whole = json.loads(invoke("run", "-f", "json")[1])
    assert "filters" not in whole and len(whole["ops"]) == 293
    csv_rows = invoke("run", "--stage", "1,2", "--kind", "sr_conv", "-f", "csv")[1].splitlines()
    assert len(csv_rows) == 1 + len(commas["ops"])
    code, out, _ = invoke("diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "--ops", "--stage", "1,2", "-f", "markdown")
    assert code == 0 and "patch_embed2" in out and "patch_embed3" not in out


def test_fit_reserve_comes_off_the_budget() -> None:
    plain = json.loads(invoke("fit", "--memory", "8GB", "--variant", "tiny", "-f", "json")[1])
    reserved = json.loads(invoke("fit", "--memory", "8GB", "--reserve", "1GiB", "--variant", "tiny", "-f", "json")[1])
    assert plain["budget_bytes"] == 8 * 10**9 and plain["reserve_bytes"] == 0
    assert reserved["budget_bytes"] == 8 * 10**9 - 2**30 and reserved["reserve_bytes"] == 2**30
    assert reserved["value"] < plain["value"] and reserved["peak_bytes"] <= reserved["budget_bytes"]
    assert reserved["next_peak_bytes"] > reserved["budget_bytes"]
    table = invoke("fit", "--memory", "8GB", "--reserve", "1GiB", "--variant", "tiny")[1]
    assert "budget 7.45 GiB - reserve 1 GiB = 6.45 GiB, inference" in table


def test_snapshot_write_over_another_configuration_needs_force(tmp_path: Path) -> None:
    path = str(tmp_path / "s.json")
    assert invoke("snapshot", "write", path, "--variant", "tiny")[0] == 0
    assert invoke("snapshot", "write", path, "--variant", "tiny", "--max-macs", "3G")[0] == 0  # same config
    code, _, err = invoke("snapshot", "write", path, "--variant", "b0")
    assert code == 2 and err == (
        f"error: {path} holds a snapshot of another configuration (tiny (PVT v1, cls) @ 224x224, batch 1, float32); "
        "pass --force to replace it with b0 (PVT v2, cls) @ 224x224, batch 1, float32\n"
    )
    assert json.loads(Path(path).read_text())["config"]["variant"] == "tiny"
    assert invoke("snapshot", "write", path, "--variant", "b0", "--force")[0] == 0
    assert json.loads(Path(path).read_text())["config"]["variant"] == "b0"


def test_snapshot_check_names_the_file_whose_model_cannot_be_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    path = tmp_path / "m.json"
    args = ["snapshot", "write", str(path), "--model", "anymodel_zoo:mix", "--input-shape", "1,3,32,32"]
    assert invoke(*args)[0] == 0
    path.write_text(path.read_text().replace("anymodel_zoo:mix", "nosuchmod:mix"))
    code, _, err = invoke("snapshot", "check", str(path), "--allow-model-import")
    assert code == 2
    assert (
        err == f"error: {path}: model='nosuchmod:mix': cannot import nosuchmod "
        "(ModuleNotFoundError: No module named 'nosuchmod')\n"
    )
    # Without the permission the file is named too, and nothing is imported.
    code, _, err = invoke("snapshot", "check", str(path))
    assert code == 2 and err.startswith(f"error: {path} names model 'nosuchmod:mix', which would import")


def test_sweep_and_snapshot_warnings_are_grouped_per_configuration(tmp_path: Path) -> None:
    _, _, err = invoke("sweep", "--img", "800x1333,1000", "--metric", "macs", "-f", "csv")
    assert err.splitlines() == [
        "warning: tiny at 1000x1000: 3 sizes do not divide evenly: stage 1 SR keys floor to 31x31; stage 2 SR keys "
        "floor to 31x31; stage 3 patch grid floors to 62x62 (--quiet hides this)",
        "warning: tiny at 800x1333: 6 sizes do not divide evenly: stage 1 patch grid floors to 200x333; stage 1 SR "
        "keys floor to 25x41; stage 2 patch grid floors to 100x166; stage 2 SR keys floor to 25x41; stage 3 SR keys "
        "floor to 25x41; stage 4 patch grid floors to 25x41 (--quiet hides this)",
    ]
    assert invoke("sweep", "--img", "800x1333,1000", "--metric", "macs", "-f", "csv", "-q")[2] == ""
    path = str(tmp_path / "w.json")
    assert invoke("snapshot", "write", path, "--img", "800x1333")[2].count("\n") == 1
    assert invoke("snapshot", "write", path, "--img", "800x1333", "--quiet")[2] == ""
