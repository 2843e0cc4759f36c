"""The built-in model is numerically the official architecture: exact params and MACs (reference pvt.md 5.1a)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pvttrace.config import PvtConfig, get_variant, resolve_config
from pvttrace.records import Trace
from pvttrace.tracing.model import build_model, meta_copy

# reference/pvt.md section 5.1a: params and MACs (= torch flop_counter / 2) of the official code at 224, B=1, cls.
OFFICIAL = {
    "tiny": (13229288, 1932911616),
    "small": (24485864, 3815701504),
    "medium": (44208104, 6659175424),
    "large": (61369320, 9813765632),
    "b0": (3666760, 566065664),
    "b1": (14009000, 2108355584),
    "b2": (25362856, 4026734592),
    "b3": (45238696, 6897303552),
    "b4": (62556072, 10101116416),
    "b5": (81956008, 11717260288),
    "b2-li": (22553512, 3888850944),
}


@pytest.mark.parametrize("variant", list(OFFICIAL))
def test_exact_params_and_macs(variant: str, trace_of: Callable[[PvtConfig], Trace]) -> None:
    trace = trace_of(get_variant(variant))
    assert (trace.totals.params, trace.totals.macs) == OFFICIAL[variant]
    assert trace.totals.flops == 2 * OFFICIAL[variant][1]
    assert trace.totals.param_bytes == 4 * OFFICIAL[variant][0]
    assert sum(s.macs for s in trace.stages) + sum(op.macs for op in trace.ops if op.stage is None) == trace.totals.macs


@pytest.mark.parametrize("variant", ["tiny", "b2-li"])
def test_params_agree_with_torchinfo(variant: str) -> None:
    from pvttrace.tracing.torchinfo_view import torchinfo_param_count

    assert torchinfo_param_count(get_variant(variant)) == OFFICIAL[variant][0]


def test_v1_params_depend_on_pos_size() -> None:
    # reference pvt.md section 6: pvt_tiny built for 512 has 14,872,040 params.
    model = build_model(resolve_config("tiny", img=512, pos_size=512))
    assert sum(p.numel() for p in model.parameters()) == 14872040


def test_per_block_params_match_the_closed_forms() -> None:
    # reference pvt.md section 5: per-block params v1 345,344 / 592,384 / 1,643,520 / 3,152,384.
    model = build_model(get_variant("tiny"))
    per_block = [sum(p.numel() for p in getattr(model, f"block{i}")[0].parameters()) for i in range(1, 5)]
    assert per_block == [345344, 592384, 1643520, 3152384]
    li = build_model(get_variant("b2-li"))
    assert [sum(p.numel() for p in getattr(li, f"block{i}")[0].parameters()) for i in range(1, 5)] == [
        92416,
        356864,
        1349120,
        3436544,
    ]


def test_cpu_forward_runs_and_matches_meta_shapes() -> None:
    cfg = resolve_config("b0", img=64, sr=(2, 1, 1, 1))
    model = build_model(cfg, device="cpu")
    out = model(torch.randn(cfg.input_shape))
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()


def test_flop_counter_agrees_on_backbone_at_detection_size() -> None:
    cfg = resolve_config("tiny", img=(800, 1333), task="backbone")
    model = build_model(cfg)
    with FlopCounterMode(display=False) as counter:
        outs = model(torch.empty(cfg.input_shape, device="meta"))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 200, 333), (1, 128, 100, 166), (1, 320, 50, 83), (1, 512, 25, 41)]
    from pvttrace.tracing.recorder import trace_config

    assert trace_config(cfg).totals.macs == counter.get_total_flops() // 2


def _same_module(copy: torch.nn.Module, built: torch.nn.Module, path: str = "") -> None:
    """``copy`` and ``built`` alike attribute by attribute, sharing no tensor and no container."""
    assert type(copy) is type(built), path
    assert copy.__dict__.keys() == built.__dict__.keys(), path
    for name, value in built.__dict__.items():
        mine = copy.__dict__[name]
        if name in ("_parameters", "_buffers"):
            assert mine.keys() == value.keys(), path
            for key, tensor in value.items():
                other = mine[key]
                assert (type(other), other.shape, other.stride(), other.dtype, other.device, other.requires_grad) == (
                    type(tensor),
                    tensor.shape,
                    tensor.stride(),
                    tensor.dtype,
                    tensor.device,
                    tensor.requires_grad,
                ), f"{path}.{key}"
                assert other is not tensor
        elif name == "_modules":
            assert mine.keys() == value.keys(), path
            for key, child in value.items():
                _same_module(mine[key], child, f"{path}.{key}")
        else:
            assert type(mine) is type(value) and mine == value, f"{path}.{name}"
            if isinstance(value, (dict, set, list)):
                assert mine is not value, f"{path}.{name}"


@pytest.mark.parametrize(("variant", "options"), [("b5", {}), ("tiny", {"attention": "sdpa"}), ("b2-li", {})])
def test_meta_copies_of_a_stage_block_equal_constructed_blocks(variant: str, options: dict[str, str]) -> None:
    """On meta a stage's later blocks are copies of its first; each equals a block constructed anew."""
    from pvttrace.tracing.model import Block
    from pvttrace.tracing.noinit import skip_meta_init

    cfg = resolve_config(variant, **options)
    model = build_model(cfg)
    dd = {"device": torch.device("meta"), "dtype": torch.float32}
    for stage in range(cfg.num_stages):
        blocks = getattr(model, f"block{stage + 1}")
        with skip_meta_init("meta"):
            constructed = Block(cfg, stage, dd).eval()
        for index, block in enumerate(blocks):
            _same_module(block, constructed, f"block{stage + 1}.{index}")
    params = [id(p) for p in model.parameters()]
    assert len(params) == len(set(params))
    with pytest.raises(ValueError, match="contiguous meta tensors only"):
        meta_copy(torch.nn.Linear(2, 2))


def test_one_walk_of_the_module_tree_gives_what_torch_walks_give() -> None:
    """ModelTree: torch's order and de-duplication, shared modules and tied weights included."""
    from pvttrace.tracing.tree import ModelTree

    shared = torch.nn.Linear(4, 4)
    model = torch.nn.Sequential(shared, torch.nn.BatchNorm1d(4), torch.nn.Sequential(shared, torch.nn.Linear(4, 2)))
    model[2][1].weight = torch.nn.Parameter(torch.zeros(2, 4))
    model.register_buffer("scale", torch.ones(1))
    for built in (model, build_model(resolve_config("b0", task="backbone"))):
        tree = ModelTree.of(built)
        assert tree.modules == tuple(built.named_modules())
        assert tree.params == tuple(built.named_parameters())
        assert tree.buffers == tuple(built.buffers())
