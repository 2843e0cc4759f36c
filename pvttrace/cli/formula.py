"""``pvttrace formula``: a model's costs as exact formulas of the input size (one symbolic trace).

CLI only: parse, validate up front, call :mod:`pvttrace.analyses.formula`, print. Torch is imported in the
command body (through ``pvttrace.analyses.formula.derive_formula``).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from pvttrace.base.errors import UserInputError
from pvttrace.cli.common import (
    WidthOpt,
    app,
    errors_to_exit_codes,
    make_console,
    warn,
)
from pvttrace.cli.options import ModelOptions, model_options

__all__ = ["formula"]


class FormulaFormat(StrEnum):
    """Output formats of ``formula``."""

    TABLE = "table"
    JSON = "json"
    LATEX = "latex"
    PYTHON = "python"


@app.command()
@model_options(
    repeated=("sr",),
    help={"sr": "Spatial-reduction ratio per stage, e.g. 8,4,2,1. Give it twice to diff two formulas."},
)
def formula(
    options: ModelOptions,
    symbolic: Annotated[
        str, typer.Option("--symbolic", "-s", help="Size variables kept symbolic: any of B, H, W, e.g. H,W or B,H,W.")
    ] = "H,W",
    at: Annotated[
        list[str] | None,
        typer.Option("--at", help="Evaluate the formula at this size (HxW); repeatable. Outside its guards: error."),
    ] = None,
    output_format: Annotated[
        FormulaFormat, typer.Option("--format", "-f", help="table, json (strings and trees), latex or python.")
    ] = FormulaFormat.TABLE,
    ops: Annotated[
        bool, typer.Option("--ops", help="Table format: also list every traced op's shape and MACs.")
    ] = False,
    width: WidthOpt = None,
) -> None:
    """Costs as exact formulas of the input size: trace once with symbolic H, W (and B), print per stage.

    --img sets where the trace is taken (default 1021x767) and the value of non-symbolic sizes.

    Example: pvttrace formula --variant tiny; pvttrace formula --variant b2 --sr 8,4,2,1 --sr 4,2,1,1
    Example: pvttrace formula --model timm:pvt_v2_b0 --format python
    """
    from pvttrace.analyses.formula import derive_formula, diff_formulas
    from pvttrace.cli.parsing import parse_img, parse_symbolic

    with errors_to_exit_codes():
        variables = parse_symbolic(symbolic)
        sizes = [parse_img(text, "at") for text in at or []]
        srs = list(options["sr"] or [])
        if len(srs) > 2:
            raise UserInputError(f"sr is given {len(srs)} times; give it once, or twice to diff two formulas")
        first_options = options.replaced(sr=srs[0] if srs else None)
        spec = first_options.spec()
        targets: list[Any] = []
        if spec.config is not None:
            targets.append(spec.config)
            if len(srs) == 2:
                targets.append(options.config(sr=srs[1]))
            for cfg in targets:
                warn(cfg.warnings)
        else:
            targets.append(spec)
        hint = parse_img(options.img) if options.img is not None else None
        results = [derive_formula(t, symbolic=variables, hint=hint) for t in targets]
        for note in results[0].notes:
            warn([note])
        first = results[0]
        batch_value = options.batch
        evaluated = []
        for size in sizes:
            values = first.sizes_at(size, batch_value)
            evaluated.append((f"{size[0]}x{size[1]}", values, first.evaluate(values)))
    if len(results) == 2:
        changes = diff_formulas(results[0], results[1])
        labels = (f"sr {srs[0]}", f"sr {srs[1]}")
        if output_format == FormulaFormat.JSON:
            import sympy  # type: ignore[import-untyped]

            from pvttrace.records import dumps_json

            doc = {
                "schema": "pvttrace.analyses.formula-diff/1",
                "model": first.name,
                "labels": list(labels),
                "changes": [
                    {
                        "stage": c.stage,
                        "category": c.category,
                        "before": sympy.sstr(c.before),
                        "after": sympy.sstr(c.after),
                        "change": sympy.sstr(c.change),
                        "before_leading": None if c.before_growth is None else sympy.sstr(c.before_growth.term),
                        "after_leading": None if c.after_growth is None else sympy.sstr(c.after_growth.term),
                    }
                    for c in changes
                ],
            }
            sys.stdout.write(dumps_json(doc))
            return
        from pvttrace.render.formula import render_formula_diff

        make_console(width).print(render_formula_diff(results[0], results[1], labels, changes))
        return
    if output_format == FormulaFormat.JSON:
        from pvttrace.analyses.formula import to_dict
        from pvttrace.records import dumps_json

        doc = to_dict(first)
        doc["evaluated"] = [
            {
                "size": name,
                "sizes": values,
                "macs": v.macs,
                "params": v.params,
                "stages": [
                    {"index": s.index, "macs": dict(s.macs), "attention_map_bytes": s.attention_map_bytes}
                    for s in v.stages
                ],
            }
            for name, values, v in evaluated
        ]
        sys.stdout.write(dumps_json(doc))
    elif output_format == FormulaFormat.LATEX:
        from pvttrace.analyses.formula import latex_document

        sys.stdout.write(latex_document(first))
    elif output_format == FormulaFormat.PYTHON:
        from pvttrace.analyses.formula import python_code

        sys.stdout.write(python_code(first))
    else:
        from pvttrace.render.formula import render_formula, render_values

        console = make_console(width)
        console.print(render_formula(first, ops=ops))
        if evaluated:
            console.print(render_values(first, [(name, values) for name, values, _ in evaluated]))
