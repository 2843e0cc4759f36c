"""Model configuration: the 11 PVT presets, overrides, validation and pyramid geometry.

Pure data. This module must not import torch, rich or typer: ``pvttrace --help`` and
config validation run without them. Every rule violation raises ``ConfigError`` with a
one-line message that names the field, the value and the rule.

Geometry follows the official code (reference ``pvt.md`` sections 2 and 8):

* v1 patch embedding is a conv with kernel = stride = P and no padding, so it floors:
  ``H_i = H_{i-1} // P``.
* v2 overlapping patch embedding uses kernel 2P-1, stride P, padding P-1, so it ceils:
  ``H_i = ceil(H_{i-1} / P)``.
* The SR conv (kernel = stride = R) floors: ``N' = (H_i // R) * (W_i // R)``; linear SRA
  pools to 7x7 in every stage, so ``N' = 49``.
* v1 classification prepends a class token in the last stage (``N + 1`` tokens).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pvttrace.base.errors import ConfigError, UserInputError
from pvttrace.base.units import format_bytes
from pvttrace.fidelity import official_warnings

__all__ = [
    "DTYPE_BYTES",
    "MAX_BLOCKS",
    "MAX_INPUT_DIMS",
    "MIT_VARIANTS",
    "TORCH_MAX_BYTES",
    "VARIANTS",
    "Attention",
    "DType",
    "Device",
    "PvtConfig",
    "StageGeometry",
    "Task",
    "check_input_shape",
    "check_magnitudes",
    "check_tensor_sizes",
    "get_variant",
    "largest_tensor",
    "resolve_config",
    "resolve_variant_name",
]


# ---------------------------------------------------------------------------------- limits
# Limits that keep a valid-looking configuration traceable: torch's int64 sizes and a block budget.
#
# torch keeps sizes, element counts and byte counts in int64, also on the meta device: creating a
# tensor of 2**63 bytes or more fails inside torch (``Storage size calculation overflowed``), and a
# value past 2**63 - 1 cannot even be passed as a size. Python ints never overflow, so without these
# checks an extreme configuration (``--dims 4294967296``, ``--img 4000000000``) validated and then
# crashed in the middle of building the model. Checking up front gives a one-line error that names
# the field, the value and the rule instead, before any torch work.
#
# The block budget bounds what one trace may cost: each block is about 36 op records, 140 KiB of
# memory and 3 ms on meta, so ``MAX_BLOCKS`` (4096 = 64 stages of 64 blocks) traces in about 12 s with
# a peak under 0.8 GiB, while a typo such as ``--depths 2,2,2000000,2`` is refused instead of exhausting memory.
#
# Pure functions of the config; no torch, rich or typer.

#: Bytes past which torch cannot create a tensor (its sizes and strides are int64).
TORCH_MAX_BYTES = 2**63 - 1
#: Most transformer blocks (sum of depths) pvttrace builds in one model.
MAX_BLOCKS = 4096

_INT_FIELDS = ("batch", "in_chans", "num_classes", "img", "pos_size", "dims", "heads", "depths", "sr_ratios", "patch")


def check_magnitudes(cfg: PvtConfig) -> None:
    """Every integer field fits torch's int64 sizes, MLP widths are finite, and the blocks fit the budget.

    Runs before any rule that multiplies fields, so that later messages print ordinary numbers.

    Raises:
        ConfigError: naming the field, its value and the limit.
    """
    for name in _INT_FIELDS:
        value = getattr(cfg, name)
        items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
        for index, item in items:
            if item > TORCH_MAX_BYTES:
                where = name if index is None else f"{name}[{index}]"
                shown = item if item < 10**100 else f"about 2**{item.bit_length() - 1}"
                raise ConfigError(f"{where}={shown} is larger than torch's largest size, 2**63 - 1 = {TORCH_MAX_BYTES}")
    for i, (dim, ratio) in enumerate(zip(cfg.dims, cfg.mlp_ratios, strict=True)):
        if not dim * ratio <= TORCH_MAX_BYTES:  # also catches NaN
            raise ConfigError(
                f"mlp_ratios[{i}]={ratio:g} makes an MLP hidden width of {dim * ratio:.3g} for dims[{i}]={dim}, "
                f"larger than torch's largest size, 2**63 - 1"
            )
    blocks = sum(cfg.depths)
    if blocks > MAX_BLOCKS:
        raise ConfigError(
            f"depths={','.join(map(str, cfg.depths))} add up to {blocks} blocks; pvttrace builds at most "
            f"{MAX_BLOCKS} (64 stages of 64), since each block costs about 140 KiB and 3 ms to trace"
        )


def _tensors(cfg: PvtConfig) -> list[tuple[str, tuple[int, ...]]]:
    """The shapes of the built-in model's largest tensors (every other tensor is no larger than one of these)."""
    b = cfg.batch
    found: list[tuple[str, tuple[int, ...]]] = [("input image", cfg.input_shape)]
    in_chans = cfg.in_chans
    for geo in cfg.geometry():
        i, s = geo.index - 1, f"stage {geo.index}"
        c, hid, heads = cfg.dims[i], cfg.mlp_hidden(i), cfg.heads[i]
        kernel = cfg.patch_kernel(i)[0]
        found += [
            (f"{s} patch-embedding weight", (c, in_chans, kernel, kernel)),
            (f"{s} patch-embedding input", (b, in_chans, *geo.in_hw)),
            (f"{s} tokens", (b, geo.tokens, c)),
            (f"{s} keys and values", (b, geo.kv_tokens, 2 * c)),
            (f"{s} MLP hidden activations", (b, geo.tokens, hid)),
            (f"{s} MLP weight", (hid, c)),
        ]
        if cfg.attention == "explicit":
            found.append((f"{s} attention score map", (b, heads, geo.tokens, geo.kv_tokens)))
        ratio = 1 if cfg.linear_sra else cfg.sr_ratios[i]
        found.append((f"{s} SR conv weight", (c, c, ratio, ratio)))
        if cfg.version == 1:
            gh, gw = cfg.pos_grid(i)
            found.append((f"{s} positional table", (1, gh * gw + 1, c)))
        in_chans = c
    if cfg.task == "cls":
        found += [("classifier weight", (cfg.num_classes, cfg.dims[-1])), ("logits", (b, cfg.num_classes))]
    return found


def largest_tensor(cfg: PvtConfig) -> tuple[str, tuple[int, ...], int]:
    """(what, shape, bytes) of the largest tensor the built-in model of ``cfg`` creates in a forward."""
    best: tuple[str, tuple[int, ...], int] = ("", (), -1)
    for what, shape in _tensors(cfg):
        elements = 1
        for size in shape:
            elements *= size
        if elements * cfg.dtype_bytes > best[2]:
            best = (what, shape, elements * cfg.dtype_bytes)
    return best


def check_tensor_sizes(cfg: PvtConfig) -> None:
    """Every tensor of the model stays under torch's 2**63-byte limit (checked on a geometry-valid config).

    Raises:
        ConfigError: naming the largest tensor, its shape, its size and the limit.
    """
    what, shape, size = largest_tensor(cfg)
    if size > TORCH_MAX_BYTES:
        hint = " (attention=sdpa never materialises the map)" if what.endswith("attention score map") else ""
        raise ConfigError(
            f"the {what} {list(shape)} would take {format_bytes(size)} ({cfg.dtype}) with "
            f"img={cfg.img[0]}x{cfg.img[1]}, batch={cfg.batch}, dims={','.join(map(str, cfg.dims))}; torch cannot "
            f"create a tensor of 2**63 bytes (8 EiB) or more, not even on the meta device{hint}"
        )


#: Most dimensions of an input tensor (torch's own limit for many kernels is 64).
MAX_INPUT_DIMS = 64


def check_input_shape(shape: tuple[int, ...], *, dtype_bytes: int = 4, field: str = "input_shape") -> None:
    """A ``--model`` input shape fits torch: at most 64 dimensions, each and the whole tensor under 2**63 bytes.

    Raises:
        UserInputError: naming the field, the shape and the limit.
    """

    def shown(value: int) -> str:
        return str(value) if value < 10**30 else f"about 2**{value.bit_length() - 1}"

    if len(shape) > MAX_INPUT_DIMS:
        raise UserInputError(f"{field} has {len(shape)} dimensions; torch tensors have at most {MAX_INPUT_DIMS}")
    elements = 1
    for size in shape:
        if size > TORCH_MAX_BYTES:
            raise UserInputError(
                f"{field}={','.join(shown(s) for s in shape)}: {shown(size)} is larger than torch's largest size, "
                f"2**63 - 1"
            )
        elements *= size
    if elements * dtype_bytes > TORCH_MAX_BYTES:
        raise UserInputError(
            f"{field}={','.join(shown(s) for s in shape)} would take {format_bytes(elements * dtype_bytes)}; torch "
            "cannot create a tensor of 2**63 bytes (8 EiB) or more, not even on the meta device"
        )


class Task(StrEnum):
    """What the model returns: the papers' ImageNet classifier or the dense-prediction backbone."""

    CLS = "cls"
    BACKBONE = "backbone"


class DType(StrEnum):
    """Floating-point types a trace can use."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"


class Device(StrEnum):
    """Where tensors live during a trace: ``meta`` allocates no tensor memory (the default)."""

    META = "meta"
    CPU = "cpu"
    CUDA = "cuda"


class Attention(StrEnum):
    """How the built-in model computes attention.

    ``explicit`` is the official code: it materialises the score map and its softmax.
    ``sdpa`` calls ``torch.nn.functional.scaled_dot_product_attention`` (same MACs, no map).
    """

    EXPLICIT = "explicit"
    SDPA = "sdpa"


DTYPE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2}

#: Stride of stage 1 that the official v1 code assumes when it sizes the later positional tables.
OFFICIAL_FIRST_STRIDE = 4

#: Side length of linear SRA's adaptive average pool (fixed at 7 in the official code).
LINEAR_SRA_POOL = 7


@dataclass(frozen=True, slots=True)
class StageGeometry:
    """Spatial sizes and token counts of one stage, computed from a config without torch."""

    index: int
    """1-based stage number, as in the papers ("stage 1" has stride 4)."""
    in_hw: tuple[int, int]
    """Height and width entering the stage's patch embedding."""
    hw: tuple[int, int]
    """Height and width of the stage's token grid."""
    tokens: int
    """Tokens each block of the stage sees (``H*W``, plus 1 for the v1 class token)."""
    kv_hw: tuple[int, int] | None
    """Grid of the reduced keys/values, or None when the stage does not reduce (sr 1)."""
    kv_tokens: int
    """Key/value tokens N' after spatial reduction."""


def _as_int_tuple(values: Sequence[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


@dataclass(frozen=True, slots=True)
class PvtConfig:
    """Every hyper-parameter of a PVT v1/v2 model plus the input it is traced with.

    Instances are validated on construction; use :meth:`with_overrides` to derive a new one.

    Example:
        >>> cfg = get_variant("tiny").with_overrides(img=(512, 512), sr_ratios=(1, 1, 1, 1))
        >>> cfg.geometry()[0].kv_tokens
        16384
    """

    variant: str
    version: int
    dims: tuple[int, ...]
    heads: tuple[int, ...]
    depths: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    sr_ratios: tuple[int, ...]
    patch: tuple[int, ...] = (4, 2, 2, 2)
    img: tuple[int, int] = (224, 224)
    batch: int = 1
    in_chans: int = 3
    qkv_bias: bool = True
    linear_sra: bool = False
    num_classes: int = 1000
    dtype: DType = DType.FLOAT32
    task: Task = Task.CLS
    pos_size: tuple[int, int] = (224, 224)
    attention: Attention = Attention.EXPLICIT
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """Non-fatal notes found by validation (e.g. sizes not divisible by a stride)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "warnings", tuple(_validate(self)))

    # ------------------------------------------------------------------ derived facts
    @property
    def num_stages(self) -> int:
        """Number of pyramid stages."""
        return len(self.dims)

    @property
    def has_cls_token(self) -> bool:
        """True for v1 classification, which prepends a class token in the last stage."""
        return self.version == 1 and self.task == Task.CLS

    @property
    def dtype_bytes(self) -> int:
        """Bytes per element of ``dtype``."""
        return DTYPE_BYTES[self.dtype]

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Shape of the image batch the model is traced with: (B, C, H, W)."""
        return (self.batch, self.in_chans, self.img[0], self.img[1])

    def mlp_hidden(self, stage: int) -> int:
        """MLP hidden width of a 0-based stage: ``int(dim * mlp_ratio)`` as in the official code."""
        return int(self.dims[stage] * self.mlp_ratios[stage])

    def patch_kernel(self, stage: int) -> tuple[int, int, int]:
        """(kernel, stride, padding) of a 0-based stage's patch-embedding conv."""
        stride = self.patch[stage]
        if self.version == 1:
            return stride, stride, 0
        return 2 * stride - 1, stride, stride - 1

    def geometry(self) -> tuple[StageGeometry, ...]:
        """Grid sizes and token counts of every stage (see the module docstring for the rules)."""
        return _geometry(self)

    def pos_grid(self, stage: int) -> tuple[int, int]:
        """Grid that v1's learned positional table of a 0-based stage is sized for (from ``pos_size``).

        The official rule: stage 1's table divides ``pos_size`` by the first stride (``patch_size``);
        the later tables are built from ``img_size // 2**(i+1)`` whatever ``patch_size`` is, i.e. as
        if stage 1 had stride 4. So ``--patch 8`` keeps 28x28, 14x14, 7x7 tables at 224 for 14x14,
        7x7, 3x3 grids, and the forward resizes them (parameter counts follow the tables).
        """
        h, w = self.pos_size
        first = self.patch[0] if stage == 0 else OFFICIAL_FIRST_STRIDE
        h, w = h // first, w // first
        for s in range(1, stage + 1):
            h, w = h // self.patch[s], w // self.patch[s]
        return h, w

    # ------------------------------------------------------------------ conversions
    def with_overrides(self, **changes: Any) -> PvtConfig:
        """Return a validated copy with ``changes`` applied (field names as in this class).

        Raises:
            ConfigError: an unknown field, or a value that breaks a rule.
        """
        known = {f.name for f in dataclasses.fields(self)} - {"warnings"}
        for name in changes:
            if name not in known:
                raise ConfigError(f"unknown config field {name!r}; known fields: {', '.join(sorted(known))}")
        normalised = {k: _normalise_field(k, v) for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **normalised)

    def to_dict(self) -> dict[str, Any]:
        """Every resolved hyper-parameter as JSON-ready values (``img`` as ``[H, W]``)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "warnings":
                continue
            value = getattr(self, f.name)
            if isinstance(value, StrEnum):
                value = value.value
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out["mlp_ratios"] = [_plain_number(r) for r in self.mlp_ratios]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PvtConfig:
        """Rebuild a config from :meth:`to_dict` output (as stored in traces and snapshots).

        Raises:
            ConfigError: missing or unknown fields, or values that break a rule.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} - {"warnings"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"config has unknown field(s): {', '.join(unknown)}")
        required = ("variant", "version", "dims", "heads", "depths", "mlp_ratios", "sr_ratios")
        missing = [name for name in required if name not in data]
        if missing:
            raise ConfigError(f"config is missing field(s): {', '.join(missing)}")
        try:
            kwargs = {k: _normalise_field(k, v) for k, v in data.items()}
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config has a value of the wrong type: {exc}") from None
        return cls(**kwargs)

    def describe(self) -> str:
        """One line naming the model and its input, for headers."""
        kind = "v1" if self.version == 1 else "v2"
        extra = ", linear SRA" if self.linear_sra else ""
        return (
            f"{self.variant} (PVT {kind}{extra}, {self.task}) @ {self.img[0]}x{self.img[1]}, "
            f"batch {self.batch}, {self.dtype}"
        )


def _plain_number(value: float) -> int | float:
    if isinstance(value, int):  # float() of an int of 309 digits or more overflows
        return value
    return int(value) if value.is_integer() else float(value)


_TUPLE_INT_FIELDS = ("dims", "heads", "depths", "sr_ratios", "patch")


def _normalise_field(name: str, value: Any) -> Any:
    """Coerce JSON/CLI values into the field's canonical Python type (lists become tuples)."""
    if name in _TUPLE_INT_FIELDS:
        return _as_int_tuple(_require_sequence(name, value))
    if name == "mlp_ratios":
        try:
            return tuple(float(v) for v in _require_sequence(name, value))
        except OverflowError:  # an int of 309 digits or more
            raise ConfigError(f"mlp_ratios={list(value)!r} holds a number too large for a float") from None
    if name in ("img", "pos_size"):
        if isinstance(value, int) and not isinstance(value, bool):
            return (value, value)
        seq = _require_sequence(name, value)
        if len(seq) != 2:
            raise ConfigError(f"{name}={list(seq)} must have two values: height and width")
        return _as_int_tuple(seq)
    if name in ("batch", "in_chans", "num_classes", "version"):
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())  # NaN, inf: not whole
        if isinstance(value, bool) or not whole:
            raise ConfigError(f"{name}={value!r} must be an integer")
        return int(value)
    if name in ("qkv_bias", "linear_sra"):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} must be true or false")
        return value
    if name in ("variant", "dtype", "task", "attention"):
        if not isinstance(value, str):
            raise ConfigError(f"{name}={value!r} must be a string")
        return value
    return value


def _require_sequence(name: str, value: Any) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"{name}={value!r} must be a list of numbers")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ConfigError(f"{name}={list(value)!r} must be a list of numbers")
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{name}={list(value)!r} must hold finite numbers")
    if name != "mlp_ratios":
        for item in value:
            if int(item) != item:
                raise ConfigError(f"{name}={list(value)!r} must hold whole numbers")
    return value


# ---------------------------------------------------------------------------------- validation
def _validate(cfg: PvtConfig) -> list[str]:
    """Check every rule; raise ConfigError on the first broken one, return non-fatal warnings."""
    if cfg.version not in (1, 2):
        raise ConfigError(f"version={cfg.version} must be 1 or 2")
    for name, enum in (("dtype", DType), ("task", Task), ("attention", Attention)):
        # A plain string that names a member is accepted and stored as the member.
        object.__setattr__(cfg, name, _check_choice(name, getattr(cfg, name), enum))
    for name in ("batch", "in_chans", "num_classes"):
        value = getattr(cfg, name)
        if value < 1:
            raise ConfigError(f"{name}={value} must be a positive integer")
    for name in ("img", "pos_size"):
        h, w = getattr(cfg, name)
        if h < 1 or w < 1:
            raise ConfigError(f"{name}={h}x{w} must have a positive height and width")
    n = len(cfg.dims)
    if n < 1:
        raise ConfigError("dims=[] must list at least one stage")
    lists = {
        "dims": cfg.dims,
        "heads": cfg.heads,
        "depths": cfg.depths,
        "mlp_ratios": cfg.mlp_ratios,
        "sr_ratios": cfg.sr_ratios,
        "patch": cfg.patch,
    }
    for name, values in lists.items():
        if len(values) != n:
            raise ConfigError(
                f"{name}={_fmt_list(values)} has {len(values)} value(s) but dims has {n} stage(s); "
                "give one value per stage"
            )
        for value in values:
            if value <= 0:
                raise ConfigError(f"{name}={_fmt_list(values)} must hold positive values")
    check_magnitudes(cfg)
    for i, (dim, heads) in enumerate(zip(cfg.dims, cfg.heads, strict=True)):
        if dim % heads:
            raise ConfigError(
                f"dims[{i}]={dim} is not divisible by heads[{i}]={heads}; each head needs dim/heads channels"
            )
    for i, dim in enumerate(cfg.dims):
        if cfg.mlp_hidden(i) < 1:
            raise ConfigError(f"mlp_ratios[{i}]={cfg.mlp_ratios[i]} gives an MLP hidden width of 0 for dim {dim}")
    if cfg.linear_sra and cfg.version == 1:
        raise ConfigError("linear_sra=True needs PVT v2 (version=2); PVT v1 has no linear SRA")
    if cfg.has_cls_token and cfg.sr_ratios[-1] != 1:
        raise ConfigError(
            f"sr_ratios[{n - 1}]={cfg.sr_ratios[-1]} must be 1 for PVT v1 with task=cls: the class token makes "
            f"{n}-stage tokens H*W+1, which cannot be reshaped into a map for the SR conv (use --task backbone)"
        )
    warnings = _check_geometry(cfg)
    check_tensor_sizes(cfg)
    warnings.extend(official_warnings(cfg))
    return warnings


def _check_choice(name: str, value: object, enum: type[StrEnum]) -> StrEnum:
    allowed = [m.value for m in enum]
    if not isinstance(value, str) or value not in allowed:
        shown = value.value if isinstance(value, StrEnum) else value
        raise ConfigError(f"{name}={shown!r} must be one of: {', '.join(allowed)}")
    return enum(value)


def _fmt_list(values: Sequence[Any]) -> str:
    return ",".join(str(_plain_number(v)) for v in values)


def _check_geometry(cfg: PvtConfig) -> list[str]:
    warnings: list[str] = []
    for geo in _geometry(cfg):
        i = geo.index - 1
        (in_h, in_w), (h, w) = geo.in_hw, geo.hw
        stride = cfg.patch[i]
        if h < 1 or w < 1:
            raise ConfigError(
                f"img={cfg.img[0]}x{cfg.img[1]} is too small for the pyramid: stage {geo.index} gets a "
                f"{in_h}x{in_w} input and a {h}x{w} grid after its stride-{stride} patch embedding"
            )
        if cfg.version == 1 and min(cfg.pos_grid(i)) < 1:
            gh, gw = cfg.pos_grid(i)
            raise ConfigError(
                f"pos_size={cfg.pos_size[0]}x{cfg.pos_size[1]} is too small for the pyramid: stage {geo.index}'s "
                f"positional table would have a {gh}x{gw} grid after the patch strides"
            )
        if in_h % stride or in_w % stride:
            rule = "floors (drops the remainder)" if cfg.version == 1 else "ceils (pads)"
            warnings.append(
                f"stage {geo.index}: input {in_h}x{in_w} is not divisible by patch stride {stride}; "
                f"PVT v{cfg.version} {rule} to a {h}x{w} grid"
            )
        ratio = cfg.sr_ratios[i]
        if cfg.linear_sra or ratio == 1:
            continue
        if h < ratio or w < ratio:
            raise ConfigError(
                f"img={cfg.img[0]}x{cfg.img[1]} is too small for sr_ratios[{i}]={ratio}: stage {geo.index}'s "
                f"{h}x{w} grid is smaller than the {ratio}x{ratio} SR conv"
            )
        if h % ratio or w % ratio:
            kh, kw = geo.kv_hw or (0, 0)
            dropped = " and ".join(
                f"the last {n} {what}" for n, what in ((h - kh * ratio, "row(s)"), (w - kw * ratio, "column(s)")) if n
            )
            warnings.append(
                f"stage {geo.index}: {h}x{w} grid is not divisible by sr_ratio {ratio}; the SR conv floors "
                f"to {kh}x{kw} keys and ignores {dropped}"
            )
    return warnings


def _geometry(cfg: PvtConfig) -> tuple[StageGeometry, ...]:
    stages: list[StageGeometry] = []
    h, w = cfg.img
    last = len(cfg.dims) - 1
    for i in range(len(cfg.dims)):
        stride = cfg.patch[i]
        in_hw = (h, w)
        if cfg.version == 1:
            h, w = h // stride, w // stride
        else:
            h, w = -(-h // stride), -(-w // stride)
        tokens = h * w + (1 if cfg.has_cls_token and i == last else 0)
        ratio = cfg.sr_ratios[i]
        kv_hw: tuple[int, int] | None
        if cfg.linear_sra:
            kv_hw = (LINEAR_SRA_POOL, LINEAR_SRA_POOL)
            kv_tokens = LINEAR_SRA_POOL * LINEAR_SRA_POOL
        elif ratio > 1:
            kv_hw = (h // ratio, w // ratio)
            kv_tokens = kv_hw[0] * kv_hw[1]
        else:
            kv_hw = None
            kv_tokens = tokens
        stages.append(StageGeometry(i + 1, in_hw, (h, w), tokens, kv_hw, kv_tokens))
    return tuple(stages)


# ---------------------------------------------------------------------------------- presets
_V1 = {"dims": (64, 128, 320, 512), "mlp_ratios": (8.0, 8.0, 4.0, 4.0)}
_COMMON = {"heads": (1, 2, 5, 8), "sr_ratios": (8, 4, 2, 1), "patch": (4, 2, 2, 2)}


def _preset(name: str, version: int, depths: tuple[int, ...], **extra: Any) -> PvtConfig:
    fields: dict[str, Any] = {**_COMMON, **_V1, **extra}
    return PvtConfig(variant=name, version=version, depths=depths, **fields)


#: The 11 named variants with the hyper-parameters of the official constructors (reference pvt.md section 1).
VARIANTS: dict[str, PvtConfig] = {
    "tiny": _preset("tiny", 1, (2, 2, 2, 2)),
    "small": _preset("small", 1, (3, 4, 6, 3)),
    "medium": _preset("medium", 1, (3, 4, 18, 3)),
    "large": _preset("large", 1, (3, 8, 27, 3)),
    "b0": _preset("b0", 2, (2, 2, 2, 2), dims=(32, 64, 160, 256)),
    "b1": _preset("b1", 2, (2, 2, 2, 2)),
    "b2": _preset("b2", 2, (3, 4, 6, 3)),
    "b2-li": _preset("b2-li", 2, (3, 4, 6, 3), linear_sra=True),
    "b3": _preset("b3", 2, (3, 4, 18, 3)),
    "b4": _preset("b4", 2, (3, 8, 27, 3)),
    "b5": _preset("b5", 2, (3, 6, 40, 3), mlp_ratios=(4.0, 4.0, 4.0, 4.0)),
}

#: MiT encoders of SegFormer (``NVlabs/SegFormer`` ``mix_transformer.py`` ``mit_b0``..``mit_b5``): PVT v2
#: with MLP ratio 4 in every stage, as dense-prediction backbones (no classifier).
MIT_VARIANTS: dict[str, PvtConfig] = {
    f"mit-b{i}": _preset(f"mit-b{i}", 2, depths, mlp_ratios=(4.0, 4.0, 4.0, 4.0), task=Task.BACKBONE, **extra)
    for i, (depths, extra) in enumerate(
        (
            ((2, 2, 2, 2), {"dims": (32, 64, 160, 256)}),
            ((2, 2, 2, 2), {}),
            ((3, 4, 6, 3), {}),
            ((3, 4, 18, 3), {}),
            ((3, 8, 27, 3), {}),
            ((3, 6, 40, 3), {}),
        )
    )
}

#: Official constructor names (``whai362/PVT``, timm) for each preset.
OFFICIAL_NAMES: dict[str, str] = {
    name: (f"pvt_{name}" if VARIANTS[name].version == 1 else "pvt_v2_" + name.replace("-", "_")) for name in VARIANTS
}


def resolve_variant_name(name: str) -> str:
    """Map a preset name in any accepted spelling (``b2-li``, ``pvt_v2_b2_li``, ``PVT_TINY``) to its key.

    Raises:
        ConfigError: the name matches no preset; the message suggests the closest ones.
    """
    key = name.strip().lower().replace("_", "-")
    key = re.sub(r"^pvt-(v2-)?", "", key)
    if key in VARIANTS or key in MIT_VARIANTS:
        return key
    candidates = list(VARIANTS) + list(OFFICIAL_NAMES.values()) + list(MIT_VARIANTS)
    close = difflib.get_close_matches(name.strip().lower(), candidates, n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"variant={name!r} is not a known variant (known: {', '.join(VARIANTS)}){hint}")


def get_variant(name: str) -> PvtConfig:
    """Return the preset config for ``name`` (any accepted spelling)."""
    key = resolve_variant_name(name)
    return VARIANTS[key] if key in VARIANTS else MIT_VARIANTS[key]


# ---------------------------------------------------------------------------------- overrides
#: A size: one int for a square image, or (height, width).
Size = int | tuple[int, int]


def resolve_config(
    variant: str = "tiny",
    *,
    img: Size | None = None,
    batch: int | None = None,
    in_chans: int | None = None,
    dims: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    depths: Sequence[int] | None = None,
    mlp_ratios: Sequence[float] | None = None,
    sr: Sequence[int] | None = None,
    patch: int | Sequence[int] | None = None,
    qkv_bias: bool | None = None,
    linear_sra: bool | None = None,
    num_classes: int | None = None,
    dtype: DType | str | None = None,
    task: Task | str | None = None,
    pos_size: Size | None = None,
    attention: Attention | str | None = None,
) -> PvtConfig:
    """Build a validated config from a preset name and typed overrides; None keeps the preset's value.

    Sizes are an int (square) or ``(height, width)``; per-stage options are sequences
    (``sr=(8, 4, 2, 1)``); ``dtype``, ``task`` and ``attention`` take their enums (or their
    values as strings). A single ``patch`` value sets stage 1's stride (the official
    ``patch_size`` argument) and keeps the later stages' strides. Command-line text
    (``"8,4,2,1"``, ``"800x1333"``) is parsed by :mod:`pvttrace.cli.parsing`, not here.

    Example:
        >>> resolve_config("b2", img=(800, 1333), sr=(4, 2, 1, 1), task=Task.BACKBONE).sr_ratios
        (4, 2, 1, 1)

    Raises:
        ConfigError: an unknown variant or any value that breaks a rule (text where a
            number, size or sequence belongs included).
    """
    base = get_variant(variant)
    changes: dict[str, Any] = {
        "batch": batch,
        "in_chans": in_chans,
        "qkv_bias": qkv_bias,
        "linear_sra": linear_sra,
        "num_classes": num_classes,
        "dtype": dtype,
        "task": task,
        "attention": attention,
        "img": img,
        "pos_size": pos_size,
        "dims": dims,
        "heads": heads,
        "depths": depths,
        "sr_ratios": sr,
        "mlp_ratios": mlp_ratios,
    }
    given: dict[str, object] = {"img": img, "pos_size": pos_size, "dims": dims, "heads": heads, "depths": depths}
    for name, value in {**given, "sr": sr, "mlp_ratios": mlp_ratios, "patch": patch}.items():
        _refuse_text(name, value)
    if patch is not None:
        strides = (patch,) if isinstance(patch, int) else tuple(patch)
        stages = len(changes.get("dims") or base.dims)
        if len(strides) == 1 and stages > 1:
            strides = strides + tuple(base.patch[1:stages]) + (2,) * max(0, stages - len(base.patch))
        changes["patch"] = strides
    changes = _extend_stage_lists(base, {k: v for k, v in changes.items() if v is not None})
    return base.with_overrides(**changes)


def _refuse_text(name: str, value: object) -> None:
    """Command-line text given where the library takes a number, size or sequence: one line that says so."""
    if isinstance(value, str):
        wanted = "a size: an int or (height, width)" if name in ("img", "pos_size") else "a sequence of numbers"
        raise ConfigError(f"{name}={value!r} is text; pass {wanted} (pvttrace.cli.parsing parses command-line text)")


def _extend_stage_lists(base: PvtConfig, changes: dict[str, Any]) -> dict[str, Any]:
    """When the stage count changes, only patch strides have an obvious default (2 after stage 1)."""
    stages = len(changes.get("dims") or base.dims)
    if stages != base.num_stages and "patch" not in changes:
        changes["patch"] = (base.patch[0],) + (2,) * (stages - 1)
    return changes
