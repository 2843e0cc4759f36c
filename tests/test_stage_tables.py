"""Stage tables off the PVT layout: stages read from the data for seven model families.

Each row is (grid, N, N', dim, heads, sr, depth); 0 is "unknown" and renders as ``-``. The expected
values are the architectures' published layouts (Swin-T: depths 2-2-6-2, windows of 7x7 = 49 tokens,
heads 3-6-12-24; ViT-Ti/16: 12 blocks of 196 + 1 tokens, 3 heads; ResNet-18: 2 basic blocks per stage
behind a 112x112 stem; ConvNeXt-Atto: depths 2-2-6-2, dims 40-80-160-320; PVT v2-b0; Twins-PCPVT-S:
depths 3-4-6-3, sr 8-4-2-1) and the user model's own constants (tests/anymodel_zoo.py:MyPvt).
"""

from __future__ import annotations

from functools import cache

import pytest
from helpers import rendered
from optional import needs

from pvttrace.cli.parsing import parse_model_spec
from pvttrace.records import Trace
from pvttrace.render.trace import render_trace, stage_table
from pvttrace.tracing.target import trace_target

Row = tuple[tuple[int, int], int, int, int, int, int, int]


@cache
def _trace(spec: str, input_shape: str | None = None) -> Trace:
    return trace_target(parse_model_spec(spec, input_shape=input_shape))


def _rows(trace: Trace) -> list[Row]:
    return [(s.hw, s.tokens, s.kv_tokens, s.dim, s.heads, s.sr_ratio, s.depth) for s in trace.stages]


TIMM_FAMILIES: dict[str, list[Row]] = {
    "swin_tiny_patch4_window7_224": [
        ((56, 56), 49, 49, 96, 3, 1, 2),
        ((28, 28), 49, 49, 192, 6, 1, 2),
        ((14, 14), 49, 49, 384, 12, 1, 6),
        ((7, 7), 49, 49, 768, 24, 1, 2),
    ],
    "vit_tiny_patch16_224": [((14, 14), 197, 197, 192, 3, 1, 12)],
    "resnet18": [
        ((56, 56), 0, 0, 64, 0, 0, 2),
        ((28, 28), 0, 0, 128, 0, 0, 2),
        ((14, 14), 0, 0, 256, 0, 0, 2),
        ((7, 7), 0, 0, 512, 0, 0, 2),
    ],
    "convnext_atto": [
        ((56, 56), 0, 0, 40, 0, 0, 2),
        ((28, 28), 0, 0, 80, 0, 0, 2),
        ((14, 14), 0, 0, 160, 0, 0, 6),
        ((7, 7), 0, 0, 320, 0, 0, 2),
    ],
    "pvt_v2_b0": [
        ((56, 56), 3136, 49, 32, 1, 8, 2),
        ((28, 28), 784, 49, 64, 2, 4, 2),
        ((14, 14), 196, 49, 160, 5, 2, 2),
        ((7, 7), 49, 49, 256, 8, 1, 2),
    ],
    "twins_pcpvt_small": [
        ((56, 56), 3136, 49, 64, 1, 8, 3),
        ((28, 28), 784, 49, 128, 2, 4, 4),
        ((14, 14), 196, 49, 320, 5, 2, 6),
        ((7, 7), 49, 49, 512, 8, 1, 3),
    ],
}


@needs("timm")
@pytest.mark.parametrize("name", list(TIMM_FAMILIES))
def test_timm_family_stage_rows(name: str) -> None:
    trace = _trace(f"timm:{name}")
    assert _rows(trace) == TIMM_FAMILIES[name]
    # Every parameter is somewhere: the stages', plus the stem's and head's.
    assert sum(s.params for s in trace.stages) <= trace.totals.params


@needs("timm")
def test_swin_channels_last_maps_read_as_grids_not_h_by_c() -> None:
    trace = _trace("timm:swin_tiny_patch4_window7_224")
    assert [s.output for s in trace.stages] == [(1, 56, 56, 96), (1, 28, 28, 192), (1, 14, 14, 384), (1, 7, 7, 768)]
    # timm 1.0 puts each patch merging at the start of the next stage: its ops are that stage's entry.
    merging = [op for op in trace.ops if op.module.startswith("layers.1.downsample")]
    assert merging and {op.stage for op in merging} == {2}


@needs("timm")
def test_resnet_stem_is_labelled_and_the_head_follows() -> None:
    trace = _trace("timm:resnet18")
    by_module = {op.module: op.stage for op in trace.ops}
    assert by_module["conv1"] is None and by_module["bn1"] is None  # 112x112: before stage 1
    assert by_module["maxpool"] == 1  # already at stage 1's 56x56
    assert by_module["fc"] is None
    assert [op.block for op in trace.ops if op.module == "layer2.1.conv1"] == [1]
    text = _render(trace)
    assert "\nstem\n" in text and "\nhead\n" in text
    # heads, sr, N and N' cannot be known for a convnet: printed as -, never 0.
    table = _render_table(trace)
    row = next(line for line in table.splitlines() if line.lstrip("│ ").startswith("1 "))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[:8] == ["1", "56x56", "-", "-", "64", "-", "-", "2"]


@needs("timm")
def test_isotropic_vit_is_one_stage_of_twelve_blocks() -> None:
    trace = _trace("timm:vit_tiny_patch16_224")
    (stage,) = trace.stages
    assert (stage.depth, stage.tokens, stage.attention_map_shape) == (12, 197, (1, 3, 197, 197))
    assert sorted({op.block for op in trace.ops if op.stage == 1 and op.block is not None}) == list(range(12))
    # The patch embedding is stage 1's entry (there is no stem at another resolution).
    assert next(op for op in trace.ops if op.module == "patch_embed.proj").stage == 1


def test_user_pvt_with_unusual_names() -> None:
    trace = _trace("anymodel_zoo:my_pvt", "1,3,128,128")
    assert _rows(trace) == [((32, 32), 1024, 64, 32, 1, 4, 2), ((16, 16), 256, 64, 64, 2, 2, 3)]
    embed = next(op for op in trace.ops if op.module == "levels.0.embedder")
    assert embed.stage == 1 and embed.block is None
    text = _render(trace)
    assert "\nstage 1 entry\n" in text and "\nstem\n" not in text
    head_section = text.split("\nhead\n")[1]
    assert "levels.0.embedder" not in head_section and "classifier" in head_section
    # Parameters by stage: level N's modules, found from where their ops ran.
    assert [s.params for s in trace.stages] == [
        sum(p.numel() for p in level.parameters()) for level in _my_pvt_levels()
    ]


def _my_pvt_levels() -> list[object]:
    import anymodel_zoo
    import torch

    with torch.device("meta"):
        return list(anymodel_zoo.my_pvt().levels)


def _render(trace: Trace) -> str:
    return rendered(render_trace(trace), 160)


def _render_table(trace: Trace) -> str:
    return rendered(stage_table(trace.stages), 160)
