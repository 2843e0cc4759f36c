"""Turn traces into rich renderables and markdown text.

Rendering only: no torch, no typer, no printing. The CLI prints what these return.
Numbers carry units: MACs and parameters with decimal prefixes (K/M/G), bytes with binary
ones (KiB/MiB/GiB).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pvttrace.records import CONVENTION, OpRecord, StageSummary, Trace
from pvttrace.units import format_bytes, format_count, format_shape

__all__ = [
    "OpSection",
    "op_sections",
    "render_trace",
    "short_op",
    "trace_markdown",
]

_SHORT_OPS = {
    "nn.functional.linear": "linear",
    "nn.functional.conv2d": "conv2d",
    "nn.functional.layer_norm": "layer_norm",
    "nn.functional.gelu": "gelu",
    "nn.functional.relu": "relu",
    "nn.functional.dropout": "dropout",
    "nn.functional.interpolate": "interpolate",
    "nn.functional.adaptive_avg_pool2d": "adaptive_avg_pool2d",
    "nn.functional.scaled_dot_product_attention": "sdpa",
    "Tensor.matmul": "@",
    "Tensor.__matmul__": "@",
    "Tensor.__getitem__": "[i]",
    "Tensor.mul": "*",
    "Tensor.__mul__": "*",
    "Tensor.add": "+",
    "Tensor.__add__": "+",
}


def short_op(op: OpRecord) -> str:
    """Compact op name for tables: ``linear``, ``permute``, ``@``, ``[i]``."""
    return _SHORT_OPS.get(op.op) or op.op.rsplit(".", 1)[-1]


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
    i = 0
    while i < len(ops):
        op = ops[i]
        stage = op.stage
        j = i
        while j < len(ops) and ops[j].stage == stage and ops[j].block == op.block:
            j += 1
        run = ops[i:j]
        where = "head" if stage is None else f"stage {stage}"
        if op.block is None:
            blocks_follow = any(o.stage == stage and o.block is not None for o in ops[j:])
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


def _header(trace: Trace) -> Panel:
    totals = trace.totals
    lines = Text()
    if trace.config is not None:
        lines.append(trace.config.describe() + "\n", style="bold")
    lines.append(f"input {format_shape(trace.input_shape)}  ->  output ")
    lines.append(", ".join(format_shape(s) for s in trace.outputs) + "\n")
    lines.append(f"params {format_count(totals.params)} ({totals.params:,})   ")
    lines.append(f"param bytes {format_bytes(totals.param_bytes)}\n")
    lines.append(f"MACs {format_count(totals.macs)} ({totals.macs:,})   ", style="bold")
    lines.append(f"FLOPs {format_count(totals.flops)}   ")
    lines.append(f"largest activation {format_bytes(totals.largest_activation_bytes)}\n")
    if totals.peak_memory_bytes:
        from pvttrace.render_memory import memory_summary_lines

        for line in memory_summary_lines(trace):
            lines.append(line + "\n", style="bold" if line.startswith(("inference peak", "training peak")) else "")
    lines.append(f"convention: {CONVENTION}", style="dim")
    if totals.uncosted_ops:
        lines.append(f"\n{totals.uncosted_ops} op(s) had no cost rule and count 0 MACs", style="yellow")
    return Panel(lines, title=f"pvttrace  ({trace.device} device)", title_align="left")


def stage_table(stages: Sequence[StageSummary]) -> Table:
    """Per-stage shapes: grid, tokens N, keys N' after spatial reduction, and one block's attention map."""
    table = Table(title="Stages", title_justify="left")
    for name in ("stage", "grid", "N", "N'", "dim", "heads", "sr", "depth", "params", "attn map (1 block)", "map bytes"):
        table.add_column(name, justify="left" if name.startswith("attn map") else "right")
    for s in stages:
        map_bytes = format_bytes(s.attention_map_bytes) if s.attention_map_bytes else "fused (0)"
        table.add_row(
            str(s.index),
            f"{s.hw[0]}x{s.hw[1]}",
            str(s.tokens),
            str(s.kv_tokens),
            str(s.dim),
            str(s.heads),
            str(s.sr_ratio),
            str(s.depth),
            format_count(s.params),
            format_shape(s.attention_map_shape),
            map_bytes if s.attention_map_shape is not None else "-",
        )
    return table


def stage_macs_table(stages: Sequence[StageSummary], total_macs: int) -> Table:
    """Where each stage's MACs go: attention matmuls, SR conv, q/kv/proj projections, MLP, other."""
    table = Table(title="MACs by stage", title_justify="left")
    for name in ("stage", "MACs", "share", "attention", "SR conv", "projections", "MLP", "other"):
        table.add_column(name, justify="right")
    for s in stages:
        share = f"{100 * s.macs / total_macs:.1f}%" if total_macs else "-"
        table.add_row(
            str(s.index),
            format_count(s.macs),
            share,
            *(format_count(v) for v in (s.attention_macs, s.sr_macs, s.projection_macs, s.mlp_macs, s.other_macs)),
        )
    return table


def _op_columns(table: Table, with_source: bool) -> None:
    table.add_column("#", justify="right", style="dim")
    table.add_column("step")
    table.add_column("op")
    table.add_column("module", style="dim")
    table.add_column("output", justify="left")
    table.add_column("MACs", justify="right")
    table.add_column("alloc", justify="right")
    table.add_column("", justify="left")
    if with_source:
        table.add_column("source", style="dim")


def op_table(sections: Sequence[OpSection], *, with_source: bool = False, title: str = "Ops") -> Table:
    """Annotated op table: step label, op, module, output shape, MACs, new bytes and a view/copy note."""
    table = Table(title=title, title_justify="left")
    _op_columns(table, with_source)
    for section in sections:
        table.add_section()
        row: list[str | Text] = ["", Text(section.title, style="bold cyan"), "", "", "", "", "", ""]
        table.add_row(*(row + ([""] if with_source else [])))
        previous_label: str | None = None
        for op in section.ops:
            label = op.label or ""
            shown = label if label != previous_label else ""
            previous_label = label
            note = "view" if op.view else ("copy" if op.kind.value in ("reshape", "contiguous") else "")
            if op.cost_rule.value == "none":
                note = "no cost rule"
            cells: list[str | Text] = [
                str(op.index),
                shown,
                Text(short_op(op)),
                op.module or "(model)",
                format_shape(op.output),
                format_count(op.macs) if op.macs else "",
                format_bytes(op.alloc_bytes) if op.alloc_bytes else "",
                note,
            ]
            if with_source:
                cells.append(op.source or "")
            table.add_row(*cells)
    return table


def flat_op_table(ops: Sequence[OpRecord], *, with_source: bool = False, title: str = "Ops") -> Table:
    """Every given op in execution order, without sections."""
    return op_table([OpSection("selected ops", tuple(ops))], with_source=with_source, title=title)


def render_trace(
    trace: Trace,
    *,
    show_all: bool = False,
    stages: Iterable[int] | None = None,
    kinds: Iterable[str] | None = None,
    with_source: bool = False,
) -> RenderableType:
    """The ``pvttrace run`` view: header, stage table and the annotated op table.

    By default one block per stage is shown with the stage's entry and exit ops (identical
    blocks collapsed and counted); ``show_all`` lists every op; ``stages``/``kinds`` filter.
    """
    parts: list[RenderableType] = [_header(trace)]
    parts.append(stage_table(trace.stages))
    parts.append(stage_macs_table(trace.stages, trace.totals.macs))
    stage_list = None if stages is None else list(stages)
    if kinds is not None:
        ops = trace.select(stages=stage_list, kinds=kinds)
        parts.append(flat_op_table(ops, with_source=with_source, title=f"Ops of kind {', '.join(kinds)}"))
    else:
        sections = op_sections(trace, collapse=not show_all, stages=stage_list)
        title = "All ops" if show_all else "Ops (one block per stage; identical blocks collapsed)"
        parts.append(op_table(sections, with_source=with_source, title=title))
    return Group(*parts)


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def trace_markdown(
    trace: Trace,
    *,
    show_all: bool = False,
    stages: Iterable[int] | None = None,
    kinds: Iterable[str] | None = None,
) -> str:
    """The same view as :func:`render_trace` as GitHub markdown."""
    t = trace.totals
    lines: list[str] = []
    if trace.config is not None:
        lines.append(f"## {trace.config.describe()}")
        lines.append("")
    lines.append(f"- params: {t.params:,} ({format_count(t.params)}), param bytes {format_bytes(t.param_bytes)}")
    lines.append(f"- MACs: {t.macs:,} ({format_count(t.macs)}); FLOPs: {t.flops:,} ({format_count(t.flops)})")
    lines.append(f"- outputs: {', '.join(format_shape(s) for s in trace.outputs)}")
    if t.peak_memory_bytes:
        from pvttrace.render_memory import memory_summary_lines

        lines.extend(f"- {line}" for line in memory_summary_lines(trace))
    lines.append(f"- convention: {CONVENTION}")
    lines.append("")
    header = ["stage", "grid", "N", "N'", "dim", "heads", "sr", "depth", "params", "MACs", "attention MACs", "attn map"]
    lines.append(_md_row(header))
    lines.append(_md_row(["---"] * len(header)))
    for s in trace.stages:
        lines.append(
            _md_row(
                [
                    str(s.index),
                    f"{s.hw[0]}x{s.hw[1]}",
                    str(s.tokens),
                    str(s.kv_tokens),
                    str(s.dim),
                    str(s.heads),
                    str(s.sr_ratio),
                    str(s.depth),
                    format_count(s.params),
                    format_count(s.macs),
                    format_count(s.attention_macs),
                    f"{format_shape(s.attention_map_shape)} {format_bytes(s.attention_map_bytes)}",
                ]
            )
        )
    lines.append("")
    stage_list = None if stages is None else list(stages)
    if kinds is not None:
        sections = [OpSection("selected ops", trace.select(stages=stage_list, kinds=kinds))]
    else:
        sections = op_sections(trace, collapse=not show_all, stages=stage_list)
    header = ["#", "step", "op", "module", "output", "MACs", "alloc", "note"]
    lines.append(_md_row(header))
    lines.append(_md_row(["---"] * len(header)))
    for section in sections:
        lines.append(_md_row(["", f"**{section.title}**", "", "", "", "", "", ""]))
        for op in section.ops:
            lines.append(
                _md_row(
                    [
                        str(op.index),
                        op.label or "",
                        f"`{short_op(op)}`",
                        op.module or "(model)",
                        format_shape(op.output),
                        format_count(op.macs) if op.macs else "",
                        format_bytes(op.alloc_bytes) if op.alloc_bytes else "",
                        "view" if op.view else "",
                    ]
                )
            )
    return "\n".join(lines) + "\n"
