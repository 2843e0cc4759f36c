"""Fidelity to the official code (issue 17): in-place ReLU, v1 positional tables with --patch, what the official
code cannot run, and v2 patch strides as a labelled extension."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest
import torch
from typer.testing import CliRunner

from pvttrace.cli import app
from pvttrace.cli.options import config_from_text
from pvttrace.config import PvtConfig, get_variant, resolve_config
from pvttrace.fidelity import fidelity
from pvttrace.records import Trace
from pvttrace.tracing.model import build_model
from pvttrace.tracing.recorder import trace_config


def test_linear_sra_mlp_relu_is_in_place_like_the_official_code(trace_of: Callable[[PvtConfig], Trace]) -> None:
    # Official pvt_v2.py Mlp: self.relu = nn.ReLU(inplace=True); linear SRA's own activation is a GELU (allocates).
    trace = trace_of(get_variant("b2-li"))
    relus = [op for op in trace.ops if op.label == "MLP ReLU"]
    assert len(relus) == sum(get_variant("b2-li").depths) == 16
    assert {(op.alloc_bytes, op.view) for op in relus} == {(0, True)}
    first = relus[0]
    assert (first.module, first.output) == ("block1.0.mlp.relu", (1, 3136, 512))
    sr_act = [op for op in trace.ops if op.label == "SR activation"]
    assert sr_act[0].op == "nn.functional.gelu" and sr_act[0].alloc_bytes == 49 * 64 * 4 and not sr_act[0].view
    # The named peak op is now the depthwise conv of block1.0 (fc1's output, reused by the ReLU, plus its output).
    peak_op = trace.totals.peak_op
    assert peak_op is not None and trace.ops[peak_op].module == "block1.0.mlp.dwconv.dwconv"


# Official params and MACs beyond the 224 table of test_model.py, obtained by running the official code
# (whai362/PVT at 57e2dfa: classification/pvt.py, pvt_v2.py; detection/pvt.py, pvt_v2.py for the backbones, whose
# mmdet/mmcv imports were stubbed) with torch 2.14.1 on CPU: params = sum of numel, macs = FlopCounterMode total // 2.
# v1 models were built with patch_size=P and img_size=pos; v2 with their fixed patch embeddings.
# (variant, task, img, batch, patch, pos_size, params, macs)
OFFICIAL_RUNS: list[tuple[str, str, str, int, int, int, int, int]] = [
    ("tiny", "cls", "224x224", 1, 8, 224, 13087976, 449684736),
    ("tiny", "cls", "224x224", 1, 2, 224, 13829096, 8596936704),
    ("tiny", "backbone", "224x224", 1, 8, 224, 12573440, 442842368),
    ("tiny", "backbone", "224x224", 1, 2, 224, 13314560, 8589328384),
    ("small", "cls", "224x224", 1, 8, 224, 24344552, 888151808),
    ("small", "cls", "224x224", 1, 2, 224, 25085672, 16915250176),
    ("small", "backbone", "224x224", 1, 8, 224, 23830016, 878144256),
    ("small", "backbone", "224x224", 1, 2, 224, 24571136, 16904093696),
    ("tiny", "cls", "256x192", 2, 8, 224, 13087976, 942977024),
    ("tiny", "cls", "256x192", 2, 8, 256, 13160936, 942977024),
    ("tiny", "backbone", "160x224", 1, 2, 160, 12829184, 5886361600),
    ("small", "cls", "320x320", 1, 8, 224, 24344552, 1930771456),
    ("small", "backbone", "97x131", 1, 2, 224, 24571136, 3729395712),
    ("tiny", "cls", "225x333", 1, 4, 224, 13229288, 2851784704),
    ("tiny", "backbone", "225x333", 1, 4, 224, 12714752, 2844692480),
    ("b0", "cls", "225x333", 1, 4, 224, 3666760, 929093504),
    ("b2-li", "cls", "225x333", 1, 4, 224, 22553512, 6083314688),
    ("b2-li", "backbone", "225x333", 1, 4, 224, 22040512, 6082802688),
    ("tiny", "cls", "97x131", 1, 4, 224, 13229288, 464410624),
    ("tiny", "backbone", "97x131", 1, 4, 224, 12714752, 457555968),
    ("b0", "cls", "97x131", 1, 4, 224, 3666760, 164953184),
    ("b2-li", "cls", "97x131", 1, 4, 224, 22553512, 1348671808),
    ("b2-li", "backbone", "97x131", 1, 4, 224, 22040512, 1348159808),
    ("tiny", "cls", "511x509", 1, 4, 224, 13229288, 10892821504),
    ("tiny", "backbone", "511x509", 1, 4, 224, 12714752, 10885094400),
    ("b0", "cls", "511x509", 1, 4, 224, 3666760, 3797411840),
    ("b2-li", "cls", "511x509", 1, 4, 224, 22553512, 19396853760),
    ("b2-li", "backbone", "511x509", 1, 4, 224, 22040512, 19396341760),
    ("tiny", "cls", "224x224", 3, 4, 224, 13229288, 5798734848),
    ("small", "backbone", "224x224", 3, 4, 224, 23971328, 11416344576),
    ("b1", "cls", "224x224", 3, 4, 224, 14009000, 6325066752),
    ("b2-li", "cls", "224x224", 3, 4, 224, 22553512, 11666552832),
    ("b2-li", "backbone", "224x224", 3, 4, 224, 22040512, 11665016832),
    ("tiny", "cls", "112x448", 1, 4, 224, 13229288, 1856249856),
]


def _official_config(variant: str, task: str, img: str, batch: int, patch: int, pos: int) -> PvtConfig:
    patch_option = str(patch) if get_variant(variant).version == 1 else None
    return config_from_text(variant, task=task, img=img, batch=batch, patch=patch_option, pos_size=str(pos))


@pytest.mark.parametrize(
    ("variant", "task", "img", "batch", "patch", "pos", "params", "macs"),
    OFFICIAL_RUNS,
    ids=[f"{r[0]}-{r[1]}-{r[2]}-b{r[3]}-p{r[4]}-pos{r[5]}" for r in OFFICIAL_RUNS],
)
def test_params_and_macs_equal_the_official_runs(
    variant: str,
    task: str,
    img: str,
    batch: int,
    patch: int,
    pos: int,
    params: int,
    macs: int,
    trace_of: Callable[[PvtConfig], Trace],
) -> None:
    cfg = _official_config(variant, task, img, batch, patch, pos)
    trace = trace_of(cfg)
    assert (trace.totals.params, trace.totals.macs) == (params, macs)
    assert fidelity(cfg).official_runs and not fidelity(cfg).extensions


@pytest.mark.parametrize("variant", ["tiny", "small"])
@pytest.mark.parametrize("task", ["cls", "backbone"])
def test_patch_8_tables_are_sized_from_the_image_not_the_strides(variant: str, task: str) -> None:
    cfg = resolve_config(variant, patch=8, task=task)
    # Official: stage 1 from 224 // 8, stages 2-4 from 224 // 8, // 16, // 32 (not // 16, // 32, // 64).
    assert [cfg.pos_grid(i) for i in range(4)] == [(28, 28), (28, 28), (14, 14), (7, 7)]
    assert [g.hw for g in cfg.geometry()] == [(28, 28), (14, 14), (7, 7), (3, 3)]
    model = build_model(cfg)
    assert [tuple(getattr(model, f"pos_embed{i}").shape) for i in range(1, 5)] == [
        (1, 784, 64),
        (1, 784, 128),
        (1, 196, 320),
        (1, 50, 512),
    ]


# The ops the official _get_pos_embed runs for tiny at 224 with patch_size=8 (logged with a TorchFunctionMode around
# it): none in stage 1 (784 tokens = stage 1's table), then reshape, permute, interpolate, reshape, permute per stage.
OFFICIAL_PATCH8_RESIZES = [
    (2, "reshape", (1, 28, 28, 128)),
    (2, "permute", (1, 128, 28, 28)),
    (2, "interpolate", (1, 128, 14, 14)),
    (2, "reshape", (1, 128, 196)),
    (2, "permute", (1, 196, 128)),
    (3, "reshape", (1, 14, 14, 320)),
    (3, "permute", (1, 320, 14, 14)),
    (3, "interpolate", (1, 320, 7, 7)),
    (3, "reshape", (1, 320, 49)),
    (3, "permute", (1, 49, 320)),
    (4, "reshape", (1, 7, 7, 512)),
    (4, "permute", (1, 512, 7, 7)),
    (4, "interpolate", (1, 512, 3, 3)),
    (4, "reshape", (1, 512, 9)),
    (4, "permute", (1, 9, 512)),
]


def test_a_patch_8_run_contains_the_official_resizes(trace_of: Callable[[PvtConfig], Trace]) -> None:
    trace = trace_of(resolve_config("tiny", patch=8))
    resizes = [(op.stage, op.op.rsplit(".", 1)[-1], op.output) for op in trace.ops if op.label == "pos embed resize"]
    assert resizes == OFFICIAL_PATCH8_RESIZES
    interpolate = next(op for op in trace.ops if op.op.endswith("interpolate"))
    assert interpolate.alloc_bytes == 128 * 14 * 14 * 4 and interpolate.macs == 0


# Configurations the official code raises on (the same runs): "The size of tensor a (T) must match the size of
# tensor b (S)" at the stage whose T tokens equal stage 1's table size. (task, img, stage, T, S)
OFFICIAL_FAILURES = [
    ("cls", "448", 2, 3136, 784),
    ("backbone", "448", 2, 3136, 784),
    ("cls", "896", 3, 3136, 196),
]


@pytest.mark.parametrize(("task", "img", "stage", "tokens", "slots"), OFFICIAL_FAILURES)
def test_configurations_the_official_code_cannot_run_are_flagged(
    task: str, img: str, stage: int, tokens: int, slots: int, runner: CliRunner
) -> None:
    cfg = config_from_text("tiny", img=img, task=task)
    found = fidelity(cfg)
    assert not found.official_runs
    assert found.official_failures == (
        (
            f"stage {stage} has {tokens} tokens, equal to stage 1's table size, so the official v1 code adds stage "
            f"{stage}'s {slots}-slot positional table without resizing it and the add fails; pvttrace resizes the "
            f"{int(slots**0.5)}x{int(slots**0.5)} table to {int(tokens**0.5)}x{int(tokens**0.5)}"
        ),
    )
    assert f"the official code would fail here: {found.official_failures[0]}" in cfg.warnings
    result = runner.invoke(app, ["run", "--variant", "tiny", "--img", img, "--task", task, "--format", "json"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["fidelity"] == {
        "official_runs": False,
        "official_failures": list(found.official_failures),
        "departures": [],
        "extensions": [],
    }
    assert f"warning: the official code would fail here: stage {stage} has {tokens} tokens" in result.stderr


def test_same_token_count_on_another_grid_is_a_departure_not_a_failure() -> None:
    # 112x448: stage 1 is 28x112 = 3136 tokens = the 56x56 table; the official code adds it unresized and runs.
    found = fidelity(resolve_config("tiny", img=(112, 448)))
    assert found.official_runs and found.official_failures == ()
    assert found.departures == (
        (
            "stage 1: the official v1 code lays stage 1's 56x56 positional table over the 28x112 grid without "
            "resizing it (same token count); pvttrace resizes it"
        ),
    )


def test_the_official_backbone_asserts_divisible_table_sizes() -> None:
    found = fidelity(resolve_config("tiny", task="backbone", pos_size=225))
    assert found.official_failures == (
        (
            "the official v1 backbone asserts that stage 1's nominal input 225x225 (from pos_size 225x225) divides "
            "by its patch stride 4"
        ),
    )
    assert fidelity(resolve_config("tiny", task="cls", pos_size=225)).official_runs  # the classifier has no assert


@pytest.mark.parametrize("variant", ["tiny", "small", "b0", "b2-li"])
def test_the_presets_at_224_run_in_the_official_code(variant: str) -> None:
    found = fidelity(get_variant(variant))
    assert (found.official_runs, found.departures, found.extensions) == (True, (), ())


# ---------------------------------------------------------------------------------- v2 --patch: a labelled extension
def test_v2_patch_is_an_extension_named_in_json_and_header(runner: CliRunner) -> None:
    cfg = resolve_config("b0", patch=8)
    assert cfg.patch == (8, 2, 2, 2) and cfg.patch_kernel(0) == (15, 8, 7)
    expected = (
        (
            "patch strides 8,2,2,2: the official v2 code and timm fix 7x7/4 then 3x3/2 patch embeddings; pvttrace "
            "builds a (2P-1)x(2P-1) conv with stride P and padding P-1 per stride P"
        ),
    )
    assert fidelity(cfg).extensions == expected and fidelity(cfg).official_runs
    result = runner.invoke(app, ["run", "--variant", "b0", "--patch", "8", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["fidelity"]["extensions"] == list(expected)
    table = runner.invoke(app, ["run", "--variant", "b0", "--patch", "8", "--width", "80"])
    header = " ".join(table.stdout.split("input [1, 3, 224, 224]")[0].replace("│", " ").split())
    assert "extension, no official counterpart: patch strides 8,2,2,2: the official v2 code and timm fix" in header
    markdown = runner.invoke(app, ["run", "--variant", "b0", "--patch", "8", "--format", "markdown"])
    assert f"- extension, no official counterpart: {expected[0]}\n" in markdown.stdout
    assert "v2 strides other than 4,2,2,2" in " ".join(runner.invoke(app, ["run", "--help"]).stdout.split())


@pytest.mark.parametrize(
    ("variant", "patch", "extension"),
    [
        ("b0", "4", False),
        ("b2-li", "4,2,2,2", False),
        ("b0", "4,1,1,1", True),
        ("b1", "2", True),
        ("tiny", "8", False),
        ("tiny", "4,2,2,1", True),
    ],
)
def test_which_patch_values_are_extensions(variant: str, patch: str, extension: bool) -> None:
    assert bool(fidelity(config_from_text(variant, patch=patch)).extensions) == extension


def test_trace_json_carries_fidelity_for_built_in_configs_only(runner: CliRunner) -> None:
    from pvttrace.records import Trace as TraceRecord

    trace = TraceRecord.from_dict(json.loads(runner.invoke(app, ["run", "--variant", "b0", "--format", "json"]).stdout))
    assert trace.to_dict()["fidelity"]["official_runs"] is True
    assert dataclasses.replace(trace, config=None).to_dict()["fidelity"] is None


# ---------------------------------------------------------------------------------- the scalar of `attn * scale`
def test_the_cpu_profiler_peak_exceeds_ours_by_the_wrapped_scale_scalar_only() -> None:
    """Documented, not modelled: ``attn * self.scale`` multiplies by a Python float, which torch wraps into a 0-dim
    float64 tensor (8 bytes) and, inside ``aten::mul`` on CPU, copies to the input's dtype (4 bytes for float32).
    Both are host memory freed when the op ends (on CUDA the scalar is a kernel argument, no device memory), so where
    the scale multiply is the peak op the CPU profiler's peak is exactly those 12 bytes above pvttrace's."""
    from torch.profiler import ProfilerActivity, profile

    cfg = resolve_config("tiny", img=96, depths=(1, 1, 1, 1), sr=(1, 1, 1, 1))
    trace = trace_config(cfg)
    assert trace.totals.peak_op is not None and trace.ops[trace.totals.peak_op].label == "scale"
    torch.manual_seed(0)
    model = build_model(cfg, device="cpu")
    example = torch.randn(cfg.input_shape)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof, torch.no_grad():
        model(example)
    events = prof.profiler.kineto_results.events()  # type: ignore[union-attr]
    live = peak = 0
    for _, delta in sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]"):
        live += delta
        peak = max(peak, live)
    measured = peak + example.untyped_storage().nbytes()
    assert measured - trace.totals.peak_activation_bytes == 8 + 4
