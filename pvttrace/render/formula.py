"""Turn cost formulas (:mod:`pvttrace.analyses.formula`) into rich renderables.

Rendering only: no torch, no typer, no printing. Each stage gets one table: a row per cost
category with its MACs per block and per stage in the stage's own names (``N1 = h1*w1`` tokens,
``N1'`` keys), and the leading growth term in H and W.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pvttrace.analyses.formula import (
    CATEGORIES,
    PEAK_NOTE,
    ModelFormula,
    StageChange,
    expr_text,
    growth_text,
    key_ratio,
    python_expr,
    readable,
)
from pvttrace.base.units import format_count
from pvttrace.records import CONVENTION

__all__ = ["render_formula", "render_formula_diff", "render_values"]

_TITLES = {
    "attention": "attention",
    "sr": "SR conv",
    "projection": "projections",
    "mlp": "MLP",
    "other": "other",
    "total": "total",
}


def _header(formula: ModelFormula) -> list[RenderableType]:
    variables = ", ".join(formula.symbolic)
    fixed = ", ".join(f"{k}={v}" for k, v in formula.fixed.items())
    hint = "x".join(str(formula.hint[k]) for k in ("H", "W") if k in formula.hint)
    lines: list[RenderableType] = [
        Text(f"{formula.name}: MACs as exact formulas of {variables}" + (f" ({fixed})" if fixed else ""), style="bold"),
        Text(CONVENTION, style="dim"),
        Text(
            f"traced once at {hint}"
            + (f", B={formula.hint['B']}" if "B" in formula.symbolic else "")
            + (
                "; one block per stage, times the depth (blocks of a stage are identical)"
                if formula.traced_depths is not None
                else ""
            )
        ),
    ]
    ranges = "; ".join(
        f"{name} >= {lo}" if hi is None else f"{lo} <= {name} <= {hi}" for name, (lo, hi) in formula.ranges.items()
    )
    lines.append(
        Text(
            f"holds for {ranges} where {len(formula.guards)} guard(s) torch recorded hold "
            "(--format json lists them; other sizes: the formula does not apply)"
        )
    )
    return lines


def _stage_table(formula: ModelFormula, index: int) -> Table:
    stage = formula.stages[index]
    definitions = ", ".join(f"{s.name} = {expr_text(e)}" for s, e in stage.definitions)
    ratio = key_ratio(stage, formula.symbols)
    caption = definitions + (f"; {ratio}" if ratio else "")
    table = Table(
        title=(
            f"stage {stage.index} ({stage.depth} block{'s' if stage.depth != 1 else ''}, "
            f"{format_count(stage.params)} params)"
        ),
        title_justify="left",
        caption=caption or None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("MACs")
    if stage.per_block is not None:
        table.add_column("per block", overflow="fold")
    table.add_column("stage", overflow="fold")
    table.add_column("leading term", overflow="fold")
    for category in CATEGORIES:
        expr = stage.macs[category]
        if expr == 0 and category != "total":
            continue
        row = [_TITLES[category]]
        if stage.per_block is not None:
            row.append(expr_text(readable(stage, stage.per_block[category])))
        row += [expr_text(readable(stage, expr)), growth_text(expr, formula.symbols)]
        table.add_row(*row, style="bold" if category == "total" else None)
    if stage.attention_map is not None:
        size = expr_text(readable(stage, stage.attention_map))
        materialised = expr_text(readable(stage, stage.attention_map_bytes))
        row = ["attn map"] + ([""] if stage.per_block is not None else [])
        row += [
            f"{size} elements; {materialised} bytes materialised",
            growth_text(stage.attention_map, formula.symbols),
        ]
        table.add_row(*row, style="dim")
    return table


def render_formula(formula: ModelFormula, *, ops: bool = False) -> RenderableType:
    """Header, one table per stage, the total and its growth, and what is not a closed form."""
    parts: list[RenderableType] = [*_header(formula)]
    for i in range(len(formula.stages)):
        parts.append(_stage_table(formula, i))
    outside = formula.outside_macs["total"]
    if outside != 0:
        parts.append(Text(f"outside the stages (stem, head): {expr_text(outside)} MACs"))
    parts.append(Text(f"total MACs {growth_text(formula.macs, formula.symbols)}", style="bold"))
    parts.append(Text(f"params: {formula.params:,} (constant: no parameter depends on the input size)"))
    parts.append(Text(PEAK_NOTE, style="dim"))
    for note in formula.notes:
        parts.append(Text(f"note: {note}", style="dim"))
    if ops:
        table = Table(title="ops (traced model)", title_justify="left", box=box.SIMPLE_HEAD)
        for column in ("#", "module", "op", "output", "MACs"):
            table.add_column(column, overflow="fold")
        for op in formula.ops:
            table.add_row(
                str(op.index),
                op.module,
                op.label or op.op,
                "[" + ", ".join(python_expr(d) for d in op.output) + "]",
                python_expr(op.macs),
            )
        parts.append(table)
    return Group(*parts)


def render_values(formula: ModelFormula, rows: Sequence[tuple[str, dict[str, int]]]) -> RenderableType:
    """The formula evaluated at sizes: a row per size, MACs total and per stage."""
    table = Table(title=f"{formula.name}: formula evaluated", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("size")
    table.add_column("MACs", justify="right")
    for stage in formula.stages:
        table.add_column(f"stage {stage.index}", justify="right")
    for size, values in rows:
        values_at = formula.evaluate(values)
        table.add_row(size, f"{values_at.macs:,}", *(f"{s.macs['total']:,}" for s in values_at.stages))
    return table


def render_formula_diff(
    a: ModelFormula, b: ModelFormula, labels: tuple[str, str], changes: Sequence[StageChange]
) -> RenderableType:
    """Per stage and category: the formula before and after, and how the growth changes."""
    table = Table(
        title=f"{a.name}: {labels[0]} -> {labels[1]} (MACs, readable names of each side)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for column in ("stage", "MACs", labels[0], labels[1], "growth"):
        table.add_column(column, overflow="fold")
    for change in changes:
        before = "-" if change.before_growth is None else change.before_growth.describe()
        lead_a = "" if change.before_growth is None else str(change.before_growth.term)
        lead_b = "" if change.after_growth is None else str(change.after_growth.term)
        growth = f"{lead_a} -> {lead_b}" if lead_a != lead_b else f"{before}, unchanged"
        table.add_row(
            str(change.stage), _TITLES[change.category], expr_text(change.before), expr_text(change.after), growth
        )
    definitions = []
    for stage_a, stage_b in zip(a.stages, b.stages, strict=True):
        if stage_a.definitions != stage_b.definitions:
            da = ", ".join(f"{s.name} = {expr_text(e)}" for s, e in stage_a.definitions if "'" in s.name)
            db = ", ".join(f"{s.name} = {expr_text(e)}" for s, e in stage_b.definitions if "'" in s.name)
            definitions.append(
                Text(
                    f"stage {stage_a.index} keys: {labels[0]}: {da or 'N (no reduction)'}; "
                    f"{labels[1]}: {db or 'N (no reduction)'}"
                )
            )
    if not changes:
        return Text("the two formulas are identical")
    return Group(table, *definitions)
