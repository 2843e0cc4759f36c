"""``--inputs MODULE:FUNCTION``: models with several inputs or keyword inputs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pvttrace.cli import app
from pvttrace.cli.parsing import parse_model_spec
from pvttrace.tracing.target import trace_target


def test_keyword_inputs_are_traced_and_counted() -> None:
    trace = trace_target(parse_model_spec("anymodel_zoo:two_inputs", inputs="anymodel_zoo:two_inputs_kwargs"))
    assert trace.device == "meta"
    assert trace.input_shape == (2, 3, 32, 32)  # the first tensor's
    # conv 8x8 outputs x 8 x 3x4x4, text linear 5 x 16 x 8, product 64 x 5 x 8; per image, batch 2.
    assert trace.totals.macs == 2 * (64 * 8 * 48 + 5 * 16 * 8 + 64 * 5 * 8)
    # Both tensors are input memory.
    assert trace.totals.input_bytes == 4 * (2 * 3 * 32 * 32 + 2 * 5 * 16)
    assert trace.outputs == ((2, 64, 5),)


def test_cli_inputs_option(runner: CliRunner) -> None:
    args = ["run", "--model", "anymodel_zoo:two_inputs", "--inputs", "anymodel_zoo:two_inputs_kwargs", "-f", "json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["input_shape"] == [2, 3, 32, 32]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "anymodel_zoo:two_inputs", "--inputs", "nocolon"],
            "inputs='nocolon' must be PACKAGE.MODULE:FUNCTION",
        ),
        (
            ["--model", "anymodel_zoo:two_inputs", "--inputs", "anymodel_zoo:two_inputs_kwargs", "--img", "64"],
            "inputs cannot be combined with input_shape, img, batch or in_chans",
        ),
        (["--inputs", "anymodel_zoo:two_inputs_kwargs"], "inputs needs --model"),
        (
            ["--model", "anymodel_zoo:two_inputs", "--inputs", "anymodel_zoo:one_tensor_positional"],
            "TypeError",  # the keyword-only `tokens` is missing: the model's own error, one line
        ),
        (["--model", "anymodel_zoo:two_inputs", "--inputs", "anymodel_zoo:nothing"], "inputs='anymodel_zoo:nothing'"),
    ],
)
def test_bad_inputs_exit_2_in_one_line(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") <= 2
