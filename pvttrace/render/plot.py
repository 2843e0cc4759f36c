"""Pictures with matplotlib: sweep growth curves (log-log) and per-stage grouped bars.

matplotlib is optional (``pip install 'pvttrace[plot]'``) and imported only inside these
functions, so importing this module costs nothing. Figures are built as plain
``matplotlib.figure.Figure`` objects on the Agg canvas (no pyplot, no global figure state,
no display needed) under matplotlib's default style, whatever the user's matplotlibrc says.
Every function returns its Figure so callers and tests can inspect lines and labels.

Files are deterministic (same data, same bytes with the same matplotlib): SVG ids come from
a fixed ``svg.hashsalt`` and the date is left out; PNG carries no software/version text.
They are written atomically, by :func:`pvttrace.base.jsonio.write_bytes_atomic` (the one atomic writer).

Made for papers: series differ by colour (the Okabe-Ito palette, safe for colour-blind readers),
marker and line style (bars by hatching), so they stay apart in greyscale; SVG text stays text
(``svg.fonttype: none``) so it can be edited; ``dpi`` sets the PNG resolution; a log axis says so.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pvttrace.analyses.sweep import Metric, MetricUnit, SweepResult
from pvttrace.base.errors import TraceFileError, UserInputError
from pvttrace.base.jsonio import write_bytes_atomic
from pvttrace.base.units import format_bytes, format_count

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PLOT_FORMATS",
    "plot_format",
    "plot_stage_bars",
    "plot_sweep",
    "require_matplotlib",
    "save_figure",
    "series_style",
    "shared_settings",
]

#: File suffixes ``--plot`` accepts, mapped to matplotlib format names.
PLOT_FORMATS = {".png": "png", ".svg": "svg"}

_INSTALL_HINT = "install it with: pip install 'pvttrace[plot]' (or pip install matplotlib)"
# Settings every figure is drawn and saved under: defaults plus what makes the bytes stable.
_RC: dict[str, Any] = {"svg.hashsalt": "pvttrace", "svg.fonttype": "none", "font.size": 9.0}
_DPI = 110
#: Okabe & Ito's colour-blind-safe palette (black last: it reads as a reference line).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")
LEGEND_SIZE = 8.5


def series_style(index: int) -> dict[str, Any]:
    """Colour, marker and line style of the ``index``-th series: distinct in colour and in greyscale."""
    return {
        "color": PALETTE[index % len(PALETTE)],
        "marker": MARKERS[index % len(MARKERS)],
        "linestyle": LINESTYLES[index % len(LINESTYLES)],
    }


def require_matplotlib() -> None:
    """Fail early, with an install hint, when matplotlib is missing.

    Raises:
        UserInputError: matplotlib cannot be imported.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserInputError(f"plot needs matplotlib, which is not installed; {_INSTALL_HINT}") from None


def plot_format(path: str) -> str:
    """The format (``png``/``svg``) a plot path asks for, checked before any work is done.

    Raises:
        UserInputError: another suffix, or a folder that does not exist.
    """
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in PLOT_FORMATS:
        raise UserInputError(f"plot={path!r} must end in .png or .svg")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserInputError(f"plot={path!r}: folder {folder} does not exist")
    return PLOT_FORMATS[suffix]


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update(_RC)  # type: ignore[arg-type]  # rcParams keys are typed as literals
        yield


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _value_formatter(unit: MetricUnit | str) -> Callable[[float, int | None], str]:
    if unit == MetricUnit.BYTES:
        return lambda value, _pos: format_bytes(value)
    return lambda value, _pos: format_count(value)


def _format_y_axis(axes: Axes, unit: MetricUnit | str, *, log: bool, values: Sequence[float] = ()) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    axes.yaxis.set_major_formatter(FuncFormatter(_value_formatter(unit)))
    if not log:
        return
    axes.yaxis.set_minor_formatter(NullFormatter())
    distinct = sorted(set(values))
    if distinct and distinct[-1] < 10 * distinct[0] and len(distinct) <= 8:
        # Within one decade a log axis has no labelled ticks: label the values themselves.
        axes.yaxis.set_major_locator(FixedLocator(distinct))
    else:
        # Powers of 2 land on round KiB/MiB/GiB; powers of 10 on round K/M/G.
        base = 2.0 if unit == MetricUnit.BYTES else 10.0
        axes.yaxis.set_major_locator(LogLocator(base=base, numticks=8))


def _tick_label(img: tuple[int, int], tokens: int) -> str:
    size = str(img[0]) if img[0] == img[1] else f"{img[0]}x{img[1]}"
    return f"{size}\n{format_count(tokens, 1)}"


def _draw_metric(axes: Axes, result: SweepResult, metric: Metric) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    series = result.series_of(metric)
    plotted: list[float] = []
    for index, s in enumerate(series):
        points = [p for p in s.points if p.value is not None and p.value > 0]
        if not points:
            continue
        plotted.extend(p.value or 0 for p in points)
        growth = "" if s.fit is None else f" (~N$^{{{s.fit.exponent:.2f}}}$)".replace("-0.00", "0.00")
        axes.plot(
            [p.tokens for p in points],
            [float("nan") if p.value is None else p.value for p in points],
            markersize=5,
            linewidth=1.6,
            label=f"{s.column.label}{growth}",
            **series_style(index),
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    first = series[0].points
    axes.xaxis.set_major_locator(FixedLocator([p.tokens for p in first]))
    axes.set_xticklabels([_tick_label(p.img, p.tokens) for p in first], fontsize=7)
    axes.xaxis.set_minor_locator(NullLocator())
    _format_y_axis(axes, metric.unit, log=True, values=plotted)
    axes.set_xlabel("image size (top) and stage-1 tokens N (bottom), log scale")
    unit = metric.unit.value
    axes.set_ylabel(
        f"{metric.title}, log scale" if unit.lower() in metric.title.lower() else f"{metric.title} ({unit}, log scale)"
    )
    axes.set_title(metric.title)
    axes.grid(True, which="major", linewidth=0.4, alpha=0.5)
    if axes.get_lines():
        axes.legend(fontsize=LEGEND_SIZE, loc="best")


def _is_flat(result: SweepResult, metric: Metric) -> bool:
    """Every configuration's value is the same at every size (parameters, say): a panel with nothing to show."""
    return all(len({p.value for p in s.points}) <= 1 for s in result.series_of(metric))


def plot_sweep(result: SweepResult, metrics: Sequence[Metric | str] | None = None) -> Figure:
    """Growth curves: one log-log panel per metric, one labelled line per configuration.

    x is stage 1's token count N (ticks show the image size and N), y the metric with its unit;
    each line's label carries its fitted exponent. The figure title names the model.

    Raises:
        UserInputError: matplotlib is not installed, or a metric the sweep did not measure.
    """
    require_matplotlib()
    known = {m.name: m for m in result.metrics}
    chosen: list[Metric] = []
    for item in metrics if metrics is not None else result.metrics:
        name = item if isinstance(item, str) else item.name
        if name not in known:
            raise UserInputError(f"metric={name!r} was not part of this sweep ({', '.join(known)})")
        chosen.append(known[name])
    if metrics is None:
        # A metric that does not change with the image size (parameters) would be a flat panel.
        chosen = [m for m in chosen if not _is_flat(result, m)] or chosen
    columns = 1 if len(chosen) == 1 else 2
    rows = -(-len(chosen) // columns)
    with _style():
        figure = _new_figure(6.0 * columns, 4.2 * rows)
        grid = figure.subplots(rows, columns, squeeze=False)
        for index, metric in enumerate(chosen):
            _draw_metric(grid[index // columns][index % columns], result, metric)
        for index in range(len(chosen), rows * columns):
            figure.delaxes(grid[index // columns][index % columns])
        figure.suptitle(f"pvttrace sweep: {result.title}", fontsize=11)
    return figure


def shared_settings(configs: Sequence[Any]) -> str:
    """What every configuration has in common, for a title: ``tiny, 224x224, batch 1, float32, sr 1,1,1,1``.

    Besides the model, size, batch and dtype, it names each per-stage setting (sr, dims, heads,
    depths, mlp ratios), linear SRA and the attention kind that all share but that differs from
    the first one's preset, which a title would otherwise never state.
    """
    from pvttrace.config import get_variant

    if not configs:
        return ""
    first = configs[0]
    parts = []
    basics: tuple[tuple[str, Callable[[Any], str]], ...] = (
        ("variant", lambda c: str(c.variant)),
        ("img", lambda c: f"{c.img[0]}x{c.img[1]}"),
        ("batch", lambda c: f"batch {c.batch}"),
        ("dtype", lambda c: str(c.dtype)),
    )
    for _, show in basics:
        if len({show(c) for c in configs}) == 1:
            parts.append(show(first))
    preset = get_variant(first.variant)
    for field, label in (
        ("sr_ratios", "sr"),
        ("dims", "dims"),
        ("heads", "heads"),
        ("depths", "depths"),
        ("mlp_ratios", "mlp"),
        ("linear_sra", "linear SRA"),
        ("attention", "attention"),
    ):
        value = getattr(first, field)
        if all(getattr(c, field) == value for c in configs) and value != getattr(preset, field):
            text = ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else str(value)
            parts.append(f"{label} {text}")
    return ", ".join(parts)


def plot_stage_bars(
    stages: Sequence[str],
    values: Mapping[str, Sequence[float]],
    *,
    title: str,
    ylabel: str,
    unit: MetricUnit | str = MetricUnit.MACS,
    log: bool = False,
) -> Figure:
    """Grouped bars: one group per stage, one bar per configuration (e.g. the two sides of a diff).

    Args:
        stages: group labels, e.g. ``["stage 1", "stage 2", "stage 3", "stage 4"]``.
        values: configuration label -> one value per stage (in ``stages`` order); dict order is bar order.
        title: figure title (name the model and what differs).
        ylabel: y-axis label with the unit, e.g. ``"MACs (multiply-accumulates)"``.
        unit: ``MACs``/``parameters`` (K/M/G ticks) or ``bytes`` (KiB/MiB/GiB ticks).
        log: log-scale y (for values that differ by orders of magnitude).

    Raises:
        UserInputError: matplotlib is missing, no configurations, or a value list of the wrong length.
    """
    require_matplotlib()
    if not values:
        raise UserInputError("plot_stage_bars needs at least one configuration")
    for label, row in values.items():
        if len(row) != len(stages):
            raise UserInputError(f"values[{label!r}] has {len(row)} value(s) but there are {len(stages)} stage(s)")
    count = len(values)
    width = 0.8 / count
    formatter = _value_formatter(unit)
    with _style():
        figure = _new_figure(max(5.0, 1.1 * len(stages) * max(1, count) / 1.5 + 2.0), 4.0)
        axes = figure.subplots()
        for index, (label, row) in enumerate(values.items()):
            offsets = [i - 0.4 + width * (index + 0.5) for i in range(len(stages))]
            bars = axes.bar(
                offsets,
                list(row),
                width=width * 0.95,
                label=label,
                color=PALETTE[index % len(PALETTE)],
                hatch=HATCHES[index % len(HATCHES)],
                edgecolor="white" if index % len(HATCHES) else None,
                linewidth=0.6,
            )
            axes.bar_label(bars, labels=[formatter(v, None) for v in row], fontsize=7, padding=1)
        axes.set_xticks(range(len(stages)), list(stages))
        if log:
            axes.set_yscale("log")
        _format_y_axis(axes, unit, log=log)
        axes.set_xlabel("stage")
        axes.set_ylabel(f"{ylabel}, log scale" if log else ylabel)
        axes.set_title(title, fontsize=10)
        axes.grid(True, axis="y", linewidth=0.4, alpha=0.5)
        axes.set_axisbelow(True)
        axes.legend(fontsize=LEGEND_SIZE)
    return figure


def save_figure(figure: Figure, path: str, *, dpi: int = _DPI) -> None:
    """Write ``figure`` to ``path`` (PNG or SVG by suffix) at ``dpi``, deterministically and atomically.

    Raises:
        UserInputError: a suffix other than .png/.svg, a missing folder, a dpi outside 50-1200, or a failed write.
    """
    if not 50 <= dpi <= 1200:
        raise UserInputError(f"dpi={dpi} must be from 50 to 1200")
    fmt = plot_format(path)
    metadata: dict[str, Any] = {"Date": None, "Creator": "pvttrace"} if fmt == "svg" else {"Software": None}
    buffer = io.BytesIO()
    with _style():
        # Lay out once, then freeze: constrained layout run again on an already drawn figure moves
        # things by a hair, so a second save (another format) would otherwise differ from the first.
        if figure.get_layout_engine() is not None:
            figure.draw_without_rendering()
            figure.set_layout_engine("none")
        figure.savefig(buffer, format=fmt, metadata=metadata, dpi=dpi)
    try:
        write_bytes_atomic(path, buffer.getvalue())
    except TraceFileError as exc:
        prefix = f"cannot write {path}: "
        reason = str(exc).removeprefix(prefix)
        raise UserInputError(f"plot={path!r} cannot be written: {reason}") from None
