"""Cost formulas from one symbolic trace: exact against concrete traces, guards, rendering, CLI.

The property tests draw a few odd, non-square sizes per variant (hypothesis, derandomised, so CI
runs the same sizes every time); ``benchmarks/formula_check.py`` runs 50 sizes per variant.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import sympy
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from optional import needs
from typer.testing import CliRunner

from pvttrace.analyses.formula import (
    FormulaNotApplicable,
    ModelFormula,
    derive_formula,
    diff_formulas,
    expand_definitions,
    expr_text,
    python_code,
    readable,
)
from pvttrace.base.errors import TraceError, UserInputError
from pvttrace.cli import app
from pvttrace.cli.parsing import parse_symbolic
from pvttrace.config import VARIANTS, PvtConfig, resolve_config
from pvttrace.records import Trace

# Odd sizes 129 .. 4095 in CI: hypothesis shrinks towards the smallest, where small maps take other
# branches (a second formula, a second symbolic trace each); those are tested on their own below.
ODD = st.integers(64, 2047).map(lambda k: 2 * k + 1)
CATEGORY_FIELDS = {"attention": "attention_macs", "sr": "sr_macs", "projection": "projection_macs", "mlp": "mlp_macs"}

_formulas: dict[tuple[str, str], list[ModelFormula]] = {}


def _pieces(key: tuple[str, str], derive: Callable[[tuple[int, int] | None], ModelFormula]) -> list[ModelFormula]:
    if key not in _formulas:
        _formulas[key] = [derive(None)]
    return _formulas[key]


def value_at(
    key: tuple[str, str], derive: Callable[[tuple[int, int] | None], ModelFormula], size: tuple[int, int]
) -> tuple[ModelFormula, dict[str, int]]:
    """The formula that applies at ``size`` (derived there when none of the known ones does), as sweeps do."""
    pieces = _pieces(key, derive)
    sizes = {"H": size[0], "W": size[1]}
    for piece in pieces:
        if piece.check(sizes) is None:
            return piece, sizes
    piece = derive(size)
    assert piece.check(sizes) is None, "a formula traced at a size holds there"
    pieces.append(piece)
    return piece, sizes


def assert_equal_to_trace(formula: ModelFormula, sizes: dict[str, int], trace: Trace) -> None:
    values = formula.evaluate(sizes)
    assert values.macs == trace.totals.macs
    assert values.params == trace.totals.params
    assert len(values.stages) == len(trace.stages)
    for got, stage in zip(values.stages, trace.stages, strict=True):
        assert got.macs["total"] == stage.macs
        for category, field in CATEGORY_FIELDS.items():
            assert got.macs[category] == getattr(stage, field), (stage.index, category)
        assert got.params == stage.params
        assert got.attention_map_bytes == stage.attention_map_bytes


# ---------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("task", ["cls", "backbone"])
@pytest.mark.parametrize("variant", list(VARIANTS))
@settings(max_examples=2, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(h=ODD, w=ODD)
def test_builtin_formula_equals_a_concrete_trace(
    variant: str, task: str, h: int, w: int, trace_of: Callable[[PvtConfig], Trace]
) -> None:
    assume(h != w)
    cfg = resolve_config(variant=variant, task=task, img=(h, w))
    formula, sizes = value_at((variant, task), lambda at: derive_formula(cfg, hint=at), (h, w))
    assert_equal_to_trace(formula, sizes, trace_of(cfg))


@needs("timm")
@pytest.mark.parametrize("model", ["timm:pvt_v2_b0", "timm:twins_pcpvt_small"])
@settings(max_examples=2, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(h=ODD, w=ODD)
def test_model_formula_equals_a_concrete_trace(model: str, h: int, w: int) -> None:
    """pvt_v2_b0 and Twins-PCPVT call F.scaled_dot_product_attention (timm's fused path)."""
    from pvttrace.analyses.sweep import model_spec_at
    from pvttrace.cli.parsing import parse_model_spec
    from pvttrace.tracing.target import trace_target

    assume(h != w)
    spec = parse_model_spec(model)
    formula, sizes = value_at((model, ""), lambda at: derive_formula(spec, hint=at), (h, w))
    assert any(op.kind == "sdpa" for op in formula.ops)
    assert_equal_to_trace(formula, sizes, trace_target(model_spec_at(spec, (h, w))))


@needs("torchvision")
@settings(max_examples=2, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(h=ODD, w=ODD)
def test_swin_formula_equals_a_concrete_trace(h: int, w: int) -> None:
    """torchvision's swin_t pads every map to a multiple of its 7x7 window and shifts windows only where the padded
    map is larger than one window: those comparisons are its only guards (8: 4 stages, H and W), and the formula
    (or the one derived where another branch is taken) equals a concrete trace."""
    from pvttrace.analyses.sweep import model_spec_at
    from pvttrace.cli.parsing import parse_model_spec
    from pvttrace.tracing.target import trace_target

    assume(h != w)
    model = "torchvision.models:swin_t"
    spec = parse_model_spec(model)
    formula, sizes = value_at((model, ""), lambda at: derive_formula(spec, hint=at), (h, w))
    # 8 branches (padded map > window, per stage and direction); the others are the validity of views and
    # concatenations (equalities torch cannot prove, true wherever the forward runs)
    branches = [g for g in formula.guards if isinstance(g, (sympy.StrictGreaterThan, sympy.LessThan))]
    assert len(branches) == 8 and all(isinstance(g, sympy.Eq) for g in formula.guards if g not in branches)
    assert_equal_to_trace(formula, sizes, trace_target(model_spec_at(spec, (h, w))))


def test_slices_views_and_writes_equal_a_concrete_trace() -> None:
    """The shape-only stand-ins for slices, views, cat and writes give the sizes the real kernels give, at sizes
    where a slice is clamped (fewer rows than it asks for) and where it is not, odd and even."""
    from pvttrace.analyses.sweep import model_spec_at
    from pvttrace.tracing.target import external_spec, trace_target

    spec = external_spec("import", "formula_zoo:slices", input_shape=(1, 3, 1021, 767))
    formula = derive_formula(spec)
    for h, w in ((1021, 767), (64, 2047), (2001, 1500), (9, 13), (4, 5)):
        at = value_at(("formula_zoo:slices", ""), lambda at: derive_formula(spec, hint=at), (h, w))
        trace = trace_target(model_spec_at(spec, (h, w)))
        values = at[0].evaluate(at[1])
        assert values.macs == trace.totals.macs and values.params == trace.totals.params, (h, w)
        assert tuple(int(d) for d in at[0].ops[-1].output[:1]) == (1,)
    assert formula.check({"H": 2001, "W": 1500}) is None  # one formula from 1021x767 up


def test_swin_outside_its_guards_the_formula_does_not_apply() -> None:
    """At 129x1021 stage 4's map is 4 high: padded to one 7-row window, so the shift is off in H there."""
    from pvttrace.cli.parsing import parse_model_spec

    spec = parse_model_spec("torchvision.models:swin_t")
    formula = _pieces(("torchvision.models:swin_t", ""), lambda at: derive_formula(spec, hint=at))[0]
    assert formula.check({"H": 1021, "W": 767}) is None
    reason = formula.check({"H": 129, "W": 1021})
    assert reason is not None and "torch recorded does not hold" in reason
    with pytest.raises(FormulaNotApplicable, match="does not apply at H=129, W=1021"):
        formula.evaluate({"H": 129, "W": 1021})


@pytest.mark.parametrize("variant", ["tiny", "b0"])
def test_small_sizes(variant: str, trace_of: Callable[[PvtConfig], Trace]) -> None:
    """At 33x45 stage 4 is one token high and wide (tiny: H//32 = W//32 = 1). Whether a view of a 1-wide map is
    contiguous is a layout question, not a branch of the forward (the stand-ins keep it out of the guards), so
    the generic formula holds there, exactly; so does one derived at that size."""
    cfg = resolve_config(variant=variant, task="backbone", img=(33, 45))
    generic = derive_formula(cfg)
    assert generic.check({"H": 33, "W": 45}) is None
    assert_equal_to_trace(generic, {"H": 33, "W": 45}, trace_of(cfg))
    formula, sizes = value_at((variant, "small"), lambda at: derive_formula(cfg, hint=at or (33, 45)), (33, 45))
    assert_equal_to_trace(formula, sizes, trace_of(cfg))


def test_symbolic_batch_height_and_width(trace_of: Callable[[PvtConfig], Trace]) -> None:
    formula = derive_formula(resolve_config(variant="b0", task="backbone"), symbolic=("B", "H", "W"))
    assert formula.symbolic == ("B", "H", "W") and formula.ranges["B"][0] == 2
    for b, h, w in ((2, 225, 313), (5, 97, 1001)):
        cfg = resolve_config(variant="b0", task="backbone", img=(h, w), batch=b)
        values = formula.evaluate({"B": b, "H": h, "W": w})
        assert values.macs == trace_of(cfg).totals.macs
    # Linear in B: torch specialises 0 and 1, so batch 1 lies outside this formula's range.
    assert "outside the range" in (formula.check({"B": 1, "H": 225, "W": 313}) or "")


def test_only_width_symbolic_keeps_height_fixed(trace_of: Callable[[PvtConfig], Trace]) -> None:
    cfg = resolve_config(variant="b1", img=(320, 224))
    formula = derive_formula(cfg, symbolic=("W",))
    assert formula.fixed == {"B": 1, "H": 320} and set(formula.symbols) == {"W"}
    assert formula.evaluate({"W": 777}).macs == trace_of(resolve_config(variant="b1", img=(320, 777))).totals.macs


# ---------------------------------------------------------------------------------- guards
def test_outside_the_guards_the_formula_does_not_apply() -> None:
    # v1 resizes its positional tables unless a stage's grid is the one they were made for (56x56
    # at stage 1 for pos_size 224): that branch is a guard, and 224x224 takes the other side.
    formula = derive_formula(resolve_config(variant="tiny"))
    assert formula.check({"H": 1021, "W": 767}) is None
    reason = formula.check({"H": 224, "W": 224})
    assert reason is not None and "(H // 4) != 56" in reason
    with pytest.raises(FormulaNotApplicable, match="does not apply at H=224, W=224"):
        formula.evaluate({"H": 224, "W": 224})
    assert "outside the range" in (formula.check({"H": 1, "W": 999}) or "")  # torch specialises 0 and 1


# ---------------------------------------------------------------------------------- readable forms
def test_tiny_stage1_attention_matches_the_reference_closed_form() -> None:
    """shared/reference/pvt.md §5: q@k^T and attn@v cost 2*N*N'*C per block; N = floor(H/4)*floor(W/4),
    N' = floor(H_1/8)*floor(W_1/8) at sr 8, C = 64 -> 128*N1*N1'."""
    formula = derive_formula(resolve_config(variant="tiny"))
    stage = formula.stages[0]
    assert stage.per_block is not None
    assert expr_text(readable(stage, stage.per_block["attention"])) == "128*N1*N1'"
    assert expr_text(readable(stage, stage.macs["attention"])) == "256*N1*N1'"  # depth 2
    names = {s.name: sympy.sstr(e) for s, e in stage.definitions}
    assert names == {
        "h1": "(H//4)",
        "w1": "(W//4)",
        "h1'": "(H//32)",
        "w1'": "(W//32)",
        "N1": "h1*w1",
        "N1'": "h1'*w1'",
    }
    h, w = formula.symbols["H"], formula.symbols["W"]
    reference = (
        2
        * 64
        * sympy.floor(h / 4)
        * sympy.floor(w / 4)
        * sympy.floor(sympy.floor(h / 4) / 8)
        * sympy.floor(sympy.floor(w / 4) / 8)
    )
    for hv, wv in ((1021, 767), (333, 1999), (4095, 65)):
        expanded = expand_definitions(stage, readable(stage, stage.per_block["attention"]))
        assert expanded.xreplace({h: hv, w: wv}) == reference.xreplace({h: hv, w: wv})


def test_readable_forms_rewrite_exactly() -> None:
    formula = derive_formula(resolve_config(variant="b2", task="backbone"))
    h, w = formula.symbols["H"], formula.symbols["W"]
    for stage in formula.stages:
        for expr in stage.macs.values():
            back = expand_definitions(stage, readable(stage, expr))
            for hv, wv in ((1021, 767), (801, 1333)):
                assert back.xreplace({h: hv, w: wv}) == expr.xreplace({h: hv, w: wv})


def test_sr_diff_changes_attention_and_sr_formulas() -> None:
    a = derive_formula(resolve_config(variant="tiny", task="backbone", sr=(8, 4, 2, 1)))
    b = derive_formula(resolve_config(variant="tiny", task="backbone", sr=(4, 2, 1, 1)))
    changes = {(c.stage, c.category): c for c in diff_formulas(a, b)}
    assert (4, "attention") not in changes  # stage 4 is sr 1 in both
    attention = changes[(1, "attention")]
    assert expr_text(attention.before) == "256*N1*N1'" and expr_text(attention.after) == "256*N1*N1'"
    assert attention.before_growth is not None and attention.after_growth is not None
    assert attention.after_growth.term / attention.before_growth.term == 4  # N' = N/16 instead of N/64
    stage3 = changes[(3, "attention")]
    assert expr_text(stage3.after) == "1280*N3**2"  # sr 1: full attention


# ---------------------------------------------------------------------------------- formats
def test_python_format_is_a_function_that_gives_the_same_numbers() -> None:
    formula = derive_formula(resolve_config(variant="b0"))
    namespace: dict[str, object] = {}
    exec(python_code(formula), namespace)
    function = namespace["b0_costs"]
    assert callable(function)
    got = function(1021, 767)
    values = formula.evaluate({"H": 1021, "W": 767})
    assert got["macs"] == values.macs and got["params"] == values.params
    assert got["stages"][1]["attention"] == values.stages[0].macs["attention"]


def test_cli_table_json_latex_python(runner: CliRunner) -> None:
    table = runner.invoke(app, ["formula", "--variant", "tiny", "--width", "80"])
    assert table.exit_code == 0, table.output
    assert "128*N1*N1'" in table.stdout and "N1' ~ N1/64" in table.stdout and "quadratic" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    doc = json.loads(
        runner.invoke(app, ["formula", "--variant", "tiny", "--format", "json", "--at", "1021x767"]).stdout
    )
    assert doc["schema"] == "pvttrace.formula/1" and doc["symbolic"] == ["H", "W"]
    stage1 = doc["stages"][0]
    assert stage1["macs_per_block"]["attention"]["text"] == "128*N1*N1'"
    assert stage1["macs"]["attention"]["tree"]["op"] == "Mul" and stage1["macs"]["attention"]["growth_exponent"] == 2.0
    assert (
        doc["evaluated"][0]["macs"]
        == derive_formula(resolve_config(variant="tiny")).evaluate({"H": 1021, "W": 767}).macs
    )
    latex = runner.invoke(app, ["formula", "--variant", "tiny", "--format", "latex"]).stdout
    assert r"\left\lfloor \frac{H}{4} \right\rfloor" in latex and r"\begin{align*}" in latex
    code = runner.invoke(app, ["formula", "--variant", "tiny", "--format", "python"]).stdout
    assert code.startswith("def tiny_costs(H, W):")
    diff = runner.invoke(app, ["formula", "--variant", "tiny", "--sr", "8,4,2,1", "--sr", "4,2,1,1", "--width", "120"])
    assert diff.exit_code == 0 and "H**2*W**2/64 -> H**2*W**2/16" in diff.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbolic", "H,X"], "symbolic='H,X': 'X' is not a size variable"),
        (["--at", "224"], "the formula of tiny does not apply at H=224, W=224"),
        (["--model", "formula_zoo:tokens", "--input-shape", "64,16"], "has no H or W"),
        (["--model", "formula_zoo:reads_values", "--input-shape", "1,3,64,64"], "cannot be traced with symbolic sizes"),
        (["--sr", "8,4,2,1", "--sr", "1,1,1,1", "--sr", "2,2,2,1"], "sr is given 3 times"),
    ],
)
def test_bad_formula_input_is_one_line_and_exit_2(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["formula", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_parse_symbolic() -> None:
    assert parse_symbolic("w, h") == ("H", "W")
    with pytest.raises(UserInputError, match="names H twice"):
        parse_symbolic("H,H")
    with pytest.raises(TraceError):
        derive_formula(
            __import__("pvttrace.tracing.target", fromlist=["x"]).external_spec(
                "import", "formula_zoo:reads_values", input_shape=(1, 3, 64, 64)
            )
        )


# ---------------------------------------------------------------------------------- sweep
def test_formula_sweep_equals_the_traced_sweep(runner: CliRunner) -> None:
    args = [
        "sweep",
        "--variant",
        "tiny",
        "--variant",
        "b2-li",
        "--img",
        "224,231,448x600,1024",
        "--metric",
        "macs,attention_macs,sr_macs,attention_map_bytes,params",
        "--format",
        "json",
    ]
    fast = runner.invoke(app, [*args, "--formula"])
    exact = runner.invoke(app, [*args, "--exact-trace"])
    assert fast.exit_code == 0 and exact.exit_code == 0, fast.output + exact.output
    a, b = json.loads(fast.stdout), json.loads(exact.stdout)
    for ma, mb in zip(a["metrics"], b["metrics"], strict=True):
        for sa, sb in zip(ma["series"], mb["series"], strict=True):
            assert sa["points"] == sb["points"]
            assert sa["exponent"] == sb["exponent"]
    attention = a["metrics"][1]["series"]
    assert [s["leading_exponent"] for s in attention] == [2.0, 1.0]  # SRA quadratic, linear SRA linear
    assert a["metrics"][-1]["series"][0]["leading_exponent"] == 0.0


def test_sweep_range_and_step() -> None:
    from pvttrace.base.errors import ConfigError
    from pvttrace.cli.parsing import parse_sizes

    sizes = parse_sizes("224..2048", 8)
    assert len(sizes) == 229 and sizes[0] == (224, 224) and sizes[-1] == (2048, 2048)
    with pytest.raises(ConfigError, match="give its --step"):
        parse_sizes("224..2048")
    with pytest.raises(ConfigError, match="step=0 must be a positive integer"):
        parse_sizes("224..2048", 0)
