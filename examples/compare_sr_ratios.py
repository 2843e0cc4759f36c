"""What spatial reduction buys, stage by stage: the library behind `pvttrace diff`, without the CLI.

Run: python examples/compare_sr_ratios.py [IMG]   (default 512)
"""

from __future__ import annotations

import sys

from pvttrace.analyses.diff import StageMetric, diff_traces, summary_lines
from pvttrace.base.units import format_bytes, format_count
from pvttrace.config import resolve_config
from pvttrace.tracing.recorder import trace_config


def main(img: int = 512) -> list[str]:
    """Trace PVT-tiny with the official sr ratios and with none, and describe the difference per stage."""
    with_sr = trace_config(resolve_config("tiny", img=img, task="backbone"))
    without = trace_config(resolve_config("tiny", img=img, task="backbone", sr=(1, 1, 1, 1)))
    diff = diff_traces([with_sr, without], ["sr 8,4,2,1", "sr 1,1,1,1"])
    lines = []
    for stage in diff.stages:
        keys = stage.change(1, StageMetric.KV_TOKENS)
        attention = stage.change(1, StageMetric.ATTENTION_MACS)
        lines.append(
            f"stage {stage.index}: keys {keys.baseline} -> {keys.value}, attention MACs "
            f"{format_count(attention.baseline or 0)} -> {format_count(attention.value or 0)}"
        )
    peak = (with_sr.totals.peak_memory_bytes, without.totals.peak_memory_bytes)
    lines.append(f"inference peak: {format_bytes(peak[0])} -> {format_bytes(peak[1])}")
    return lines + summary_lines(diff)


if __name__ == "__main__":
    print("\n".join(main(*(int(arg) for arg in sys.argv[1:2]))))
