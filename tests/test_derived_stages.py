"""Labels, stages, blocks and inference memory of models without a built-in config, against golden files.

The post-processing of such a trace (``label_ops``, ``derive_structure``, the stage summaries and the
activation memory) was rewritten for speed; these files were written by the earlier algorithm, so every
label, stage, block and memory figure must stay what it was. Regenerate (only for an intended change) with
``PVTTRACE_UPDATE_EXPECTED=1 python -m pytest tests/test_derived_stages.py``.
"""

from __future__ import annotations

import json

import pytest
from helpers import check_expected
from optional import needs

from pvttrace.cli.parsing import parse_model_spec
from pvttrace.records import Trace
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
