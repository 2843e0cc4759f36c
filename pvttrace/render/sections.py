"""Ops grouped for display: stage entry, one (collapsed) block, stage exit.

Shared by the trace view and the memory timeline; no rich.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pvttrace.records import OpRecord, Trace

__all__ = ["OpSection", "op_sections"]


@dataclass(frozen=True, slots=True)
class OpSection:
    """A run of ops shown together: stage entry, one (collapsed) block, or stage exit."""

    title: str
    ops: tuple[OpRecord, ...]


def _block_signature(ops: Sequence[OpRecord]) -> tuple[object, ...]:
    return tuple((op.op, op.label, op.inputs, op.output, op.macs, op.alloc_bytes) for op in ops)


def op_sections(trace: Trace, *, collapse: bool = True, stages: Iterable[int] | None = None) -> list[OpSection]:
    """Group ops by stage into entry / block / exit sections; identical consecutive blocks collapse into one.

    A collapsed section's title says how many identical blocks it stands for.
    """
    wanted = None if stages is None else set(stages)
    sections: list[OpSection] = []
    ops = trace.ops
    first_staged = next((k for k, o in enumerate(ops) if o.stage is not None), len(ops))
    last_block_op: dict[int | None, int] = {}  # stage -> index of its last op inside a block
    for k, o in enumerate(ops):
        if o.block is not None:
            last_block_op[o.stage] = k
    i = 0
    while i < len(ops):
        op = ops[i]
        stage = op.stage
        j = i
        while j < len(ops) and ops[j].stage == stage and ops[j].block == op.block:
            j += 1
        run = ops[i:j]
        where = (
            ("stem" if trace.stages and i < first_staged else "head" if trace.stages else "model")
            if stage is None
            else f"stage {stage}"
        )
        if op.block is None:
            blocks_follow = last_block_op.get(stage, -1) >= j
            title = where if stage is None else f"{where} {'entry' if blocks_follow else 'exit'}"
            item = OpSection(title, run)
            i = j
        else:
            count = 1
            k = j
            if collapse:
                signature = _block_signature(run)
                while k < len(ops) and ops[k].stage == stage and ops[k].block is not None:
                    m = k
                    while m < len(ops) and ops[m].stage == stage and ops[m].block == ops[k].block:
                        m += 1
                    if _block_signature(ops[k:m]) != signature:
                        break
                    count += 1
                    k = m
            last = op.block + count - 1
            span = f"block {op.block}" if count == 1 else f"blocks {op.block}-{last} (x{count} identical)"
            item = OpSection(f"{where}, {span}", run)
            i = k
        if wanted is None or stage in wanted:
            sections.append(item)
    return sections
