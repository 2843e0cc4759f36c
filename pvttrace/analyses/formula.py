"""Costs as exact formulas of the input size, derived by tracing once with symbolic sizes.

A concrete trace answers "what does this model cost at 800x1333?"; a formula answers it for
every size at once. The model runs once under torch's ``FakeTensorMode`` with a ``ShapeEnv``,
with the chosen input dims (batch ``B``, height ``H``, width ``W``: any subset) marked dynamic.
Every shape then is a sympy expression with torch's exact floor divisions
(``FloorDiv(H - 1, 4) + 1`` for a stride-4 conv with padding 3), and so is every op's cost:
the tracer is the ordinary one (:func:`pvttrace.tracing.recorder.record_ops`) and costs come from the one
registry (:mod:`pvttrace.costs.registry`), whose shape arithmetic works on ``SymInt`` as on ``int``.

Where the forward branches on a size (a padding that is needed or not, a positional table that
is resized or not), torch records a *guard*: the formula holds only where every guard holds.
:meth:`ModelFormula.check` says whether a size is inside; :meth:`ModelFormula.evaluate` refuses
sizes outside. Sizes are assumed >= 2 by torch's symbolic shapes (0 and 1 are specialised), so
a symbolic batch does not cover batch 1.

Built-in configs: the blocks of one stage are built from one ``StageConfig`` and so cost the
same at every size; the symbolic trace runs one block per stage and multiplies by the depth
(``tests/test_formula.py`` checks the result against full concrete traces). External models
(``--model``) are traced whole.

Not a closed form: the activation peak (a maximum over the op timeline of what the memory
model keeps alive, where the op that peaks changes with size); :data:`PEAK_NOTE` says so.

Torch is imported only inside :func:`derive_formula`; evaluating a formula needs only Python.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sympy  # type: ignore[import-untyped]

from pvttrace.base.errors import TraceError, UserInputError
from pvttrace.config import PvtConfig
from pvttrace.costs.registry import macs_category
from pvttrace.records import OpKind, OpRecord

if TYPE_CHECKING:
    from torch import nn

    from pvttrace.tracing.target import ModelSpec

__all__ = [
    "CATEGORIES",
    "DEFAULT_HINT",
    "PEAK_NOTE",
    "SIZE_VARIABLES",
    "FormulaNotApplicable",
    "Growth",
    "ModelFormula",
    "OpFormula",
    "StageFormula",
    "derive_formula",
    "growth",
    "python_code",
]

#: The size variables a user can make symbolic, and the input dim each one is (from the end for H, W).
SIZE_VARIABLES = ("B", "H", "W")
#: Where the symbolic trace is taken when no size is given: odd and non-square, so that no
#: branch specialises on a round or square size (v1's positional tables are sized for 224).
DEFAULT_HINT = (1021, 767)
_DEFAULT_BATCH_HINT = 2
#: Categories of a stage's MACs, in display order (``MacsCategory`` plus the stage total).
CATEGORIES = ("attention", "sr", "projection", "mlp", "other", "total")
PEAK_NOTE = (
    "activation peak: not a closed form; it is the largest sum of live tensors over the op timeline, "
    "and which op peaks changes with size (pvttrace run --memory, or sweep --exact-trace, computes it per size)"
)


class FormulaNotApplicable(UserInputError):
    """A size outside the range where a formula holds (a guard torch recorded fails there)."""


# ---------------------------------------------------------------------------------- data
@dataclass(frozen=True, slots=True)
class OpFormula:
    """One op of the symbolic trace: where it ran, its output shape and MACs as expressions."""

    index: int
    module: str
    op: str
    kind: str
    label: str | None
    stage: int | None
    block: int | None
    output: tuple[sympy.Expr, ...]
    macs: sympy.Expr
    category: str


@dataclass(frozen=True, slots=True)
class StageFormula:
    """One pyramid stage: its size symbols, and MACs per category in total and per block."""

    index: int
    depth: int
    definitions: tuple[tuple[sympy.Symbol, sympy.Expr], ...]
    """Readable names and what they stand for, e.g. ``(h1, FloorDiv(H, 4))``, ``(N1, h1*w1)``."""
    macs: Mapping[str, sympy.Expr]
    """Category (``CATEGORIES``) -> MACs of the whole stage."""
    per_block: Mapping[str, sympy.Expr] | None
    """Category -> MACs of one block (built-in configs: every block of a stage costs the same)."""
    params: int
    attention_map: sympy.Expr | None
    """Elements of one block's score map [B, heads, N, N'] (None: no attention found)."""
    attention_map_bytes: sympy.Expr
    """Bytes of that map as materialised (0 with fused SDPA, which never builds it)."""


@dataclass(frozen=True, slots=True)
class Growth:
    """The leading term of a formula as H and W grow (floors dropped, bounded remainders ignored)."""

    term: sympy.Expr
    """The top-degree part in H, W, e.g. ``H**2*W**2/16384``."""
    degree: int
    """Total degree in H and W; the formula grows as (H*W)**(degree/2)."""

    @property
    def exponent(self) -> float:
        """Growth exponent in H*W (and so in N = H*W/16): 0 constant, 1 linear, 2 quadratic."""
        return self.degree / 2

    def describe(self) -> str:
        """``quadratic in H*W`` and friends."""
        names = {0: "constant", 1: "linear in H*W", 2: "quadratic in H*W", 3: "cubic in H*W"}
        if self.degree % 2:
            return f"grows as (H*W)^{self.degree / 2:g}"
        return names.get(self.degree // 2, f"(H*W)^{self.degree // 2}")


@dataclass(frozen=True)
class ModelFormula:
    """Everything a symbolic trace found: per-op and per-stage expressions, guards and ranges."""

    name: str
    symbolic: tuple[str, ...]
    """Size variables kept symbolic (``B``, ``H``, ``W``)."""
    fixed: Mapping[str, int]
    """The other size variables, fixed at these values."""
    hint: Mapping[str, int]
    """Where the trace was taken: the branch torch followed is the one this size takes."""
    symbols: Mapping[str, sympy.Symbol]
    guards: tuple[sympy.Basic, ...]
    """Conditions torch recorded on the sizes; the formula holds where all are true."""
    ranges: Mapping[str, tuple[int, int | None]]
    """Per symbolic variable, the range torch derived from the guards (upper None: unbounded)."""
    stages: tuple[StageFormula, ...]
    macs: sympy.Expr
    """Total MACs."""
    outside_macs: Mapping[str, sympy.Expr]
    """MACs of ops outside every stage (stem, head), by category."""
    params: int
    ops: tuple[OpFormula, ...]
    traced_depths: tuple[int, ...] | None
    """Built-in configs: blocks per stage in the symbolic trace (1 each); None: traced whole."""
    element_bytes: int
    notes: tuple[str, ...] = ()
    _compiled: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # ------------------------------------------------------------------ evaluation
    def _function(self) -> Callable[..., tuple[int, ...]]:
        fn = self._compiled.get("values")
        if fn is None:
            fn = _compile(self._value_exprs(), self.guards, self.symbolic, self.symbols)
            self._compiled["values"] = fn
        return fn

    def _value_exprs(self) -> list[sympy.Expr]:
        exprs: list[sympy.Expr] = [self.macs]
        for stage in self.stages:
            exprs.extend(stage.macs[c] for c in CATEGORIES)
            exprs.append(stage.attention_map if stage.attention_map is not None else sympy.Integer(0))
            exprs.append(stage.attention_map_bytes)
        exprs.append(self.tokens_expr())
        return exprs

    def tokens_expr(self) -> sympy.Expr:
        """Stage 1's tokens (``N1``) in H, W, the x of sweep fits; H*W when no stage grid is known."""
        if self.stages:
            first = self.stages[0]
            name = f"N{first.index}"
            if any(s.name == name for s, _ in first.definitions):
                return expand_definitions(first, sympy.Symbol(name, integer=True, positive=True))
        h = self.symbols.get("H", sympy.Integer(self.fixed.get("H", 1)))
        w = self.symbols.get("W", sympy.Integer(self.fixed.get("W", 1)))
        return h * w

    def check(self, sizes: Mapping[str, int]) -> str | None:
        """None when the formula holds at ``sizes`` (values of the symbolic variables), else why not."""
        for name in self.symbolic:
            if name not in sizes:
                return f"no value for {name}"
            low, high = self.ranges[name]
            value = sizes[name]
            if value < low or (high is not None and value > high):
                upper = "" if high is None else f"..{high}"
                return f"{name}={value} is outside the range {low}{upper or '..'} where the formula was derived"
        ok = self._function()(*(sizes[n] for n in self.symbolic))[0]
        if ok < 0:
            guard = self.guards[-ok - 1]
            return f"the guard {_guard_text(guard, self.symbols)} torch recorded does not hold"
        return None

    def evaluate(self, sizes: Mapping[str, int]) -> FormulaValues:
        """Every number of the formula at ``sizes``, exactly (Python integers).

        Raises:
            FormulaNotApplicable: ``sizes`` lies outside the guards or ranges.
        """
        reason = self.check(sizes)
        if reason is not None:
            raise FormulaNotApplicable(f"the formula of {self.name} does not apply at {_sizes_text(sizes)}: {reason}")
        values = list(self._function()(*(sizes[n] for n in self.symbolic))[1:])
        total = values.pop(0)
        stages = []
        for stage in self.stages:
            cats = {c: values.pop(0) for c in CATEGORIES}
            elements = values.pop(0)
            map_bytes = values.pop(0)
            stages.append(StageValues(stage.index, cats, stage.params, elements, map_bytes))
        return FormulaValues(dict(sizes), total, self.params, tuple(stages), values.pop(0))

    def sizes_at(self, img: tuple[int, int], batch: int | None = None) -> dict[str, int]:
        """The symbolic variables' values for an image size (and batch)."""
        given = {
            "H": img[0],
            "W": img[1],
            "B": batch if batch is not None else self.fixed.get("B", self.hint.get("B", 1)),
        }
        return {n: given[n] for n in self.symbolic}

    def fixed_match(self, img: tuple[int, int], batch: int) -> bool:
        """True when the concrete (non-symbolic) variables equal those of ``img`` and ``batch``."""
        given = {"H": img[0], "W": img[1], "B": batch}
        return all(given[n] == v for n, v in self.fixed.items())


@dataclass(frozen=True, slots=True)
class StageValues:
    """A stage's numbers at one size."""

    index: int
    macs: Mapping[str, int]
    params: int
    attention_map: int
    attention_map_bytes: int


@dataclass(frozen=True, slots=True)
class FormulaValues:
    """A formula's numbers at one size."""

    sizes: Mapping[str, int]
    macs: int
    params: int
    stages: tuple[StageValues, ...]
    tokens: int
    """Stage 1's tokens (H*W when the model has no stage grid)."""


def _sizes_text(sizes: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items())


# ---------------------------------------------------------------------------------- printing helpers
def _python_printer() -> Any:
    from torch.utils._sympy.printers import PythonPrinter

    return PythonPrinter()


def python_expr(expr: sympy.Basic) -> str:
    """Python source for ``expr`` (torch's printer: ``FloorDiv`` -> ``//``, ``Mod`` -> ``%``)."""
    text: str = _python_printer().doprint(expr)
    return text


def _guard_text(guard: sympy.Basic, symbols: Mapping[str, sympy.Symbol]) -> str:
    return python_expr(guard)


def _compile(
    exprs: Sequence[sympy.Expr],
    guards: Sequence[sympy.Basic],
    variables: Sequence[str],
    symbols: Mapping[str, sympy.Symbol],
) -> Callable[..., tuple[int, ...]]:
    """One Python function of the variables returning (guard status, *values).

    Guard status is 0 when every guard holds, else -(i + 1) for the first failing guard i.
    Printing to Python once and evaluating with Python integers is exact and about a thousand
    times faster than substituting into sympy at every size of a sweep.
    """
    printer = _python_printer()
    args = ", ".join(symbols[v].name for v in variables)
    lines = [f"def _f({args}):"]
    for i, guard in enumerate(guards):
        lines.append(f"    if not ({printer.doprint(guard)}): return (-{i + 1},)")
    values = ", ".join(printer.doprint(e) for e in exprs)
    lines.append(f"    return (0, {values},)")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<pvttrace formula>", "exec"), namespace)
    fn: Callable[..., tuple[int, ...]] = namespace["_f"]
    return fn


def python_code(formula: ModelFormula) -> str:
    """A standalone Python function users can paste: sizes in, MACs per stage and category out."""
    printer = _python_printer()
    name = "".join(c if c.isalnum() else "_" for c in formula.name).strip("_").lower() or "model"
    args = ", ".join(formula.symbols[v].name for v in formula.symbolic)
    out = [
        f"def {name}_costs({args}):",
        f'    """MACs of {formula.name} (multiply-accumulates of conv/linear/matmul), exact for integer sizes.',
        "",
        f"    Derived by pvttrace from a symbolic trace; valid where these hold: {_range_text(formula)}.",
        '    """',
    ]
    for i, guard in enumerate(formula.guards):
        out.append(f"    if not ({printer.doprint(guard)}):")
        out.append(f"        raise ValueError('outside the range where the formula holds (guard {i + 1})')")
    out.append("    stages = {}")
    for stage in formula.stages:
        for symbol, expr in stage.definitions:
            out.append(f"    {_py_name(symbol)} = {printer.doprint(_to_python_names(expr))}")
        entries = ", ".join(
            f"'{c}': {printer.doprint(_to_python_names(_readable(stage, stage.macs[c])))}" for c in CATEGORIES
        )
        out.append(f"    stages[{stage.index}] = {{{entries}}}")
    out.append(f"    total = {printer.doprint(formula.macs)}")
    out.append(f"    return {{'macs': total, 'params': {formula.params}, 'stages': stages}}")
    return "\n".join(out) + "\n"


def _py_name(symbol: sympy.Symbol) -> str:
    return str(symbol.name).replace("'", "_kv")


def _to_python_names(expr: sympy.Expr) -> sympy.Expr:
    mapping = {s: sympy.Symbol(_py_name(s), integer=True, positive=True) for s in expr.free_symbols if "'" in s.name}
    return expr.xreplace(mapping) if mapping else expr


def _range_text(formula: ModelFormula) -> str:
    parts = []
    for name in formula.symbolic:
        low, high = formula.ranges[name]
        parts.append(f"{name} >= {low}" if high is None else f"{low} <= {name} <= {high}")
    parts.extend(python_expr(g) for g in formula.guards)
    return "; ".join(parts) if parts else "every size"


# ---------------------------------------------------------------------------------- readable forms
def _atom_solution(expr: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr] | None:
    """``expr = a*A + c`` with one non-symbol atom ``A`` (a floor division): (A, a, c), else None."""
    expr = sympy.expand(expr)
    functions = expr.atoms(sympy.Function)
    # The outermost floor divisions: those that are no other function's argument.
    top = [t for t in functions if t.free_symbols and not any(t in o.args for o in functions if o != t)]
    if len(top) != 1:
        return None
    atom = top[0]
    a = expr.coeff(atom)
    c = sympy.expand(expr - a * atom)
    if a == 0 or c.has(atom) or not a.is_number or not c.is_number:
        return None
    return atom, a, c


def _readable(stage: StageFormula, expr: sympy.Expr) -> sympy.Expr:
    """``expr`` written in the stage's names (h1, w1, N1, N1'), if that rewrites it exactly."""
    return _rewrite(expr, stage.definitions)


def _rewrite(expr: sympy.Expr, definitions: Sequence[tuple[sympy.Symbol, sympy.Expr]]) -> sympy.Expr:
    grid = [(s, e) for s, e in definitions if not s.name.startswith("N")]
    products = [(s, e) for s, e in definitions if s.name.startswith("N")]
    out = expr
    for symbol, definition in grid:
        solved = _atom_solution(_rewrite_atoms(definition, grid, symbol))
        if solved is None:
            if isinstance(definition, sympy.Symbol):
                continue
            out = out.xreplace({definition: symbol})
            continue
        atom, a, c = solved
        out = out.xreplace({atom: (symbol - c) / a})
    out = sympy.expand(out)
    for symbol, product in products:
        out = out.subs(product, symbol)
    return sympy.expand(out)


def _rewrite_atoms(
    definition: sympy.Expr, grid: Sequence[tuple[sympy.Symbol, sympy.Expr]], stop: sympy.Symbol
) -> sympy.Expr:
    """A grid definition with the earlier grid names substituted (nested floor divisions)."""
    out = definition
    for symbol, earlier in grid:
        if symbol == stop:
            break
        solved = _atom_solution(earlier)
        if solved is not None:
            atom, a, c = solved
            out = out.xreplace({atom: (symbol - c) / a})
    return out


def growth(expr: sympy.Expr, symbols: Mapping[str, sympy.Symbol]) -> Growth | None:
    """The leading term of ``expr`` in H and W (None when neither is symbolic or expr is 0).

    Floor divisions become exact divisions and remainders (``Mod``, bounded by the divisor)
    vanish; what is left is a polynomial whose top-degree part in H, W is the growth.
    """
    from torch.utils._sympy.functions import CeilDiv, FloorDiv, Mod, PythonMod

    spatial = [symbols[n] for n in ("H", "W") if n in symbols]
    if not spatial or expr == 0:
        return None
    smooth = expr.replace(lambda e: isinstance(e, (FloorDiv, CeilDiv)), lambda e: e.args[0] / e.args[1])
    smooth = smooth.replace(lambda e: isinstance(e, (Mod, PythonMod)), lambda e: sympy.Integer(0))
    try:
        # Poly expands on its own, in its polynomial representation: several times faster than
        # sympy.expand on the sum of a few hundred products a model's MACs are.
        poly = sympy.Poly(smooth, *spatial)
    except sympy.PolynomialError:
        return None
    if poly.is_zero:
        return None
    degree = poly.total_degree()
    term = sum(
        (
            coeff * math.prod(s**k for s, k in zip(spatial, monom, strict=True))
            for monom, coeff in poly.terms()
            if sum(monom) == degree
        ),
        sympy.Integer(0),
    )
    return Growth(sympy.factor(term), int(degree))


# ---------------------------------------------------------------------------------- deriving
def derive_formula(
    target: PvtConfig | ModelSpec,
    *,
    symbolic: Sequence[str] = ("H", "W"),
    hint: tuple[int, int] | None = None,
    batch_hint: int | None = None,
) -> ModelFormula:
    """Trace ``target`` once with symbolic sizes and return its costs as formulas.

    Args:
        target: a built-in config (its ``img`` and ``batch`` are the concrete values of the
            variables that stay fixed) or an external model spec.
        symbolic: which of B, H, W stay symbolic.
        hint: the (H, W) the trace is taken at: where a forward branches on a size, the formula
            is that of the branch this size takes. Default: :data:`DEFAULT_HINT`.
        batch_hint: the batch the trace is taken at when B is symbolic (>= 2; default 2).

    Raises:
        UserInputError: an unknown variable, or one the model's input does not have.
        TraceError: the model cannot be traced symbolically (the message says why).
    """
    symbolic = tuple(symbolic)
    for name in symbolic:
        if name not in SIZE_VARIABLES:
            raise UserInputError(f"symbolic variable {name!r} is not one of B, H, W")
    if isinstance(target, PvtConfig):
        return _derive_builtin(target, symbolic, hint, batch_hint)
    return _derive_external(target, symbolic, hint, batch_hint)


def _hint_sizes(
    shape: Sequence[int], symbolic: Sequence[str], hint: tuple[int, int] | None, batch_hint: int | None, fixed_img: bool
) -> tuple[list[int], dict[str, int]]:
    """The traced input shape and the variables' positions: B is dim 0, H and W the last two."""
    dims = list(shape)
    positions = {"B": 0, "H": len(dims) - 2, "W": len(dims) - 1}
    if "B" in symbolic:
        dims[0] = batch_hint if batch_hint is not None else max(dims[0], _DEFAULT_BATCH_HINT)
        if dims[0] < 2:
            raise UserInputError(
                f"batch={dims[0]}: a symbolic batch is traced at 2 or more (torch specialises 0 and 1)"
            )
    img = hint if hint is not None else (None if fixed_img else DEFAULT_HINT)
    if img is not None:
        if "H" in symbolic:
            dims[positions["H"]] = img[0]
        if "W" in symbolic:
            dims[positions["W"]] = img[1]
    for name in symbolic:
        if dims[positions[name]] < 2:
            raise UserInputError(f"{name}={dims[positions[name]]}: a symbolic size is traced at 2 or more")
    return dims, positions


def _derive_builtin(
    cfg: PvtConfig, symbolic: tuple[str, ...], hint: tuple[int, int] | None, batch_hint: int | None
) -> ModelFormula:
    import torch

    from pvttrace.tracing.model import build_model, torch_dtype
    from pvttrace.tracing.recorder import _stage_params

    full = build_model(cfg, device="meta")
    params = sum(p.numel() for p in full.parameters())
    stage_params = _stage_params(full)
    del full
    one_block = cfg.with_overrides(depths=tuple(1 for _ in cfg.depths))
    shape, positions = _hint_sizes(cfg.input_shape, symbolic, hint, batch_hint, fixed_img=False)
    dtype = torch_dtype(cfg.dtype)

    def build() -> nn.Module:
        return build_model(one_block, device="meta")

    # Variants that differ only in depth (b1..b4; tiny..large) trace the same one-block model.
    key = (dataclasses.replace(one_block, variant="", img=(224, 224)), symbolic, tuple(shape))
    run = _RUNS.get(key)
    if run is None:
        run = _symbolic_run(build, shape, positions, symbolic, dtype, cfg.variant)
        _RUNS[key] = run
    return _assemble(
        run,
        name=cfg.variant,
        depths=cfg.depths,
        params=params,
        stage_params=stage_params,
        element_bytes=torch.empty((), dtype=dtype).element_size(),
        labelled=True,
    )


def _derive_external(
    spec: ModelSpec, symbolic: tuple[str, ...], hint: tuple[int, int] | None, batch_hint: int | None
) -> ModelFormula:
    import torch

    from pvttrace.tracing.recorder import _stage_params
    from pvttrace.tracing.target import _input_shape, _set_attention, load_model

    notes: list[str] = []
    model, _ = load_model(spec, device="meta", on_note=notes.append)
    if spec.attention is not None:
        _set_attention(model, spec)
    shape = _input_shape(spec, model)
    if len(shape) < 3 and any(n in symbolic for n in ("H", "W")):
        missing = [n for n in ("H", "W") if n in symbolic]
        raise UserInputError(
            f"symbolic={','.join(symbolic)}: the input {','.join(map(str, shape))} of {spec.name} has no "
            f"{' or '.join(missing)} (H and W are the last two of at least three dims)"
        )
    params = sum(p.numel() for p in model.parameters())
    stage_params = _stage_params(model)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    dims, positions = _hint_sizes(
        shape, symbolic, hint, batch_hint, fixed_img=spec.img is not None or spec.input_shape is not None
    )

    def build() -> nn.Module:
        return model

    run = _symbolic_run(build, dims, positions, symbolic, dtype, spec.name)
    module_types = {path: f"{type(m).__module__}.{type(m).__qualname__}" for path, m in model.named_modules()}

    def derive(ops: Sequence[OpRecord]) -> tuple[Sequence[OpRecord], Mapping[int | None, int]] | None:
        # The stages a concrete trace of this model shows (pvttrace.stages.structure), found the same way.
        from pvttrace.stages.structure import derive_structure
        from pvttrace.tracing.recorder import _derived_stage_params

        derived = derive_structure(ops, module_types, int(dims[0]) if dims else 1)
        if derived is None:
            return None
        return derived.ops, _derived_stage_params(model.named_parameters(), derived.module_stages)

    return _assemble(
        run,
        name=spec.name,
        depths=None,
        params=params,
        stage_params=stage_params,
        element_bytes=torch.empty((), dtype=dtype).element_size(),
        labelled=False,
        notes=tuple(notes),
        derive=derive,
    )


#: Symbolic runs of one-block built-in models in this process, by (config, variables, input shape).
_RUNS: dict[tuple[Any, ...], _Run] = {}


@dataclass
class _Run:
    ops: tuple[OpRecord, ...]
    """Records with sympy expressions where the tracer saw SymInts (shapes, MACs, bytes)."""
    hinted: tuple[OpRecord, ...]
    """The same records at the hint (plain ints), for structure: labels, stages, categories."""
    symbols: dict[str, sympy.Symbol]
    guards: tuple[sympy.Basic, ...]
    ranges: dict[str, tuple[int, int | None]]
    hint: dict[str, int]
    fixed: dict[str, int]
    symbolic: tuple[str, ...]


def _symbolic_run(
    build: Callable[[], nn.Module],
    shape: Sequence[int],
    positions: Mapping[str, int],
    symbolic: tuple[str, ...],
    dtype: Any,
    name: str,
) -> _Run:
    """Run the recorder once under FakeTensorMode with the chosen dims dynamic."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

    from pvttrace.analyses.symbolic_standins import symbolic_stand_ins
    from pvttrace.tracing.recorder import record_ops

    # duck_shape=False: equal hint sizes (a square image) must not become one symbol.
    env = ShapeEnv(duck_shape=False)
    _skip_source_locations(env)
    mode = FakeTensorMode(shape_env=env)
    # The fake kernels' cache pays off when the same op meets the same shapes again; a symbolic
    # trace of one block per stage rarely does, and filling it builds every output twice.
    mode.cache_enabled = False
    dynamic = {positions[n] for n in symbolic}
    context: Any = StatelessSymbolicContext(
        dynamic_sizes=[DimDynamic.DYNAMIC if i in dynamic else DimDynamic.STATIC for i in range(len(shape))]
    )
    model = build()
    # A real, uninitialised CPU tensor made fake: only its metadata is read. It must exist before
    # the mode is entered (a tensor created inside is already fake, with fixed sizes). Fake CPU,
    # not meta: the meta stand-ins (pvttrace.tracing.metashapes) take concrete shapes only.
    real = torch.empty(tuple(shape), dtype=dtype)
    # Size-oblivious reasoning for torch's internal layout checks (is this view contiguous when a
    # dim is 1?): they decide strides, never shapes, so they need not become guards. Without it a
    # PVT records ~60 such guards, each narrowing where the formula holds; branches in model code
    # (padding, positional tables) are still guarded.
    from torch.fx.experimental import _config as shapes_config

    try:
        with shapes_config.patch(backed_size_oblivious=True), mode:  # type: ignore[attr-defined]
            example = mode.from_tensor(real, symbolic_context=context)
            _fake_weights(model, mode)
            with symbolic_stand_ins():
                ops, _ = record_ops(model, example)
    except TraceError as exc:
        raise TraceError(f"{name} cannot be traced with symbolic sizes: {exc}") from None
    except Exception as exc:
        message = " ".join(str(exc).split())[:300]
        raise TraceError(f"{name} cannot be traced with symbolic sizes: {type(exc).__name__}: {message}") from None
    symbols: dict[str, sympy.Symbol] = {}
    rename: dict[sympy.Symbol, sympy.Symbol] = {}
    hint: dict[str, int] = {}
    fixed: dict[str, int] = {}
    for var in SIZE_VARIABLES:
        size = example.shape[positions[var]]
        if var in symbolic:
            node_expr = size.node.expr if isinstance(size, torch.SymInt) else None
            if not isinstance(node_expr, sympy.Symbol):
                raise TraceError(
                    f"{name}: torch specialised {var} to {size} (the model fixes it), so it cannot be symbolic"
                )
            symbol = sympy.Symbol(var, integer=True, positive=True)
            rename[node_expr] = symbol
            symbols[var] = symbol
            hint[var] = shape[positions[var]]
        else:
            fixed[var] = int(size)
            hint[var] = int(size)
    guards = tuple(g.expr.xreplace(rename) for g in env.guards)
    ranges: dict[str, tuple[int, int | None]] = {}
    for var in symbolic:
        source = next(s for s, t in rename.items() if t == symbols[var])
        bounds = env.var_to_range.get(source)
        # torch's unbounded ends are its own int_oo, not a sympy Integer.
        low = int(bounds.lower) if bounds is not None and isinstance(bounds.lower, sympy.Integer) else 2
        high = int(bounds.upper) if bounds is not None and isinstance(bounds.upper, sympy.Integer) else None
        ranges[var] = (max(low, 2), high)

    def expr(value: Any) -> sympy.Expr:
        if isinstance(value, torch.SymInt):
            return sympy.sympify(value.node.expr).xreplace(rename)
        return sympy.Integer(int(value))

    def hinted(value: Any) -> int:
        if isinstance(value, torch.SymInt):
            # A backed SymInt carries its value at the hint (torch computes it alongside the
            # expression); asking the ShapeEnv instead re-simplifies the expression each time.
            known_hint = value.node.hint
            if known_hint is not None:
                return int(known_hint)
            return int(env.guarding_hint_or_throw(value.node.expr))
        return int(value)

    known = set(rename)
    for op in ops:
        for value in (*(d for shape in (*op.inputs, op.output) for d in shape), op.macs):
            if isinstance(value, torch.SymInt) and not value.node.expr.free_symbols <= known:
                raise TraceError(
                    f"{name} cannot be traced with symbolic sizes: the output size of op #{op.index} {op.title} "
                    f"in {op.module or 'the model'} depends on tensor values, not only on the input size"
                )
    symbolic_ops = []
    hinted_ops = []
    for op in ops:
        symbolic_ops.append(
            dataclasses.replace(
                op,
                inputs=tuple(tuple(expr(d) for d in s) for s in op.inputs),
                output=tuple(expr(d) for d in op.output),
                macs=expr(op.macs),
                out_bytes=expr(op.out_bytes),
                alloc_bytes=expr(op.alloc_bytes),
            )
        )
        hinted_ops.append(
            dataclasses.replace(
                op,
                inputs=tuple(tuple(hinted(d) for d in s) for s in op.inputs),
                output=tuple(hinted(d) for d in op.output),
                macs=hinted(op.macs),
                out_bytes=hinted(op.out_bytes),
                alloc_bytes=hinted(op.alloc_bytes),
            )
        )
    return _Run(tuple(symbolic_ops), tuple(hinted_ops), symbols, guards, ranges, hint, fixed, symbolic)


def _skip_source_locations(env: Any) -> None:
    """Let ``env`` name no source line for its symbols and guards (this ShapeEnv only).

    torch finds the user frame of each symbol and guard for its error messages and logs, and to
    tell user frames from its own it imports torch.export, torch._inductor and more on first use
    (about 0.9 s, a fifth of a formula sweep). A formula never shows those locations.
    """
    if not callable(getattr(env, "_get_stack_summary", None)):
        return
    from torch._guards import SLoc

    def summary(is_debug: bool = False, framework_loc: Any = None) -> tuple[Any, str]:
        return SLoc(framework_loc, None), ""

    env._get_stack_summary = summary


def _fake_weights(model: nn.Module, mode: Any) -> None:
    """Replace every parameter and buffer by a fake CPU tensor of the same shape (values never matter)."""
    import torch
    from torch import nn

    for module in model.modules():
        for key, param in list(module._parameters.items()):
            if param is not None:
                fake = torch.empty(param.shape, dtype=param.dtype, device="cpu")
                module._parameters[key] = nn.Parameter(fake, requires_grad=param.requires_grad)
        for key, buffer in list(module._buffers.items()):
            if buffer is not None:
                module._buffers[key] = torch.empty(buffer.shape, dtype=buffer.dtype, device="cpu")


def _sum(values: Iterable[sympy.Expr]) -> sympy.Expr:
    return sympy.Add(*values) if values else sympy.Integer(0)


def _assemble(
    run: _Run,
    *,
    name: str,
    depths: Sequence[int] | None,
    params: int,
    stage_params: Mapping[int | None, int],
    element_bytes: int,
    labelled: bool,
    notes: tuple[str, ...] = (),
    derive: Callable[[Sequence[OpRecord]], tuple[Sequence[OpRecord], Mapping[int | None, int]] | None] | None = None,
) -> ModelFormula:
    from pvttrace.stages.labels import label_ops

    hinted = run.hinted if labelled else label_ops(run.hinted)
    derived = derive(hinted) if derive is not None else None
    if derived is not None:
        hinted, stage_params = tuple(derived[0]), derived[1]
    ops: list[OpFormula] = []
    for sym_op, op in zip(run.ops, hinted, strict=True):
        ops.append(
            OpFormula(
                index=op.index,
                module=op.module,
                op=op.op,
                kind=op.kind.value,
                label=op.label,
                stage=op.stage,
                block=op.block,
                output=tuple(sym_op.output),
                macs=sym_op.macs,
                category=macs_category(op).value,
            )
        )
    stage_indices = sorted({op.stage for op in ops if op.stage is not None})
    stages = []
    for index in stage_indices:
        depth = depths[index - 1] if depths is not None and index - 1 < len(depths) else 1
        in_stage = [(o, h, s) for o, h, s in zip(ops, hinted, run.ops, strict=True) if o.stage == index]
        weight = {o.index: (depth if depths is not None and o.block is not None else 1) for o, _, _ in in_stage}
        macs = {c: _sum([o.macs * weight[o.index] for o, _, _ in in_stage if o.category == c]) for c in CATEGORIES[:-1]}
        macs["total"] = _sum([o.macs * weight[o.index] for o, _, _ in in_stage])
        per_block = None
        if depths is not None:
            block_ops = [o for o, _, _ in in_stage if o.block is not None]
            per_block = {c: _sum([o.macs for o in block_ops if o.category == c]) for c in CATEGORIES[:-1]}
            per_block["total"] = _sum([o.macs for o in block_ops])
        map_elements, map_bytes = _attention_map(in_stage)
        stages.append(
            StageFormula(
                index=index,
                depth=depth
                if depths is not None
                else sum(1 for b in {o.block for o, _, _ in in_stage} if b is not None),
                definitions=_definitions(index, in_stage, run.symbols),
                macs=macs,
                per_block=per_block,
                params=stage_params.get(index, 0),
                attention_map=map_elements,
                attention_map_bytes=map_bytes,
            )
        )
    outside = [o for o in ops if o.stage is None]
    outside_macs = {c: _sum([o.macs for o in outside if o.category == c]) for c in CATEGORIES[:-1]}
    outside_macs["total"] = _sum([o.macs for o in outside])
    total = _sum([s.macs["total"] for s in stages] + [outside_macs["total"]])
    return ModelFormula(
        name=name,
        symbolic=run.symbolic,
        fixed=run.fixed,
        hint=run.hint,
        symbols=run.symbols,
        guards=run.guards,
        ranges=run.ranges,
        stages=tuple(stages),
        macs=total,
        outside_macs=outside_macs,
        params=params,
        ops=tuple(ops),
        traced_depths=tuple(1 for _ in depths) if depths is not None else None,
        element_bytes=element_bytes,
        notes=notes,
    )


def _attention_map(in_stage: Sequence[tuple[OpFormula, OpRecord, OpRecord]]) -> tuple[sympy.Expr | None, sympy.Expr]:
    """One block's score map: elements and materialised bytes (0 for fused SDPA)."""
    for _formula, hinted, sym in in_stage:
        if hinted.label == "scores q@k^T":
            return _sum_product(sym.output), sym.out_bytes
        if hinted.kind == OpKind.SDPA and len(sym.inputs) >= 2:
            q, k = sym.inputs[0], sym.inputs[1]
            return _sum_product((*q[:-1], k[-2])), sympy.Integer(0)
    return None, sympy.Integer(0)


def _sum_product(dims: Sequence[Any]) -> sympy.Expr:
    return sympy.Mul(*dims) if dims else sympy.Integer(1)


def _definitions(
    index: int, in_stage: Sequence[tuple[OpFormula, OpRecord, OpRecord]], symbols: Mapping[str, sympy.Symbol]
) -> tuple[tuple[sympy.Symbol, sympy.Expr], ...]:
    """Readable names for the stage's grid (h, w from the patch embedding) and keys (h', w' from the SR conv)."""
    grid: sympy.Expr | None = None
    keys: sympy.Expr | None = None
    for _formula, hinted, sym in in_stage:
        if grid is None and hinted.kind == OpKind.PATCH_EMBED and len(sym.output) == 4:
            grid = sym.output
        if keys is None and hinted.kind == OpKind.SR_CONV and len(sym.output) == 4:
            keys = sym.output
    out: list[tuple[sympy.Symbol, sympy.Expr]] = []

    def name(text: str) -> sympy.Symbol:
        return sympy.Symbol(text, integer=True, positive=True)

    if grid is not None:
        h, w = grid[2], grid[3]
        if h.free_symbols or w.free_symbols:
            out += [(name(f"h{index}"), h), (name(f"w{index}"), w)]
    if keys is not None:
        h2, w2 = keys[2], keys[3]
        if (h2.free_symbols or w2.free_symbols) and keys != grid:
            out += [(name(f"h{index}'"), h2), (name(f"w{index}'"), w2)]
    if grid is not None and any(s.name == f"h{index}" for s, _ in out):
        out.append((name(f"N{index}"), name(f"h{index}") * name(f"w{index}")))
        if any(s.name == f"h{index}'" for s, _ in out):
            out.append((name(f"N{index}'"), name(f"h{index}'") * name(f"w{index}'")))
        elif keys is None:
            pass
    return tuple(out)


def readable(stage: StageFormula, expr: sympy.Expr) -> sympy.Expr:
    """``expr`` in the stage's names (``N1``, ``N1'`` ...) when that rewrite is exact, else unchanged."""
    if not stage.definitions:
        return expr
    rewritten = _readable(stage, expr)
    sizes = {sympy.Symbol(n, integer=True, positive=True) for n in ("H", "W")}
    if rewritten.free_symbols & sizes:
        # The names did not cover every size term: show the raw form rather than a mix.
        return expr
    return rewritten


def expand_definitions(stage: StageFormula, expr: sympy.Expr) -> sympy.Expr:
    """Substitute the stage's names back (N1 -> h1*w1 -> FloorDiv(H, 4)*...), for checks."""
    out = expr
    for symbol, definition in reversed(stage.definitions):
        out = out.xreplace({symbol: definition})
    return out


# ---------------------------------------------------------------------------------- text, JSON, LaTeX
FORMULA_SCHEMA = "pvttrace.formula/1"


def expr_text(expr: sympy.Basic) -> str:
    """Compact text of an expression: ``128*N1*N1'``, ``(H//4)`` for floor divisions."""
    factored = sympy.factor(expr) if isinstance(expr, sympy.Expr) and expr.free_symbols else expr
    plain = sympy.sstr(expr)
    short = sympy.sstr(factored)
    return str(short if len(short) < len(plain) else plain)


def expr_tree(expr: sympy.Basic) -> Any:
    """A structured, language-neutral form: ``{"op": "Mul", "args": [...]}``, ``{"symbol": "H"}``, ints."""
    if isinstance(expr, sympy.Integer):
        return int(expr)
    if isinstance(expr, sympy.Rational):
        return {"op": "Rational", "args": [int(expr.p), int(expr.q)]}
    if isinstance(expr, sympy.Symbol):
        return {"symbol": expr.name}
    if isinstance(expr, sympy.logic.boolalg.BooleanAtom):
        return bool(expr)
    return {"op": type(expr).__name__, "args": [expr_tree(a) for a in expr.args]}


def growth_text(expr: sympy.Expr, symbols: Mapping[str, sympy.Symbol]) -> str:
    """``~ H**2*W**2/16384: quadratic in H*W``; ``constant`` when no size term remains."""
    lead = growth(expr, symbols)
    if lead is None:
        return "constant" if not (expr.free_symbols & set(symbols.values()) - {symbols.get("B")}) else "-"
    return f"~ {sympy.sstr(lead.term)}: {lead.describe()}"


def key_ratio(stage: StageFormula, symbols: Mapping[str, sympy.Symbol]) -> str | None:
    """``N1' ~ N1/64``: how the keys grow against the tokens (the SR ratio squared), when both grow."""
    names = {s.name: e for s, e in stage.definitions}
    n, k = f"N{stage.index}", f"N{stage.index}'"
    if n not in names or k not in names:
        return None
    tokens = growth(expand_definitions(stage, sympy.Symbol(n, integer=True, positive=True)), symbols)
    keys = growth(expand_definitions(stage, sympy.Symbol(k, integer=True, positive=True)), symbols)
    if tokens is None or keys is None or tokens.degree != keys.degree:
        return None
    ratio = sympy.simplify(keys.term / tokens.term)
    if not ratio.is_number:
        return None
    if ratio == 1:
        return f"{k} ~ {n}"
    if ratio.is_Rational and ratio.p == 1:
        return f"{k} ~ {n}/{ratio.q}"
    return f"{k} ~ {sympy.sstr(ratio)}*{n}"


def stage_dict(stage: StageFormula, symbols: Mapping[str, sympy.Symbol]) -> dict[str, Any]:
    """JSON form of one stage: readable and raw expressions as strings and trees, and growth."""

    def entry(expr: sympy.Expr) -> dict[str, Any]:
        nice = readable(stage, expr)
        lead = growth(expr, symbols)
        return {
            "text": expr_text(nice),
            "raw": sympy.sstr(expr),
            "python": python_expr(expr),
            "tree": expr_tree(expr),
            "leading_term": None if lead is None else sympy.sstr(lead.term),
            "growth_exponent": None if lead is None else lead.exponent,
        }

    return {
        "index": stage.index,
        "depth": stage.depth,
        "definitions": {s.name: sympy.sstr(e) for s, e in stage.definitions},
        "key_ratio": key_ratio(stage, symbols),
        "macs": {c: entry(stage.macs[c]) for c in CATEGORIES},
        "macs_per_block": None if stage.per_block is None else {c: entry(stage.per_block[c]) for c in CATEGORIES},
        "params": stage.params,
        "attention_map_elements": None if stage.attention_map is None else entry(stage.attention_map),
        "attention_map_bytes": entry(stage.attention_map_bytes),
        "activation_peak": None,
    }


def to_dict(formula: ModelFormula, *, with_ops: bool = True) -> dict[str, Any]:
    """The ``pvttrace.formula/1`` JSON document: expressions as strings and as trees."""
    lead = growth(formula.macs, formula.symbols)
    return {
        "schema": FORMULA_SCHEMA,
        "model": formula.name,
        "symbolic": list(formula.symbolic),
        "fixed": dict(formula.fixed),
        "traced_at": dict(formula.hint),
        "ranges": {k: {"min": lo, "max": hi} for k, (lo, hi) in formula.ranges.items()},
        "guards": [python_expr(g) for g in formula.guards],
        "traced_depths": None if formula.traced_depths is None else list(formula.traced_depths),
        "macs": {
            "raw": sympy.sstr(formula.macs),
            "python": python_expr(formula.macs),
            "tree": expr_tree(formula.macs),
            "leading_term": None if lead is None else sympy.sstr(lead.term),
            "growth_exponent": None if lead is None else lead.exponent,
        },
        "params": formula.params,
        "outside_stages": {c: sympy.sstr(formula.outside_macs[c]) for c in CATEGORIES},
        "stages": [stage_dict(s, formula.symbols) for s in formula.stages],
        "activation_peak": PEAK_NOTE,
        "ops": [
            {
                "index": op.index,
                "module": op.module,
                "op": op.op,
                "kind": op.kind,
                "label": op.label,
                "stage": op.stage,
                "block": op.block,
                "category": op.category,
                "output": [sympy.sstr(d) for d in op.output],
                "macs": sympy.sstr(op.macs),
            }
            for op in formula.ops
        ]
        if with_ops
        else None,
        "notes": list(formula.notes),
    }


def _latex_printer() -> Any:
    from sympy.printing.latex import LatexPrinter  # type: ignore[import-untyped]

    class Printer(LatexPrinter):  # type: ignore[misc]
        def _print_FloorDiv(self, expr: Any) -> str:
            a, b = expr.args
            return rf"\left\lfloor \frac{{{self._print(a)}}}{{{self._print(b)}}} \right\rfloor"

        def _print_CeilDiv(self, expr: Any) -> str:
            a, b = expr.args
            return rf"\left\lceil \frac{{{self._print(a)}}}{{{self._print(b)}}} \right\rceil"

        def _print_PythonMod(self, expr: Any) -> str:
            return rf"{self._print(expr.args[0])} \bmod {self._print(expr.args[1])}"

        _print_Mod = _print_PythonMod

    return Printer()


def latex_expr(expr: sympy.Basic) -> str:
    """LaTeX of an expression, floor divisions as floor brackets."""
    text: str = _latex_printer().doprint(expr)
    return text


def latex_document(formula: ModelFormula) -> str:
    """An ``align*`` block per stage: definitions, then MACs per category; the total last."""
    lines = [f"% {formula.name}: MACs (multiply-accumulates) as exact functions of the input size, by pvttrace"]
    lines.append(f"% valid where: {_range_text(formula)}")
    for stage in formula.stages:
        lines.append(r"\begin{align*}")
        rows = [rf"{latex_expr(s)} &= {latex_expr(e)}" for s, e in stage.definitions]
        for c in CATEGORIES:
            per_block = (
                ""
                if stage.per_block is None
                else rf" \quad ({latex_expr(readable(stage, stage.per_block[c]))} \text{{ per block}})"
            )
            macs = latex_expr(readable(stage, stage.macs[c]))
            rows.append(rf"\mathrm{{MACs}}^{{({stage.index})}}_{{\text{{{c}}}}} &= {macs}{per_block}")
        lines.append(" \\\\\n".join(rows))
        lines.append(r"\end{align*}")
    lines.append(r"\begin{align*}")
    lines.append(rf"\mathrm{{MACs}} &= {latex_expr(formula.macs)}")
    lines.append(r"\end{align*}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- diff
@dataclass(frozen=True, slots=True)
class StageChange:
    """One stage and category in two formulas, and their difference (b - a)."""

    stage: int
    category: str
    before: sympy.Expr
    after: sympy.Expr
    change: sympy.Expr
    before_growth: Growth | None
    after_growth: Growth | None


def diff_formulas(a: ModelFormula, b: ModelFormula) -> tuple[StageChange, ...]:
    """What changes between two formulas, per stage and category (only categories that change).

    Expressions are in H, W (and B); readable names differ between the two when the SR
    ratio changes, so the difference is taken on the raw forms and shown in ``a``'s names.

    Raises:
        UserInputError: the formulas are of different variables or stage counts.
    """
    if a.symbolic != b.symbolic or len(a.stages) != len(b.stages):
        raise UserInputError("formulas differ in their size variables or stage counts; diff compares one model family")
    changes = []
    for sa, sb in zip(a.stages, b.stages, strict=True):
        for c in CATEGORIES:
            before, after = sa.macs[c], sb.macs[c]
            change = sympy.expand(after - before)
            if change == 0:
                continue
            changes.append(
                StageChange(
                    sa.index,
                    c,
                    readable(sa, before),
                    readable(sb, after),
                    change,
                    growth(before, a.symbols),
                    growth(after, b.symbols),
                )
            )
    return tuple(changes)
