"""Render the memory of a trace: header lines, a per-stage table and a block-by-block timeline.

Rendering only: no torch, no typer, no printing. Bytes use binary prefixes (KiB/MiB/GiB).
The numbers and their definitions come from :mod:`pvttrace.memory.estimate`.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pvttrace.base.units import format_bytes
from pvttrace.memory.estimate import FitAnswer, FitSearch, attention_extra_bytes
from pvttrace.records import Trace, TrainingMemory
from pvttrace.render.fitwidth import FittedTable, fitted
from pvttrace.render.markdown import markdown_row
from pvttrace.render.sections import op_sections
from pvttrace.stages.summary import ops_of_stage

__all__ = [
    "fit_breakdown",
    "fit_document",
    "memory_markdown",
    "memory_stage_table",
    "memory_summary_lines",
    "memory_timeline",
    "render_fit",
    "render_memory",
    "training_breakdown",
]

_BAR_WIDTH = 30
_PEAK_MARK = "<- peak"


def _peak_where(trace: Trace) -> str:
    totals = trace.totals
    if totals.peak_op is None:
        return "outside every op"
    op = trace.ops[totals.peak_op]
    where = "head" if op.stage is None else f"stage {op.stage}"
    return f"during op #{op.index} {op.title} ({op.module or 'model'}, {where})"


def training_breakdown(training: TrainingMemory, param_bytes: int) -> list[tuple[str, int]]:
    """The terms of the training peak, in the order of the formula (params include buffers)."""
    activations = max(training.forward_peak_bytes, training.backward_peak_bytes)
    return [
        ("params", param_bytes),
        ("grads", training.grad_bytes),
        (f"{training.optimizer} state", training.optimizer_state_bytes),
        ("activations", activations),
    ]


def memory_summary_lines(trace: Trace) -> list[str]:
    """Plain lines for the run header: the peak memory and what it is made of."""
    totals = trace.totals
    static = totals.param_bytes + totals.buffer_bytes
    lines = [
        f"inference peak {format_bytes(static + totals.peak_activation_bytes)} = params "
        f"{format_bytes(static)} + activations {format_bytes(totals.peak_activation_bytes)} (input included)",
        f"activation peak {_peak_where(trace)}",
    ]
    training = trace.training
    if training is not None:
        terms = " + ".join(f"{name} {format_bytes(value)}" for name, value in training_breakdown(training, static))
        lines.append(f"training peak {format_bytes(training.peak_bytes)} = {terms}")
        saved = format_bytes(training.saved_activation_bytes)
        if training.peak_phase == "backward":
            transient = format_bytes(training.backward_transient_bytes)
            lines.append(f"training activations = saved for backward {saved} + backward transient {transient}")
        else:
            forward = format_bytes(training.forward_peak_bytes)
            lines.append(f"training activations = forward peak {forward} (saved for backward {saved})")
    return lines


def memory_stage_table(trace: Trace) -> FittedTable:
    """Per stage: activation peak while it runs, what stays alive after it, its score maps, saved bytes."""
    training = trace.training is not None
    table = Table(title="Memory by stage", title_justify="left")
    columns = ["stage", "peak activations", "live after stage", "largest op output", "attention extra"]
    if training:
        columns += ["saved for backward", "share"]
    for name in columns:
        table.add_column(name, justify="right")
    saved_total = trace.training.saved_activation_bytes if trace.training is not None else 0
    for stage in trace.stages:
        ops = ops_of_stage(trace.ops, stage.index)
        if not ops:
            continue
        row = [
            str(stage.index),
            format_bytes(stage.peak_activation_bytes) + (" *" if trace.totals.peak_stage == stage.index else ""),
            format_bytes(ops[-1].live_bytes),
            format_bytes(max(op.out_bytes for op in ops)),
            format_bytes(attention_extra_bytes(trace.ops, stage.index)),
        ]
        if training:
            share = f"{100 * stage.saved_activation_bytes / saved_total:.1f}%" if saved_total else "-"
            row += [format_bytes(stage.saved_activation_bytes), share]
        table.add_row(*row)
    table.caption = "* peak stage; attention extra: what one block's attention adds (q, k, v, score maps)"
    table.caption_justify = "left"
    return fitted(table, ("live after stage", "largest op output", "share"))


def _timeline_rows(trace: Trace) -> list[tuple[str, int, int, bool]]:
    """(section title, peak bytes, saved bytes, holds the peak) per stage entry / block / exit / head."""

    rows = []
    for section in op_sections(trace, collapse=False):
        peak = max(op.peak_bytes for op in section.ops)
        saved = sum(op.saved_bytes for op in section.ops)
        has_peak = trace.totals.peak_op is not None and any(op.index == trace.totals.peak_op for op in section.ops)
        rows.append((section.title, peak, saved, has_peak))
    return rows


def _bar(value: int, largest: int, width: int = _BAR_WIDTH) -> str:
    if largest <= 0:
        return ""
    return "#" * max(1 if value else 0, round(width * value / largest))


def memory_timeline(trace: Trace) -> FittedTable:
    """One bar per stage entry, block and exit: the highest activation bytes while it runs; the peak is marked."""
    training = trace.training is not None
    table = Table(title="Activation timeline (inference forward, one bar per block)", title_justify="left")
    table.add_column("section")
    table.add_column("peak", justify="right")
    table.add_column("activations", justify="left", no_wrap=True)
    if training:
        table.add_column("saved", justify="right")
        table.add_column("saved so far", justify="right")
    if trace.training is not None:
        table.caption = (
            f"saved: activation bytes autograd keeps for backward, each storage once, by the section that saved it "
            f"first (params it saves, {format_bytes(trace.training.saved_param_bytes)}, are no extra memory)"
        )
        table.caption_justify = "left"
    rows = _timeline_rows(trace)
    largest = max((peak for _, peak, _, _ in rows), default=0)
    running = 0
    for title, peak, saved, has_peak in rows:
        bar = Text(_bar(peak, largest), style="red" if has_peak else "cyan")
        if has_peak:
            bar.append(f" {_PEAK_MARK}", style="bold red")
        cells: list[str | Text] = [title, format_bytes(peak), bar]
        if training:
            running += saved
            cells += [format_bytes(saved), format_bytes(running)]
        table.add_row(*cells)
    return fitted(table, ("saved so far", "saved"))


def render_memory(trace: Trace) -> RenderableType:
    """The ``run --memory`` additions: the per-stage table and the timeline."""
    return Group(memory_stage_table(trace), memory_timeline(trace))


def memory_markdown(trace: Trace) -> str:
    """The ``run --memory`` additions as GitHub markdown."""
    lines = ["", "### Memory (activation timeline, one row per block)", ""]
    training = trace.training is not None
    header = ["section", "peak activations", "bar"] + (["saved for backward"] if training else [])
    lines.append(markdown_row(header))
    lines.append(markdown_row(["---"] * len(header)))
    rows = _timeline_rows(trace)
    largest = max((peak for _, peak, _, _ in rows), default=0)
    for title, peak, saved, has_peak in rows:
        bar = "`" + _bar(peak, largest, 20) + "`" + (f" {_PEAK_MARK}" if has_peak else "")
        cells = [title, format_bytes(peak), bar] + ([format_bytes(saved)] if training else [])
        lines.append(markdown_row(cells))
    return "\n".join(lines) + "\n"


def _fit_subject(answer: FitAnswer) -> tuple[str, str]:
    """(what was searched, the value with its unit), e.g. ("batch", "37") or ("image side", "1216x1216")."""
    if answer.search == FitSearch.BATCH:
        return "batch", str(answer.value)
    return "square image", f"{answer.value}x{answer.value}"


def fit_breakdown(trace: Trace) -> list[tuple[str, int]]:
    """The terms of the peak a fit answer compares with the budget."""
    totals = trace.totals
    static = totals.param_bytes + totals.buffer_bytes
    if trace.training is not None:
        return training_breakdown(trace.training, static)
    return [("params", static), ("activations (inference peak)", totals.peak_activation_bytes)]


def render_fit(answer: FitAnswer) -> RenderableType:
    """The ``fit`` answer: the largest fitting value, the next one's peak, and the breakdown at the answer."""
    trace = answer.trace
    what, value = _fit_subject(answer)
    mode = f"training step ({trace.training.optimizer})" if trace.training is not None else "inference"
    head = Text()
    if trace.config is not None:
        head.append(trace.config.describe() + "\n")
    elif trace.model:
        head.append(f"{trace.model}, input {'x'.join(map(str, trace.input_shape))}\n")
    budget = format_bytes(answer.budget)
    if answer.reserve:
        budget = f"{format_bytes(answer.budget + answer.reserve)} - reserve {format_bytes(answer.reserve)} = {budget}"
    head.append(f"budget {budget}, {mode}, estimated on the {trace.device} device\n")
    head.append(f"largest {what} that fits: {value}", style="bold green")
    peak = trace.totals.peak_memory_bytes
    head.append(f"  (peak {format_bytes(peak)}, {100 * peak / answer.budget:.1f}% of the budget)\n")
    if answer.next_value is not None and answer.next_peak_bytes is not None:
        nxt = str(answer.next_value) if answer.search == FitSearch.BATCH else f"{answer.next_value}x{answer.next_value}"
        head.append(f"{what} {nxt} needs {format_bytes(answer.next_peak_bytes)}: does not fit\n")
    else:
        head.append("stopped at the search limit\n")
    unit = "batch" if answer.search == FitSearch.BATCH else "side"
    traced = ", ".join(str(v) for v, _ in answer.traced)
    head.append(f"traced ({unit}): {traced}", style="dim")
    table = Table(title=f"Breakdown at {what} {value}", title_justify="left")
    table.add_column("term")
    table.add_column("bytes", justify="right")
    table.add_column("share", justify="right")
    for name, amount in fit_breakdown(trace):
        table.add_row(name, format_bytes(amount), f"{100 * amount / peak:.1f}%" if peak else "-")
    table.add_section()
    table.add_row("peak", format_bytes(peak), "100%")
    table.add_row("headroom", format_bytes(answer.budget - peak), "")
    return Group(head, fitted(table, ("share",)))


def fit_document(answer: FitAnswer) -> dict[str, object]:
    """The ``fit --format json`` document (stable keys; bytes as integers)."""
    trace = answer.trace
    return {
        "schema": "pvttrace.fit/1",
        "search": answer.search.value,
        "budget_bytes": answer.budget,
        "reserve_bytes": answer.reserve,
        "value": answer.value,
        "peak_bytes": trace.totals.peak_memory_bytes,
        "next_value": answer.next_value,
        "next_peak_bytes": answer.next_peak_bytes,
        "breakdown": {name: amount for name, amount in fit_breakdown(trace)},
        "traced": [{"value": v, "peak_bytes": p} for v, p in answer.traced],
        "training": trace.training is not None,
        "config": None if trace.config is None else trace.config.to_dict(),
    }
