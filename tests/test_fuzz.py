"""Fuzzing in the regular suite (issue 9): bounded runs of the CLI and file fuzzers, and their corpus.

The fuzzers live in tests/fuzz/ (see its package docstring); ``python benchmarks/fuzz.py --cli 10000
--files 10000`` runs the full campaigns that docs/reliability.md reports. Here each fuzzer runs
``PVTTRACE_FUZZ_EXAMPLES`` cases (default 200), derandomized, so CI repeats the same cases; a failure is
shrunk by hypothesis and printed with the command line that reproduces it.

The corpus holds the inputs that once failed (a traceback, a silent empty output, a crash in torch),
each a regular test with its exact expected result: command lines in ``CLI_CORPUS``, damaged files in
tests/fuzz_corpus/ with their results in ``FILE_CORPUS``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz.cli_strategies import CommandSpec, ParamSpec, command_lines, command_specs, environments, values_for
from fuzz.file_strategies import FUZZED, file_commands, fuzzed_files
from fuzz.harness import Sandbox, describe_failure, run_case
from hypothesis import HealthCheck, given, settings

EXAMPLES = int(os.environ.get("PVTTRACE_FUZZ_EXAMPLES", "200"))
BOUNDED = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
CORPUS = Path(__file__).parent / "fuzz_corpus"
PAST_FLOAT = "1" + "0" * 400  # an int of 401 digits: Python parses it, a float cannot hold it


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield Sandbox(tmp_path_factory.mktemp("fuzz"))


def test_fuzzed_command_lines_keep_the_invariants(sandbox: Sandbox) -> None:
    ran: list[int] = []

    @BOUNDED
    @given(command_lines(), environments)
    def case(args: list[str], env: dict[str, str]) -> None:
        outcome, problems = run_case(sandbox, args, env=env)
        ran.append(outcome.exit_code)
        assert not problems, describe_failure(outcome, problems)

    case()
    assert len(ran) >= EXAMPLES and {0, 2} <= set(ran)


def test_fuzzed_snapshot_and_trace_files_keep_the_invariants(sandbox: Sandbox) -> None:
    ran: list[int] = []

    @BOUNDED
    @given(file_commands(), fuzzed_files())
    def case(args: list[str], data: bytes) -> None:
        sandbox.write(FUZZED, data)
        outcome, problems = run_case(sandbox, args)
        ran.append(outcome.exit_code)
        assert not problems, describe_failure(outcome, problems)

    case()
    assert len(ran) >= EXAMPLES and {0, 1, 2} <= set(ran)


def test_the_cli_fuzzer_reads_every_command_and_option_from_the_app() -> None:
    specs = {spec.path: spec for spec in command_specs()}
    assert {
        (),
        ("run",),
        ("diff",),
        ("sweep",),
        ("variants",),
        ("snapshot",),
        ("snapshot", "write"),
        ("snapshot", "check"),
    } <= set(specs)
    run = {p.name: p for p in specs[("run",)].params}
    assert run["width"].flags == ("--width",) and run["width"].value_type is int
    assert run["qkv_bias"].negations == ("--no-qkv-bias",) and run["qkv_bias"].is_flag
    assert run["stage"].multiple and run["device"].value_type.__name__ == "Device"
    check = {p.name: p for p in specs[("snapshot", "check")].params}
    assert check["paths"].is_argument and check["paths"].multiple and check["rtol"].value_type is float


def test_an_option_without_a_hint_is_fuzzed_by_its_type() -> None:
    # What a future option (say ``fit --memory-budget``) gets before anyone writes a hint for it.
    new = ParamSpec("memory_budget", ("--memory-budget",), (), False, False, False, False, int)
    command = CommandSpec(("fit",), (new,))
    seen: set[str] = set()

    @settings(max_examples=60, derandomize=True, database=None)
    @given(values_for(new, command))
    def collect(value: str) -> None:
        assert isinstance(value, str)
        seen.add(value)

    collect()
    assert {"1", "2", "3", "4"} & seen and len(seen) > 10


def test_the_fuzzer_never_asks_for_a_real_device() -> None:
    run = next(spec for spec in command_specs() if spec.path == ("run",))
    device = next(p for p in run.params if p.name == "device")
    seen: set[str] = set()

    @settings(max_examples=100, derandomize=True, database=None)
    @given(values_for(device, run))
    def collect(value: str) -> None:
        seen.add(value)

    collect()
    assert "meta" in seen and not {"cpu", "CPU"} & seen


# ---------------------------------------------------------------------------------- corpus
#: (what once broke, arguments, environment, exit code, exact stderr or None) -- each runs in the sandbox.
CLI_CORPUS: list[tuple[str, list[str], dict[str, str], int, str | None]] = [
    (
        "RuntimeError traceback from torch (Storage size calculation overflowed) while building the model",
        ["run", "-v", "b0", "--dims", "4294967296,64,160,256", "--heads", "1,1,1,1"],
        {},
        2,
        "error: the stage 1 SR conv weight [4294967296, 4294967296, 8, 8] would take 4.72e21 B (float32) with "
        "img=224x224, batch=1, dims=4294967296,64,160,256; torch cannot create a tensor of 2**63 bytes (8 EiB) or "
        "more, not even on the meta device\n",
    ),
    (
        "RuntimeError traceback from torch.empty of the input batch",
        ["run", "-v", "b0", "--img", "4000000000"],
        {},
        2,
        "error: the stage 1 attention score map [1, 1, 1000000000000000000, 15625000000000000] would take 6.25e34 B "
        "(float32) with img=4000000000x4000000000, batch=1, dims=32,64,160,256; torch cannot create a tensor of "
        "2**63 bytes (8 EiB) or more, not even on the meta device (attention=sdpa never materialises the map)\n",
    ),
    (
        "RuntimeError traceback (Overflow when unpacking long) for a batch past int64",
        ["run", "-v", "b0", "--batch", "100000000000000000000"],
        {},
        2,
        "error: batch=100000000000000000000 is larger than torch's largest size, 2**63 - 1 = 9223372036854775807\n",
    ),
    (
        "OverflowError traceback in config validation (int of an infinite MLP width)",
        ["run", "-v", "b0", "--mlp-ratios", "1e308,8,4,4"],
        {},
        2,
        "error: mlp_ratios[0]=1e+308 makes an MLP hidden width of inf for dims[0]=32, larger than torch's largest "
        "size, 2**63 - 1\n",
    ),
    (
        "ValueError traceback parsing a size of more than 4300 digits",
        ["run", "--img", "1" * 5000],
        {},
        2,
        "error: img='1111111111111111111111111111111111111111'... has too many digits to be a size\n",
    ),
    (
        "OverflowError traceback parsing a budget of more than 308 digits",
        ["snapshot", "check", "good.json", "--max-macs", "1" + "0" * 400],
        {},
        2,
        "error: max_macs='1000000000000000000000000000000000000000'... is too large to be a number\n",
    ),
    (
        "OverflowError traceback printing a stage list that holds an int beyond a float",
        ["run", "-v", "b0", "--dims", f"0,{PAST_FLOAT},1,1"],
        {},
        2,
        f"error: dims=0,{PAST_FLOAT},1,1 must hold positive values\n",
    ),
    (
        "a torch reshape error in the middle of the forward instead of up-front validation",
        ["run", "-v", "tiny", "--pos-size", "1"],
        {},
        2,
        "error: pos_size=1x1 is too small for the pyramid: stage 1's positional table would have a 0x0 grid after "
        "the patch strides\n",
    ),
    (
        "exit 0 with no output at all (rich prints nothing at width 0)",
        ["run", "--width", "0"],
        {},
        2,
        "error: Invalid value for '--width': width=0 must be from 20 to 1000 columns\n",
    ),
    (
        "MemoryError traceback (rich pads every line to the width)",
        ["sweep", "--width", "99999999999999"],
        {},
        2,
        "error: Invalid value for '--width': width=99999999999999 must be from 20 to 1000 columns\n",
    ),
    (
        "ValueError traceback for COLUMNS that is not a number (every table command)",
        ["variants"],
        {"COLUMNS": "abc"},
        0,
        "",
    ),
    (
        "UnicodeEncodeError traceback echoing a non-UTF-8 file name (argv bytes arrive as lone surrogates)",
        ["snapshot", "write", "\udcff.json", "-v", "b0", "--depths", "1,1,1,1", "--img", "32"],
        {},
        0,
        "",
    ),
    (
        "RuntimeError traceback: torchinfo made the --modules input with torch.rand on the CPU (120 GB here)",
        ["run", "--modules", "-v", "b0", "--img", "99996"],
        {},
        0,
        None,
    ),
    (
        "a million-block model built until memory ran out (a typo in --depths)",
        ["run", "-v", "b0", "--depths", "5000,1,1,1"],
        {},
        2,
        "error: depths=5000,1,1,1 add up to 5003 blocks; pvttrace builds at most 4096 (64 stages of 64), since each "
        "block costs about 140 KiB and 3 ms to trace\n",
    ),
    (
        "the fuzz harness, not pvttrace: it missed that click runs 'snapshot -- write' as 'snapshot write'",
        ["snapshot", "--", "write", "stale.json", "-v", "b0", "--depths", "1,1,1,1", "--img", "32"],
        {},
        0,
        "",
    ),
    (
        "'error:  does not exist' (an empty path named nothing)",
        ["snapshot", "check", ""],
        {},
        2,
        "error: path='' is empty; give a snapshot file or a directory\n",
    ),
]


@pytest.mark.parametrize(("what", "args", "env", "code", "stderr"), CLI_CORPUS, ids=[c[0][:60] for c in CLI_CORPUS])
def test_cli_corpus(
    sandbox: Sandbox, what: str, args: list[str], env: dict[str, str], code: int, stderr: str | None
) -> None:
    outcome, problems = run_case(sandbox, args, env=env)
    assert not problems, describe_failure(outcome, problems)
    assert outcome.exit_code == code
    if stderr is not None:
        assert outcome.stderr == stderr


def test_a_device_that_cannot_hold_the_model_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Once a RuntimeError traceback (--device cpu with an input too large for the machine). Simulated: a real
    # attempt would allocate whatever the machine has.
    import pvttrace.tracing.recorder

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 120000000000 bytes.")

    monkeypatch.setattr(pvttrace.tracing.recorder, "build_model", out_of_memory)
    from pvttrace.base.errors import TraceError
    from pvttrace.config import get_variant

    with pytest.raises(TraceError) as error:
        pvttrace.tracing.recorder.trace_config(get_variant("b0"), device="cpu")
    assert str(error.value) == (
        "cannot build the model and its input on cpu: RuntimeError: DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 120000000000 bytes."
    )


def test_a_non_utf8_file_name_is_echoed_as_an_escape(sandbox: Sandbox) -> None:
    args = ["snapshot", "write", "\udcff.json", "-v", "b0", "--depths", "1,1,1,1", "--img", "32"]
    outcome, _ = run_case(sandbox, args)
    assert outcome.stdout.startswith("wrote \\udcff.json: b0 (PVT v2, cls) @ 32x32")


#: (corpus file, the command that once failed on it with FILE as {path}, its exit code, its exact stderr).
FILE_CORPUS: list[tuple[str, list[str], int, str]] = [
    # ValueError traceback from json.loads (Python refuses to read integers of more than 4300 digits).
    (
        "number-of-5001-digits.json",
        ["snapshot", "check", "{path}"],
        2,
        "error: {path} is not valid JSON (it holds a number of more than 4300 digits)\n",
    ),
    # RecursionError traceback under --update, which re-read the file to recover its config.
    (
        "nested-5000-deep.json",
        ["snapshot", "check", "{path}", "--update"],
        2,
        "error: {path} is not valid JSON (nested too deeply); --update leaves it alone (no config this version can "
        "rebuild)\n",
    ),
    # IndexError traceback printing the stage grid "HxW" in the check report (and in diff's summary).
    (
        "stage-hw-with-one-value.json",
        ["snapshot", "check", "{path}", "--rtol", "0.5"],
        2,
        "error: {path} is malformed: stage hw=[4] must have 2 values\n",
    ),
    # OverflowError traceback converting Infinity to an int in PvtConfig.from_dict.
    (
        "config-batch-infinity.json",
        ["snapshot", "check", "{path}"],
        2,
        "error: {path} has a bad config: config has a value of the wrong type: batch=inf must be an integer\n",
    ),
    # OverflowError traceback in diff, which read the totals with int().
    (
        "totals-params-infinity.json",
        ["diff", "trace-one-stage.json", "{path}", "--ops"],
        0,
        "warning: {path}: snapshot has no readable stages/totals; traced its config again\n",
    ),
    # RuntimeError traceback from torch while re-tracing the stored config.
    (
        "config-dims-past-int64-bytes.json",
        ["snapshot", "check", "{path}"],
        2,
        "error: {path} has a bad config: the stage 1 MLP weight [8589934592, 4294967296] would take 128 EiB "
        "(float32) with img=16x12, batch=1, dims=4294967296; torch cannot create a tensor of 2**63 bytes (8 EiB) "
        "or more, not even on the meta device\n",
    ),
    # OverflowError traceback in config validation while re-tracing.
    (
        "config-mlp-ratio-1e308.json",
        ["snapshot", "check", "{path}"],
        2,
        "error: {path} has a bad config: mlp_ratios[0]=1e+308 makes an MLP hidden width of inf for dims[0]=8, "
        "larger than torch's largest size, 2**63 - 1\n",
    ),
    # OverflowError traceback (integer division result too large for a float) in diff's ratios and in
    # format_bytes, for a stored count of 401 digits; and in snapshot check's rtol comparison (rtol * count).
    ("totals-macs-of-401-digits.json", ["diff", "one-stage.json", "{path}", "-f", "markdown", "--ops"], 0, ""),
    ("totals-macs-of-401-digits.json", ["snapshot", "check", "{path}", "--rtol", "1e-9"], 1, ""),
    # OverflowError traceback turning the stored stage MACs into floats for the plot.
    (
        "stage-macs-of-401-digits.json",
        ["diff", "one-stage.json", "{path}", "--plot", "plot.svg"],
        2,
        "error: cannot plot macs: a value is too large for a float\n",
    ),
    # OverflowError traceback (float() of a 401-digit int) in PvtConfig.from_dict.
    (
        "config-mlp-ratio-of-401-digits.json",
        ["snapshot", "check", "{path}"],
        2,
        f"error: {{path}} has a bad config: config has a value of the wrong type: mlp_ratios=[{PAST_FLOAT}] holds a "
        "number too large for a float\n",
    ),
    # OverflowError traceback (int() of Infinity) reading an op's index from a trace file; found by the campaign on
    # the merged code (issue 9 re-run, seed 11).
    (
        "trace-op-index-infinity.json",
        ["diff", "trace-one-stage.json", "{path}", "--ops"],
        2,
        "error: {path}: malformed trace content (ops[0].index=inf must be an integer)\n",
    ),
    # UnicodeEncodeError traceback under --update: a "\\ud800" escape in the stored config, written back as text.
    (
        "config-variant-lone-surrogate.json",
        ["snapshot", "check", "{path}", "--update"],
        2,
        "error: cannot write {path}: the text is not valid Unicode (surrogates not allowed)\n",
    ),
]


def test_every_corpus_file_has_an_expected_result() -> None:
    assert sorted({entry[0] for entry in FILE_CORPUS}) == sorted(p.name for p in CORPUS.glob("*.json"))


@pytest.mark.parametrize(
    ("name", "failed", "code", "stderr"), FILE_CORPUS, ids=[f"{e[0]} {e[1][0]}" for e in FILE_CORPUS]
)
def test_file_corpus(sandbox: Sandbox, name: str, failed: list[str], code: int, stderr: str) -> None:
    data = (CORPUS / name).read_bytes()
    once_failed = [arg.format(path=FUZZED) for arg in failed]
    for args in (
        once_failed,
        ["snapshot", "check", FUZZED],
        ["snapshot", "check", FUZZED, "--update"],
        ["diff", FUZZED, "one-stage.json", "-f", "json"],
        ["diff", "trace-one-stage.json", FUZZED, "--ops"],
    ):
        sandbox.write(FUZZED, data)
        outcome, problems = run_case(sandbox, args)
        assert not problems, describe_failure(outcome, problems)
        if args == once_failed:
            assert (outcome.exit_code, outcome.stderr) == (code, stderr.format(path=FUZZED))
