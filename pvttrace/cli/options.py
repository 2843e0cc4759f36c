"""The model options, declared once: what every command that builds a model takes on the command line.

:data:`MODEL_OPTIONS` lists each option once (name, value type, help). The :func:`model_options`
decorator adds them to a command's signature (typer reads ``inspect.signature``, which honours
``__signature__``) at the place of the command's :class:`ModelOptions` (or :class:`ModelColumns`)
parameter, and hands the command one object instead of seventeen arguments. ``run``, ``fit``,
``formula`` and ``snapshot write`` take each option once; ``diff`` and ``sweep`` take it repeatedly,
one value per configuration (``repeated=True``), from the same declarations.

Adding a model option: one :class:`ModelOption` here, plus the keyword of
:func:`pvttrace.config.resolve_config` of the same name and its use in the config.

A boolean option is the flag pair ``--x/--no-x`` everywhere; repeated, each occurrence makes one
configuration (``diff --variant b2 --variant b2 --no-linear-sra --linear-sra``).

Torch is not imported here: ``pvttrace --help`` stays fast.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pvttrace.base.errors import UserInputError
from pvttrace.cli.parsing import (
    KEEP_PRESET,
    parse_choice,
    parse_float_list,
    parse_img,
    parse_int_list,
    parse_model_spec,
)
from pvttrace.config import Attention, DType, PvtConfig, Task, resolve_config, resolve_variant_name

if TYPE_CHECKING:
    from pvttrace.tracing.target import ModelSpec

__all__ = [
    "MODEL_OPTIONS",
    "SOURCE_OPTIONS",
    "ModelColumns",
    "ModelOption",
    "ModelOptions",
    "config_from_text",
    "model_options",
]

#: The preset a command builds when ``--variant`` is not given.
DEFAULT_VARIANT = "tiny"


@dataclass(frozen=True, slots=True)
class ModelOption:
    """One command-line option of the model: ``--name-with-dashes`` sets ``resolve_config(name=...)``."""

    name: str
    """The keyword of :func:`pvttrace.config.resolve_config` it sets (for source options: the spec field)."""
    type: type
    """The value's type on the command line: str, int or bool (a ``--x/--no-x`` flag pair)."""
    help: str
    short: str | None = None
    """A one-letter alias (``-v``), or None."""
    with_model: bool = False
    """Also applies to ``--model`` (it sets the input or the attention switch); the others describe built-ins."""
    parse: Callable[[str], Any] | None = None
    """Turns the command-line text into the typed value ``resolve_config`` takes (None: taken as given)."""

    def typed(self, value: Any) -> Any:
        """``value`` as :func:`pvttrace.config.resolve_config` takes it: parsed when it is text, else as given.

        Raises:
            ConfigError: text that does not parse (one line naming the option, the value and the rule).
        """
        return self.parse(value) if self.parse is not None and isinstance(value, str) else value

    @property
    def flag(self) -> str:
        """``--mlp-ratios`` for ``mlp_ratios``."""
        return "--" + self.name.replace("_", "-")


def _ints(field: str) -> Callable[[str], tuple[int, ...]]:
    return lambda text: parse_int_list(field, text)


def _floats(field: str) -> Callable[[str], tuple[float, ...]]:
    return lambda text: parse_float_list(field, text)


def _choice(field: str, enum: type[StrEnum]) -> Callable[[str], StrEnum]:
    return lambda text: parse_choice(field, text, enum)


#: The built-in model's options, in the order ``--help`` lists them.
MODEL_OPTIONS: tuple[ModelOption, ...] = (
    ModelOption(
        "variant",
        str,
        "Preset: tiny small medium large b0 b1 b2 b2-li b3 b4 b5 (or pvt_v2_b2 ...); default tiny.",
        short="-v",
    ),
    ModelOption("img", str, "Image size: 224, or HxW such as 800x1333.", with_model=True, parse=parse_img),
    ModelOption("batch", int, "Batch size.", with_model=True),
    ModelOption("in_chans", int, "Input channels.", with_model=True),
    ModelOption("dims", str, "Embedding dim per stage, e.g. 64,128,320,512.", parse=_ints("dims")),
    ModelOption("heads", str, "Attention heads per stage, e.g. 1,2,5,8.", parse=_ints("heads")),
    ModelOption("depths", str, "Blocks per stage, e.g. 2,2,2,2.", parse=_ints("depths")),
    ModelOption("mlp_ratios", str, "MLP ratio per stage, e.g. 8,8,4,4.", parse=_floats("mlp_ratios")),
    ModelOption("sr", str, "Spatial-reduction ratio per stage, e.g. 8,4,2,1.", parse=_ints("sr_ratios")),
    ModelOption(
        "patch",
        str,
        "Patch stride: one value for stage 1 or one per stage. v1's stage-1 value is the official patch_size; "
        "v2 strides other than 4,2,2,2 and v1 later strides other than 2 are pvttrace extensions (no official "
        "counterpart; run headers and JSON say so).",
        parse=_ints("patch"),
    ),
    ModelOption("qkv_bias", bool, "Bias in the q and kv projections."),
    ModelOption("linear_sra", bool, "Linear SRA (v2): 7x7 pooled keys."),
    ModelOption("num_classes", int, "Classifier outputs (task cls)."),
    ModelOption("dtype", str, "float32, float16 or bfloat16.", parse=_choice("dtype", DType)),
    ModelOption(
        "task",
        str,
        "cls: ImageNet classifier (papers' tables); backbone: four pyramid maps.",
        parse=_choice("task", Task),
    ),
    ModelOption(
        "pos_size",
        str,
        "v1: image size the positional tables are sized for.",
        parse=lambda text: parse_img(text, "pos_size"),
    ),
    ModelOption(
        "attention",
        str,
        "explicit (official: materialises the map) or sdpa (fused).",
        with_model=True,
        parse=_choice("attention", Attention),
    ),
)

#: What to trace instead of a built-in variant, and its input.
SOURCE_OPTIONS: tuple[ModelOption, ...] = (
    ModelOption(
        "model",
        str,
        "Trace any model instead of a built-in variant: PACKAGE.MODULE:FACTORY (a callable returning an "
        "nn.Module), timm:NAME (needs timm) or hf:CLASS (a transformers class, e.g. hf:PvtV2Model, built from "
        "its config's defaults). Input from --input-shape, or --img/--batch/--in-chans.",
        short="-m",
    ),
    ModelOption("input_shape", str, "With --model: the input tensor shape, e.g. 1,3,224,224."),
    ModelOption(
        "model_option",
        str,
        "With --model hf:CLASS: a config override KEY=VALUE (a Python literal), e.g. depths=[3,4,6,3]; repeatable.",
    ),
    ModelOption(
        "inputs",
        str,
        "With --model: PACKAGE.MODULE:FUNCTION returning the forward's inputs (a tensor, a tuple for "
        "several positional inputs, or a dict of keyword inputs), made on the trace device.",
    ),
)

_BY_NAME: Mapping[str, ModelOption] = {o.name: o for o in (*MODEL_OPTIONS, *SOURCE_OPTIONS)}
#: Source options that are lists even when given once (``--model-option`` repeats by nature).
_ALWAYS_LISTS = frozenset({"model_option"})


@dataclass(frozen=True, slots=True)
class ModelOptions:
    """A command's model options as given (None: not given), and what they build.

    Options in ``repeated`` (e.g. ``formula``'s ``sr``) hold a tuple of every value given.
    """

    values: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values.get(name)

    @property
    def img(self) -> str | None:
        """``--img`` as given."""
        return self.values.get("img")

    @property
    def batch(self) -> int | None:
        """``--batch`` as given."""
        return self.values.get("batch")

    @property
    def num_classes(self) -> int | None:
        """``--num-classes`` as given (it also sets a ``--head``'s classes)."""
        return self.values.get("num_classes")

    @property
    def model(self) -> str | None:
        """``--model`` as given."""
        return self.values.get("model")

    def replaced(self, **changes: Any) -> ModelOptions:
        """These options with ``changes`` (None: as if not given)."""
        return ModelOptions({**self.values, **changes})

    def config_kwargs(self, **changes: Any) -> dict[str, Any]:
        """The built-in options (with ``changes``) as the typed keywords of :func:`pvttrace.config.resolve_config`.

        The variant is checked first, then each option's text is parsed as its declaration says, in
        declaration order, so the first bad option is the one reported.

        Raises:
            ConfigError: an unknown variant or text that does not parse (exit 2).
        """
        raw = {o.name: self.values.get(o.name) for o in MODEL_OPTIONS}
        raw.update(changes)
        raw["variant"] = raw["variant"] or DEFAULT_VARIANT
        resolve_variant_name(str(raw["variant"]))
        return {name: _BY_NAME[name].typed(value) if name in _BY_NAME else value for name, value in raw.items()}

    def config(self, **changes: Any) -> PvtConfig:
        """The built-in configuration these options describe.

        Raises:
            ConfigError: an unknown variant or a value that breaks a rule (exit 2).
        """
        return resolve_config(**self.config_kwargs(**changes))

    def builtin_only_given(self) -> list[str]:
        """The flags given that describe a built-in variant (so cannot go with ``--model``)."""
        return [o.flag for o in MODEL_OPTIONS if not o.with_model and self.values.get(o.name) is not None]

    def spec(self) -> ModelSpec:
        """What to trace: ``--model`` (with its input options) or the built-in variant the options describe.

        Raises:
            UserInputError: a built-in-only option with ``--model``, a ``--model`` input option without
                ``--model``, or a bad spec or size (exit 2).
            ConfigError: a built-in configuration that breaks a rule (exit 2).
        """
        from pvttrace.tracing.target import builtin_spec

        model = self.values.get("model")
        if model is None:
            for name, message in (
                ("input_shape", "input_shape needs --model; built-in variants take --img/--batch/--in-chans"),
                ("model_option", "model_option needs --model hf:CLASS; built-in variants take --dims, --depths ..."),
                ("inputs", "inputs needs --model; built-in variants take --img/--batch/--in-chans"),
            ):
                if self.values.get(name):
                    raise UserInputError(message)
            return builtin_spec(self.config())
        given = self.builtin_only_given()
        if given:
            raise UserInputError(
                f"model={model!r} cannot be combined with {', '.join(given)}: those options describe built-in variants"
            )
        return parse_model_spec(
            model,
            input_shape=self.values.get("input_shape"),
            img=self.values.get("img"),
            batch=self.values.get("batch"),
            in_chans=self.values.get("in_chans"),
            attention=self.values.get("attention"),
            options=tuple(self.values.get("model_option") or ()),
            inputs=self.values.get("inputs"),
        )


@dataclass(frozen=True, slots=True)
class ModelColumns:
    """Repeated model options (``diff``, ``sweep``): each value given k times makes k configurations.

    An option given once applies to every configuration; options given more than once must all be
    given the same number of times.
    """

    values: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> tuple[Any, ...]:
        return self.values.get(name, ())

    def given(self) -> list[str]:
        """The flags given at least once, in declaration order."""
        return [_BY_NAME[name].flag for name, values in self.values.items() if values]

    def count(self) -> int:
        """How many configurations the options make (1 when none is repeated).

        Raises:
            ConfigError: two options repeated a different number of times.
        """
        from pvttrace.analyses.sweep import column_count

        return column_count({_BY_NAME[name].flag: list(values) for name, values in self.values.items()})

    def column(self, index: int) -> ModelOptions:
        """The options of configuration ``index``: its own value of each repeated option, the shared others."""
        return ModelOptions(
            {
                name: (values[index] if len(values) > 1 else values[0]) if values else None
                for name, values in self.values.items()
            }
        )

    def columns(self) -> list[ModelOptions]:
        """Every configuration's options, in order."""
        return [self.column(i) for i in range(self.count())]

    def lists(self) -> dict[str, list[Any]]:
        """Each built-in option's values (empty when not given), keyed by its ``resolve_config`` keyword."""
        return {o.name: list(self.values.get(o.name, ())) for o in MODEL_OPTIONS if o.name in self.values}

    def typed_lists(self) -> dict[str, list[Any]]:
        """:meth:`lists` with each text value parsed as its option declares; ``-`` keeps the preset's value (None).

        Raises:
            ConfigError: a value that does not parse.
        """
        return {
            name: [None if isinstance(v, str) and v.strip() == KEEP_PRESET else _BY_NAME[name].typed(v) for v in values]
            for name, values in self.lists().items()
        }


def _typer_annotation(option: ModelOption, *, repeated: bool, help_text: str | None, short: bool) -> Any:
    """``Annotated[T | None, typer.Option(...)]`` for one option (``list[T] | None`` when repeated)."""
    flag = f"{option.flag}/--no-{option.flag[2:]}" if option.type is bool else option.flag
    decls = [flag] + ([option.short] if option.short and short else [])
    text = option.help + (" Repeatable: one value per configuration." if repeated else "")
    if help_text is not None or option.name in _ALWAYS_LISTS:
        text = help_text or option.help  # a command's own text says how it repeats
    value_type: Any = list[option.type] if repeated or option.name in _ALWAYS_LISTS else option.type  # type: ignore[name-defined]
    return Annotated[value_type | None, typer.Option(*decls, help=text)]


def model_options(
    *,
    sources: Collection[str] = ("model", "input_shape"),
    repeated: bool | Collection[str] = False,
    exclude: Collection[str] = (),
    help: Mapping[str, str] | None = None,
    no_short: Collection[str] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command every model option, in place of its parameter annotated :class:`ModelOptions`.

    Args:
        sources: which of :data:`SOURCE_OPTIONS` it takes (``model``, ``input_shape``, ``model_option``, ``inputs``).
        repeated: True: every option repeats, one value per configuration, and the command gets
            :class:`ModelColumns`; a collection: only those options repeat (values as tuples).
        exclude: options the command does not take (it declares its own meaning, e.g. sweep's ``--img``).
        help: per-command help texts that replace the declared ones (fit's ``--img auto``).
        no_short: options whose one-letter alias the command uses for something else.
    """
    chosen = [o for o in MODEL_OPTIONS if o.name not in exclude]
    chosen += [o for o in SOURCE_OPTIONS if o.name in sources]
    helps = dict(help or {})

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        target = next((p for p in signature.parameters.values() if p.annotation in (ModelOptions, ModelColumns)), None)
        if target is None:
            raise TypeError(f"{func.__name__} needs a parameter annotated ModelOptions or ModelColumns")
        all_repeat = repeated is True
        repeats = {o.name for o in chosen} if repeated is True else set(repeated or ())
        added = [
            inspect.Parameter(
                o.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=_typer_annotation(
                    o, repeated=o.name in repeats, help_text=helps.get(o.name), short=o.name not in no_short
                ),
            )
            for o in chosen
        ]
        params: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            if p is target:
                params.extend(added)
            else:
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        names = [o.name for o in chosen]

        def command(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in names}
            if all_repeat:
                kwargs[target.name] = ModelColumns({n: tuple(v or ()) for n, v in given.items()})
            else:
                values = {n: tuple(v) if n in repeats and v is not None else v for n, v in given.items()}
                kwargs[target.name] = ModelOptions(values)
            return func(**kwargs)

        command.__name__ = func.__name__
        command.__qualname__ = func.__qualname__
        command.__doc__ = func.__doc__
        command.__module__ = func.__module__
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def config_from_text(variant: str = DEFAULT_VARIANT, **options: Any) -> PvtConfig:
    """The config that the command-line options ``options`` describe, given as text as on the command line.

    ``config_from_text("b2", img="800x1333", sr="8,4,2,1")`` is what ``--variant b2 --img 800x1333 --sr
    8,4,2,1`` builds; each option is parsed as :data:`MODEL_OPTIONS` declares it.

    Raises:
        UserInputError: a keyword that is no model option.
        ConfigError: an unknown variant, text that does not parse, or a value that breaks a rule.
    """
    unknown = sorted(set(options) - {o.name for o in MODEL_OPTIONS})
    if unknown:
        raise UserInputError(f"option={unknown[0]!r} is not a model option (known: {', '.join(_BY_NAME)})")
    return ModelOptions({"variant": variant, **options}).config()
