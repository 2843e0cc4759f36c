"""``view(obj)``: a trace, diff or sweep result as something rich and notebooks can show.

The data classes hold data only (they never import the render layer); this wrapper gives them the
CLI's views: ``rich.print(view(trace))`` prints what ``pvttrace run`` prints (``diff`` and ``sweep``
likewise) at the console's width, and a notebook cell ending in ``view(trace)`` shows the markdown view.

Example:
    >>> import rich, pvttrace
    >>> trace = pvttrace.trace_config(pvttrace.get_variant("tiny"))
    >>> rich.print(pvttrace.view(trace))      # the `pvttrace run` tables
    >>> pvttrace.view(trace)                  # in a notebook: the `run --format markdown` view
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import RenderableType

from pvttrace.analyses.diff import TraceDiff
from pvttrace.analyses.sweep import SweepResult
from pvttrace.base.errors import UserInputError
from pvttrace.records import Trace

__all__ = ["View", "view"]

Viewable = Trace | TraceDiff | SweepResult


@dataclass(frozen=True, slots=True)
class View:
    """One trace, diff or sweep result, shown by rich (``__rich__``) and notebooks (``_repr_markdown_``)."""

    subject: Viewable

    def __repr__(self) -> str:
        """The subject's one-line repr."""
        return f"view({self.subject!r})"

    def __rich__(self) -> RenderableType:
        """The CLI's table view: ``run`` (short form), ``diff`` or ``sweep``."""
        if isinstance(self.subject, Trace):
            from pvttrace.render.trace import render_trace

            return render_trace(self.subject, brief=True)
        if isinstance(self.subject, TraceDiff):
            from pvttrace.render.diff import render_diff

            return render_diff(self.subject)
        from pvttrace.render.sweep import render_sweep

        return render_sweep(self.subject)

    def _repr_markdown_(self) -> str:
        """The CLI's ``--format markdown`` view."""
        if isinstance(self.subject, Trace):
            from pvttrace.render.trace import trace_markdown

            return trace_markdown(self.subject)
        if isinstance(self.subject, TraceDiff):
            from pvttrace.render.diff import diff_markdown

            return diff_markdown(self.subject)
        from pvttrace.render.sweep import sweep_markdown

        return sweep_markdown(self.subject)


def view(subject: Viewable) -> View:
    """Wrap a :class:`Trace`, :class:`TraceDiff` or :class:`SweepResult` for ``rich.print`` and notebooks.

    Raises:
        UserInputError: ``subject`` is none of those.
    """
    if not isinstance(subject, Trace | TraceDiff | SweepResult):
        raise UserInputError(f"view() takes a Trace, TraceDiff or SweepResult, not {type(subject).__name__}")
    return View(subject)
