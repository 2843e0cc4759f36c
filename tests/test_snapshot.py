"""Shape snapshots: the project's own 13 snapshots, reports, invalid files, atomic writes, budgets, concurrency.

The stored snapshots under ``tests/snapshots/`` (all 11 variants at 224 as classifiers, tiny and b2
as backbones at 800x1333) are regenerated with ``PVTTRACE_UPDATE_SNAPSHOTS=1 python -m pytest
tests/test_snapshot.py``; the expected report under ``tests/expected/`` with
``PVTTRACE_UPDATE_EXPECTED=1``. Review the diff before committing either.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import check_expected, invoke

from pvttrace.config import VARIANTS, PvtConfig, resolve_config
from pvttrace.records import CONVENTIONS, Provenance, Trace
from pvttrace.snapshot import (
    SNAPSHOT_SCHEMA,
    Budgets,
    ChangeStatus,
    Snapshot,
    check_snapshot_file,
    compare_snapshots,
    dumps_snapshot,
    load_snapshot,
    loads_snapshot,
    snapshot_from_trace,
    write_snapshot,
    write_text_atomic,
)
from pvttrace.snapshot.report import report_lines, result_lines

ROOT = pathlib.Path(__file__).resolve().parents[1]
SNAPSHOTS = ROOT / "tests" / "snapshots"
UPDATE_SNAPSHOTS = os.environ.get("PVTTRACE_UPDATE_SNAPSHOTS") == "1"

PROJECT_SNAPSHOTS: dict[str, PvtConfig] = {
    **{f"{name}-224-cls": resolve_config(name, img=224, task="cls") for name in VARIANTS},
    "tiny-800x1333-backbone": resolve_config("tiny", img=(800, 1333), task="backbone"),
    "b2-800x1333-backbone": resolve_config("b2", img=(800, 1333), task="backbone"),
}

TraceOf = Callable[[PvtConfig], Trace]


def _copy(name: str, directory: pathlib.Path) -> pathlib.Path:
    target = directory / f"{name}.json"
    shutil.copyfile(SNAPSHOTS / f"{name}.json", target)
    return target


Document = dict[str, Any]


def _edit(path: pathlib.Path, change: Callable[[Document], None]) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------- the project's own snapshots
@pytest.mark.parametrize("name", sorted(PROJECT_SNAPSHOTS))
def test_project_snapshot_matches_the_current_trace(name: str, trace_of: TraceOf) -> None:
    path = SNAPSHOTS / f"{name}.json"
    if UPDATE_SNAPSHOTS and not path.exists():
        write_snapshot(str(path), snapshot_from_trace(trace_of(PROJECT_SNAPSHOTS[name])))
    result = check_snapshot_file(str(path), trace=trace_of, update=UPDATE_SNAPSHOTS)
    assert result.passed, "\n".join(result_lines(result, limit=0))
    assert result.config == PROJECT_SNAPSHOTS[name]


def test_snapshot_directory_holds_exactly_the_13_configurations() -> None:
    assert sorted(p.stem for p in SNAPSHOTS.glob("*.json")) == sorted(PROJECT_SNAPSHOTS)
    assert not [p.name for p in SNAPSHOTS.iterdir() if p.name.startswith(".")]


def test_stored_snapshots_hold_the_reference_numbers() -> None:
    tiny = load_snapshot(str(SNAPSHOTS / "tiny-224-cls.json"))
    assert tiny.totals.macs == 1_932_911_616 and tiny.totals.params == 13_229_288
    assert [s.kv_tokens for s in tiny.stages] == [49, 49, 49, 50]
    b2 = load_snapshot(str(SNAPSHOTS / "b2-800x1333-backbone.json"))
    assert b2.totals.macs == 147_086_003_200
    assert [s.kv_tokens for s in b2.stages] == [1025, 1025, 1050, 1050]
    assert b2.outputs == ((1, 64, 200, 334), (1, 128, 100, 167), (1, 320, 50, 84), (1, 512, 25, 42))


def test_snapshot_bytes_are_stable_and_reviewable(tiny_trace: Trace) -> None:
    snapshot = snapshot_from_trace(tiny_trace)
    text = dumps_snapshot(snapshot)
    assert text == dumps_snapshot(snapshot_from_trace(tiny_trace)) and text.endswith("}\n")
    document = json.loads(text)
    assert document["schema"] == SNAPSHOT_SCHEMA and list(document) == sorted(document)
    assert document == json.loads(json.dumps(snapshot.to_dict(), sort_keys=True))
    op_lines = [line for line in text.splitlines() if line.startswith('    {"alloc_bytes"')]
    assert len(op_lines) == len(tiny_trace.ops) == 293
    assert json.loads(op_lines[22].rstrip(",")) == {
        "alloc_bytes": 614656,
        "block": 0,
        "dtype": "float32",
        "inputs": [[1, 1, 3136, 64], [1, 1, 64, 49]],
        "kind": "matmul",
        "label": "scores q@k^T",
        "macs": 9834496,
        "module": "block1.0.attn",
        "op": "Tensor.matmul",
        "output": [1, 1, 3136, 49],
        "stage": 1,
        "view": False,
    }
    assert "source" not in text and '"index"' not in op_lines[0]
    # Apart from the one-line ops, the layout is json.dumps(indent=2).
    without_ops = {k: v for k, v in document.items() if k != "ops"}
    head, rest = text.split('  "ops": [\n')
    ops_block, tail = rest.split("\n  ],\n", 1)
    assert head + tail == json.dumps(without_ops, indent=2, sort_keys=True) + "\n"
    assert ops_block.split(",\n") == [line.rstrip(",") for line in op_lines]
    assert loads_snapshot(text) == snapshot


# ---------------------------------------------------------------------------------- reports
def test_an_sr_change_in_a_copy_fails_with_a_report_naming_stage_and_ops(tmp_path: pathlib.Path) -> None:
    copy = _copy("tiny-224-cls", tmp_path)
    _edit(copy, lambda d: d["config"].__setitem__("sr_ratios", [4, 4, 2, 1]))
    code, out, err = invoke("snapshot", "check", str(copy), "--limit", "0")
    assert code == 1 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"FAIL {copy}: tiny (PVT v1, cls) @ 224x224, batch 1, float32 (convention macs, device meta)"
    assert lines[1] == "  30 op(s) changed, 0 added, 0 removed; 12 figure(s) differ (stored -> current)"
    assert "    stage 1 attention MACs 39.3 M -> 157.4 M (x4)" in lines
    assert "    stage 1 kv tokens 49 -> 196 (x4)" in lines
    assert (
        '    stage 1, blocks 0-1, attn: matmul "scores q@k^T" output [1,1,3136,49] -> [1,1,3136,196]; '
        "inputs[1] [1,1,64,49] -> [1,1,64,196]; MACs 9.8 M -> 39.3 M (x4); alloc 600.2 KiB -> 2.3 MiB (x4)"
    ) in lines
    assert (
        '    stage 1, blocks 0-1, attn.sr: sr_conv "SR conv" output [1,64,7,7] -> [1,64,14,14]; '
        "inputs[1] [64,64,8,8] -> [64,64,4,4]; alloc 12.2 KiB -> 49 KiB (x4)" in lines
    )
    assert not [line for line in lines if "stage 2" in line or "stage 3" in line or "stage 4" in line]
    check_expected("snapshot_check_sr.txt", out.replace(str(copy), "tiny-224-cls-copy.json"))


def test_the_report_is_capped_per_stage_with_a_count_of_the_rest(tmp_path: pathlib.Path) -> None:
    copy = _copy("tiny-224-cls", tmp_path)
    _edit(copy, lambda d: d["config"].__setitem__("sr_ratios", [4, 4, 2, 1]))
    code, out, _ = invoke("snapshot", "check", str(copy), "--limit", "3")
    assert code == 1
    op_lines = [line for line in out.splitlines() if line.startswith("    stage 1, blocks")]
    assert len(op_lines) == 3  # SR conv, map to tokens (reshape, permute): 6 ops
    assert "    ... and 24 more op change(s) in stage 1 (--limit 0 shows all)" in out.splitlines()


def test_sr_ratio_1_reports_the_sr_ops_as_removed_not_as_a_shifted_sequence(trace_of: TraceOf) -> None:
    stored = snapshot_from_trace(trace_of(VARIANTS["tiny"]))
    current = snapshot_from_trace(trace_of(VARIANTS["tiny"].with_overrides(sr_ratios=(1, 4, 2, 1))))
    report = compare_snapshots(stored, current)
    removed = [c.op for c in report.op_changes if c.status == ChangeStatus.REMOVED]
    assert [(op.block, op.label) for op in removed[:6]] == [
        (0, "tokens to map"),
        (0, "tokens to map"),
        (0, "SR conv"),
        (0, "map to tokens"),
        (0, "map to tokens"),
        (0, "SR norm"),
    ]
    assert len(removed) == 12 and report.count(ChangeStatus.ADDED) == 0
    assert {c.op.stage for c in report.op_changes} == {1}
    lines = report_lines(report)
    assert '    stage 1, blocks 0-1, attn.sr: sr_conv "SR conv" removed (output [1,64,7,7], MACs 12.8 M)' in lines
    assert "    stage 1 attention map [1,1,3136,49] -> [1,1,3136,3136]" in lines
    assert "    total ops 293 -> 281 (x0.96)" in lines


def test_an_inserted_op_is_reported_as_added_and_shifts_nothing(tiny_trace: Trace) -> None:
    stored = snapshot_from_trace(tiny_trace)
    current = dataclasses.replace(stored, ops=(*stored.ops[:11], stored.ops[10], *stored.ops[11:]))
    report = compare_snapshots(stored, current)
    assert [(c.status, c.op.label) for c in report.op_changes] == [(ChangeStatus.ADDED, "tokens to map")]


def test_rtol_forgives_small_cost_changes_but_never_shapes(tmp_path: pathlib.Path) -> None:
    copy = _copy("b0-224-cls", tmp_path)
    _edit(copy, lambda d: d["ops"][0].__setitem__("macs", d["ops"][0]["macs"] * 101 // 100))
    code, out, _ = invoke("snapshot", "check", str(copy))
    assert code == 1
    assert '    stage 1, patch_embed1.proj: patch_embed "patch embed conv" MACs 14.9 M -> 14.8 M (x0.99)' in out
    assert invoke("snapshot", "check", str(copy), "--rtol", "0.02")[0] == 0
    _edit(copy, lambda d: d["ops"][5].__setitem__("output", [1, 3136, 33]))
    code, out, _ = invoke("snapshot", "check", str(copy), "--rtol", "0.5")
    assert code == 1 and "output [1,3136,33] -> [1,3136,32]" in out
    code, _, err = invoke("snapshot", "check", str(copy), "--rtol", "-1")
    assert (code, err) == (2, "error: rtol=-1.0 must be a finite number >= 0\n")


# ---------------------------------------------------------------------------------- invalid files
def _truncated(path: pathlib.Path) -> None:
    text = (SNAPSHOTS / "b0-224-cls.json").read_text()
    path.write_text(text[: len(text) // 2])


def _truncated_in_a_label(path: pathlib.Path) -> None:
    text = (SNAPSHOTS / "b0-224-cls.json").read_text()
    path.write_text(text[: text.index("q@k^T") + 2])


def _newer(path: pathlib.Path) -> None:
    document = json.loads((SNAPSHOTS / "b0-224-cls.json").read_text())
    document["schema"] = "pvttrace.snapshot/2"
    document["tool_version"] = "9.0.0"
    path.write_text(json.dumps(document))


def _with(change: Callable[[Document], None]) -> Callable[[pathlib.Path], None]:
    def make(path: pathlib.Path) -> None:
        shutil.copyfile(SNAPSHOTS / "b0-224-cls.json", path)
        _edit(path, change)

    return make


INVALID = {
    "missing": (None, "{p} does not exist"),
    "empty": (lambda p: p.write_text(""), "{p} is empty"),
    "blank": (lambda p: p.write_text("  \n"), "{p} is empty"),
    "truncated": (_truncated, "{p} is truncated: the JSON ends early (line 234, column 233)"),
    "truncated in a label": (_truncated_in_a_label, "{p} is truncated: the JSON ends early (line 89, column 134)"),
    "not JSON": (
        lambda p: p.write_text("shapes: [1, 64]\n"),
        "{p} is not valid JSON (Expecting value at line 1, column 1)",
    ),
    "binary": (lambda p: p.write_bytes(b"\xff\xfe\x00\x01"), "{p} is not UTF-8 text, so not a snapshot"),
    "a list": (lambda p: p.write_text("[1, 2]\n"), "{p} is a JSON list, not a pvttrace snapshot object"),
    "no schema": (lambda p: p.write_text('{"ops": []}\n'), "{p} has no schema field; it is not a pvttrace snapshot"),
    "a trace": (
        _with(lambda d: d.__setitem__("schema", "pvttrace.trace/1")),
        "{p} has schema 'pvttrace.trace/1', not 'pvttrace.snapshot/1'; write one with: pvttrace snapshot write PATH",
    ),
    "newer": (
        _newer,
        "{p} was written by pvttrace 9.0.0 in schema 'pvttrace.snapshot/2', newer than this pvttrace reads "
        "('pvttrace.snapshot/1'); upgrade pvttrace",
    ),
    "malformed op": (
        _with(lambda d: d["ops"][3].__setitem__("output", "big")),
        "{p} is malformed: ops[3].output='big' must be a list of integers",
    ),
    "bad config": (
        _with(lambda d: d["config"].__setitem__("heads", [1, 2, 5])),
        "{p} has a bad config: heads=1,2,5 has 3 value(s) but dims has 4 stage(s); give one value per stage",
    ),
    "bad budget": (
        _with(lambda d: d.__setitem__("budgets", {"max_macs": 0})),
        "{p} is malformed: budgets.max_macs=0 must be a positive integer",
    ),
}


def _contents(path: pathlib.Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def _invalid_file(case: str, directory: pathlib.Path) -> tuple[pathlib.Path, str]:
    """The file of an INVALID case, and its expected one-line reason."""
    make, message = INVALID[case]
    path = directory / "snap.json"
    if make is not None:
        make(path)
    return path, message.format(p=path)


@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_snapshot_is_exit_2_with_one_line_and_left_alone(case: str, tmp_path: pathlib.Path) -> None:
    path, message = _invalid_file(case, tmp_path)
    before = _contents(path)
    code, out, err = invoke("snapshot", "check", str(path))
    assert (code, out, err) == (2, "", f"error: {message}\n")
    assert _contents(path) == before


@pytest.mark.parametrize(
    "case", ["missing", "empty", "truncated", "truncated in a label", "not JSON", "newer", "a trace", "bad config"]
)
def test_update_never_overwrites_a_file_it_cannot_rebuild(case: str, tmp_path: pathlib.Path) -> None:
    path, message = _invalid_file(case, tmp_path)
    before = _contents(path)
    code, _, err = invoke("snapshot", "check", "--update", str(path))
    assert (code, err) == (2, f"error: {message}; --update leaves it alone (no config this version can rebuild)\n")
    assert _contents(path) == before


def test_update_repairs_a_file_whose_config_is_readable(tmp_path: pathlib.Path) -> None:
    path, _ = _invalid_file("malformed op", tmp_path)
    code, out, _ = invoke("snapshot", "check", "--update", str(path))
    assert (
        code == 0
        and out == f"updated {path}: b0 (PVT v2, cls) @ 224x224, batch 1, float32 (convention macs, device meta)\n"
    )
    assert path.read_bytes() == (SNAPSHOTS / "b0-224-cls.json").read_bytes()


def test_update_rewrites_a_mismatch_then_it_passes(tmp_path: pathlib.Path) -> None:
    copy = _copy("tiny-224-cls", tmp_path)
    _edit(copy, lambda d: d["config"].__setitem__("sr_ratios", [4, 4, 2, 1]))
    code, out, _ = invoke("snapshot", "check", "--update", str(copy))
    assert code == 0 and out.startswith(f"updated {copy}: tiny") and "stage 1 kv tokens 49 -> 196 (x4)" in out
    assert load_snapshot(str(copy)).stages[0].kv_tokens == 196
    ok = f"ok {copy}: tiny (PVT v1, cls) @ 224x224, batch 1, float32 (convention macs, device meta)\n"
    assert invoke("snapshot", "check", str(copy)) == (0, ok, "")


def test_a_directory_is_checked_file_by_file_and_the_worst_code_wins(tmp_path: pathlib.Path) -> None:
    _copy("b0-224-cls", tmp_path)
    stale = _copy("b1-224-cls", tmp_path)
    _edit(stale, lambda d: d["config"].__setitem__("depths", [2, 2, 2, 1]))
    (tmp_path / "zz.json").write_text("")
    (tmp_path / ".hidden.json.tmp").write_text("ignored")
    code, out, err = invoke("snapshot", "check", str(tmp_path))
    assert code == 2
    described = "b0 (PVT v2, cls) @ 224x224, batch 1, float32 (convention macs, device meta)"
    assert out.splitlines()[0] == f"ok {tmp_path / 'b0-224-cls.json'}: {described}"
    assert f"FAIL {stale}" in out and "  stage 4: 6 figure(s), 32 op(s) differ" in out
    assert "  0 op(s) changed, 0 added, 32 removed; 11 figure(s) differ (stored -> current)" in out
    assert '    stage 4, block 1, attn: matmul "scores q@k^T" removed (output [1,8,49,49], MACs 1.2 M)' in out
    assert out.splitlines()[-1] == "3 snapshot(s): 1 ok, 1 failed, 1 invalid"
    assert err == f"error: {tmp_path / 'zz.json'} is empty\n"
    empty = tmp_path / "none"
    empty.mkdir()
    code, _, err = invoke("snapshot", "check", str(empty))
    assert (code, err) == (2, f"error: {empty} is a directory with no snapshot files (*.json)\n")


# ---------------------------------------------------------------------------------- write
def test_write_creates_then_leaves_an_unchanged_snapshot_untouched(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "deep" / "b0.json"
    code, out, _ = invoke("snapshot", "write", str(path), "--variant", "b0")
    assert code == 0
    assert out == f"wrote {path}: b0 (PVT v2, cls) @ 224x224, batch 1, float32; 323 ops, MACs 566.07 M, params 3.67 M\n"
    assert path.read_bytes() == (SNAPSHOTS / "b0-224-cls.json").read_bytes()
    stamp = path.stat().st_mtime_ns, path.stat().st_ino
    code, out, _ = invoke("snapshot", "write", str(path), "--variant", "b0")
    assert code == 0 and out.startswith(f"unchanged {path}: b0")
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == stamp
    assert not [p for p in path.parent.iterdir() if p.name != "b0.json"]


def test_write_refuses_to_overwrite_what_is_not_a_snapshot(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "notes.json"
    path.write_text('{"mine": true}\n')
    code, out, err = invoke("snapshot", "write", str(path), "--variant", "b0")
    assert (code, out) == (2, "")
    assert err == (
        f"error: {path} has no schema field; it is not a pvttrace snapshot; refusing to overwrite it (pass --force)\n"
    )
    assert path.read_text() == '{"mine": true}\n'
    assert invoke("snapshot", "write", str(path), "--variant", "b0", "--force")[0] == 0
    assert load_snapshot(str(path)).config == VARIANTS["b0"]


# ---------------------------------------------------------------------------------- budgets
def test_budgets_stored_by_write_are_enforced_and_kept(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "tiny.json"
    code, _, err = invoke("snapshot", "write", str(path), "--max-params", "10M", "--max-attention-map", "1MiB")
    assert code == 0
    assert err == (
        "warning: budget: params 13.23 M (13,229,288) over the limit 10 M (the snapshot); "
        "the snapshot is written, but checks will fail\n"
    )
    assert load_snapshot(str(path)).budgets == Budgets(max_params=10_000_000, max_attention_map=2**20)
    code, out, _ = invoke("snapshot", "check", str(path))
    assert code == 1
    assert out == (
        f"FAIL {path}: tiny (PVT v1, cls) @ 224x224, batch 1, float32 (convention macs, device meta)\n"
        "  budget: params 13.23 M (13,229,288) over the limit 10 M (the snapshot)\n"
    )
    assert invoke("snapshot", "check", str(path), "--max-params", "14M")[0] == 0  # the command line overrides
    invoke("snapshot", "write", str(path))  # no budget options: the stored ones stay
    assert load_snapshot(str(path)).budgets.max_params == 10_000_000


def test_command_line_budgets(tmp_path: pathlib.Path) -> None:
    path = _copy("b2-800x1333-backbone", tmp_path)
    code, out, _ = invoke("snapshot", "check", str(path), "--max-macs", "100G", "--max-attention-map", "64MiB")
    assert code == 1
    assert out.splitlines()[1:] == [
        "  budget: MACs 147.09 G (147,086,003,200) over the limit 100 G (--max-macs)",
        "  budget: largest attention map 261.19 MiB (273,880,000) in stage 1 over the limit 64 MiB "
        "(--max-attention-map)",
    ]
    assert invoke("snapshot", "check", str(path), "--max-macs", "150G", "--max-params", "30M")[0] == 0
    code, _, err = invoke("snapshot", "check", str(path), "--max-params", "lots")
    assert code == 2
    assert err == "error: max_params='lots' must be a number with an optional K/M/G/T/P/E suffix, e.g. 2G\n"


# ---------------------------------------------------------------------------------- atomic writes and crashes
def test_a_failed_rename_leaves_the_old_file_and_no_temporary(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _copy("tiny-224-cls", tmp_path)
    _edit(path, lambda d: d["config"].__setitem__("sr_ratios", [4, 4, 2, 1]))
    before = path.read_bytes()

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    code, _, err = invoke("snapshot", "check", "--update", str(path))
    assert code == 2 and err == f"error: cannot write {path}: No space left on device\n"
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_kill_during_write_leaves_the_old_file_intact(tmp_path: pathlib.Path) -> None:
    path = _copy("tiny-224-cls", tmp_path)
    before = path.read_bytes()
    # The child stops for good between writing the temporary file and renaming it; then it is SIGKILLed.
    child = (
        "import os, sys, time\n"
        "def stop(src, dst):\n"
        "    print('ready', src, flush=True)\n"
        "    time.sleep(300)\n"
        "os.replace = stop\n"
        "from pvttrace.cli import app\n"
        f"app(['snapshot', 'write', {str(path)!r}, '--variant', 'b0', '--force'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("ready "), line
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        if process.stdout:
            process.stdout.close()
    assert path.read_bytes() == before
    temporary = pathlib.Path(line.split(" ", 1)[1].strip())
    assert temporary.parent == tmp_path and temporary.name.startswith(".tiny-224-cls.json.")
    assert load_snapshot(str(temporary)).config == VARIANTS["b0"]  # complete, just never renamed
    assert invoke("snapshot", "check", str(tmp_path))[1].startswith(f"ok {path}")  # stray temp file ignored


def test_readers_never_see_a_partial_file_while_writers_replace_it(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "snap.json"
    texts = [(SNAPSHOTS / name).read_text() for name in ("b0-224-cls.json", "b5-224-cls.json")]
    write_text_atomic(str(path), texts[0])
    seen: set[int] = set()
    errors: list[str] = []
    done = threading.Event()

    def write(offset: int) -> None:
        for i in range(40):
            write_text_atomic(str(path), texts[(i + offset) % 2])

    def read() -> None:
        while not done.is_set():
            text = path.read_text()
            if text not in texts:
                errors.append(f"partial read of {len(text)} chars")
            seen.add(texts.index(text) if text in texts else -1)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()
    assert errors == []
    assert seen == {0, 1}
    assert [p.name for p in tmp_path.iterdir()] == ["snap.json"]


def test_concurrent_checks_and_updates_of_the_same_files(tmp_path: pathlib.Path) -> None:
    good = _copy("b0-224-cls", tmp_path)
    stale = tmp_path / "stale.json"
    shutil.copyfile(good, stale)
    _edit(stale, lambda d: d["ops"][0].__setitem__("output", [1, 32, 1, 1]))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    commands = [
        ["snapshot", "check", "--update", str(stale)],
        ["snapshot", "check", "--update", str(stale)],
        ["snapshot", "check", str(good)],
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "pvttrace", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args in commands
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    for code, out, err in results:
        assert code == 0 and err == "", (out, err)
    assert results[2][1] == f"ok {good}: b0 (PVT v2, cls) @ 224x224, batch 1, float32 (convention macs, device meta)\n"
    assert all(r[1].startswith((f"updated {stale}", f"ok {stale}")) for r in results[:2])
    assert stale.read_bytes() == good.read_bytes() == (SNAPSHOTS / "b0-224-cls.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b0-224-cls.json", "stale.json"]


# ---------------------------------------------------------------------------------- cost: one trace per file
def test_check_costs_one_trace_per_snapshot(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pvttrace.tracing.recorder

    calls: list[PvtConfig] = []
    real = pvttrace.tracing.recorder.trace_config

    def counting(cfg: PvtConfig, **kwargs: str) -> Trace:
        calls.append(cfg)
        return real(cfg, **kwargs)

    monkeypatch.setattr(pvttrace.tracing.recorder, "trace_config", counting)
    good = _copy("b0-224-cls", tmp_path)
    assert invoke("snapshot", "check", str(good))[0] == 0
    assert calls == [VARIANTS["b0"]]
    stale = _copy("b1-224-cls", tmp_path)
    _edit(stale, lambda d: d["ops"][0].__setitem__("macs", 1))
    calls.clear()
    assert invoke("snapshot", "check", "--update", str(stale))[0] == 0  # compare and rewrite: still one trace
    assert calls == [VARIANTS["b1"]]
    calls.clear()
    assert invoke("snapshot", "check", str(tmp_path))[0] == 0
    assert calls == [VARIANTS["b0"], VARIANTS["b1"]]


# ---------------------------------------------------------------------------------- layering
def test_snapshot_modules_import_nothing_heavy_and_help_skips_torch() -> None:
    probe = (
        "import sys\n"
        "import pvttrace.snapshot, pvttrace.snapshot.report, pvttrace.pytest_plugin\n"
        "print(sorted(m for m in ('torch', 'rich', 'typer') if m in sys.modules))\n"
        "from pvttrace.cli import app\n"
        "helps = (['snapshot'], ['snapshot', '--help'], ['snapshot', 'write', '--help'], ['snapshot', 'check', '-h'])\n"
        "for args in helps:\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, (args, exit.code)\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "[]" and lines[-1] == "False"


def test_the_github_actions_example_runs_snapshot_check() -> None:
    text = (ROOT / "examples" / "github-actions-snapshot.yml").read_text()
    assert "        run: pvttrace snapshot check tests/snapshots/ --max-attention-map 512MiB\n" in text
    import yaml  # type: ignore[import-untyped]  # the test extra installs it (tests/test_examples.py runs the steps)

    workflow = yaml.safe_load(text)
    steps = workflow["jobs"]["snapshots"]["steps"]
    assert [s["run"] for s in steps if "snapshot check" in s.get("run", "")] == [
        "pvttrace snapshot check tests/snapshots/ --max-attention-map 512MiB"
    ]


# ---------------------------------------------------------------------------------- convention, dtype, device
def test_snapshots_record_and_compare_convention_dtype_and_device(tiny_trace: Trace) -> None:
    snapshot = snapshot_from_trace(tiny_trace)
    document = snapshot.to_dict()
    assert (document["convention"], document["dtype"], document["device"]) == (CONVENTIONS["macs"], "float32", "meta")
    # A file written before dtype and device were stored reads as what it was: the config's dtype, on meta.
    del document["dtype"], document["device"]
    older = Snapshot.from_dict(document)
    assert older.provenance == Provenance("macs", "float32", "meta") and older == snapshot
    other = dataclasses.replace(snapshot, convention="fvcore", device="cpu")
    assert loads_snapshot(dumps_snapshot(other)).provenance == Provenance("fvcore", "float32", "cpu")
    report = compare_snapshots(other, snapshot)
    assert [(c.scope, c.name, c.stored, c.current) for c in report.figure_changes] == [
        ("config", "convention", "fvcore", "macs"),
        ("config", "device", "cpu", "meta"),
    ]
    assert (report.stored_provenance, report.current_provenance) == (other.provenance, snapshot.provenance)
    assert report_lines(report)[:3] == [
        "  config:",
        "    config convention fvcore -> macs",
        "    config device cpu -> meta",
    ]


def test_a_model_snapshot_states_its_dtype_in_the_check_line(tmp_path: pathlib.Path, tiny_trace: Trace) -> None:
    traced = dataclasses.replace(tiny_trace, config=None, model="pkg.mod:net", dtype="bfloat16")
    path = tmp_path / "net.json"
    write_snapshot(str(path), snapshot_from_trace(traced))
    result = check_snapshot_file(str(path), trace=lambda cfg: tiny_trace, trace_model=lambda model, shape: traced)
    assert result_lines(result) == [
        f"ok {path}: pkg.mod:net, input [1, 3, 224, 224] (convention macs, bfloat16 on meta)"
    ]


def test_well_formed_ops_are_read_in_one_pass_as_the_field_by_field_reader_reads_them() -> None:
    """Stored ops exactly as pvttrace writes them skip the field-by-field reader; both give the same op,
    and anything else (a wrong type, an extra or missing field) still goes to the reader that explains."""
    import types

    from pvttrace.base.errors import TraceFileError
    from pvttrace.snapshot.data import SnapshotOp, _well_formed_op

    ops = json.loads((pathlib.Path(__file__).parent / "snapshots" / "b2-li-224-cls.json").read_text())["ops"]
    for i, op in enumerate(ops):
        fast = _well_formed_op(op)
        assert fast is not None
        assert fast == SnapshotOp.from_dict(types.MappingProxyType(op), f"ops[{i}]")  # not a dict: field by field
    op = ops[0]
    for odd in (
        {**op, "macs": 1.0},
        {**op, "view": 0},
        {**op, "stage": True},
        {**op, "extra": 1},
        {**op, "output": [1, "2"]},
    ):
        assert _well_formed_op(odd) is None
    assert _well_formed_op({k: v for k, v in op.items() if k != "label"}) is None
    with pytest.raises(TraceFileError, match=r"ops\[0\]\.macs=1\.0 must be an integer"):
        SnapshotOp.from_dict({**op, "macs": 1.0}, "ops[0]")
