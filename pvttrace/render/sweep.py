"""Turn sweep results into rich renderables (tables and a terminal log-log chart), markdown and CSV.

Rendering only: no torch, no typer, no matplotlib, no printing. The CLI prints what these return.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pvttrace.analyses.sweep import Metric, PowerFit, SweepPoint, SweepResult, SweepSeries
from pvttrace.render.fitwidth import FittedTable, fitted
from pvttrace.render.markdown import markdown_row
from pvttrace.render.provenance import provenance_lines
from pvttrace.render.tabular import csv_text

__all__ = [
    "GrowthChart",
    "format_exponent",
    "render_sweep",
    "sweep_csv",
    "sweep_markdown",
    "sweep_table",
]

#: Marker and colour of the n-th configuration in terminal charts (cycled).
MARKERS = "ox+#@%&$"
COLORS = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta")
#: Marker of a chart cell where points of several configurations land.
OVERLAP_MARKER = "*"

_TABLE_CAPTION = (
    "(sK): stage with the largest share at that size; N: stage-1 tokens; "
    "k: least-squares slope of log(value) vs log(N), value ~ N^k"
)


def _fixed(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # never "-0.00"


def format_exponent(fit: PowerFit | None) -> str:
    """``N^2.00``; ``-`` when no fit exists (a zero value cannot be placed on a log scale)."""
    return "-" if fit is None else f"N^{_fixed(fit.exponent, 2)}"


def _img(point: SweepPoint) -> str:
    h, w = point.img
    return str(h) if h == w else f"{h}x{w}"


def _cell(metric: Metric, point: SweepPoint) -> str:
    text = metric.format(point.value)
    return text if point.dominant_stage is None else f"{text} (s{point.dominant_stage})"


def _fit_rows(series: Sequence[SweepSeries]) -> list[tuple[str, list[str]]]:
    return [
        ("growth k", [format_exponent(s.fit) for s in series]),
        ("fit r²", ["-" if s.fit is None else f"{s.fit.r_squared:.4f}" for s in series]),
        ("end slope", ["-" if s.fit is None else _fixed(s.fit.end_slope, 2) for s in series]),
        *(
            [
                (
                    "leading k",
                    ["-" if s.leading_exponent is None else f"N^{_fixed(s.leading_exponent, 2)}" for s in series],
                )
            ]
            if any(s.leading_exponent is not None for s in series)
            else []
        ),
    ]


def _metric_heading(metric: Metric) -> str:
    unit = metric.unit.value
    return metric.title if unit in metric.title else f"{metric.title} ({unit})"


def sweep_table(result: SweepResult, metric: Metric) -> FittedTable:
    """One metric: rows are image sizes, columns are configurations; the fit rows close the table."""
    series = result.series_of(metric)
    table = Table(
        title=_metric_heading(metric),
        title_justify="left",
        title_style="bold",
        caption=f"{metric.description}.",
        caption_justify="left",
    )
    table.add_column("img", justify="right")
    table.add_column("N", justify="right")
    for s in series:
        table.add_column(s.column.label, justify="right")
    for size_points in zip(*(s.points for s in series), strict=True):
        first = size_points[0]
        table.add_row(_img(first), str(first.tokens), *(_cell(metric, p) for p in size_points))
    table.add_section()
    for name, cells in _fit_rows(series):
        table.add_row(name, "", *cells)
    return fitted(table, ("N",))


# ---------------------------------------------------------------------------------- chart
def _position(value: float, low: float, high: float, cells: int) -> int:
    if high <= low:
        return cells // 2
    return round((math.log(value) - math.log(low)) / (math.log(high) - math.log(low)) * (cells - 1))


@dataclass(frozen=True, slots=True)
class GrowthChart:
    """A log-log character chart of one metric: x = stage-1 tokens (labelled by image size), one marker per config.

    Lines between a configuration's points are dotted; a cell where several configurations'
    points meet shows ``*``. It fits the console's width (capped at ``max_width``).
    """

    series: tuple[SweepSeries, ...]
    height: int = 12
    max_width: int = 100

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        """Render within the available width."""
        yield from self.lines(min(options.max_width, self.max_width))

    def lines(self, width: int) -> list[Text]:
        """The chart as lines of at most ``width`` characters."""
        points = [p for s in self.series for p in s.points if p.value is not None and p.value > 0]
        metric = self.series[0].metric if self.series else None
        if metric is None or not points:
            return [Text("(nothing to chart: no positive values)", style="dim")]
        y_low = min(p.value or 0 for p in points)
        y_high = max(p.value or 0 for p in points)
        x_low = min(p.tokens for p in points)
        x_high = max(p.tokens for p in points)
        y_labels = {0: metric.format(y_high), self.height - 1: metric.format(y_low)}
        if self.height >= 5 and y_high > y_low:
            y_labels[(self.height - 1) // 2] = metric.format(_middle_value(y_low, y_high, self.height))
        label_width = max(len(t) for t in y_labels.values())
        plot_width = max(10, width - label_width - 3)
        cells: dict[tuple[int, int], set[int]] = {}
        dots: dict[tuple[int, int], int] = {}
        for index, s in enumerate(self.series):
            placed = [
                (
                    _position(p.tokens, x_low, x_high, plot_width),
                    self.height - 1 - _position(p.value, y_low, y_high, self.height),
                )
                for p in sorted(s.points, key=lambda p: p.tokens)
                if p.value is not None and p.value > 0
            ]
            for (c0, r0), (c1, r1) in itertools.pairwise(placed):
                for c in range(c0 + 1, c1):
                    r = round(r0 + (r1 - r0) * (c - c0) / (c1 - c0))
                    dots.setdefault((r, c), index)
            for col, row in placed:
                cells.setdefault((row, col), set()).add(index)
        out = [Text(f"{metric.title} vs image size (log-log)", style="bold")]
        for row in range(self.height):
            line = Text(f"{y_labels.get(row, ''):>{label_width}} {'┤' if row in y_labels else '│'}")
            for col in range(plot_width):
                owners = cells.get((row, col))
                if owners and len(owners) > 1:
                    line.append(OVERLAP_MARKER, style="bold")
                elif owners:
                    (owner,) = owners
                    line.append(MARKERS[owner % len(MARKERS)], style=f"bold {COLORS[owner % len(COLORS)]}")
                elif (row, col) in dots:
                    owner = dots[(row, col)]
                    line.append("·", style=COLORS[owner % len(COLORS)])
                else:
                    line.append(" ")
            out.append(line)
        out.extend(self._x_axis(label_width, plot_width, x_low, x_high))
        out.extend(self._legend(width, overlap=any(len(o) > 1 for o in cells.values())))
        return out

    def _x_axis(self, label_width: int, plot_width: int, x_low: int, x_high: int) -> list[Text]:
        ticks: dict[int, str] = {}
        for p in self.series[0].points:
            ticks.setdefault(_position(p.tokens, x_low, x_high, plot_width), _img(p))
        axis = ["─"] * plot_width
        labels = [" "] * (plot_width + 8)
        free_from = 0
        for col, text in sorted(ticks.items()):
            axis[col] = "┬"
            start = max(0, min(col - len(text) // 2, plot_width - len(text)))
            if start >= free_from:
                labels[start : start + len(text)] = list(text)
                free_from = start + len(text) + 1
        pad = " " * (label_width + 1)
        return [
            Text(pad + "└" + "".join(axis)),
            Text(pad + " " + "".join(labels).rstrip()),
            Text(pad + " image size (x: stage-1 tokens N, log scale)", style="dim"),
        ]

    def _legend(self, width: int, *, overlap: bool) -> list[Text]:
        entries = []
        for index, s in enumerate(self.series):
            entry = Text()
            entry.append(MARKERS[index % len(MARKERS)], style=f"bold {COLORS[index % len(COLORS)]}")
            entry.append(f" {s.column.label} ~{format_exponent(s.fit)}")
            entries.append(entry)
        if overlap:
            entries.append(Text(f"{OVERLAP_MARKER} several"))
        lines: list[Text] = []
        current = Text("")
        for entry in entries:
            if current.plain and len(current.plain) + 3 + len(entry.plain) > width:
                lines.append(current)
                current = Text("")
            if current.plain:
                current.append("   ")
            current.append_text(entry)
        lines.append(current)
        return lines


def _middle_value(low: float, high: float, height: int) -> float:
    """The value on the chart's middle labelled row (log-linear between low and high)."""
    share = 1 - ((height - 1) // 2) / (height - 1)
    return math.exp(math.log(low) + share * (math.log(high) - math.log(low)))


# ---------------------------------------------------------------------------------- views
def _header(result: SweepResult) -> Panel:
    lines = Text()
    lines.append(result.title + "\n", style="bold")
    sizes = ", ".join(f"{h}" if h == w else f"{h}x{w}" for h, w in result.sizes)
    lines.append(f"sizes {sizes}   ({len(result.columns)} configuration(s) x {len(result.sizes)} size(s))\n")
    for column in result.columns:
        lines.append(f"{column.label}: ", style="bold")
        lines.append(column.describe() + "\n")
    lines.append(_TABLE_CAPTION + "\n", style="dim")
    convention, made = _provenance(result)
    lines.append(convention + "\n", style="dim")
    lines.append(made, style="dim")
    devices = sorted({p.device for p in result.provenances})
    where = f"  ({', '.join(devices)} device)" if devices else ""
    return Panel(lines, title=f"pvttrace sweep{where}", title_align="left")


def _provenance(result: SweepResult) -> list[str]:
    """The convention line and the dtype/device line, read from the sweep's traces."""
    if not result.provenances:
        return ["convention: not recorded", "dtype, device: not recorded"]
    return provenance_lines([c.label for c in result.columns], result.provenances)


def render_sweep(result: SweepResult, *, chart: bool = True) -> RenderableType:
    """The ``pvttrace sweep`` view: a header, then per metric a table and (optionally) a log-log chart."""
    parts: list[RenderableType] = [_header(result)]
    for metric in result.metrics:
        parts.append(sweep_table(result, metric))
        if chart:
            parts.append(GrowthChart(result.series_of(metric)))
            parts.append(Text(""))
    return Group(*parts)


def sweep_markdown(result: SweepResult) -> str:
    """The same tables as :func:`render_sweep` as GitHub markdown (no chart)."""
    lines = [f"## Sweep: {result.title}", ""]
    for column in result.columns:
        lines.append(f"- **{column.label}**: {column.describe()}")
    lines.extend(f"- {line}" for line in _provenance(result))
    lines.append(f"- {_TABLE_CAPTION}")
    for metric in result.metrics:
        series = result.series_of(metric)
        lines += ["", f"### {_metric_heading(metric)}", "", metric.description + ".", ""]
        header = ["img", "N", *(s.column.label for s in series)]
        lines.append(markdown_row(header))
        lines.append(markdown_row(["---:"] * len(header)))
        for size_points in zip(*(s.points for s in series), strict=True):
            first = size_points[0]
            lines.append(markdown_row([_img(first), str(first.tokens), *(_cell(metric, p) for p in size_points)]))
        for name, cells in _fit_rows(series):
            lines.append(markdown_row([f"**{name}**", "", *cells]))
    return "\n".join(lines) + "\n"


def sweep_csv(result: SweepResult) -> str:
    """Long-form CSV: one row per (metric, configuration, size) with per-stage values and the fit."""
    stage_count = max((len(p.stage_values or ()) for s in result.series for p in s.points), default=0)
    header = [
        "metric",
        "unit",
        "config",
        "img",
        "tokens",
        "value",
        "dominant_stage",
        *(f"stage{i + 1}" for i in range(stage_count)),
        "exponent",
        "r_squared",
        "end_slope",
    ]
    rows: list[list[str | int | float | None]] = []
    for s in result.series:
        fit = s.fit
        for p in s.points:
            stages = list(p.stage_values or ())
            rows.append(
                [
                    s.metric.name,
                    s.metric.unit.value,
                    s.column.label,
                    f"{p.img[0]}x{p.img[1]}",
                    p.tokens,
                    p.value,
                    p.dominant_stage,
                    *(stages + [None] * (stage_count - len(stages))),
                    None if fit is None else _fixed(fit.exponent, 6),
                    None if fit is None else _fixed(fit.r_squared, 6),
                    None if fit is None else _fixed(fit.end_slope, 6),
                ]
            )
    return csv_text(header, rows)
