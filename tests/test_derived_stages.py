"""Labels, stages, blocks and inference memory of models without a built-in config, against golden files.

The post-processing of such a trace (``label_ops``, ``derive_structure``, the stage summaries and the
activation memory) was rewritten for speed; these files were written by the earlier algorithm, so every
label, stage, block and memory figure must stay what it was. Regenerate (only for an intended change) with
``PVTTRACE_UPDATE_EXPECTED=1 python -m pytest tests/test_derived_stages.py``.

The pieces that changed shape are also checked on their own: record copies against ``dataclasses.replace``,
module stages on nested paths, and the memoised structural context against the outward walk it replaced.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from helpers import check_expected
from hypothesis import given, settings
from hypothesis import strategies as st
from optional import needs

from pvttrace.cli.parsing import parse_model_spec
from pvttrace.records import OpKind, OpRecord, Trace
from pvttrace.stages.labels import _ModuleRules
from pvttrace.stages.structure import _module_stages, _prefixes
from pvttrace.tracing.target import trace_target

MODELS = [
    pytest.param("timm:pvt_v2_b0", marks=needs("timm")),
    pytest.param("timm:mvitv2_tiny", marks=needs("timm")),
    pytest.param("timm:swin_tiny_patch4_window7_224", marks=needs("timm")),
    pytest.param("timm:twins_svt_small", marks=needs("timm")),
    pytest.param("torchvision.models:resnet18", marks=needs("torchvision")),
]


def _digest(trace: Trace) -> str:
    """One line per op (what post-processing decides about it), then the stage summaries and the totals."""
    lines = [
        f"{op.index} {op.stage} {op.block} {op.live_bytes} {op.peak_bytes} {op.kind.value} {op.label!r} {op.module}"
        for op in trace.ops
    ]
    lines += [json.dumps(stage.to_dict(), sort_keys=True) for stage in trace.stages]
    lines.append(json.dumps(trace.totals.to_dict(), sort_keys=True))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("model", MODELS)
def test_derived_labels_stages_and_memory_are_unchanged(model: str) -> None:
    trace = trace_target(parse_model_spec(model))
    name = model.split(":")[1].replace(".", "_")
    check_expected(f"derived_{name}.txt", _digest(trace))


@needs("timm")
def test_attention_matmuls_are_named_by_the_softmax_around_them() -> None:
    """MViTv2 adds relative-position terms by two einsums between q@k^T and the softmax: only the matmul
    that makes the softmax's map is "scores q@k^T", only the one that multiplies it is "attention@v"; the
    einsums and the index-grid arithmetic (a ratio times an arange) get no attention label."""
    ops = [op for op in trace_target(parse_model_spec("timm:mvitv2_tiny")).ops if op.module == "stages.0.blocks.0.attn"]
    matmuls = [(op.op, op.label) for op in ops if op.kind == OpKind.MATMUL]
    assert matmuls == [
        ("Tensor.matmul", "scores q@k^T"),
        ("einsum", None),
        ("einsum", None),
        ("Tensor.matmul", "attention@v"),
    ]
    scales = [op.output for op in ops if op.label == "scale"]
    assert scales == [(1, 1, 3136, 96)]  # q times the scale


def _record(index: int, module: str, stage: int | None) -> OpRecord:
    return OpRecord(
        index=index,
        module=module,
        op="nn.functional.linear",
        kind=OpKind.LINEAR,
        label=None,
        inputs=((1, 4, 8), (16, 8)),
        output=(1, 4, 16),
        dtype="float32",
        macs=512,
        out_bytes=256,
        alloc_bytes=256,
        view=False,
        source="model.py:1",
        stage=stage,
    )


def test_record_copies_equal_dataclasses_replace() -> None:
    op = dataclasses.replace(_record(3, "blocks.0.attn.q", 2), label="q", block=1, live_bytes=5, peak_bytes=6)
    copies = {
        "with_label": (op.with_label("q projection"), {"label": "q projection"}),
        "with_structure": (op.with_structure(stage=3, block=None), {"stage": 3, "block": None}),
        "moved": (op.moved(index=9, module="blocks.1.attn.q", block=2), {"index": 9, "module": "blocks.1.attn.q"}),
        "with_memory": (op.with_memory(live_bytes=1, peak_bytes=2, saved_bytes=3), {"saved_bytes": 3}),
    }
    copies["moved"][1]["block"] = 2
    copies["with_memory"][1].update(live_bytes=1, peak_bytes=2)
    for name, (copy, changes) in copies.items():
        expected = dataclasses.replace(op, **changes)
        assert type(copy) is OpRecord, name
        assert [getattr(copy, f.name) for f in dataclasses.fields(OpRecord)] == [
            getattr(expected, f.name) for f in dataclasses.fields(OpRecord)
        ], name
        assert copy == expected and hash(copy) == hash(expected), name


def test_module_stages_of_every_module_and_its_enclosing_paths() -> None:
    ops = [
        _record(0, "stem.conv", None),
        _record(1, "stages.0.blocks.0.mlp.fc1", 1),
        _record(2, "stages.0.blocks.0.mlp.fc2", 1),
        _record(3, "stages.0.downsample", 1),
        _record(4, "stages.0.downsample", 2),
        _record(5, "stages.1.blocks.0.mlp", 2),
        _record(6, "", 2),
        _record(7, "head", None),
    ]
    assert _module_stages(ops) == {
        "stem": None,
        "stem.conv": None,
        "stages.0.blocks.0.mlp.fc1": 1,
        "stages.0.blocks.0.mlp.fc2": 1,
        "stages.0.blocks.0.mlp": 1,
        "stages.0.blocks.0": 1,
        "stages.0.blocks": 1,
        # stages.0.downsample ran in stages 1 and 2, so it and every path around it have no single stage.
        "stages.1.blocks.0.mlp": 2,
        "stages.1.blocks.0": 2,
        "stages.1.blocks": 2,
        "stages.1": 2,
        "": 2,
        "head": None,
    }


def _reference_context(path: str, attention: frozenset[str]) -> tuple[str, str]:
    """The structural context as it was computed before it was memoised per path (outward from the leaf)."""
    parts = path.split(".") if path else []
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        leaf = parts[end - 1]
        if leaf in ("attn", "attention", "self_attn") or prefix in attention:
            return "attn", prefix
        if leaf == "self" and end >= 2 and parts[end - 2] in ("attn", "attention", "self_attn"):
            return "attn", prefix
        if leaf == "mlp":
            return "mlp", prefix
        if re.match(r"^(?:patch_embed\d*|downsample|patch_embeddings?)$", leaf):
            return "patch", prefix
        if re.search(r"(?:^|\.)(?:block\d+|blocks)\.\d+$", prefix):
            return "block", prefix
        if re.match(r"^(?:stages|layers)\.\d+$", prefix):
            return "stage", prefix
    return "model", ""


_PARTS = ["attn", "attention", "self_attn", "self", "mlp", "patch_embed", "patch_embed2", "downsample", "blocks"]
_PARTS += ["block1", "stages", "layers", "0", "3", "12", "q", "fc1", "norm", "mixer", "patch_embeddings"]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    paths=st.lists(st.lists(st.sampled_from(_PARTS), max_size=7).map(".".join), min_size=1, max_size=12),
    attention_picks=st.lists(st.integers(0, 11), max_size=3),
)
def test_memoised_context_equals_the_outward_walk(paths: list[str], attention_picks: list[int]) -> None:
    prefixes = sorted({p for path in paths for p in [*_prefixes(path), path] if p})
    attention = frozenset(prefixes[i % len(prefixes)] for i in attention_picks) if prefixes else frozenset()
    rules = _ModuleRules(attention)
    for path in paths:
        assert rules.context(path) == _reference_context(path, attention), path
