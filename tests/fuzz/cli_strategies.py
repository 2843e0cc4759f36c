"""Hypothesis strategies for whole pvttrace command lines, read from the typer app itself.

:func:`command_specs` walks ``typer.main.get_command(app)``: every command and subcommand, every option
(its flags, ``--x/--no-x`` pairs, whether it repeats, its value type from the annotation) and every
argument. A command or option added later (``fit``, ``--memory``, ``--model`` ...) is therefore fuzzed
without touching this module: its values come from its type (int, float, str, bool, enum choices).
:data:`VALUE_HINTS` only adds, per option name, values that look valid, so that many generated command
lines get past validation and trace a model; hints are optional and keyed by the parameter's Python name
(``(command, name)`` for a command-specific hint).

Values are mostly small (a traced case costs milliseconds) or invalid, with a share of edge cases:
huge numbers (also beyond int64 and beyond Python's 4300-digit int parsing limit), NaN and infinities,
empty and blank strings, unicode (also digits of other scripts and lone surrogates, which is how Python
passes non-UTF-8 argv bytes), option-like values and very long values. ``--device cpu`` is never
generated (:data:`HINT_ONLY`): it allocates real memory for whatever size is asked; the CPU path is covered
by the property tests on small configurations. NUL bytes are never generated: argv cannot hold them.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import typer.main
from hypothesis import strategies as st

from pvttrace.cli import app

# ---------------------------------------------------------------------------------- the app's shape


@dataclass(frozen=True)
class ParamSpec:
    """One option or argument of a command, as the fuzzer needs to know it."""

    name: str
    """Python name (``mlp_ratios``); the key of :data:`VALUE_HINTS`."""
    flags: tuple[str, ...]
    """``("--variant", "-v")``; empty for an argument."""
    negations: tuple[str, ...]
    """The ``--no-x`` side of a boolean pair."""
    is_flag: bool
    multiple: bool
    """A repeatable option, or a variadic argument."""
    is_argument: bool
    required: bool
    value_type: Any
    """int, float, str, bool or an Enum class (from the annotation, Optional and list[...] removed)."""


@dataclass(frozen=True)
class CommandSpec:
    """A command path (``("snapshot", "check")``) with its parameters."""

    path: tuple[str, ...]
    params: tuple[ParamSpec, ...]

    @property
    def options(self) -> tuple[ParamSpec, ...]:
        return tuple(p for p in self.params if not p.is_argument)

    @property
    def arguments(self) -> tuple[ParamSpec, ...]:
        return tuple(p for p in self.params if p.is_argument)


def _value_type(param: Any) -> Any:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", str)
    for _ in range(5):
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if (origin in (typing.Union, types.UnionType) and args) or (origin in (list, tuple, set, frozenset, Sequence) and args) or (origin is typing.Annotated and args):
            annotation = args[0]
        else:
            break
    return annotation if isinstance(annotation, type) else str


def _spec(param: Any) -> ParamSpec:
    is_argument = getattr(param, "param_type_name", "") == "argument"
    return ParamSpec(
        name=param.name,
        flags=() if is_argument else tuple(param.opts),
        negations=() if is_argument else tuple(param.secondary_opts),
        is_flag=bool(getattr(param, "is_flag", False)),
        multiple=bool(param.multiple) or param.nargs == -1,
        is_argument=is_argument,
        required=bool(param.required),
        value_type=_value_type(param),
    )


def command_specs() -> tuple[CommandSpec, ...]:
    """Every command of the app (the root group included, as path ``()``), read from its click form."""
    specs: list[CommandSpec] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        specs.append(CommandSpec(path, tuple(_spec(p) for p in command.params)))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return tuple(specs)


# ---------------------------------------------------------------------------------- values
def _joined(items: st.SearchStrategy[str], min_size: int = 1, max_size: int = 5) -> st.SearchStrategy[str]:
    return st.lists(items, min_size=min_size, max_size=max_size).map(",".join)


def _sizes(values: Sequence[int]) -> st.SearchStrategy[str]:
    side = st.sampled_from([str(v) for v in values])
    pairs = st.tuples(side, side, st.sampled_from(["x", "X", "*", " x "])).map(lambda t: t[0] + t[2] + t[1])
    return st.one_of(side, pairs)


#: Strings Python parses in surprising ways, or that no field accepts.
_ODD_STRINGS = (
    "",
    " ",
    ",",
    ",,",
    "-",
    "--",
    "-1",
    "0",
    "+1",
    "1_000",
    "0x10",
    "1e3",
    "1.5",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e309",
    "9" * 30,
    "9223372036854775808",
    "-9223372036854775809",
    "1" + "0" * 400,
    "1" + "0" * 5000,
    "٣",
    "２２４",
    "²",
    "🙂",
    "ünïcødé",
    "\u200b",
    "a" * 3000,
    "\t\n",
    "\\",
    "'",
    '"',
    "{}",
    "[]",
    "null",
    "true",
    "--help",
    "-h",
    "--version",
    "=",
    "a=b",
    "\udcff",
)

_SMALL = ("1", "2", "3", "4")
_HUGE_INTS = (
    "0",
    "-1",
    "-7",
    "4096",
    "65536",
    "2147483648",
    "9223372036854775807",
    "9223372036854775808",
    "1" + "0" * 30,
    "1" + "0" * 400,
    "9" * 5000,
)
#: An integer beyond a float (309 digits or more) but within Python's 4300-digit parsing limit.
_PAST_FLOAT = "1" + "0" * 400

odd_strings = st.one_of(
    st.sampled_from(_ODD_STRINGS),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
    st.binary(min_size=1, max_size=8).map(lambda b: b.decode("utf-8", "surrogateescape").replace("\x00", "")),
)


def _choices(values: Sequence[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(list(values))


def _enum_values(cls: type[enum.Enum]) -> list[str]:
    return [str(m.value) for m in cls]


def _config_hints() -> dict[str, st.SearchStrategy[str]]:
    from pvttrace.config import OFFICIAL_NAMES, VARIANTS, Attention, DType, Task
    from pvttrace.records import OpKind

    stage_items = {
        "dims": ("8", "16", "24", "32", "64", "512", "4096", "4294967296", _PAST_FLOAT),
        "heads": ("1", "1", "2", "4", "8", _PAST_FLOAT),
        "depths": ("1", "1", "1", "2", "5000", _PAST_FLOAT),
        "mlp_ratios": ("1", "2", "4", "0.5", "1.5", "8", "1e308", "1e-9", _PAST_FLOAT),
        "sr": ("1", "1", "2", "4", "8", _PAST_FLOAT),
        "patch": ("1", "2", "2", "4", "7", _PAST_FLOAT),
    }
    hints = {name: _joined(_choices(items)) for name, items in stage_items.items()}
    metric_names = (
        "macs",
        "attention_macs",
        "sr_macs",
        "attention_map_bytes",
        "params",
        "param_bytes",
        "peak_activation_bytes",
        "kv_tokens",
        "bogus",
    )
    hints.update(
        {
            "variant": _choices([*VARIANTS, *OFFICIAL_NAMES.values(), "PVT_V2_B2_LI", "tinny", "b6", "pvt_v3_b0"]),
            "img": _sizes([1, 7, 16, 17, 32, 33, 47, 64, 224, 8192, 4000000000, 10**12]),
            "pos_size": _sizes([1, 16, 32, 224, 10**10]),
            "batch": _choices(["1", "1", "2", "3", "4096", "100000000000000000000"]),
            "in_chans": _choices(["1", "3", "4"]),
            "num_classes": _choices(["1", "10", "1000"]),
            "dtype": _choices(_enum_values(DType)),
            "task": _choices(_enum_values(Task)),
            "attention": _choices(_enum_values(Attention)),
            "kind": _joined(_choices([k.value for k in OpKind] + ["bogus"]), max_size=3),
            "stage": _choices(["1", "2", "3", "4", "0", "5", "1,2", "2,x"]),
            "label": _choices(["a", "b", "base", "x y", "ünï", "a,b"]),
            "metric": _joined(_choices(metric_names), max_size=3),
            "plot_metric": _choices(metric_names),
            "plot": _choices(["plot.png", "plot.svg", "plot.pdf", "plot", "new/plot.png", "emptydir"]),
            "max_macs": _choices(["2G", "15M", "1", "1P", "1.5T", "0", "-5", "1e9", "2 G", "GG"]),
            "max_params": _choices(["15M", "1", "100K", "0", "10 k", "M"]),
            "max_attention_map": _choices(["64MiB", "1GiB", "1", "2PiB", "0B", "1.5GB", "MiB"]),
            "rtol": _choices(["0", "0.01", "1", "1e-9", "-1", "nan", "inf"]),
            "limit": _choices(["0", "1", "3", "10", "-1"]),
            "width": _choices(["40", "80", "120", "200", "0", "-1", "1", "19", "20", "1000", "1001", "99999999999999"]),
            # cpu/cuda allocate real memory: see the module docstring.
            "device": _choices(["meta", "meta", "cuda", "cuda:0", "tpu", "META"]),
            "linear_sra": _choices(["on", "off", "true", "0", "maybe"]),
        }
    )
    return hints


#: Sandbox paths (see fuzz.harness): seeds, directories, missing and odd names.
PATHS = (
    "good.json",
    "one-stage.json",
    "stale.json",
    "budget.json",
    "trace.json",
    "trace-one-stage.json",
    "garbage.json",
    "empty.json",
    "latin1.json",
    "snaps",
    "snaps/a.json",
    "snaps/b.json",
    "emptydir",
    ".",
    "missing.json",
    "new.json",
    "new dir/ünï код.json",
    "emptydir/deep/x.json",
    "good.json/x.json",
    "-",
    "\udcff.json",
    "fifo.json",
    "zero.json",
    "null.json",
    "link.json",
    "/dev/zero",
)

_HINTS: dict[str, st.SearchStrategy[str]] | None = None


def value_hints() -> dict[str, st.SearchStrategy[str]]:
    """Valid-looking values per parameter name (built on first use)."""
    global _HINTS
    if _HINTS is None:
        _HINTS = _config_hints()
        _HINTS["path"] = _HINTS["paths"] = _choices(PATHS)
        # sweep's --img is a list of sizes.
        _HINTS["sweep.img"] = _joined(_sizes([16, 32, 33, 64, 224]), max_size=3)
        _HINTS["model"] = _choices(_MODEL_HINTS)
        _HINTS["input_shape"] = _choices(_INPUT_SHAPE_HINTS)
    return _HINTS


def _typed(value_type: Any) -> st.SearchStrategy[str]:
    """Values by type, for options without a hint (and as edge cases for those with one)."""
    if isinstance(value_type, type) and issubclass(value_type, enum.Enum):
        return st.one_of(_choices(_enum_values(value_type)), odd_strings)
    if value_type is int:
        return st.one_of(_choices(_SMALL), _choices(_HUGE_INTS))
    if value_type is float:
        return _choices(["0", "0.5", "1", "-1", "nan", "inf", "-inf", "1e308", "1e-320", "x"])
    if value_type is bool:
        return _choices(["true", "false", "1", "0", "yes", "maybe"])
    return st.one_of(_choices(_SMALL), odd_strings)


#: Parameters whose values come from their hint only: a value outside it could do real harm (``--device cpu``
#: allocates whatever size is asked). An option that loads code or files named by its value belongs here too.
HINT_ONLY = frozenset({"device", "model", "input_shape"})

#: ``--model`` imports the code it names and may fall back to the CPU: only the test zoo's models that build
#: on meta (or fail cleanly) and malformed specs; ``--input-shape`` stays small for the same reason.
_MODEL_HINTS = (
    "anymodel_zoo:mix",
    "anymodel_zoo:sdpa",
    "anymodel_zoo:broken",
    "anymodel_zoo:fails",
    "anymodel_zoo:not_a_module",
    "anymodel_zoo:missing",
    # Hostile factories (issue 18): exit, print, raise a "metadata" error, lazy modules, 2000-deep nesting.
    "hostile_zoo:exits_in_factory",
    "hostile_zoo:exits_in_forward",
    "hostile_zoo:prints_any",
    "hostile_zoo:metadata_error",
    "hostile_zoo:lazy",
    "hostile_zoo:deep",
    "sys:exit",
    "no_such_module_xyz:factory",
    "not a spec",
    ":",
    "timm:",
)
_INPUT_SHAPE_HINTS = ("2,3,8,8", "1,3,16,16", "2,16,8", "1,3,0,8", "1,3,-8,8", "x", "", "1,,3")


def values_for(param: ParamSpec, command: CommandSpec) -> st.SearchStrategy[str]:
    """Values of one parameter: its hint (three times as likely), its type's values, odd strings."""
    hints = value_hints()
    specific = ".".join((*command.path, param.name))
    hint = hints[specific] if specific in hints else hints.get(param.name)
    if param.name in HINT_ONLY:
        return hint if hint is not None else st.just("")
    if hint is None:
        return st.one_of(_typed(param.value_type), odd_strings)
    return st.one_of(hint, hint, hint, _typed(param.value_type), odd_strings)


# ---------------------------------------------------------------------------------- command lines
@st.composite
def _option_tokens(draw: st.DrawFn, param: ParamSpec, command: CommandSpec) -> list[str]:
    if param.is_flag:
        flag = draw(st.sampled_from(param.flags + param.negations))
        # "--flag=value" is a usage error for a flag; keep it rare.
        if draw(st.integers(0, 19)) == 0:
            return [f"{flag}={draw(odd_strings)}"]
        return [flag]
    flag = draw(st.sampled_from(param.flags))
    value = draw(values_for(param, command))
    if flag.startswith("--") and draw(st.integers(0, 5)) == 0:
        return [f"{flag}={value}"]
    return [flag, value]


#: Tokens inserted at a random place in a few command lines.
JUNK_TOKENS = ("--bogus", "-z", "--", "--help", "-h", "--version", "extra", "--variant", "--img=", "run", "--no-such=1")


@st.composite
def command_lines(draw: st.DrawFn, specs: Sequence[CommandSpec] | None = None) -> list[str]:
    """One command line: a command, some of its options (repeatable ones 1-3 times), its arguments, maybe junk."""
    specs = tuple(specs or command_specs())
    command = draw(st.sampled_from(specs))
    groups: list[list[str]] = []
    options = command.options
    if options:
        chosen = draw(st.lists(st.sampled_from(options), max_size=6, unique_by=lambda p: p.name))
        for param in chosen:
            repeats = draw(st.integers(1, 3)) if param.multiple else 1
            groups.extend(draw(_option_tokens(param, command)) for _ in range(repeats))
    for param in command.arguments:
        low = 1 if param.required and draw(st.integers(0, 9)) else 0
        count = draw(st.integers(low, 3 if param.multiple else 1))
        groups.extend([draw(values_for(param, command))] for _ in range(count))
    groups = list(draw(st.permutations(groups)))
    tokens = list(command.path) + [token for group in groups for token in group]
    if draw(st.integers(0, 9)) == 0:
        junk = draw(st.one_of(st.sampled_from(JUNK_TOKENS), odd_strings))
        tokens.insert(draw(st.integers(0, len(tokens))), junk)
    return tokens


#: Environment values the console reads; a share of cases sets one of them to something odd.
environments = st.one_of(
    st.just({}),
    st.just({}),
    st.just({}),
    st.fixed_dictionaries({"COLUMNS": st.sampled_from(["80", "0", "-5", "abc", "", "99999999999999", "1e3"])}),
    st.fixed_dictionaries({"NO_COLOR": st.just("1")}),
    st.fixed_dictionaries({"TERM": st.sampled_from(["dumb", "xterm-256color", ""])}),
)
