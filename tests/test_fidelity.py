"""Fidelity to the official code (issue 17): in-place ReLU, v1 positional tables with --patch, what the official
code cannot run, and v2 patch strides as a labelled extension."""

from __future__ import annotations

from collections.abc import Callable

from pvttrace.config import PvtConfig, get_variant
from pvttrace.records import Trace


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
