"""Turn traces into rich renderables and markdown text.

Rendering only: no torch, no typer, no printing. The CLI prints what these return.
Numbers carry units: MACs and parameters with decimal prefixes (K/M/G), bytes with binary
ones (KiB/MiB/GiB).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pvttrace.base.units import format_bytes, format_count, format_shape
from pvttrace.costs.coverage import RULE_TEXT, op_coverage
from pvttrace.fidelity import fidelity
from pvttrace.records import CONVENTIONS, OpRecord, StageSummary, Trace
from pvttrace.render.fitwidth import FittedTable, dropped_note, fitted
from pvttrace.render.markdown import markdown_row
from pvttrace.render.sections import OpSection, op_sections

__all__ = [
    "OpSection",
    "coverage_markdown",
    "coverage_table",
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


def _header(trace: Trace) -> Panel:
    totals = trace.totals
    lines = Text()
    if trace.config is not None:
        whole = f"{trace.model}: " if trace.model is not None else ""  # a head on the PVT (pvttrace.tracing.heads)
        lines.append(whole + trace.config.describe() + "\n", style="bold")
        for note in fidelity(trace.config).notes():
            lines.append(note + "\n", style="yellow")
    elif trace.model is not None:
        lines.append(f"{trace.model}\n", style="bold")
    lines.append(f"input {format_shape(trace.input_shape)}  ->  output ")
    lines.append(", ".join(format_shape(s) for s in trace.outputs) + "\n")
    lines.append(f"params {format_count(totals.params)} ({totals.params:,})   ")
    lines.append(f"param bytes {format_bytes(totals.param_bytes)}\n")
    lines.append(f"MACs {format_count(totals.macs)} ({totals.macs:,})   ", style="bold")
    lines.append(f"FLOPs {format_count(totals.flops)}   ")
    lines.append(f"largest activation {format_bytes(totals.largest_activation_bytes)}\n")
    if totals.peak_memory_bytes:
        from pvttrace.render.memory import memory_summary_lines

        for line in memory_summary_lines(trace):
            lines.append(line + "\n", style="bold" if line.startswith(("inference peak", "training peak")) else "")
    lines.append(f"convention: {CONVENTIONS[trace.convention]}", style="dim")
    if totals.uncosted_ops:
        lines.append(f"\n{totals.uncosted_ops} op(s) had no cost rule and count 0 MACs", style="yellow")
    return Panel(lines, title=f"pvttrace  ({trace.device} device)", title_align="left")


def header_panel(trace: Trace) -> Panel:
    """The header every view of a trace starts with: model, input, totals, memory and the convention."""
    return _header(trace)


_STAGE_HEADER = ("stage", "grid", "N", "N'", "dim", "heads", "sr", "depth", "params")


def _stage_cells(s: StageSummary) -> list[str]:
    """The cells under ``_STAGE_HEADER``, shared by the rich and markdown stage tables."""
    # 0 means "not known" for a model traced without a config (no attention, no grid): show "-".
    return [
        str(s.index),
        f"{s.hw[0]}x{s.hw[1]}" if s.hw[0] else "-",
        _known(s.tokens),
        _known(s.kv_tokens),
        _known(s.dim),
        _known(s.heads),
        _known(s.sr_ratio),
        _known(s.depth),
        format_count(s.params),
    ]


def _known(value: int) -> str:
    return str(value) if value else "-"


def stage_table(stages: Sequence[StageSummary]) -> FittedTable:
    """Per-stage shapes: grid, tokens N, keys N' after spatial reduction, and one block's attention map.

    At a narrow width grid, N, depth, heads and dim are dropped in that order (and named under the table).
    """
    table = Table(title="Stages (attn map: one block's score map)", title_justify="left")
    for name in (*_STAGE_HEADER, "attn map", "map bytes"):
        table.add_column(name, justify="left" if name.startswith("attn map") else "right")
    for s in stages:
        map_bytes = format_bytes(s.attention_map_bytes) if s.attention_map_bytes else "fused (0)"
        table.add_row(
            *_stage_cells(s),
            format_shape(s.attention_map_shape),
            map_bytes if s.attention_map_shape is not None else "-",
        )
    return fitted(table, ("grid", "N", "depth", "heads", "dim"))


def stage_macs_table(stages: Sequence[StageSummary], total_macs: int) -> FittedTable:
    """Where each stage's MACs go: attention matmuls, SR conv, q/kv/proj projections, MLP, other."""
    table = Table(title="MACs by stage (attn: q@k^T and attn@v; proj: q, kv, out)", title_justify="left")
    for name in ("stage", "MACs", "share", "attn", "SR conv", "proj", "MLP", "other"):
        table.add_column(name, justify="right")
    for s in stages:
        share = f"{100 * s.macs / total_macs:.1f}%" if total_macs else "-"
        table.add_row(
            str(s.index),
            format_count(s.macs),
            share,
            *(format_count(v) for v in (s.attention_macs, s.sr_macs, s.projection_macs, s.mlp_macs, s.other_macs)),
        )
    return fitted(table, ("other", "share"))


@dataclass(frozen=True, slots=True)
class _Column:
    header: str
    right: bool = False
    style: str = ""
    shrink: bool = False
    """May be cut (with an ellipsis) when the console is too narrow."""


_OP_COLUMNS = (
    _Column("#", right=True, style="dim"),
    _Column("step", shrink=True),
    _Column("op"),
    _Column("module", style="dim", shrink=True),
    _Column("output"),
    _Column("MACs", right=True),
    _Column("alloc", right=True),
    _Column(""),
)


def _op_cells(op: OpRecord, shown_label: str, with_source: bool) -> list[str]:
    note = "view" if op.view else ("copy" if op.kind.value in ("reshape", "contiguous") else "")
    if op.cost_rule.value == "none":
        note = "no cost rule"
    cells = [
        str(op.index),
        shown_label,
        short_op(op),
        op.module or "(model)",
        format_shape(op.output),
        format_count(op.macs) if op.macs else "",
        format_bytes(op.alloc_bytes) if op.alloc_bytes else "",
        note,
    ]
    if with_source:
        cells.append(op.source or "")
    return cells


class OpTable:
    """The annotated op table as a light rich renderable.

    Columns are laid out here rather than by ``rich.table.Table``, whose per-cell measuring cost
    0.2 s for the ~150 rows of a default ``run`` (a sixth of a whole run). Section titles span
    the row; when the console is narrow the source and module columns are dropped (and named
    under the table) and long step labels are shortened, so no number is ever cut.
    """

    def __init__(
        self, sections: Sequence[OpSection], *, with_source: bool = False, title: str = "Ops", with_module: bool = True
    ) -> None:
        self.title = title
        self.columns = _OP_COLUMNS + ((_Column("source", style="dim"),) if with_source else ())
        self.hidden = frozenset() if with_module else frozenset({"module"})
        self.rows: list[tuple[str, list[str]]] = []
        for section in sections:
            self.rows.append(("section", [section.title]))
            previous: str | None = None
            for op in section.ops:
                label = op.label or ""
                self.rows.append(("op", _op_cells(op, label if label != previous else "", with_source)))
                previous = label

    def _layout(self, max_width: int) -> tuple[list[int], list[int], list[str]]:
        """(indices of the columns shown, their widths, headers of the columns dropped) at ``max_width``.

        Numbers, shapes and the view/copy note are never cut: the source and module columns are
        dropped first, then the step label is shortened (to 12 characters at least).
        """
        widths = [len(c.header) for c in self.columns]
        for kind, cells in self.rows:
            if kind == "op":
                widths = [max(w, len(cell)) for w, cell in zip(widths, cells, strict=True)]
        shown = [i for i, c in enumerate(self.columns) if c.header not in self.hidden]

        def excess() -> int:
            return sum(widths[i] for i in shown) + 2 * (len(shown) - 1) - max_width

        dropped: list[str] = []
        for name in ("source", "module"):
            index = next((i for i, c in enumerate(self.columns) if c.header == name), None)
            if index is not None and index in shown and excess() > 0:
                shown.remove(index)
                dropped.append(name)
        for i in shown:
            if self.columns[i].shrink and excess() > 0:
                widths[i] -= min(excess(), max(0, widths[i] - 12))
        return shown, [widths[i] for i in shown], dropped

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        shown, widths, dropped = self._layout(options.max_width)
        columns = [self.columns[i] for i in shown]
        yield Text(self.title, style="italic")
        header = Text()
        for i, (column, width) in enumerate(zip(columns, widths, strict=True)):
            header.append(("  " if i else "") + _fit(column.header, width, column.right), style="bold")
        header.rstrip()
        yield header
        yield Text("-" * min(options.max_width, sum(widths) + 2 * (len(widths) - 1)), style="dim")
        for kind, cells in self.rows:
            if kind == "section":
                yield Text(cells[0], style="bold cyan", overflow="fold")
                continue
            line = Text(no_wrap=True, overflow="fold")
            for i, (column, width, index) in enumerate(zip(columns, widths, shown, strict=True)):
                line.append(("  " if i else "") + _fit(cells[index], width, column.right), style=column.style)
            line.rstrip()
            yield line
        if dropped:
            yield dropped_note(dropped, options.max_width)


def _fit(text: str, width: int, right: bool) -> str:
    if len(text) > width:
        return text[: max(0, width - 1)] + "…"
    return text.rjust(width) if right else text.ljust(width)


def op_table(sections: Sequence[OpSection], *, with_source: bool = False, title: str = "Ops") -> OpTable:
    """Annotated op table: step label, op, module, output shape, MACs, new bytes and a view/copy note."""
    return OpTable(sections, with_source=with_source, title=title)


def flat_op_table(ops: Sequence[OpRecord], *, with_source: bool = False, title: str = "Ops") -> OpTable:
    """Every given op in execution order, without sections."""
    return op_table([OpSection("selected ops", tuple(ops))], with_source=with_source, title=title)


#: The one line under the short ``run`` view that says how to see more.
MORE_HINT = "more: --ops (every stage), --all (every op), --stage 2, --kind sr_conv, --memory"
#: Op rows the short view shows for a model without a recognisable attention block.
_BRIEF_ROWS = 25


def _in_attention(op: OpRecord) -> bool:
    parts = (op.module or "").split(".")
    return any(part in ("attn", "attention", "self_attn") or part.startswith("attn") for part in parts)


def brief_sections(trace: Trace) -> list[OpSection]:
    """The part of the walkthrough that matters first: the attention of the first block of the first stage.

    For PVT that is q, the SR conv, kv, the scores q@k^T, softmax and attention@v with their shapes
    (dropouts, identities at inference, are left out). A model without a recognisable attention
    block gets its first ops instead.
    """
    for section in op_sections(trace, collapse=True):
        if section.ops[0].block is None:
            continue
        attention = tuple(op for op in section.ops if _in_attention(op) and op.kind.value != "dropout")
        if attention:
            module = min((op.module for op in attention if op.module), key=len, default="")
            return [OpSection(f"{section.title}: attention ({module})", attention)]
    ops = trace.ops[:_BRIEF_ROWS]
    rest = len(trace.ops) - len(ops)
    return [OpSection(f"first {len(ops)} ops" + (f" of {len(trace.ops)}" if rest else ""), tuple(ops))] if ops else []


def render_trace(
    trace: Trace,
    *,
    show_all: bool = False,
    stages: Iterable[int] | None = None,
    kinds: Iterable[str] | None = None,
    with_source: bool = False,
    brief: bool = False,
) -> RenderableType:
    """The ``pvttrace run`` view: header, stage table and the annotated op table.

    By default one block per stage is shown with the stage's entry and exit ops (identical
    blocks collapsed and counted); ``show_all`` lists every op; ``stages``/``kinds`` filter.
    ``brief`` (the CLI's default) keeps one screen: the header, the stage table and the first
    stage's attention walkthrough (:func:`brief_sections`), then a line saying how to see more.
    """
    parts: list[RenderableType] = [_header(trace)]
    if brief:
        if trace.stages:
            parts.append(stage_table(trace.stages))
        sections = brief_sections(trace)
        if sections:
            title = "Walkthrough" + (" (module paths in the section title)" if trace.stages else "")
            parts.append(OpTable(sections, with_source=with_source, title=title, with_module=not trace.stages))
        parts.append(Text(MORE_HINT, style="dim"))
        return Group(*parts)
    if trace.stages:  # models without a recognisable pyramid have no stage rows
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
        lines.append(f"## {trace.model + ': ' if trace.model is not None else ''}{trace.config.describe()}")
        lines.append("")
        lines.extend(f"- {note}" for note in fidelity(trace.config).notes())
    elif trace.model is not None:
        lines.append(f"## {trace.model}")
        lines.append("")
    lines.append(f"- params: {t.params:,} ({format_count(t.params)}), param bytes {format_bytes(t.param_bytes)}")
    lines.append(f"- MACs: {t.macs:,} ({format_count(t.macs)}); FLOPs: {t.flops:,} ({format_count(t.flops)})")
    lines.append(f"- outputs: {', '.join(format_shape(s) for s in trace.outputs)}")
    if t.peak_memory_bytes:
        from pvttrace.render.memory import memory_summary_lines

        lines.extend(f"- {line}" for line in memory_summary_lines(trace))
    lines.append(f"- convention: {CONVENTIONS[trace.convention]}")
    lines.append("")
    header = [*_STAGE_HEADER, "MACs", "attention MACs", "attn map"]
    lines.append(markdown_row(header))
    lines.append(markdown_row(["---"] * len(header)))
    for s in trace.stages:
        lines.append(
            markdown_row(
                [
                    *_stage_cells(s),
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
    lines.append(markdown_row(header))
    lines.append(markdown_row(["---"] * len(header)))
    for section in sections:
        lines.append(markdown_row(["", f"**{section.title}**", "", "", "", "", "", ""]))
        for op in section.ops:
            lines.append(
                markdown_row(
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


def coverage_table(trace: Trace) -> FittedTable:
    """Every op name the trace saw: count, kind, how it was costed, and the MACs it added up to."""
    table = Table(
        title=f"Op coverage ({trace.totals.ops} ops, {trace.totals.uncosted_ops} without a cost rule)",
        title_justify="left",
    )
    for name in ("op", "kind", "count", "cost", "MACs"):
        table.add_column(name, justify="right" if name in ("count", "MACs") else "left")
    for row in op_coverage(trace):
        style = "yellow" if row.rule.value == "none" else None
        table.add_row(
            row.op,
            row.kind.value,
            str(row.count),
            Text(RULE_TEXT[row.rule], style=style or ""),
            format_count(row.macs) if row.macs else "",
        )
    return fitted(table, ("kind",))


def coverage_markdown(trace: Trace) -> str:
    """The coverage table as GitHub markdown."""
    lines = [
        f"- convention: {CONVENTIONS[trace.convention]}",
        f"- ops: {trace.totals.ops}, without a cost rule: {trace.totals.uncosted_ops}",
        "",
        markdown_row(["op", "kind", "count", "cost", "MACs"]),
        markdown_row(["---"] * 5),
    ]
    for row in op_coverage(trace):
        lines.append(
            markdown_row([f"`{row.op}`", row.kind.value, str(row.count), RULE_TEXT[row.rule], f"{row.macs:,}"])
        )
    return "\n".join(lines) + "\n"
