"""Extreme but valid inputs (issue 9): batch 4096, 8192x8192 images, 64 stages, 64 blocks deep, dims 4096.

On the meta device nothing is allocated, so each of these traces in about a second; the counts are
exact Python ints (checked against tests/closed_forms.py and through JSON, where they exceed 2**53),
and tables print them with E/P/T and EiB/PiB/TiB units. The limits of :mod:`pvttrace.config` (torch's
2**63-byte tensors, a budget of 4096 blocks) are checked at their exact boundary.

64 stages: PVT v2's overlapping patch embedding ceils, so stride 2 in every stage shrinks a 224 image to
a 1x1 grid by stage 9 and keeps it there. PVT v1 floors, so 64 halvings would need a 2**66-pixel side
(beyond torch's sizes); v1 takes stride 1 after stage 4 instead (``--patch 4,2,2,2,1,...``), which
keeps a 7x7 grid; stride 1 is a 1x1 conv in both versions.

Peak memory is measured in a subprocess (``resource.getrusage``), never timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from closed_forms import closed_form_macs, closed_form_params
from typer.testing import CliRunner

from pvttrace.base.errors import ConfigError
from pvttrace.cli import app
from pvttrace.cli.options import config_from_text
from pvttrace.config import MAX_BLOCKS, PvtConfig, largest_tensor, resolve_config
from pvttrace.records import Trace
from pvttrace.tracing.recorder import trace_config


def _stages(value: str, count: int) -> str:
    return ",".join([value] * count)


#: name -> config_from_text keyword arguments (the CLI options of the same names).
EXTREMES: dict[str, dict[str, object]] = {
    "b5 batch 4096 at 8192x8192": {"variant": "b5", "batch": 4096, "img": "8192"},
    "b0 dims 4096, heads 64, batch 4096 at 8192x8192": {
        "variant": "b0",
        "batch": 4096,
        "img": "8192",
        "dims": _stages("4096", 4),
        "heads": _stages("64", 4),
    },
    "v1 64 stages (stride 1 after stage 4)": {
        "variant": "tiny",
        "dims": _stages("16", 64),
        "heads": _stages("2", 64),
        "depths": _stages("1", 64),
        "mlp_ratios": _stages("2", 64),
        "sr": "8,4,2," + _stages("1", 61),
        "patch": "4,2,2,2," + _stages("1", 60),
    },
    "v2 64 stages (stride 2, ceil keeps 1x1), linear SRA": {
        "variant": "b0",
        "dims": _stages("16", 64),
        "heads": _stages("2", 64),
        "depths": _stages("1", 64),
        "mlp_ratios": _stages("2", 64),
        "sr": _stages("1", 64),
        "patch": "4," + _stages("2", 63),
        "linear_sra": True,
        "img": "224x320",
    },
    "b0 64 blocks deep in stage 1": {"variant": "b0", "depths": "64,1,1,1"},
}


def _config(name: str) -> PvtConfig:
    return config_from_text(**EXTREMES[name])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(EXTREMES))
def test_extreme_configs_trace_on_meta_with_exact_totals(name: str, trace_of: Callable[[PvtConfig], Trace]) -> None:
    cfg = _config(name)
    trace = trace_of(cfg)
    assert trace.totals.macs == closed_form_macs(cfg)
    assert trace.totals.params == closed_form_params(cfg)
    assert [s.hw for s in trace.stages] == [g.hw for g in cfg.geometry()]
    assert len(trace.stages) == cfg.num_stages


def test_64_stage_grids_follow_floor_and_ceil() -> None:
    v1 = _config("v1 64 stages (stride 1 after stage 4)").geometry()
    v2 = _config("v2 64 stages (stride 2, ceil keeps 1x1), linear SRA").geometry()
    assert [g.hw for g in v1[:5]] == [(56, 56), (28, 28), (14, 14), (7, 7), (7, 7)]
    assert {g.hw for g in v1[3:]} == {(7, 7)} and v1[-1].tokens == 50  # class token in the last stage
    assert [g.hw for g in v2[:9]] == [(56, 80), (28, 40), (14, 20), (7, 10), (4, 5), (2, 3), (1, 2), (1, 1), (1, 1)]
    assert {g.kv_tokens for g in v2} == {49}  # linear SRA pools even a 1x1 grid to 7x7 keys


def test_extreme_numbers_print_with_units(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["run", "--variant", "b5", "--batch", "4096", "--img", "8192", "--ops", "--width", "160"]
    )
    assert result.exit_code == 0, result.stderr
    for text in (
        "MACs 2.78 E (2,782,327,920,079,667,200)",
        "FLOPs 5.56 E",
        "largest activation 4 PiB",
        "[4096, 8, 65536, 65536]",
        "512 TiB",
        "434.95 P",
        "1.85 E",
        "161.63 T",
    ):
        assert text in result.stdout, text


def test_extreme_totals_survive_json_and_snapshots_exactly(runner: CliRunner, tmp_path: Path) -> None:
    args = ["--variant", "b5", "--batch", "4096", "--img", "8192"]
    result = runner.invoke(app, ["run", *args, "-f", "json"])
    totals = json.loads(result.stdout)["totals"]
    assert totals["macs"] == 2_782_327_920_079_667_200 > 2**53  # a float would have rounded it
    assert totals["flops"] == 2 * totals["macs"]
    snapshot = str(tmp_path / "b5.json")
    assert runner.invoke(app, ["snapshot", "write", snapshot, *args, "--max-macs", "3E"]).exit_code == 0
    assert runner.invoke(app, ["snapshot", "check", snapshot]).exit_code == 0
    over = runner.invoke(app, ["snapshot", "check", snapshot, "--max-macs", "2E"])
    assert over.exit_code == 1
    assert "budget: MACs 2.78 E (2,782,327,920,079,667,200) over the limit 2 E (--max-macs)" in over.stdout


def test_extreme_inputs_keep_memory_modest() -> None:
    script = (
        "import json, resource, sys\n"
        "from pvttrace.cli.options import config_from_text\n"
        "from pvttrace.tracing.recorder import trace_config\n"
        "trace_config(config_from_text(variant='tiny'))\n"
        "floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for options in json.loads(sys.argv[1]):\n"
        "    trace_config(config_from_text(**options))\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - floor) // 1024)\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(list(EXTREMES.values()))],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    rise_mib = int(done.stdout.strip())
    # The rise above a process that imported torch and traced tiny once (torch's import alone differs between its
    # CPU and CUDA builds by hundreds of MiB); a real 8192x8192 batch would be 3 TiB.
    assert rise_mib < 256, rise_mib  # measured 44 MiB


# ---------------------------------------------------------------------------------- limits at their boundary
_AT_LIMIT = {
    "variant": "b0",
    "dims": "8",
    "heads": "1",
    "depths": "1",
    "mlp_ratios": "1",
    "sr": "1",
    "patch": "4",
    "linear_sra": True,
    "attention": "sdpa",
    "in_chans": 1,
    "task": "backbone",
}


def test_the_tensor_limit_is_torchs_own() -> None:
    below = config_from_text(**_AT_LIMIT, img=f"{2**30}x{2**31 - 1}")  # type: ignore[arg-type]
    assert largest_tensor(below) == ("input image", (1, 1, 2**30, 2**31 - 1), 2**63 - 2**32)
    assert trace_config(below).outputs == ((1, 8, 2**28, 2**29),)
    with pytest.raises(RuntimeError, match="overflow"):
        torch.empty((1, 1, 2**30, 2**31), device="meta")
    with pytest.raises(ConfigError) as error:
        config_from_text(**_AT_LIMIT, img=f"{2**30}x{2**31}")  # type: ignore[arg-type]
    assert str(error.value) == (
        "the input image [1, 1, 1073741824, 2147483648] would take 8 EiB (float32) with img=1073741824x2147483648, "
        "batch=1, dims=8; torch cannot create a tensor of 2**63 bytes (8 EiB) or more, not even on the meta device"
    )


def test_sizes_past_int64_are_refused_before_any_arithmetic() -> None:
    with pytest.raises(ConfigError, match=r"^batch=9223372036854775808 is larger than torch's largest size"):
        resolve_config("b0", batch=2**63)
    with pytest.raises(ConfigError, match=r"^dims\[0\]=about 2\*\*340 is larger"):
        resolve_config("b0", dims=(2**340, 64, 160, 256))
    with pytest.raises(ConfigError, match=r"^mlp_ratios\[0\]=1e\+308 makes an MLP hidden width of inf for dims\[0\]"):
        resolve_config("b0", mlp_ratios=(1e308, 8, 4, 4))


def test_the_block_budget() -> None:
    deepest = resolve_config("b0", depths=(MAX_BLOCKS - 3, 1, 1, 1))
    assert sum(deepest.depths) == MAX_BLOCKS == 64 * 64
    with pytest.raises(ConfigError) as error:
        resolve_config("b0", depths=(MAX_BLOCKS - 2, 1, 1, 1))
    assert str(error.value) == (
        "depths=4094,1,1,1 add up to 4097 blocks; pvttrace builds at most 4096 (64 stages of 64), "
        "since each block costs about 140 KiB and 3 ms to trace"
    )


@pytest.mark.parametrize("variant", ["tiny", "b0"])
def test_patch_stride_one_is_a_1x1_conv_in_both_versions(variant: str, trace_of: Callable[[PvtConfig], Trace]) -> None:
    cfg = resolve_config(variant, patch=(4, 1, 1, 1), sr=(8, 4, 2, 1))
    assert [g.hw for g in cfg.geometry()] == [(56, 56)] * 4
    assert cfg.patch_kernel(1) == (1, 1, 0)
    trace = trace_of(cfg)
    assert trace.totals.macs == closed_form_macs(cfg) and trace.totals.params == closed_form_params(cfg)
