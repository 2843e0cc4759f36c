"""Turn a :class:`pvttrace.analyses.diff.TraceDiff` into rich renderables and markdown text.

Rendering only: no torch, no typer, no printing. The CLI prints what these return.

Ratios are "this configuration / the baseline" (``x64``, ``x0.25``, ``=``). A change of at
least x2 either way is highlighted: bold red when a cost grows, bold green when it shrinks
(bold in markdown), so the largest changes stand out at a glance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pvttrace.analyses.diff import (
    Change,
    OpRow,
    OpStatus,
    StageDiff,
    StageMetric,
    TotalMetric,
    TraceDiff,
    differing_settings,
    summary_lines,
)
from pvttrace.base.errors import UserInputError
from pvttrace.base.units import format_bytes, format_count, format_ratio, format_shape
from pvttrace.records import StageSummary
from pvttrace.render.fitwidth import FittedTable, fitted
from pvttrace.render.markdown import markdown_row
from pvttrace.render.provenance import provenance_lines
from pvttrace.render.trace import short_op

__all__ = ["diff_markdown", "op_diff_table", "render_diff", "stage_diff_table", "totals_diff_table"]

_HIGHLIGHT = 2.0
_OP_LEGEND = " (- absent in a configuration, + not in the baseline, * changed)"


def _ratio(change: Change) -> str:
    if change.value is None or change.baseline is None:
        return ""
    return format_ratio(change.value, change.baseline)


def _ratio_style(change: Change) -> str:
    """Bold red for a change of x2 or more upward, bold green for x0.5 or less, dim for none."""
    if change.value is None or change.baseline is None or change.value == change.baseline:
        return "dim"
    ratio = change.ratio
    if ratio is None or ratio >= _HIGHLIGHT:
        return "bold red"
    if ratio <= 1 / _HIGHLIGHT:
        return "bold green"
    return ""


def _is_large(change: Change) -> bool:
    return _ratio_style(change) in ("bold red", "bold green")


def _signed(value: int | None, as_bytes: bool) -> str:
    if value is None:
        return ""
    if value == 0:
        return "0"
    sign = "+" if value > 0 else "-"
    return sign + (format_bytes(abs(value)) if as_bytes else format_count(abs(value)))


# ---------------------------------------------------------------------------------- what each table shows
# (title, metric, formatter) of the per-stage columns that carry a ratio.
_STAGE_COSTS: tuple[tuple[str, StageMetric, Callable[[int], str]], ...] = (
    ("map bytes", StageMetric.ATTENTION_MAP_BYTES, format_bytes),
    ("attn MACs", StageMetric.ATTENTION_MACS, format_count),
    ("SR MACs", StageMetric.SR_MACS, format_count),
    ("stage MACs", StageMetric.MACS, format_count),
)

_TOTALS: tuple[tuple[str, TotalMetric, bool], ...] = (
    ("params", TotalMetric.PARAMS, False),
    ("MACs", TotalMetric.MACS, False),
    ("FLOPs", TotalMetric.FLOPS, False),
    ("param bytes", TotalMetric.PARAM_BYTES, True),
    ("largest activation", TotalMetric.LARGEST_ACTIVATION_BYTES, True),
    ("activation peak", TotalMetric.PEAK_ACTIVATION_BYTES, True),
    ("peak memory", TotalMetric.PEAK_MEMORY_BYTES, True),
)


def _total_value(value: int, as_bytes: bool, exact: bool = True) -> str:
    if as_bytes:
        return format_bytes(value)
    return f"{value:,} ({format_count(value)})" if exact else format_count(value)


def _stage_cells(stage: StageSummary) -> list[str]:
    return [str(stage.tokens), str(stage.kv_tokens), format_shape(stage.attention_map_shape)]


# ---------------------------------------------------------------------------------- rich
def _descriptions(diff: TraceDiff) -> list[str]:
    """Per column: the model and input, plus the differing settings when the label does not already say them."""
    configs = [t.config for t in diff.traces]
    settings = differing_settings([c for c in configs if c is not None]) if None not in configs else []
    out = []
    for i, trace in enumerate(diff.traces):
        text = trace.config.describe() if trace.config is not None else f"input {format_shape(trace.input_shape)}"
        if settings and settings[i] and settings[i] != diff.labels[i]:
            text += f"; {settings[i]}"
        out.append(text + ("  (baseline)" if i == 0 else ""))
    return out


def _header(diff: TraceDiff) -> Panel:
    lines = Text()
    for label, described in zip(diff.labels, _descriptions(diff), strict=True):
        lines.append(label, style="bold")
        lines.append(f"  {described}\n")
    lines.append("ratios: configuration / baseline; x2 or more either way highlighted\n", style="dim")
    convention, made = provenance_lines(diff.labels, diff.provenances)
    lines.append(convention + "\n", style="bold yellow" if diff.mixed_conventions else "dim")
    lines.append(made, style="dim")
    return Panel(lines, title="pvttrace diff", title_align="left")


def stage_diff_table(diff: TraceDiff) -> FittedTable:
    """Per stage and configuration: N, N', one block's attention map, and costs with their ratio to the baseline."""
    table = Table(
        title="Stages: one block's attention map, all blocks' MACs, ratios to the baseline", title_justify="left"
    )
    table.add_column("stage", justify="right", no_wrap=True)
    table.add_column("config", no_wrap=True)
    table.add_column("N", justify="right", no_wrap=True)
    table.add_column("N'", justify="right", no_wrap=True)
    table.add_column("attn map", no_wrap=True)
    for title, _, _ in _STAGE_COSTS:
        table.add_column(title, justify="right")
    for stage in diff.stages:
        table.add_section()
        for i, label in enumerate(diff.labels):
            summary = stage.stages[i]
            first = str(stage.index) if i == 0 else ""
            if summary is None:
                table.add_row(first, Text(label), Text("absent", style="dim"), *[""] * (2 + len(_STAGE_COSTS)))
                continue
            cells: list[str | Text] = [first, Text(label), *_stage_cells(summary)]
            for _, metric, fmt in _STAGE_COSTS:
                cells.append(_cost_cell(stage, i, metric, fmt))
            table.add_row(*cells)
    return fitted(table, ("N", "attn map", "SR MACs", "N'"))


def _cost_cell(stage: StageDiff, config: int, metric: StageMetric, fmt: Callable[[int], str]) -> Text:
    change = stage.change(config, metric)
    text = Text(fmt(change.value or 0))
    if config > 0 and change.baseline is not None:
        text.append(" ")
        text.append(f"{_ratio(change):>4}", style=_ratio_style(change))
    return text


def totals_diff_table(diff: TraceDiff, *, exact: bool = True) -> FittedTable:
    """Whole-model params, MACs, FLOPs, parameter bytes and largest activation, with ratio and change per column.

    Counts show their exact digits too; where that is too wide, the table falls back to ``exact=False``.
    """
    table = Table(title="Totals" if exact else "Totals (exact counts: --width or --format json)", title_justify="left")
    table.add_column("")
    for i, label in enumerate(diff.labels):
        table.add_column(Text(label), justify="right")
        if i > 0:
            table.add_column("ratio", justify="right")
            table.add_column("change", justify="right")
    for title, metric, as_bytes in _TOTALS:
        cells: list[str | Text] = [title]
        for i in range(len(diff.traces)):
            change = diff.total(i, metric)
            cells.append(_total_value(change.value or 0, as_bytes, exact))
            if i > 0:
                cells.append(Text(_ratio(change), style=_ratio_style(change)))
                cells.append(_signed(change.delta, as_bytes))
        table.add_row(*cells)
    return fitted(table, ("change",), narrower=totals_diff_table(diff, exact=False) if exact else None)


def _op_side(row: OpRow, config: int) -> tuple[str | Text, str]:
    op = row.ops[config]
    if op is None:
        return Text("absent", style="dim"), ""
    shape_style = "bold yellow" if row.status == OpStatus.SHAPE else ""
    return Text(format_shape(op.output), style=shape_style), format_count(op.macs) if op.macs else ""


def _op_mark(row: OpRow, labels: Sequence[str]) -> str:
    """``- absent`` (in a non-baseline column), ``+ new`` (not in the baseline), ``* shape`` or ``* MACs``."""
    status = row.status
    if status == OpStatus.ABSENT:
        if len(labels) == 2:
            return "- absent"
        return "- absent in " + ", ".join(label for label, op in zip(labels, row.ops, strict=True) if op is None)
    if status == OpStatus.ADDED:
        return "+ new"
    if status == OpStatus.SHAPE:
        return "* shape"
    if status == OpStatus.MACS:
        return "* MACs"
    return ""


def _select_rows(diff: TraceDiff, stages: Iterable[int] | None, changed_only: bool) -> list[OpRow]:
    wanted = None if stages is None else set(stages)
    rows = diff.op_rows or ()
    return [
        row
        for row in rows
        if (wanted is None or row.stage in wanted) and (not changed_only or row.status != OpStatus.SAME)
    ]


def op_diff_table(
    diff: TraceDiff, *, stages: Iterable[int] | None = None, changed_only: bool = False, stacked: bool = False
) -> FittedTable:
    """Ops side by side, aligned by module path and op; absent ops and changed shapes marked.

    Where the module column does not fit, the module path is stacked under the step (``stacked``),
    and then the MACs columns are dropped.

    Raises:
        ValueError: the diff was built without ``with_ops=True``.
    """
    if diff.op_rows is None:
        raise ValueError("the diff has no aligned ops; build it with diff_traces(..., with_ops=True)")
    title = "Ops side by side" + (", changed only" if changed_only else "") + _OP_LEGEND
    table = Table(title=title, title_justify="left")
    if not stacked:
        table.add_column("module", style="dim")
    table.add_column("step (op)" if not stacked else "step (op) / module")
    for label in diff.labels:
        table.add_column(Text(f"{label} output"), no_wrap=True)
        table.add_column("MACs", justify="right", no_wrap=True)
    table.add_column("diff", no_wrap=True)
    previous_stage: int | None = -1
    for row in _select_rows(diff, stages, changed_only):
        if row.stage != previous_stage:
            table.add_section()
            previous_stage = row.stage
        first = next(op for op in row.ops if op is not None)
        op_name = short_op(first)
        step = f"{row.label} ({op_name})" if row.label and row.label != op_name else row.label or op_name
        module = Text(row.module or "(model)", style="dim")
        cells: list[str | Text] = [module, Text(step)] if not stacked else [Text(step + "\n").append_text(module)]
        for i in range(len(diff.labels)):
            cells.extend(_op_side(row, i))
        cells.append(Text(_op_mark(row, diff.labels)))
        table.add_row(*cells)
    if stacked:
        return fitted(table, ("MACs",), wrap=("step (op) / module",))
    return fitted(table, narrower=op_diff_table(diff, stages=stages, changed_only=changed_only, stacked=True))


def _summary(diff: TraceDiff) -> Text:
    text = Text()
    text.append("Summary\n", style="italic")
    text.append("\n".join(summary_lines(diff)))
    return text


def render_diff(
    diff: TraceDiff,
    *,
    ops: bool = False,
    stages: Iterable[int] | None = None,
    changed_only: bool = False,
) -> RenderableType:
    """The ``pvttrace diff`` view: configurations, per-stage table, totals, summary sentences, and ops on request.

    Args:
        diff: the comparison.
        ops: add the op-level side-by-side table (needs ``diff.op_rows``).
        stages: limit the op table to these 1-based stages.
        changed_only: limit the op table to ops that differ.
    """
    parts: list[RenderableType] = [_header(diff), stage_diff_table(diff), totals_diff_table(diff), _summary(diff)]
    if ops:
        parts.append(op_diff_table(diff, stages=stages, changed_only=changed_only))
    return Group(*parts)


# ---------------------------------------------------------------------------------- markdown
def _md_ratio(change: Change) -> str:
    text = _ratio(change)
    return f"**{text}**" if text and _is_large(change) else text


def diff_markdown(
    diff: TraceDiff,
    *,
    ops: bool = False,
    stages: Iterable[int] | None = None,
    changed_only: bool = False,
) -> str:
    """The same view as :func:`render_diff` as GitHub markdown (large changes in bold)."""
    lines: list[str] = ["## pvttrace diff", ""]
    for label, described in zip(diff.labels, _descriptions(diff), strict=True):
        lines.append(f"- `{label}`: {described}")
    convention, made = provenance_lines(diff.labels, diff.provenances)
    lines.append(f"- **{convention}**" if diff.mixed_conventions else f"- {convention}")
    lines.append(f"- {made}")
    lines.append("")
    header = ["stage", "config", "N", "N'", "attn map", *(title for title, _, _ in _STAGE_COSTS)]
    lines.append(markdown_row(header))
    lines.append(markdown_row(["---"] * len(header)))
    for stage in diff.stages:
        for i, label in enumerate(diff.labels):
            summary = stage.stages[i]
            first = str(stage.index) if i == 0 else ""
            if summary is None:
                lines.append(markdown_row([first, label, "absent", *[""] * (2 + len(_STAGE_COSTS))]))
                continue
            cells = [first, label, *_stage_cells(summary)]
            for _, metric, fmt in _STAGE_COSTS:
                change = stage.change(i, metric)
                cell = fmt(change.value or 0)
                cells.append(cell if i == 0 else f"{cell} {_md_ratio(change)}")
            lines.append(markdown_row(cells))
    lines.append("")
    header = [""]
    for i, label in enumerate(diff.labels):
        header += [label] if i == 0 else [label, "ratio", "change"]
    lines.append(markdown_row(header))
    lines.append(markdown_row(["---"] * len(header)))
    for title, total_metric, as_bytes in _TOTALS:
        cells = [title]
        for i in range(len(diff.traces)):
            change = diff.total(i, total_metric)
            cells.append(_total_value(change.value or 0, as_bytes))
            if i > 0:
                cells += [_md_ratio(change), _signed(change.delta, as_bytes)]
        lines.append(markdown_row(cells))
    lines.append("")
    lines.extend(f"- {line}" for line in summary_lines(diff))
    if ops:
        if diff.op_rows is None:
            raise ValueError("the diff has no aligned ops; build it with diff_traces(..., with_ops=True)")
        lines.append("")
        header = ["module", "step", "op"]
        for label in diff.labels:
            header += [f"{label} output", "MACs"]
        header.append("diff")
        lines.append(markdown_row(header))
        lines.append(markdown_row(["---"] * len(header)))
        for row in _select_rows(diff, stages, changed_only):
            first_op = next(op for op in row.ops if op is not None)
            cells = [row.module or "(model)", row.label or "", f"`{short_op(first_op)}`"]
            for side in row.ops:
                cells += (
                    ["absent", ""]
                    if side is None
                    else [format_shape(side.output), format_count(side.macs) if side.macs else ""]
                )
            cells.append(_op_mark(row, diff.labels))
            lines.append(markdown_row(cells))
    return "\n".join(lines) + "\n"


def diff_csv(diff: TraceDiff) -> str:
    """One CSV row per stage and configuration: every stage metric with its ratio to the baseline."""
    from pvttrace.render.tabular import CsvCell, csv_text

    metrics = list(StageMetric)
    header = ["stage", "config", "baseline"]
    for metric in metrics:
        header += [metric.value, f"{metric.value}_ratio"]
    rows: list[list[CsvCell]] = []
    for stage in diff.stages:
        for i, label in enumerate(diff.labels):
            row: list[CsvCell] = [stage.index, label, diff.labels[0]]
            for metric in metrics:
                change = stage.change(i, metric)
                row += [change.value, None if change.ratio is None else round(change.ratio, 6)]
            rows.append(row)
    return csv_text(header, rows)


#: What ``pvttrace diff --plot`` can draw per stage, with its axis label and unit.
PLOT_METRICS: dict[str, tuple[StageMetric, str, str]] = {
    "macs": (StageMetric.MACS, "stage MACs (multiply-accumulates)", "MACs"),
    "attention_macs": (StageMetric.ATTENTION_MACS, "attention MACs (q@k^T + attn@v)", "MACs"),
    "sr_macs": (StageMetric.SR_MACS, "SR conv MACs", "MACs"),
    "attention_map_bytes": (StageMetric.ATTENTION_MAP_BYTES, "one block's attention map (bytes)", "bytes"),
    "kv_tokens": (StageMetric.KV_TOKENS, "key/value tokens N'", "tokens"),
    "params": (StageMetric.PARAMS, "stage parameters", "parameters"),
}


def diff_plot_data(diff: TraceDiff, metric: str) -> tuple[list[str], dict[str, list[float]]]:
    """Stage names and, per configuration, one value of ``metric`` per stage (0 where a stage is missing)."""
    stage_metric = PLOT_METRICS[metric][0]
    names = [f"stage {stage.index}" for stage in diff.stages]
    try:
        values = {
            label: [float(stage.change(i, stage_metric).value or 0) for stage in diff.stages]
            for i, label in enumerate(diff.labels)
        }
    except OverflowError:  # a count of 309 digits or more, read from a damaged file
        raise UserInputError(f"cannot plot {metric}: a value is too large for a float") from None
    return names, values
