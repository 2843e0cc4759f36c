"""The model options are declared once (``pvttrace.cli.options``) and every command traces through one entry point."""

from __future__ import annotations

import inspect
import json

import pytest
import typer.main
from optional import needs
from typer.testing import CliRunner

from pvttrace.base.errors import CheckFailed, ConfigError, TraceError, UserInputError
from pvttrace.cli import app
from pvttrace.cli.common import exit_code
from pvttrace.cli.options import MODEL_OPTIONS, SOURCE_OPTIONS, ModelColumns, ModelOptions
from pvttrace.cli.parsing import parse_model_spec
from pvttrace.config import get_variant, resolve_config
from pvttrace.tracing.target import ModelSpec, builtin_spec, trace_target

#: Every command that builds a model, and the declared options it does not take (sweep's --img is its size axis).
MODEL_COMMANDS = {
    ("run",): (),
    ("fit",): (),
    ("formula",): (),
    ("diff",): (),
    ("sweep",): ("img",),
    ("snapshot", "write"): (),
}


def _command(path: tuple[str, ...]) -> typer.main.TyperCommand:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command  # type: ignore[return-value]


def test_the_declarations_and_resolve_config_match_one_to_one() -> None:
    keywords = [name for name in inspect.signature(resolve_config).parameters]
    assert [option.name for option in MODEL_OPTIONS] == keywords


@pytest.mark.parametrize("path", list(MODEL_COMMANDS), ids=" ".join)
def test_every_model_command_takes_every_declared_option_in_declaration_order(path: tuple[str, ...]) -> None:
    params = [p.name for p in _command(path).params]
    expected = [o.name for o in MODEL_OPTIONS if o.name not in MODEL_COMMANDS[path]] + ["model", "input_shape"]
    assert [name for name in params if name in expected] == expected
    flags = {opt for p in _command(path).params for opt in (*p.opts, *p.secondary_opts)}
    assert {"--linear-sra", "--no-linear-sra", "--qkv-bias", "--no-qkv-bias"} <= flags


def test_only_run_and_fit_take_hf_overrides_and_only_run_takes_an_inputs_factory() -> None:
    takers = {path for path in MODEL_COMMANDS if "model_option" in [p.name for p in _command(path).params]}
    assert takers == {("run",), ("fit",)}
    assert {path for path in MODEL_COMMANDS if "inputs" in [p.name for p in _command(path).params]} == {("run",)}
    assert [o.name for o in SOURCE_OPTIONS] == ["model", "input_shape", "model_option", "inputs"]


def test_repeated_options_make_one_configuration_per_value() -> None:
    columns = ModelColumns({"variant": ("b2",), "linear_sra": (False, True), "sr": (), "img": ("224", "512")})
    assert columns.count() == 2 and columns.given() == ["--variant", "--linear-sra", "--img"]
    first, second = columns.columns()
    assert (first["variant"], first["linear_sra"], first.img, first["sr"]) == ("b2", False, "224", None)
    assert second.config().linear_sra is True and second.config().img == (512, 512)
    assert columns.lists() == {"variant": ["b2"], "linear_sra": [False, True], "sr": [], "img": ["224", "512"]}
    with pytest.raises(ConfigError, match="equal counts"):
        ModelColumns({"sr": ("8,4,2,1", "1,1,1,1"), "img": ("224", "512", "1024")}).count()


def test_options_build_the_spec_of_a_builtin_or_a_model() -> None:
    assert ModelOptions({}).spec() == builtin_spec(get_variant("tiny"))
    assert ModelOptions({"variant": "b0", "sr": "1,1,1,1"}).config().sr_ratios == (1, 1, 1, 1)
    spec = ModelOptions({"model": "timm:pvt_v2_b0", "img": "256", "batch": 2}).spec()
    assert (spec.source, spec.target, spec.img, spec.batch) == ("timm", "pvt_v2_b0", (256, 256), 2)
    with pytest.raises(UserInputError, match=r"cannot be combined with --dims, --linear-sra: those options describe"):
        ModelOptions({"model": "timm:pvt_v2_b0", "dims": "8,16,32,64", "linear_sra": False}).spec()
    with pytest.raises(UserInputError, match="input_shape needs --model"):
        ModelOptions({"input_shape": "1,3,8,8"}).spec()


def test_a_spec_at_another_batch_or_image_size() -> None:
    builtin = builtin_spec(get_variant("b0"))
    assert builtin.with_overrides(batch=4, img=(320, 320)).config == get_variant("b0").with_overrides(
        batch=4, img=(320, 320)
    )
    with pytest.raises(ConfigError):
        builtin.with_overrides(img=(0, 0))
    shaped = parse_model_spec("anymodel_zoo:my_pvt", input_shape="1,3,64,64")
    assert shaped.with_overrides(batch=8).input_shape == (8, 3, 64, 64)
    assert shaped.with_overrides(img=(96, 128)).input_shape == (1, 3, 96, 128)
    sized = parse_model_spec("timm:pvt_v2_b0").with_overrides(batch=3, img=(64, 64))
    assert (sized.batch, sized.img, sized.input_shape) == (3, (64, 64), None)
    with pytest.raises(UserInputError, match="has no H and W"):
        parse_model_spec("anymodel_zoo:sdpa", input_shape="2,16").with_overrides(img=(8, 8))


def test_fit_searches_the_batch_of_any_model(runner: CliRunner) -> None:
    args = ["fit", "--memory", "64MiB", "--model", "anymodel_zoo:my_pvt", "--input-shape", "1,3,64,64"]
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["search"], doc["value"], doc["next_value"], doc["config"]) == ("batch", 149, 150, None)
    assert doc["peak_bytes"] == 66_986_920 <= doc["budget_bytes"] == 64 * 2**20 < doc["next_peak_bytes"] == 67_429_288
    # The answer is what the one entry point traces at that batch.
    at_answer = trace_target(parse_model_spec("anymodel_zoo:my_pvt", input_shape="149,3,64,64"))
    assert at_answer.totals.peak_memory_bytes == doc["peak_bytes"]
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and table.stdout.startswith("anymodel_zoo:my_pvt, input 149x3x64x64\n")


def test_fit_searches_the_image_side_of_any_model(runner: CliRunner) -> None:
    args = ["--model", "anymodel_zoo:my_pvt", "--input-shape", "2,3,64,64", "--img", "auto", "--format", "json"]
    result = runner.invoke(app, ["fit", "--memory", "64MiB", *args])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["search"], doc["value"], doc["next_value"]) == ("img", 320, 352)
    assert doc["peak_bytes"] <= doc["budget_bytes"] < doc["next_peak_bytes"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "anymodel_zoo:my_pvt", "--sr", "1,1,1,1"], "cannot be combined with --sr"),
        (["--model", "anymodel_zoo:my_pvt", "--head", "segformer"], "head='segformer' works on built-in variants"),
        (["--model", "anymodel_zoo:my_pvt", "--batch", "2"], "batch=2 cannot be given: fit searches the batch"),
        (["--input-shape", "1,3,64,64"], "input_shape needs --model"),
    ],
)
def test_fit_model_errors_are_one_line_exit_2(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["fit", "--memory", "1GiB", *args])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_fit_on_a_builtin_traces_through_the_one_entry_point(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fit", "--memory", "64MiB", "--variant", "b0", "--img", "64", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    value = doc["value"]
    at = trace_target(builtin_spec(resolve_config("b0", img=64, batch=value)))
    after = trace_target(builtin_spec(resolve_config("b0", img=64, batch=value + 1)))
    assert at.totals.peak_memory_bytes == doc["peak_bytes"] <= 64 * 2**20 < after.totals.peak_memory_bytes


def test_diff_flags_repeat_once_per_configuration(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["diff", "--variant", "b2", "--no-qkv-bias", "--qkv-bias", "--img", "64", "--format", "json"]
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [c["config"]["qkv_bias"] for c in doc["configurations"]] == [False, True]
    # q and kv biases of every block: (64 + 128) + (128 + 256) + (320 + 640) + (512 + 1024) per block, 3,4,6,3 blocks
    biases = 3 * 192 + 4 * 384 + 6 * 960 + 3 * 1536
    assert [c["totals"]["params"] for c in doc["configurations"]][1] - doc["configurations"][0]["totals"][
        "params"
    ] == biases


def test_library_errors_map_to_exit_codes_in_one_place() -> None:
    assert exit_code(CheckFailed("a snapshot differs")) == 1
    assert exit_code(UserInputError("bad")) == exit_code(ConfigError("bad")) == exit_code(TraceError("failed")) == 2


def test_the_public_facade_offers_the_one_entry_point() -> None:
    import pvttrace.trace

    assert pvttrace.trace.trace_target is trace_target and pvttrace.trace.ModelSpec is ModelSpec
    assert pvttrace.trace.trace_target(builtin_spec(get_variant("tiny"))) == pvttrace.trace.trace_config(
        get_variant("tiny")
    )


@needs("timm")
def test_fit_takes_a_timm_model(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fit", "--memory", "24GiB", "--model", "timm:pvt_v2_b0", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    # timm's default input (3x224x224); the answer fits and the next batch does not.
    at_answer = trace_target(parse_model_spec("timm:pvt_v2_b0", batch=doc["value"]))
    assert at_answer.input_shape == (doc["value"], 3, 224, 224) and doc["value"] == 2984
    assert at_answer.totals.peak_memory_bytes == doc["peak_bytes"] <= 24 * 2**30 < doc["next_peak_bytes"]


def test_a_sweep_column_varies_every_model_option_but_the_image_size() -> None:
    from pvttrace.analyses.sweep import column_options
    from pvttrace.cli.options import MODEL_OPTIONS

    assert set(column_options()) == {o.name for o in MODEL_OPTIONS} - {"img"}
