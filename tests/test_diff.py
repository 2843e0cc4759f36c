"""``pvttrace diff``: the numbers, the JSON schema, saved-trace inputs, op alignment and the rendered views.

Rendering tests compare against files under ``tests/expected/``; after a deliberate change of
the view, regenerate them with ``PVTTRACE_UPDATE_EXPECTED=1 python -m pytest tests/test_diff.py``
and review the file diff.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys
from collections.abc import Callable

import pytest
from helpers import check_expected, invoke, rendered

from pvttrace.analyses.diff import (
    DIFF_SCHEMA,
    MixedConventions,
    OpStatus,
    StageMetric,
    TotalMetric,
    TraceDiff,
    align_ops,
    default_labels,
    diff_traces,
    differing_settings,
    file_labels,
    load_diff_input,
    summary_lines,
    trace_distinct,
)
from pvttrace.base.errors import TraceFileError, UserInputError
from pvttrace.config import PvtConfig, resolve_config
from pvttrace.records import CONVENTIONS, Provenance, Trace, dumps_json
from pvttrace.render.diff import diff_markdown, render_diff

TraceOf = Callable[[PvtConfig], Trace]


@pytest.fixture(scope="module")
def sr_diff(trace_of: TraceOf) -> TraceDiff:
    configs = [resolve_config(sr=(8, 4, 2, 1)), resolve_config(sr=(1, 1, 1, 1))]
    return diff_traces([trace_of(c) for c in configs], default_labels(configs), with_ops=True)


# ---------------------------------------------------------------------------------- numbers
def test_sr_diff_numbers(sr_diff: TraceDiff) -> None:
    stage1 = sr_diff.stage(1)
    assert (stage1.change(1, StageMetric.KV_TOKENS).baseline, stage1.change(1, StageMetric.KV_TOKENS).value) == (
        49,
        3136,
    )
    # one block: 2 * N * N' * dim = 2 * 3136 * 49 * 64 = 19,668,992 -> 2 * 3136 * 3136 * 64 = 1,258,815,488 (x64)
    per_block = stage1.per_block(1, StageMetric.ATTENTION_MACS)
    assert (per_block.baseline, per_block.value, per_block.ratio) == (19_668_992, 1_258_815_488, 64.0)
    assert stage1.change(1, StageMetric.ATTENTION_MACS).ratio == 64.0
    # map [1, 1, 3136, 49] float32 = 614,656 B -> [1, 1, 3136, 3136] = 39,337,984 B
    maps = stage1.change(1, StageMetric.ATTENTION_MAP_BYTES)
    assert (maps.baseline, maps.value) == (614_656, 39_337_984)
    assert stage1.change(1, StageMetric.SR_MACS).value == 0
    assert [s.change(1, StageMetric.KV_TOKENS).value for s in sr_diff.stages] == [3136, 784, 196, 50]
    macs = sr_diff.total(1, TotalMetric.MACS)
    assert (macs.baseline, macs.value) == (1_932_911_616, 4_810_555_392)
    params = sr_diff.total(1, TotalMetric.PARAMS)
    # the SR convs and their norms of stages 1-3, x2 blocks:
    # (64*64*64+64 + 2*64) + (128*128*16+128 + 2*128) + (320*320*4+320 + 2*320)
    assert (params.baseline, params.value, params.delta) == (13_229_288, 11_358_440, -1_870_848)
    assert sr_diff.total(1, TotalMetric.FLOPS).value == 2 * 4_810_555_392


def test_summary_sentences(sr_diff: TraceDiff) -> None:
    lines = summary_lines(sr_diff)
    assert lines[0] == (
        "stage 1: sr 8 -> 1, N' 49 -> 3136 multiplies attention MACs per block by 64 (19.7 M -> 1.26 G) "
        "and the attention map from 600 KiB to 37.5 MiB; stage MACs x5.65 (538 M -> 3.04 G)"
    )
    assert lines[3] == "stage 4: no setting of this stage changes; it leaves attention MACs per block at 2.56 M"


def test_labels() -> None:
    sr = [resolve_config(sr=(8, 4, 2, 1)), resolve_config(sr=(1, 1, 1, 1))]
    assert default_labels(sr) == ["sr=8,4,2,1", "sr=1,1,1,1"]
    variants = [resolve_config("b2", img=512), resolve_config("b2-li", img=512)]
    assert default_labels(variants) == ["variant=b2", "variant=b2-li"]
    mixed = [resolve_config("b2"), resolve_config("b2", linear_sra=True, img=(800, 1333), mlp_ratios=(4, 4, 4, 4))]
    assert default_labels(mixed) == ["#1", "#2"]  # too long for a column name; the header lists them
    assert differing_settings(mixed) == [  # in PvtConfig's field order
        "mlp-ratios=8,8,4,4 img=224 linear-sra=off",
        "mlp-ratios=4,4,4,4 img=800x1333 linear-sra=on",
    ]
    assert default_labels([resolve_config(), resolve_config()]) == ["#1", "#2"]
    three_stages = resolve_config(
        dims=(64, 128, 320), heads=(1, 2, 5), depths=(2, 2, 2), mlp_ratios=(8, 8, 4), sr=(8, 4, 1)
    )
    assert default_labels([resolve_config(), three_stages]) == ["#1", "#2"]
    assert differing_settings([resolve_config(), three_stages])[1] == (
        "dims=64,128,320 heads=1,2,5 depths=2,2,2 mlp-ratios=8,8,4 sr=8,4,1 patch=4,2,2"
    )
    assert file_labels(["x/a.json", "y/b.json"]) == ["a", "b"]
    assert file_labels(["x/a.json", "y/a.json"]) == ["x/a.json", "y/a.json"]


def test_each_distinct_architecture_is_traced_once(trace_of: TraceOf) -> None:
    calls: list[PvtConfig] = []

    def tracer(cfg: PvtConfig) -> Trace:
        calls.append(cfg)
        return trace_of(cfg)

    b2_li = resolve_config("b2-li")
    b2_with_linear = resolve_config("b2", linear_sra=True)  # same architecture, other preset name
    configs = [resolve_config(), resolve_config(sr=(1, 1, 1, 1)), resolve_config(), b2_li, b2_with_linear]
    traces = trace_distinct(configs, tracer)
    assert len(calls) == 3
    assert [t.config for t in traces] == configs
    assert traces[3].totals == traces[4].totals


def test_a_stage_missing_from_one_configuration(trace_of: TraceOf) -> None:
    three_stages = resolve_config(
        dims=(64, 128, 320), heads=(1, 2, 5), depths=(2, 2, 2), mlp_ratios=(8, 8, 4), sr=(8, 4, 1)
    )
    diff = diff_traces([trace_of(resolve_config()), trace_of(three_stages)], ["four", "three"])
    assert len(diff.stages) == 4 and diff.stage(4).stages[1] is None
    assert diff.stage(4).change(1, StageMetric.MACS).ratio is None
    assert summary_lines(diff)[3] == "stage 4: absent from three"
    assert "| 4 | four |" in diff_markdown(diff) and "|  | three | absent |" in diff_markdown(diff)


def test_bad_library_input(trace_of: TraceOf) -> None:
    tiny = trace_of(resolve_config())
    with pytest.raises(UserInputError, match="at least two configurations, got 1"):
        diff_traces([tiny], ["a"])
    with pytest.raises(UserInputError, match="label='a' is given to more than one"):
        diff_traces([tiny, tiny], ["a", "a"])
    with pytest.raises(UserInputError, match="label was given 1 time"):
        diff_traces([tiny, tiny], ["a"])


# ---------------------------------------------------------------------------------- op alignment
def test_ops_align_by_module_and_op(sr_diff: TraceDiff) -> None:
    rows = sr_diff.op_rows
    assert rows is not None
    # every op of each side appears once, in execution order
    for side in range(2):
        indices = [row.ops[side].index for row in rows if row.ops[side] is not None]
        assert indices == list(range(len(sr_diff.traces[side].ops)))
    absent = [row for row in rows if row.status == OpStatus.ABSENT]
    # per block of stages 1-3: tokens to map (2), SR conv, map to tokens (2), SR norm; x2 blocks x3 stages
    assert len(absent) == 6 * 2 * 3
    sr_rows = [row for row in absent if row.label == "SR conv"]
    assert [row.module for row in sr_rows[:2]] == ["block1.0.attn.sr", "block1.1.attn.sr"]
    scores = next(row for row in rows if row.label == "scores q@k^T")
    assert scores.status == OpStatus.SHAPE
    assert [op.output for op in scores.ops if op is not None] == [(1, 1, 3136, 49), (1, 1, 3136, 3136)]
    apply_v = next(row for row in rows if row.label == "attention@v")
    assert apply_v.status == OpStatus.MACS
    assert next(row for row in rows if row.label == "MLP fc1").status == OpStatus.SAME


def test_three_way_alignment_with_an_extra_block(trace_of: TraceOf) -> None:
    configs = [resolve_config(), resolve_config(depths=(3, 2, 2, 2)), resolve_config(depths=(2, 2, 2, 3))]
    traces = [trace_of(c) for c in configs]
    rows = align_ops([t.ops for t in traces])
    added = [row for row in rows if row.status == OpStatus.ADDED]
    modules = {row.module.split(".")[0] + "." + row.module.split(".")[1] for row in added if row.module}
    assert modules == {"block1.2", "block4.2"}
    assert all(sum(op is not None for op in row.ops) == 1 for row in added)
    for side, trace in enumerate(traces):
        assert [row.ops[side].index for row in rows if row.ops[side] is not None] == list(range(len(trace.ops)))


# ---------------------------------------------------------------------------------- CLI
def test_cli_sr_acceptance() -> None:
    code, out, err = invoke("diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "--width", "140")
    assert code == 0, err
    for text in (
        "[1, 1, 3136, 49]",
        "[1, 1, 3136, 3136]",
        "2.52 G  x64",
        "37.52 MiB  x64",
        "1,932,911,616 (1.93 G)",
        "4,810,555,392 (4.81 G)",
        "13,229,288 (13.23 M)",
        "11,358,440 (11.36 M)",
        "-1.87 M",
        "stage 1: sr 8 -> 1, N' 49 -> 3136 multiplies attention MACs per block by 64 (19.7 M -> 1.26 G)",
    ):
        assert text in out, text
    row = next(line for line in out.splitlines() if "sr=1,1,1,1 │" in line)
    assert "│ 3136 │ 3136 │" in row  # stage 1: N = N' = 3136 without SR


def test_cli_linear_sra_keeps_49_keys() -> None:
    code, out, err = invoke("diff", "--variant", "b2", "--variant", "b2-li", "--img", "512", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    b2, b2_li = doc["configurations"]
    assert [s["kv_tokens"] for s in b2["stages"]] == [256, 256, 256, 256]
    assert [s["kv_tokens"] for s in b2_li["stages"]] == [49, 49, 49, 49]
    assert [s["tokens"] for s in b2_li["stages"]] == [16384, 4096, 1024, 256]
    assert b2_li["config"]["linear_sra"] is True and doc["labels"] == ["variant=b2", "variant=b2-li"]
    assert doc["summary"][0].startswith("stage 1: variant b2 -> b2-li, linear SRA off -> on, N' 256 -> 49 divides")
    code, table, _ = invoke("diff", "--variant", "b2", "--no-linear-sra", "--linear-sra", "--img", "512")
    assert code == 0 and "linear-sra=on" in table and "[1, 1, 16384, 49]" in table


def test_cli_resolution_sweep_on_meta_allocates_no_maps() -> None:
    # In a fresh process: the peak RSS rise above the same process once it has imported the CLI and torch. This
    # process's own high-water mark would hide the rise behind whatever earlier tests allocated.
    script = (
        "import resource, sys\n"
        "import torch\n"
        "from typer.testing import CliRunner\n"
        "from pvttrace.cli import app\n"
        "floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "result = CliRunner().invoke(app, sys.argv[1:])\n"
        "rise_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - floor  # KiB on Linux\n"
        "sys.stderr.write(result.stderr)\n"
        "print(rise_kib, result.exit_code)\n"
        "sys.stdout.write(result.stdout)\n"
    )
    args = ["diff", "--img", "224", "--img", "512", "--img", "1024", "--sr", "1,1,1,1", "--format", "json"]
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    first, _, out = done.stdout.partition("\n")
    rise_kib, code = (int(word) for word in first.split())
    assert code == 0, done.stderr
    doc = json.loads(out)
    assert doc["labels"] == ["img=224", "img=512", "img=1024"]
    assert {c["device"] for c in doc["configurations"]} == {"meta"}
    big = doc["configurations"][2]["stages"][0]
    assert big["attention_map_shape"] == [1, 1, 65536, 65536]
    assert big["attention_map_bytes"] == 65536 * 65536 * 4  # 16 GiB, never allocated
    assert rise_kib < 1024 * 1024, rise_kib  # measured 16 MiB
    ratio = doc["stages"][0]["changes"][1]["attention_macs"]["ratio"]
    assert ratio == pytest.approx((65536 / 3136) ** 2)


def test_json_schema_and_stable_bytes() -> None:
    args = ("diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "--format", "json")
    code, first, _ = invoke(*args)
    _, second, _ = invoke(*args)
    assert code == 0 and first == second and first.endswith("}\n")
    doc = json.loads(first)
    assert doc["schema"] == DIFF_SCHEMA == "pvttrace.diff/1"
    assert list(doc) == sorted(doc)
    assert set(doc) == {
        "baseline",
        "configurations",
        "convention",
        "labels",
        "mixed_conventions",
        "schema",
        "stages",
        "summary",
        "tool_version",
        "totals",
    }
    assert doc["convention"] == CONVENTIONS["macs"] and doc["mixed_conventions"] is False
    config = doc["configurations"][0]
    assert set(config) == {
        "config",
        "convention",
        "device",
        "dtype",
        "input_shape",
        "label",
        "outputs",
        "stages",
        "totals",
    }
    assert (config["convention"], config["dtype"], config["device"]) == (CONVENTIONS["macs"], "float32", "meta")
    assert config["totals"]["macs"] == 1_932_911_616 and config["totals"]["flops"] == 2 * 1_932_911_616
    change = doc["stages"][0]["changes"][0]
    assert change["label"] == "sr=1,1,1,1"
    assert change["kv_tokens"] == {"baseline": 49, "delta": 3087, "ratio": 64.0, "value": 3136}
    assert change["attention_macs"]["ratio"] == 64.0
    assert change["sr_macs"] == {"baseline": 25_690_112, "delta": -25_690_112, "ratio": 0.0, "value": 0}
    assert set(change) == {"label", *(m.value for m in StageMetric)}
    totals = doc["totals"][0]
    assert totals["macs"] == {
        "baseline": 1_932_911_616,
        "delta": 2_877_643_776,
        "ratio": 4_810_555_392 / 1_932_911_616,
        "value": 4_810_555_392,
    }
    assert set(totals) == {"label", *(m.value for m in TotalMetric)}
    code, with_ops, _ = invoke(*args, "--ops")
    ops = json.loads(with_ops)["ops"]
    sr_conv = next(row for row in ops if row["label"] == "SR conv")
    assert sr_conv["status"] == "absent" and sr_conv["ops"][1] is None and sr_conv["ops"][0]["output"] == [1, 64, 7, 7]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sr", "8,4,2,1"], "diff needs at least two configurations"),
        (
            ["--sr", "8,4,2,1", "--sr", "1,1,1,1", "--img", "224", "--img", "512", "--img", "1024"],
            "repeated options must come in equal counts (one per configuration), got --img 3 times, --sr 2 times",
        ),
        (["--sr", "8,4,2,1", "--sr", "1,1,1,1", "--label", "a"], "label was given 1 time(s) for 2 configurations"),
        (["--sr", "8,4,2,1", "--sr", "8,4,2"], "sr_ratios=8,4,2 has 3 value(s)"),
        (["--variant", "b2", "--linear-sra", "off", "--linear-sra", "on"], "--linear-sra and --qkv-bias are flags"),
        (["--sr", "8,4,2,1", "--sr", "1,1,1,1", "--ops", "--stage", "5"], "stage=5 must be between 1 and 4"),
        (["--sr", "8,4,2,1", "--sr", "1,1,1,1", "--format", "xml"], "Invalid value for '--format'"),
        (["--batch", "1", "--batch", "x"], "Invalid value for '--batch'"),
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str], message: str) -> None:
    code, out, err = invoke("diff", *args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert out == ""


# ---------------------------------------------------------------------------------- saved traces
@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, trace_of: TraceOf) -> dict[str, pathlib.Path]:
    folder = tmp_path_factory.mktemp("traces")
    files = {}
    for name, sr in (("before", (8, 4, 2, 1)), ("after", (1, 1, 1, 1))):
        path = folder / f"{name}.json"
        path.write_text(dumps_json(trace_of(resolve_config(sr=sr)).to_dict()), encoding="utf-8")
        files[name] = path
    snapshot = json.loads(files["after"].read_text())
    snapshot["schema"] = "pvttrace.snapshot/1"
    for op in snapshot["ops"]:  # what a snapshot leaves out: source lines, and maybe index, label, out_bytes
        for field in ("source", "index", "label", "out_bytes", "flops"):
            op.pop(field)
        op["input_shapes"] = op.pop("inputs")
    files["snapshot"] = folder / "snap.json"
    files["snapshot"].write_text(dumps_json(snapshot), encoding="utf-8")
    config_only = {"schema": "pvttrace.snapshot/1", "config": snapshot["config"]}
    files["config_only"] = folder / "config_only.json"
    files["config_only"].write_text(dumps_json(config_only), encoding="utf-8")
    bad = {
        "wrong_schema": '{"schema": "pvttrace.diff/1"}',
        "not_json": "not json at all",
        "not_object": "[1, 2]",
        "malformed": '{"schema": "pvttrace.trace/1", "ops": []}',
    }
    for name, text in bad.items():
        files[name] = folder / f"{name}.json"
        files[name].write_text(text, encoding="utf-8")
    return files


def test_file_mode_matches_option_mode(saved: dict[str, pathlib.Path]) -> None:
    code, from_files, err = invoke("diff", str(saved["before"]), str(saved["after"]), "--format", "json")
    assert code == 0, err
    _, from_options, _ = invoke("diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "--format", "json")
    files_doc, options_doc = json.loads(from_files), json.loads(from_options)
    assert files_doc["labels"] == ["before", "after"]
    for part in (files_doc, options_doc):
        for item in (*part["configurations"], *part["totals"], *(c for s in part["stages"] for c in s["changes"])):
            item.pop("label")
    for key in ("configurations", "stages", "totals"):
        assert files_doc[key] == options_doc[key], key
    assert files_doc["summary"] == options_doc["summary"]
    code, table, _ = invoke(
        "diff",
        str(saved["before"]),
        str(saved["after"]),
        "--ops",
        "--changed-only",
        "--stage",
        "1",
        "--width",
        "160",
    )
    assert code == 0 and "- absent" in table and "after output" in table and "1,932,911,616" in table


def test_snapshot_files_are_read_as_stored(saved: dict[str, pathlib.Path], trace_of: TraceOf) -> None:
    expected = trace_of(resolve_config(sr=(1, 1, 1, 1)))
    trace, notes = load_diff_input(str(saved["snapshot"]))
    assert notes == []
    assert trace.stages == expected.stages and trace.totals == expected.totals
    assert [op.output for op in trace.ops] == [op.output for op in expected.ops]
    assert [op.out_bytes for op in trace.ops] == [op.out_bytes for op in expected.ops]

    calls: list[PvtConfig] = []

    def retrace(cfg: PvtConfig) -> Trace:
        calls.append(cfg)
        return trace_of(cfg)

    trace, notes = load_diff_input(str(saved["config_only"]), retrace=retrace)
    assert calls == [expected.config] and trace.totals == expected.totals
    assert notes and "traced its config again" in notes[0]
    with pytest.raises(TraceFileError, match="malformed snapshot content"):
        load_diff_input(str(saved["config_only"]))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("wrong_schema", "schema='pvttrace.diff/1' is not 'pvttrace.trace/1' or 'pvttrace.snapshot/1'"),
        ("not_json", "is not valid JSON"),
        ("not_object", "schema='list' is not"),
        ("malformed", "malformed trace content"),
        ("missing", "does not exist"),
    ],
)
def test_bad_files_exit_2_with_one_line(saved: dict[str, pathlib.Path], name: str, message: str) -> None:
    path = saved.get(name, saved["before"].parent / "missing.json")
    code, out, err = invoke("diff", str(saved["before"]), str(path))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err and out == ""


def test_files_and_options_do_not_mix(saved: dict[str, pathlib.Path]) -> None:
    code, _, err = invoke("diff", str(saved["before"]), str(saved["after"]), "--sr", "1,1,1,1")
    assert code == 2 and "give either trace files or configuration options, not both (got files and --sr)" in err
    code, _, err = invoke("diff", str(saved["before"]))
    assert code == 2 and err.startswith("error: diff needs at least two trace files, got 1")


# ---------------------------------------------------------------------------------- rendering
def test_rendered_table_matches_expected(sr_diff: TraceDiff) -> None:
    text = rendered(render_diff(sr_diff, ops=True, stages=[1], changed_only=True), 120)
    check_expected("diff_sr_tiny.txt", text)


def test_markdown_matches_expected(sr_diff: TraceDiff) -> None:
    check_expected("diff_sr_tiny.md", diff_markdown(sr_diff, ops=True, stages=[2], changed_only=True))


def test_cli_table_is_the_rendered_view(sr_diff: TraceDiff) -> None:
    code, out, _ = invoke("diff", "--sr", "8,4,2,1", "--sr", "1,1,1,1", "--width", "120")
    assert code == 0 and out == rendered(render_diff(sr_diff), 120)


def test_diff_module_imports_nothing_heavy() -> None:
    probe = (
        "import sys, pvttrace.analyses.diff\nprint(sorted(m for m in ('torch', 'rich', 'typer') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------- convention, dtype, device
_REFUSED = (
    "the traces were counted under different conventions (a: macs, b: fvcore); ratios between their MACs would "
    "compare different counts, so diff refuses them"
)


def test_traces_of_two_conventions_are_refused_unless_asked(tiny_trace: Trace) -> None:
    fvcore = dataclasses.replace(tiny_trace, convention="fvcore")
    with pytest.raises(MixedConventions) as refused:
        diff_traces([tiny_trace, fvcore], ["a", "b"])
    assert str(refused.value) == _REFUSED
    assert refused.value.labels == ("a", "b") and refused.value.conventions == ("macs", "fvcore")
    assert isinstance(refused.value, UserInputError)  # exit code 2 in the CLI
    diff = diff_traces([tiny_trace, fvcore], ["a", "b"], mixed_conventions=True)
    assert diff.mixed_conventions
    assert diff.provenances == (Provenance("macs", "float32", "meta"), Provenance("fvcore", "float32", "meta"))
    doc = diff.to_dict()
    assert doc["convention"] is None and doc["mixed_conventions"] is True
    assert [c["convention"] for c in doc["configurations"]] == [CONVENTIONS["macs"], CONVENTIONS["fvcore"]]
    markdown = diff_markdown(diff)
    assert "- **conventions differ: a macs, b fvcore; ratios between them compare different counts**\n" in markdown
    assert "- convention: " not in markdown
    same = diff_traces([fvcore, fvcore], ["a", "b"])
    assert not same.mixed_conventions and same.to_dict()["convention"] == CONVENTIONS["fvcore"]
    assert f"- convention: {CONVENTIONS['fvcore']}\n- dtype: float32; device: meta\n" in diff_markdown(same)


def test_dtype_and_device_are_read_from_each_trace(tiny_trace: Trace) -> None:
    on_cpu = dataclasses.replace(tiny_trace, device="cpu", dtype="bfloat16")
    diff = diff_traces([tiny_trace, on_cpu], ["x", "y"])
    assert "- dtype: x float32, y bfloat16; device: x meta, y cpu\n" in diff_markdown(diff)
    text = rendered(render_diff(diff), 140)
    assert "dtype: x float32, y bfloat16; device: x meta, y cpu" in text
    assert f"convention: {CONVENTIONS['macs']}" in text
    configurations = diff.to_dict()["configurations"]
    assert [(c["dtype"], c["device"]) for c in configurations] == [("float32", "meta"), ("bfloat16", "cpu")]


def test_a_trace_file_written_before_dtype_was_recorded_still_loads(tiny_trace: Trace) -> None:
    document = tiny_trace.to_dict()
    assert (document["convention"], document["dtype"], document["device"]) == (CONVENTIONS["macs"], "float32", "meta")
    del document["dtype"]
    assert Trace.from_dict(document) == tiny_trace  # the dtype comes from the config
    document.update(config=None, fidelity=None, model="pkg.mod:net")
    assert Trace.from_dict(document).dtype == "float32"  # no config: the ops' floating dtype


def test_cli_diff_of_files_traced_under_two_conventions(tmp_path: pathlib.Path) -> None:
    # The reported defect: the header said "convention: macs" over 1,932,911,616 vs 1,943,022,336 MACs.
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    for path, extra in ((a, ()), (b, ("--convention", "fvcore")), (c, ("--convention", "fvcore"))):
        code, out, err = invoke("run", "--format", "json", *extra)
        assert code == 0, err
        path.write_text(out, encoding="utf-8")
    for output_format in ("table", "json", "markdown", "csv"):
        code, out, err = invoke("diff", str(a), str(b), "--format", output_format)
        assert (code, out) == (2, "")
        assert err == f"error: {_REFUSED}; pass --mixed-conventions to compare them anyway\n"
    code, out, err = invoke("diff", str(a), str(b), "--mixed-conventions", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert [conf["totals"]["macs"] for conf in doc["configurations"]] == [1_932_911_616, 1_943_022_336]
    assert [conf["convention"].split(" ")[0] for conf in doc["configurations"]] == ["macs", "fvcore:"]
    assert doc["convention"] is None and doc["mixed_conventions"] is True
    code, out, err = invoke("diff", str(a), str(b), "--mixed-conventions", "--width", "120")
    assert code == 0, err
    assert "conventions differ: a macs, b fvcore; ratios between them compare different counts" in out
    assert "convention: macs =" not in out and "dtype: float32; device: meta" in out
    code, out, err = invoke("diff", str(b), str(c), "--format", "markdown")
    assert code == 0, err
    assert f"- convention: {CONVENTIONS['fvcore']}\n- dtype: float32; device: meta\n" in out


def test_mixed_conventions_is_declared_once_in_the_diff_command() -> None:
    code, out, _ = invoke("diff", "--help")
    assert code == 0 and out.count("--mixed-conventions") == 1
