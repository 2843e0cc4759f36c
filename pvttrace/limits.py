"""Limits that keep a valid-looking configuration traceable: torch's int64 sizes and a block budget.

torch keeps sizes, element counts and byte counts in int64, also on the meta device: creating a
tensor of 2**63 bytes or more fails inside torch (``Storage size calculation overflowed``), and a
value past 2**63 - 1 cannot even be passed as a size. Python ints never overflow, so without these
checks an extreme configuration (``--dims 4294967296``, ``--img 4000000000``) validated and then
crashed in the middle of building the model. Checking up front gives a one-line error that names
the field, the value and the rule instead, before any torch work.

The block budget bounds what one trace may cost: each block is about 36 op records, 140 KiB of
memory and 3 ms on meta, so ``MAX_BLOCKS`` (4096 = 64 stages of 64 blocks) traces in about 12 s with
a peak under 0.8 GiB, while a typo such as ``--depths 2,2,2000000,2`` is refused instead of exhausting memory.

Pure functions of the config; no torch, rich or typer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pvttrace.errors import ConfigError, UserInputError
from pvttrace.units import format_bytes

if TYPE_CHECKING:
    from pvttrace.config import PvtConfig

__all__ = ["MAX_BLOCKS", "MAX_INPUT_DIMS", "TORCH_MAX_BYTES", "check_input_shape", "check_magnitudes", "check_tensor_sizes", "largest_tensor"]

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
