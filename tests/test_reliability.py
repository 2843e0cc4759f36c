"""Issue 18: reliability under hostile files, hostile models, threads and kills.

docs/reliability.md lists each item."""

from __future__ import annotations

import difflib
import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import torch
from helpers import invoke

from pvttrace import snapshot
from pvttrace.base import jsonio as files
from pvttrace.base.errors import TraceFileError, UserInputError
from pvttrace.cli import guard as cli_guard
from pvttrace.cli.parsing import parse_model_spec
from pvttrace.config import get_variant
from pvttrace.snapshot import compare as snapshot_compare
from pvttrace.snapshot import (
    compare_snapshots,
    load_snapshot,
    loads_snapshot,
    snapshot_from_trace,
    write_text_atomic,
)
from pvttrace.tracing.recorder import trace_config, trace_model
from pvttrace.tracing.target import trace_target

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def model_snapshot(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "linear.json"
    code, _, err = invoke("snapshot", "write", str(path), "--model", "hostile_zoo:linear", "--input-shape", "2,8")
    assert code == 0, err
    return path


# ------------------------------------------------------------------------------ security and silent success
def test_a_snapshot_check_never_imports_a_model_unless_allowed(
    tmp_path: pathlib.Path, model_snapshot: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    document = json.loads(model_snapshot.read_text())
    document["model"] = "hostile_zoo:marks_the_working_directory"
    marked = tmp_path / "marked.json"
    marked.write_text(json.dumps(document))
    document["model"] = "sys:exit"
    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps(document))
    code, out, err = invoke("snapshot", "check", str(evil), str(marked), str(model_snapshot))
    assert code == 2
    assert not (tmp_path / "hostile_zoo_marker.txt").exists()
    assert (
        f"error: {evil} names model 'sys:exit', which would import and run Python code from the working directory; "
        "allow it with --allow-model sys:exit (or --allow-model-import for every model)\n" in err
    )
    assert out.endswith("3 snapshot(s): 0 ok, 0 failed, 3 invalid\n")
    # sys:exit allowed: an error naming the model, never a silent exit 0; the files after it are still checked.
    code, out, err = invoke("snapshot", "check", str(evil), str(model_snapshot), "--allow-model-import")
    assert code == 2 and f"error: {evil}: model sys:exit: the factory called sys.exit(None)\n" in err
    assert out == (
        f"ok {model_snapshot}: hostile_zoo:linear, input [2, 8] (convention macs, float32 on meta)\n"
        "2 snapshot(s): 1 ok, 0 failed, 1 invalid\n"
    )
    code, out, _ = invoke("snapshot", "check", str(model_snapshot), "--allow-model", "hostile_zoo:linear")
    assert code == 0 and out.startswith("ok ")


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("exits_in_factory", "error: model hostile_zoo:exits_in_factory: the factory called sys.exit(0)\n"),
        (
            "exits_in_forward",
            "error: model hostile_zoo:exits_in_forward: the forward called sys.exit(0) in the model\n",
        ),
    ],
)
def test_user_code_that_exits_is_an_error_naming_the_model(factory: str, message: str) -> None:
    assert invoke("run", "--model", f"hostile_zoo:{factory}", "--input-shape", "2,8") == (2, "", message)


def test_ctrl_c_is_one_line() -> None:
    code, out, err = invoke("run", "--model", "hostile_zoo:interrupts", "--input-shape", "2,8")
    assert (code, out, err) == (130, "", "error: interrupted\n")


def test_concurrent_traces_give_the_serial_per_stage_macs() -> None:
    config = get_variant("tiny")
    serial = trace_config(config)
    expected = [(s.attention_macs, s.sr_macs, s.projection_macs, s.mlp_macs, s.other_macs) for s in serial.stages]
    labels = [op.label for op in serial.ops]
    results: list[object] = [None] * 4

    def work(i: int) -> None:
        results[i] = trace_config(config)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for trace in results:
        assert trace is not None
        got = [(s.attention_macs, s.sr_macs, s.projection_macs, s.mlp_macs, s.other_macs) for s in trace.stages]  # type: ignore[attr-defined]
        assert got == expected
        assert [op.label for op in trace.ops] == labels  # type: ignore[attr-defined]
        assert [op.stage for op in trace.ops] == [op.stage for op in serial.ops]  # type: ignore[attr-defined]


def test_model_output_never_reaches_the_json_report() -> None:
    code, out, err = invoke("run", "--model", "hostile_zoo:prints", "--input-shape", "2,8", "-f", "json")
    assert code == 0
    assert json.loads(out)["totals"]["macs"] == 64
    assert err == "hello from the factory\nhello from the model's forward\n"


def test_train_inside_inference_mode_is_refused() -> None:
    model = torch.nn.Linear(8, 4, device="meta")
    example = torch.empty(2, 8, device="meta")
    with (
        torch.inference_mode(),
        pytest.raises(UserInputError, match=r"train=True cannot be traced inside torch.inference_mode"),
    ):
        trace_model(model, example, train=True)
    with torch.inference_mode():
        assert trace_model(model, example).totals.macs == 64  # inference traces are fine there


# ------------------------------------------------------------------------------ wrong or flaky results
def test_the_cpu_fallback_builds_seeded_and_leaves_the_callers_generator_alone() -> None:
    spec = parse_model_spec("hostile_zoo:weight_branch", input_shape="2,8")
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    traces = [trace_target(spec) for _ in range(3)]
    assert torch.equal(torch.random.get_rng_state(), before)
    assert len({tuple(op.op for op in t.ops) for t in traces}) == 1
    torch.manual_seed(0)
    weight = torch.nn.Linear(8, 8).weight
    steps = int(weight.abs().sum().item() * 1000) % 7  # the factory's draw under seed 0
    assert sum(1 for op in traces[0].ops if op.op == "Tensor.relu") == steps


def test_a_metadata_error_is_not_a_meta_device_failure() -> None:
    code, _, err = invoke("run", "--model", "hostile_zoo:metadata_error", "--input-shape", "2,8")
    assert code == 2 and "warning" not in err and "traced on cpu" not in err
    assert err == (
        "error: model hostile_zoo:metadata_error: the forward failed at module the model: ValueError: the metadata "
        "of this model is missing\n"
    )


def _big_snapshot(ops: int) -> snapshot.Snapshot:
    base = snapshot_from_trace(trace_config(get_variant("tiny")))
    repeated = tuple(base.ops[i % len(base.ops)] for i in range(ops))
    return snapshot.Snapshot(
        config=base.config,
        input_shape=base.input_shape,
        outputs=base.outputs,
        ops=repeated,
        stages=base.stages,
        totals=base.totals,
    )


def test_equal_snapshots_compare_in_linear_time_and_alignment_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    big = _big_snapshot(16_384)

    class NoDifflib:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("difflib ran on equal sequences")

    monkeypatch.setattr(difflib, "SequenceMatcher", NoDifflib)
    assert compare_snapshots(big, big).matches
    monkeypatch.undo()
    # One op inserted in the middle: prefix and suffix match in linear time, one op added.
    ops = list(big.ops)
    extra = snapshot.SnapshotOp(**{**{f: getattr(ops[0], f) for f in ops[0].__slots__}, "module": "inserted"})  # type: ignore[attr-defined]
    changed = snapshot.Snapshot(
        **{**{f: getattr(big, f) for f in big.__slots__}, "ops": (*ops[:8000], extra, *ops[8000:])}
    )  # type: ignore[attr-defined]
    report = compare_snapshots(big, changed)
    assert [(c.status.value, c.op.module) for c in report.op_changes] == [("added", "inserted")]
    # A middle larger than the bound is reported as removed + added ops, without difflib.
    monkeypatch.setattr(snapshot_compare, "MAX_ALIGNMENT_CELLS", 3)
    monkeypatch.setattr(difflib, "SequenceMatcher", NoDifflib)
    shifted = snapshot.Snapshot(**{**{f: getattr(big, f) for f in big.__slots__}, "ops": (ops[1], ops[0], *ops[2:])})  # type: ignore[attr-defined]
    report = compare_snapshots(big, shifted)
    assert (report.count(snapshot.ChangeStatus.REMOVED), report.count(snapshot.ChangeStatus.ADDED)) == (2, 2)


# ------------------------------------------------------------------------------ files
@pytest.mark.parametrize("command", [("snapshot", "check"), ("snapshot", "check", "--update"), ("diff",)])
def test_a_fifo_is_refused_at_once(tmp_path: pathlib.Path, command: tuple[str, ...]) -> None:
    fifo = tmp_path / "snap.json"
    os.mkfifo(fifo)
    args = [*command, str(fifo)] + ([str(fifo)] if command == ("diff",) else [])
    code, out, err = invoke(*args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"error: {fifo} is a FIFO, not a regular file; pvttrace reads only regular files")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_dev_zero_and_oversized_files_are_refused(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TraceFileError, match=r"^/dev/zero is a device, not a regular file"):
        load_snapshot("/dev/zero")
    big = tmp_path / "big.json"
    big.write_text(" " * 5000 + "{}")
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 4096)
    with pytest.raises(TraceFileError, match=r"big.json is 0 MiB or more, larger than the 0 MiB pvttrace reads"):
        load_snapshot(str(big))
    assert files.MAX_FILE_BYTES == 4096  # the limit the message states comes from the same constant


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("pvttrace.snapshot/" + "9" * 5000, "has schema 'pvttrace.snapshot/99999999999999999999999999999999999999999"),
        ("pvttrace.snapshot/01", "has schema 'pvttrace.snapshot/01', not 'pvttrace.snapshot/1'"),
        ("pvttrace.snapshot/\u0661", "has schema 'pvttrace.snapshot/\u0661', not 'pvttrace.snapshot/1'"),
    ],
)
def test_odd_schema_versions_are_rejected(schema: str, message: str) -> None:
    text = json.dumps({"schema": schema})
    with pytest.raises(TraceFileError) as caught:
        loads_snapshot(text, origin="s.json")
    assert str(caught.value).startswith("s.json " + message)
    assert len(str(caught.value)) < 300


def test_duplicate_keys_are_rejected(tmp_path: pathlib.Path) -> None:
    text = (ROOT / "tests" / "snapshots" / "tiny-224-cls.json").read_text()
    hidden = text.replace('"budgets": {}', '"budgets": {"max_macs": 1}, "budgets": {}', 1)
    assert hidden != text
    with pytest.raises(
        TraceFileError, match=r"^s.json has the key 'budgets' twice in one object; JSON keeps only the last$"
    ):
        loads_snapshot(hidden, origin="s.json")


def test_update_writes_through_symlinks_and_keeps_modes(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_text_atomic(str(link), "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    old = os.umask(0o027)
    try:
        write_text_atomic(str(tmp_path / "fresh.json"), "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fresh.json").stat().st_mode) == 0o640
    os.link(target, tmp_path / "hard.json")
    with pytest.raises(TraceFileError, match=r"it has 2 hard links, and replacing it would leave the others stale"):
        write_text_atomic(str(target), "newer")
    assert (tmp_path / "hard.json").read_text() == "new"


def test_sigterm_during_the_atomic_write_leaves_no_temporary_file(tmp_path: pathlib.Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from pvttrace.base import jsonio\n"
        "real = os.fsync\n"
        "def fsync(fd):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    real(fd)\n"
        "jsonio.os.fsync = fsync\n"
        "jsonio.write_text_atomic(sys.argv[1], 'new')\n"
        "print('not reached')\n"
    )
    path = tmp_path / "snap.json"
    path.write_text("old")
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == -signal.SIGTERM and "not reached" not in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap.json"]
    assert path.read_text() == "new"


def test_strings_from_files_are_printed_without_control_characters(tmp_path: pathlib.Path) -> None:
    text = (ROOT / "tests" / "snapshots" / "tiny-224-cls.json").read_text()
    document = json.loads(text)
    document["tool_version"] = "\x1b[2J\x1b]0;owned\x07"
    document["ops"][0]["label"] = "evil\x1b[31m\u202e"
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(document))
    code, out, err = invoke("snapshot", "check", str(path), "--limit", "0")
    assert code == 1
    assert "\x1b" not in out + err and "\u202e" not in out + err and "\x07" not in out + err
    assert "\\x1b[31m\\u202e" in out
    assert load_snapshot(str(path)).tool_version == "\\x1b[2J\\x1b]0;owned\\x07"


# ------------------------------------------------------------------------------ limits
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--input-shape", "99999999999999999999"),
            "error: input_shape=99999999999999999999: "
            "99999999999999999999 is larger than torch's largest size, 2**63 - 1\n",
        ),
        (
            ("--input-shape", "9" * 5000),
            "error: input_shape='"
            + "9" * 57
            + "...' must be positive integers separated by commas, e.g. 1,3,224,224\n",
        ),
        (
            ("--img", "4000000000"),
            "error: input (batch, in_chans, img)=1,3,4000000000,4000000000 would take 166.53 EiB; "
            "torch cannot create a tensor of 2**63 bytes (8 EiB) or more, not even on the meta device\n",
        ),
        (
            ("--input-shape", ",".join(["1"] * 65)),
            "error: input_shape has 65 dimensions; torch tensors have at most 64\n",
        ),
    ],
)
def test_model_input_limits_are_one_line_errors(args: tuple[str, ...], message: str) -> None:
    assert invoke("run", "--model", "hostile_zoo:linear", *args) == (2, "", message)


def test_a_huge_snapshot_input_shape_is_one_line(tmp_path: pathlib.Path, model_snapshot: pathlib.Path) -> None:
    document = json.loads(model_snapshot.read_text())
    document["input_shape"] = [2**62, 2**62]
    model_snapshot.write_text(json.dumps(document))
    code, _, err = invoke("snapshot", "check", str(model_snapshot), "--allow-model-import")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {model_snapshot}: input_shape=4611686018427387904,4611686018427387904 would take")


def test_a_cpu_fallback_that_cannot_allocate_is_one_line() -> None:
    code, _, err = invoke("run", "--model", "hostile_zoo:weight_branch", "--input-shape", f"{2**40},8")
    assert code == 2
    assert err.splitlines()[-1].startswith(
        "error: model hostile_zoo:weight_branch: cannot allocate the input [1099511627776, 8] (torch.float32) on cpu: "
    )
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (
            "lazy",
            (
                "error: model='hostile_zoo:lazy' has uninitialised lazy parameters (0.weight, from a LazyModule); "
                "run one forward in the factory so that they get their shapes, then return the model\n"
            ),
        ),
        (
            "deep",
            (
                "error: model hostile_zoo:deep failed to build: RecursionError: it nests modules or calls too deeply "
                "for Python's recursion limit\n"
            ),
        ),
    ],
)
def test_lazy_and_deep_models_are_one_line(factory: str, message: str) -> None:
    assert invoke("run", "--model", f"hostile_zoo:{factory}", "--input-shape", "2,8") == (2, "", message)


def test_timeout_stops_a_slow_trace() -> None:
    started = time.monotonic()
    code, out, err = invoke("run", "--model", "hostile_zoo:slow", "--input-shape", "2,8", "--timeout", "0.5")
    assert (code, out, err) == (2, "", "error: tracing hostile_zoo:slow took longer than --timeout 0.5 s; stopped\n")
    assert time.monotonic() - started < 20
    assert (
        invoke("run", "--timeout", "0")[2]
        == "error: timeout=0.0 must be a positive number of seconds, at most one week\n"
    )


class _Terminal:
    """A stderr that says it is a terminal and keeps what was written."""

    def __init__(self, tty: bool) -> None:
        self.text = ""
        self.tty = tty

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty

    @property
    def encoding(self) -> str:
        return "utf-8"

    def fileno(self) -> int:
        raise OSError("no descriptor")


@pytest.mark.parametrize("tty", [True, False])
def test_a_long_trace_shows_progress_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch, tty: bool) -> None:
    terminal = _Terminal(tty)
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(cli_guard, "PROGRESS_AFTER_S", 0.05)
    with cli_guard.tracing("checking snaps/{x}[red].json"):
        time.sleep(0.6)
    assert ("checking snaps/{x}[red].json" in terminal.text) is tty


def test_the_progress_line_is_built_only_for_a_long_trace_and_counts_from_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal(True))
    built: list[Any] = []
    original = cli_guard._progress_line

    def recorded(label: str, began: float) -> Any:
        built.append(original(label, began))
        return built[-1]

    monkeypatch.setattr(cli_guard, "_progress_line", recorded)
    with cli_guard.tracing("quick"):
        pass
    assert built == []
    monkeypatch.setattr(cli_guard, "PROGRESS_AFTER_S", 0.05)
    began = time.monotonic()
    with cli_guard.tracing("slow"):
        time.sleep(0.3)
    assert len(built) == 1
    assert began <= built[0].tasks[0].start_time <= began + 0.04
