"""Number formatting with units: counts (K/M/G/T/P/E) and bytes (KiB ... EiB).

Pure functions, no heavy imports. Counts use decimal prefixes (1 G = 10^9 MACs, as the
papers print them); bytes use binary prefixes (1 MiB = 2^20 bytes), always spelled with
the ``i`` so the two never mix.
"""

from __future__ import annotations

import math
from decimal import Decimal

__all__ = ["BYTE_UNITS", "COUNT_UNITS", "format_bytes", "format_count", "format_ratio", "format_shape", "spell_bytes"]

#: Decimal prefixes of counts, largest first (parsed back by ``pvttrace.cli.parsing.parse_count``).
COUNT_UNITS = (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3))
#: Binary prefixes of bytes, largest first.
BYTE_UNITS = (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def _trim(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _scientific(value: int | float, digits: int) -> str:
    """``'4.72e21'``. Through Decimal, which takes an int of any size (a float stops at about 1e308)."""
    mantissa, exponent = format(Decimal(value), f".{digits}e").split("e")
    return f"{_trim(float(mantissa), digits)}e{int(exponent)}"


def format_count(value: int | float, digits: int = 2) -> str:
    """``1932911616 -> '1.93 G'``; values under 1000 print as they are, past 1000 E in scientific notation."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000 * 10**18:
        return _scientific(value, digits)
    for suffix, scale in COUNT_UNITS:
        if abs(value) >= scale:
            return f"{_trim(value / scale, digits)} {suffix}"
    return _trim(float(value), digits) if isinstance(value, float) else str(value)


def format_bytes(value: int | float, digits: int = 2) -> str:
    """``614656 -> '600.25 KiB'``; values under 1 KiB print as ``'512 B'``, past 1024 EiB in scientific notation."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} B"
    if abs(value) >= 2**70:
        return _scientific(value, digits) + " B"
    for suffix, scale in BYTE_UNITS:
        if abs(value) >= scale:
            return f"{_trim(value / scale, digits)} {suffix}"
    return f"{int(value)} B"


def spell_bytes(value: int) -> str:
    """A byte count as a user would type it: ``'24GiB'``, ``'80GB'``, ``'1536B'`` (exact, no rounding).

    The largest binary unit that divides ``value`` wins, then the largest decimal one; the result
    reads back to ``value`` (``pvttrace.cli.parsing.parse_bytes``).
    """
    for suffix, scale in BYTE_UNITS:
        if value and value % scale == 0:
            return f"{value // scale}{suffix}"
    for prefix, scale in COUNT_UNITS:
        if value and value % scale == 0:
            return f"{value // scale}{prefix}B"
    return f"{value}B"


def format_ratio(new: int | float, base: int | float) -> str:
    """``x64``, ``x0.25``, ``=`` for equal values, ``new`` when the baseline is 0."""
    if new == base:
        return "="
    if base == 0:
        return "new"
    try:
        ratio = new / base
    except OverflowError:  # ints whose quotient is beyond a float (values read from a damaged file)
        return f"x{_scientific(new // base, 2)}"
    if ratio >= 10:
        return f"x{ratio:.0f}" if abs(ratio - round(ratio)) < 0.05 else f"x{ratio:.1f}"
    return f"x{_trim(ratio, 2 if ratio >= 0.01 else 4)}"


def format_shape(shape: tuple[int, ...] | list[int] | None) -> str:
    """``(1, 3136, 64) -> '[1, 3136, 64]'``; None prints as ``-``."""
    if shape is None:
        return "-"
    return "[" + ", ".join(str(s) for s in shape) + "]"
