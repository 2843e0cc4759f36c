"""``--model`` on diff, sweep and snapshot: any-model columns, sizes and stored specs.

Models come from tests/anymodel_zoo.py (importable as ``anymodel_zoo:FACTORY``) and, where
timm is installed, timm's pvt_v2 (whose MACs equal the built-in variants').
"""

from __future__ import annotations

import json
import pathlib

import pytest
from optional import require
from typer.testing import CliRunner

from pvttrace.cli import app
from pvttrace.records import CONVENTIONS

MIX_MACS_BATCH_2 = 5724160  # tests/test_anymodel.py: anymodel_zoo:mix at 2,3,8,8


def _one_error(result: object, message: str) -> None:
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]  # type: ignore[attr-defined]
    assert len(errors) == 1 and message in errors[0], result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------ diff
def test_diff_two_zoo_models_one_shape(runner: CliRunner) -> None:
    result = runner.invoke(
        app,
        [
            "diff",
            "--model",
            "anymodel_zoo:mix",
            "--model",
            "anymodel_zoo:mix_fused",
            "--input-shape",
            "2,3,8,8",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    columns = json.loads(result.stdout)["configurations"]
    assert [c["label"] for c in columns] == ["anymodel_zoo:mix", "anymodel_zoo:mix_fused"]
    assert [c["totals"]["macs"] for c in columns] == [MIX_MACS_BATCH_2, MIX_MACS_BATCH_2]
    assert [c["config"] for c in columns] == [None, None]


def test_diff_one_model_at_two_shapes_is_labelled_by_input(runner: CliRunner) -> None:
    result = runner.invoke(
        app,
        [
            "diff",
            "--model",
            "anymodel_zoo:mix",
            "--input-shape",
            "1,3,8,8",
            "--input-shape",
            "2,3,8,8",
            "--format",
            "csv",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "diff",
            "--model",
            "anymodel_zoo:mix",
            "--input-shape",
            "1,3,8,8",
            "--input-shape",
            "2,3,8,8",
            "--format",
            "json",
            "--label",
            "one",
            "--label",
            "two",
        ],
    )
    columns = json.loads(result.stdout)["configurations"]
    assert [c["label"] for c in columns] == ["one", "two"]
    assert [c["totals"]["macs"] for c in columns] == [MIX_MACS_BATCH_2 // 2, MIX_MACS_BATCH_2]
    table = runner.invoke(
        app,
        [
            "diff",
            "--model",
            "anymodel_zoo:mix",
            "--input-shape",
            "1,3,8,8",
            "--input-shape",
            "2,3,8,8",
            "--width",
            "160",
        ],
    )
    assert "anymodel_zoo:mix input=1x3x8x8" in table.stdout and "anymodel_zoo:mix input=2x3x8x8" in table.stdout


def test_diff_timm_models_match_the_builtin_macs(runner: CliRunner) -> None:
    require("timm")
    result = runner.invoke(app, ["diff", "--model", "timm:pvt_v2_b0", "--model", "timm:pvt_v2_b1", "--format", "json"])
    assert result.exit_code == 0, result.output
    columns = json.loads(result.stdout)["configurations"]
    assert [c["label"] for c in columns] == ["timm:pvt_v2_b0", "timm:pvt_v2_b1"]
    assert [c["totals"]["macs"] for c in columns] == [566065664, 2108355584]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "anymodel_zoo:mix", "--model", "nope"], "model='nope' must be PACKAGE.MODULE:FACTORY"),
        (
            ["--model", "anymodel_zoo:mix", "--model", "anymodel_zoo:mix_fused", "--sr", "1,1,1,1", "--variant", "b0"],
            "cannot be combined with --variant, --sr: those options describe built-in variants",
        ),
        (
            ["--model", "anymodel_zoo:mix", "--model", "anymodel_zoo:mix_fused", "--patch", "4"],
            "cannot be combined with --patch",
        ),
        (["--input-shape", "1,3,8,8", "--input-shape", "2,3,8,8"], "input_shape needs --model"),
        (["--model", "anymodel_zoo:mix", "--input-shape", "1,x"], "input_shape='1,x' must be positive integers"),
        (["--model", "anymodel_zoo:mix"], "diff needs at least two configurations"),
        (
            [
                "--model",
                "anymodel_zoo:mix",
                "--model",
                "anymodel_zoo:mix_fused",
                "--input-shape",
                "1,3,8,8",
                "--img",
                "8",
            ],
            "cannot be combined with img",
        ),
        (["a.json", "b.json", "--model", "anymodel_zoo:mix"], "give either trace files or configuration options"),
    ],
)
def test_diff_model_bad_input_is_one_line_exit_2(runner: CliRunner, args: list[str], message: str) -> None:
    _one_error(runner.invoke(app, ["diff", *args]), message)


# ------------------------------------------------------------------------------------------ sweep
def _sweep_macs(doc: dict) -> list[list[int]]:
    macs = next(m for m in doc["metrics"] if m["name"] == "macs")
    return [[p["value"] for p in series["points"]] for series in macs["series"]]


def test_sweep_zoo_model_varies_h_and_w_of_the_input_shape(runner: CliRunner) -> None:
    result = runner.invoke(
        app,
        [
            "sweep",
            "--model",
            "anymodel_zoo:mix",
            "--input-shape",
            "2,3,8,8",
            "--img",
            "8,4x6",
            "--metric",
            "macs",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["columns"] == [
        {
            "config": None,
            "convention": CONVENTIONS["macs"],
            "device": "meta",
            "dtype": "float32",
            "input_shape": [2, 3, 4, 6],
            "label": "anymodel_zoo:mix",
            "model": "anymodel_zoo:mix",
        }
    ]
    assert doc["sizes"] == [[4, 6], [8, 8]]  # smallest first, as for built-in sweeps
    assert _sweep_macs(doc)[0][1] == MIX_MACS_BATCH_2
    # No stages: the growth variable falls back to the input's H*W.
    assert [p["tokens"] for p in doc["metrics"][0]["series"][0]["points"]] == [24, 64]


def test_sweep_timm_model_equals_the_builtin_variant(runner: CliRunner) -> None:
    require("timm")
    args = ["--img", "224,320", "--metric", "macs", "--format", "json"]
    theirs = runner.invoke(app, ["sweep", "--model", "timm:pvt_v2_b0", *args])
    ours = runner.invoke(app, ["sweep", "--variant", "b0", *args])
    assert theirs.exit_code == ours.exit_code == 0, theirs.output + ours.output
    theirs_doc, ours_doc = json.loads(theirs.stdout), json.loads(ours.stdout)
    assert _sweep_macs(theirs_doc) == _sweep_macs(ours_doc) and _sweep_macs(ours_doc)[0][0] == 566065664
    tokens = [p["tokens"] for p in theirs_doc["metrics"][0]["series"][0]["points"]]
    assert tokens == [3136, 6400]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "anymodel_zoo:mix", "--sr", "1,1,1,1", "--dims", "8,8,8,8"],
            "cannot be combined with --dims, --sr",
        ),
        (["--input-shape", "1,3,8,8"], "input_shape needs --model"),
        (["--model", "anymodel_zoo:mix", "--input-shape", "8,8"], "input_shape=8,8 needs at least 3 dims to sweep"),
        (["--model", "anymodel_zoo:mix", "--model", "anymodel_zoo:mix"], "share the label 'anymodel_zoo:mix'"),
        (["--model", "bad spec"], "model='bad spec' must be PACKAGE.MODULE:FACTORY"),
    ],
)
def test_sweep_model_bad_input_is_one_line_exit_2(runner: CliRunner, args: list[str], message: str) -> None:
    _one_error(runner.invoke(app, ["sweep", "--img", "8", *args]), message)


# ------------------------------------------------------------------------------------------ snapshot
def test_snapshot_of_a_zoo_model_stores_the_spec_and_checks_it(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "mix.json"
    result = runner.invoke(
        app,
        [
            "snapshot",
            "write",
            str(path),
            "--model",
            "anymodel_zoo:mix",
            "--input-shape",
            "2,3,8,8",
            "--max-macs",
            "10M",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        result.stdout
        == "wrote " + str(path) + ": anymodel_zoo:mix, input [2, 3, 8, 8]; 23 ops, MACs 5.72 M, params 1.39 K\n"
    )
    doc = json.loads(path.read_text())
    assert (doc["model"], doc["config"], doc["input_shape"]) == ("anymodel_zoo:mix", None, [2, 3, 8, 8])
    assert doc["totals"]["macs"] == MIX_MACS_BATCH_2 and doc["budgets"] == {"max_macs": 10_000_000}
    check = runner.invoke(app, ["snapshot", "check", str(path), "--allow-model", "anymodel_zoo:mix"])
    assert (
        check.exit_code == 0
        and check.stdout == f"ok {path}: anymodel_zoo:mix, input [2, 3, 8, 8] (convention macs, float32 on meta)\n"
    ), check.output
    # A budget the model exceeds fails the check (exit 1), as for built-in snapshots.
    check = runner.invoke(app, ["snapshot", "check", str(path), "--max-macs", "5M", "--allow-model-import"])
    assert check.exit_code == 1 and check.stdout.startswith(f"FAIL {path}: anymodel_zoo:mix"), check.output


def test_snapshot_of_a_model_detects_a_changed_model(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "mix.json"
    assert (
        runner.invoke(
            app, ["snapshot", "write", str(path), "--model", "anymodel_zoo:mix", "--input-shape", "2,3,8,8"]
        ).exit_code
        == 0
    )
    doc = json.loads(path.read_text())
    doc["model"] = "anymodel_zoo:sdpa"
    doc["input_shape"] = [1, 16, 8]
    path.write_text(json.dumps(doc))
    check = runner.invoke(app, ["snapshot", "check", str(path), "--allow-model-import"])
    assert check.exit_code == 1, check.output
    assert (
        check.stdout.splitlines()[0]
        == f"FAIL {path}: anymodel_zoo:sdpa, input [1, 16, 8] (convention macs, float32 on meta)"
    )


def test_snapshot_write_model_with_builtin_options_is_exit_2(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "x.json"
    result = runner.invoke(app, ["snapshot", "write", str(path), "--model", "anymodel_zoo:mix", "--sr", "1,1,1,1"])
    _one_error(result, "model='anymodel_zoo:mix' cannot be combined with --sr")
    assert not path.exists()
