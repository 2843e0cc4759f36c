"""Command-line text to typed values: the one place where pvttrace parses what a user typed.

The library takes typed values (ints, ``(H, W)`` sizes, tuples, enums); the commands (and the pytest
plugin, which takes budgets such as ``"2G"``) turn their text into those values here, with a one-line
error that names the field, the value and the rule. Heavier modules are imported inside the functions
that need them, so importing this module (every command does) stays cheap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from pvttrace.base.errors import ConfigError, UserInputError
from pvttrace.base.units import BYTE_UNITS, COUNT_UNITS

if TYPE_CHECKING:
    from pvttrace.analyses.sweep import Metric
    from pvttrace.records import OpKind
    from pvttrace.tracing.target import ModelSpec

__all__ = [
    "closest",
    "parse_bytes",
    "parse_choice",
    "parse_count",
    "parse_float_list",
    "parse_img",
    "parse_input_shape",
    "parse_int_list",
    "parse_kinds",
    "parse_metrics",
    "parse_model_spec",
    "parse_repeated_ints",
    "parse_sizes",
    "parse_symbolic",
]

E = TypeVar("E", bound=StrEnum)


# ---------------------------------------------------------------------------------- numbers and sizes
def parse_int_list(field_name: str, text: str) -> tuple[int, ...]:
    """Parse a comma list of integers such as ``"8,4,2,1"``.

    Raises:
        ConfigError: empty items or items that are not integers.
    """
    items = [t.strip() for t in text.split(",")]
    try:
        if not text.strip() or any(not t for t in items):
            raise ValueError
        return tuple(int(t) for t in items)
    except ValueError:
        raise ConfigError(f"{field_name}={text!r} must be a comma-separated list of integers, e.g. 8,4,2,1") from None


def parse_float_list(field_name: str, text: str) -> tuple[float, ...]:
    """Parse a comma list of numbers such as ``"8,8,4,4"`` or ``"4.5,4,4,4"``.

    Raises:
        ConfigError: empty items, items that are not numbers, or infinities and NaN.
    """
    items = [t.strip() for t in text.split(",")]
    try:
        if not text.strip() or any(not t for t in items):
            raise ValueError
        values = tuple(float(t) for t in items)
    except ValueError:
        raise ConfigError(f"{field_name}={text!r} must be a comma-separated list of numbers, e.g. 8,8,4,4") from None
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{field_name}={text!r} must hold finite numbers")
    return values


def parse_img(text: str, field_name: str = "img") -> tuple[int, int]:
    """Parse an image size: ``"224"`` (square) or ``"800x1333"`` (height x width).

    Raises:
        ConfigError: not a size.
    """
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX*]\s*(\d+)\s*)?", text)
    if not match:
        raise ConfigError(f"{field_name}={text!r} must be a size such as 224 or 800x1333 (height x width)")
    try:
        h = int(match.group(1))
        w = int(match.group(2)) if match.group(2) is not None else h
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise ConfigError(f"{field_name}={text[:40]!r}... has too many digits to be a size") from None
    return h, w


_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*")


def parse_count(text: str, field: str) -> int:
    """Parse ``'2G'``, ``'15M'``, ``'2.5G'`` or ``'1200'`` (decimal prefixes).

    Raises:
        UserInputError: not a positive number with an optional K/M/G/T/P/E suffix.
    """
    units = {"": 1, **dict(COUNT_UNITS)}
    return _scaled(text, field, units, "a number with an optional K/M/G/T/P/E suffix, e.g. 2G")


def parse_bytes(text: str, field: str) -> int:
    """Parse ``'64MiB'``, ``'24GiB'`` (powers of 1024), ``'80GB'``, ``'1.5MB'`` (powers of 1000) or plain bytes.

    A bare prefix (``'24G'``) is read as binary, as memory sizes usually are.

    Raises:
        UserInputError: not a positive size with a B/KB/KiB/MB/MiB/GB/GiB/... suffix.
    """
    units = {"": 1, "B": 1}
    for (suffix, scale), (decimal, decimal_scale) in zip(BYTE_UNITS, COUNT_UNITS, strict=True):
        units[suffix.upper()] = scale
        units[suffix[0]] = scale
        units[decimal + "B"] = decimal_scale
    return _scaled(text, field, units, "a size such as 512MiB, 24GiB or 80GB")


def _scaled(text: str, field: str, units: dict[str, int], rule: str) -> int:
    """``text`` as a positive number times its (case-insensitive) unit suffix from ``units``; ``rule`` says
    what was expected when it is not one."""
    match = _SIZE.fullmatch(text)
    if not match or match.group(2).upper() not in units:
        raise UserInputError(f"{field}={text!r} must be {rule}")
    value = float(match.group(1)) * units[match.group(2).upper()]
    if value <= 0:
        raise UserInputError(f"{field}={text!r} must be positive")
    if not math.isfinite(value):  # more digits than a float holds
        raise UserInputError(f"{field}={text[:40]!r}... is too large to be a number")
    return int(value)


def parse_repeated_ints(values: Sequence[str] | None, field: str) -> list[int] | None:
    """``--stage 1,2`` and ``--stage 1 --stage 2`` alike: comma-separated and/or repeated integers.

    Raises:
        UserInputError: an item that is not a non-negative integer.
    """
    if not values:
        return None
    out: list[int] = []
    for value in values:
        for part in value.split(","):
            text = part.strip()
            if not (text.isascii() and text.isdigit()):
                raise UserInputError(f"{field}={value!r} must be integers separated by commas, e.g. 1,2")
            out.append(int(text))
    return out


def parse_choice(field: str, text: str, enum: type[E]) -> E:
    """The member of ``enum`` whose value is ``text``.

    Raises:
        ConfigError: ``text`` names no member (the message lists them).
    """
    allowed = [member.value for member in enum]
    if text not in allowed:
        raise ConfigError(f"{field}={text!r} must be one of: {', '.join(allowed)}")
    return enum(text)


#: A repeated ``sweep`` option's value that means "the preset's own value" for that configuration.
KEEP_PRESET = "-"


# ---------------------------------------------------------------------------------- model options
def closest(value: str, choices: Sequence[str]) -> str:
    """``; did you mean 'sr_conv'?`` for the closest choice, or an empty string when none is close."""
    import difflib

    match = difflib.get_close_matches(value.lower(), list(choices), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def parse_kinds(text: str | None) -> list[OpKind] | None:
    """``--kind attention,sr_conv``: op kinds, or None when not given.

    Raises:
        UserInputError: an unknown kind (with the closest one) or an empty list.
    """
    if text is None:
        return None
    from pvttrace.records import OpKind

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    known = [k.value for k in OpKind]
    for kind in kinds:
        if kind not in known:
            raise UserInputError(f"kind={kind!r} is not an op kind{closest(kind, known)} (known: {', '.join(known)})")
    if not kinds:
        raise UserInputError("kind='' must name at least one op kind")
    return [OpKind(kind) for kind in kinds]


# ---------------------------------------------------------------------------------- sweep and formula
def parse_metrics(texts: Sequence[str] | None) -> tuple[Metric, ...]:
    """Parse ``--metric`` values (comma lists, possibly repeated) into metrics; None gives the defaults.

    Raises:
        UserInputError: an unknown metric, one this build cannot compute, or an empty list.
    """
    from pvttrace.analyses.sweep import DEFAULT_METRICS, METRICS, available_metrics, metric_available

    if not texts:
        return tuple(METRICS[name] for name in DEFAULT_METRICS if metric_available(METRICS[name]))
    names = [n.strip() for text in texts for n in text.split(",") if n.strip()]
    if not names:
        raise UserInputError("metric='' must name at least one metric; known: " + ", ".join(METRICS))
    chosen: list[Metric] = []
    for name in names:
        metric = METRICS.get(name)
        if metric is None:
            import difflib

            close = difflib.get_close_matches(name.lower(), list(METRICS), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserInputError(f"metric={name!r} is not a sweep metric{hint} (known: {', '.join(METRICS)})")
        if not metric_available(metric):
            raise UserInputError(
                f"metric={name!r} is not available: traces of this pvttrace have no {metric.requires} "
                f"(available: {', '.join(available_metrics())})"
            )
        if metric not in chosen:
            chosen.append(metric)
    return tuple(chosen)


def _size_range(item: str, step: int | None) -> list[tuple[int, int]]:
    """``224..2048`` with a step: square sizes from the first to at most the last; else one size."""
    if ".." not in item:
        return [parse_img(item)]
    first, _, last = item.partition("..")
    low, high = parse_img(first), parse_img(last)
    if step is None:
        raise ConfigError(f"img={item!r} is a range; give its --step, e.g. --img {item} --step 8")
    if low[0] != low[1] or high[0] != high[1] or low[0] > high[0]:
        raise ConfigError(f"img={item!r} must be a range of square sizes from small to large, e.g. 224..2048")
    return [(v, v) for v in range(low[0], high[0] + 1, step)]


def parse_sizes(text: str, step: int | None = None) -> tuple[tuple[int, int], ...]:
    """Parse ``--img 224,320,800x1333`` (or a range ``224..2048`` with ``step``) into (H, W) sizes, smallest area first.

    Raises:
        ConfigError: an item that is not a size, a range without a step, or the same size twice.
    """
    if step is not None and step <= 0:
        raise ConfigError(f"step={step} must be a positive integer")
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise ConfigError(f"img={text!r} must be a comma-separated list of sizes such as 224,512,800x1333")
    sizes = [size for item in items for size in _size_range(item, step)]
    for size in sizes:
        if sizes.count(size) > 1:
            raise ConfigError(f"img={text!r} lists {size[0]}x{size[1]} more than once; give each size once")
    return tuple(sorted(sizes, key=lambda hw: (hw[0] * hw[1], hw)))


def parse_symbolic(text: str) -> tuple[str, ...]:
    """``"H,W"`` -> ``("H", "W")``: the size variables to keep symbolic, in B, H, W order.

    Raises:
        UserInputError: an unknown name, a repeat, or none.
    """
    from pvttrace.analyses.formula import SIZE_VARIABLES

    names = [t.strip().upper() for t in text.split(",") if t.strip()]
    if not names:
        raise UserInputError(f"symbolic={text!r} must name at least one of B, H, W")
    for name in names:
        if name not in SIZE_VARIABLES:
            raise UserInputError(f"symbolic={text!r}: {name!r} is not a size variable; choose from B (batch), H, W")
        if names.count(name) > 1:
            raise UserInputError(f"symbolic={text!r} names {name} twice")
    return tuple(v for v in SIZE_VARIABLES if v in names)


# ---------------------------------------------------------------------------------- --model
def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``.

    Raises:
        UserInputError: not a comma list of positive integers, or a shape torch cannot create.
    """
    from pvttrace.config import check_input_shape

    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(re.fullmatch(r"[0-9]{1,30}", p) for p in parts) or any(int(p) <= 0 for p in parts):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise UserInputError(f"input_shape={shown!r} must be positive integers separated by commas, e.g. 1,3,224,224")
    shape = tuple(int(p) for p in parts)
    check_input_shape(shape)
    return shape


def parse_model_spec(
    text: str,
    *,
    input_shape: str | None = None,
    img: str | None = None,
    batch: int | None = None,
    in_chans: int | None = None,
    attention: str | None = None,
    options: Sequence[str] = (),
    inputs: str | None = None,
) -> ModelSpec:
    """``--model`` (``timm:NAME``, ``hf:CLASS`` or ``PACKAGE.MODULE:FACTORY``) and its input options as a spec.

    Nothing is imported here; :func:`pvttrace.tracing.target.external_spec` checks the typed values
    (the spec's form included) and how they combine. ``options`` are ``key=value`` config overrides
    for ``hf:CLASS`` models.

    Raises:
        UserInputError: a malformed spec, option or size, or input options that do not combine.
    """
    from pvttrace.tracing.target import external_spec

    spec = text.strip()
    source, target = "import", spec
    for prefix in ("timm", "hf"):
        if spec.startswith(prefix + ":"):
            source, target = prefix, spec[len(prefix) + 1 :]
    pairs = []
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key.strip()):
            raise UserInputError(
                f"model_option={option!r} must be KEY=VALUE with KEY a config field, e.g. depths=[3,4,6,3]"
            )
        pairs.append((key.strip(), value.strip()))
    size = None
    if img is not None:
        size = parse_img(img)
        if min(size) <= 0:
            raise UserInputError(f"img={size[0]}x{size[1]} must have a positive height and width")
    return external_spec(
        source,
        target,
        input_shape=None if input_shape is None else parse_input_shape(input_shape),
        img=size,
        batch=batch,
        in_chans=in_chans,
        attention=attention,
        options=tuple(pairs),
        inputs=None if inputs is None else inputs.strip(),
    )
