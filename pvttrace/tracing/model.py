"""The configurable PVT v1/v2 that pvttrace builds and traces.

Numerically this is the official architecture of ``whai362/PVT`` (``classification/pvt.py``,
``classification/pvt_v2.py``, ``detection/pvt.py``): the same layers, parameter names
(``patch_embed1``, ``block1.0.attn.sr``, ``pos_embed1`` ...), parameter counts and op order.
Its forward is written as the walkthrough of one SRA block reads: every step sits in a
``step(...)`` label, so a trace prints "split heads", "SR conv", "scores q@k^T" rather
than bare op names. Weights are never initialised beyond torch's defaults: pvttrace
needs shapes and costs, not trained values.

Two documented departures from the official code, neither of which changes a parameter or a MAC:

* v1 positional tables (sized as the official code sizes them, see ``PvtConfig.pos_grid``) are
  resized when a stage's grid differs from the table's grid; the official code compares every
  stage with stage 1's patch count, which resizes to the same size at 224 (an identity op) and
  skips needed resizes when a later stage's token count equals stage 1's table size: it then
  fails or lays the table out wrongly (reference pvt.md, pitfall 6; ``pvttrace.fidelity`` says
  which configurations are affected).
* ``attention="sdpa"`` swaps the explicit ``q@k^T -> softmax -> @v`` for one fused call.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pvttrace.base.steps import stage_scope, step
from pvttrace.config import LINEAR_SRA_POOL, PvtConfig, Task

__all__ = ["PyramidVisionTransformer", "build_model", "torch_dtype"]

#: Block/final/stage norms use eps 1e-6; patch-embedding and SR norms keep LayerNorm's 1e-5.
_BLOCK_NORM_EPS = 1e-6
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a config ``dtype`` name."""
    return _TORCH_DTYPES[name]


class PatchEmbed(nn.Module):
    """Image or feature map to tokens: a strided conv, flatten, LayerNorm.

    v1 uses kernel = stride (non-overlapping, floors); v2 uses kernel 2s-1 with padding
    s-1 (overlapping, ceils).
    """

    def __init__(self, in_chans: int, dim: int, kernel: int, stride: int, padding: int, dd: dict[str, Any]) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=kernel, stride=stride, padding=padding, **dd)
        self.norm = nn.LayerNorm(dim, **dd)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        with step("patch embed conv"):
            x = self.proj(x)
        _, _, h, w = x.shape
        with step("patches to tokens"):
            x = x.flatten(2).transpose(1, 2)
        with step("patch norm"):
            x = self.norm(x)
        return x, h, w


class Attention(nn.Module):
    """Spatial-reduction attention (SRA), or linear SRA when ``linear`` is set."""

    def __init__(
        self,
        dim: int,
        heads: int,
        sr_ratio: int,
        *,
        qkv_bias: bool,
        linear: bool,
        fused: bool,
        dd: dict[str, Any],
    ) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.sr_ratio = sr_ratio
        self.linear = linear
        self.fused = fused
        self.q = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias, **dd)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(0.0)
        if linear:
            self.pool = nn.AdaptiveAvgPool2d(LINEAR_SRA_POOL)
            self.sr = nn.Conv2d(dim, dim, kernel_size=1, stride=1, **dd)
            self.norm = nn.LayerNorm(dim, **dd)
            self.act = nn.GELU()
        elif sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio, **dd)
            self.norm = nn.LayerNorm(dim, **dd)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        b, n, c = x.shape
        heads = self.heads
        with step("q projection"):
            q = self.q(x)
        with step("split heads"):
            q = q.reshape(b, n, heads, c // heads).permute(0, 2, 1, 3)
        if self.linear or self.sr_ratio > 1:
            with step("tokens to map"):
                x_ = x.permute(0, 2, 1).reshape(b, c, h, w)
            if self.linear:
                with step("SR pool"):
                    x_ = self.pool(x_)
            with step("SR conv"):
                x_ = self.sr(x_)
            with step("map to tokens"):
                x_ = x_.reshape(b, c, -1).permute(0, 2, 1)
            with step("SR norm"):
                x_ = self.norm(x_)
            if self.linear:
                with step("SR activation"):
                    x_ = self.act(x_)
        else:
            x_ = x
        with step("kv projection"):
            kv = self.kv(x_)
        with step("split k/v heads"):
            kv = kv.reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        with step("take k, v"):
            k, v = kv[0], kv[1]
        if self.fused:
            with step("fused attention (SDPA)"):
                out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            with step("transpose k"):
                k_t = k.transpose(-2, -1)
            with step("scores q@k^T"):
                attn = q @ k_t
            with step("scale"):
                attn = attn * self.scale
            with step("softmax"):
                attn = attn.softmax(dim=-1)
            with step("attention dropout"):
                attn = self.attn_drop(attn)
            with step("attention@v"):
                out = attn @ v
        with step("merge heads"):
            out = out.transpose(1, 2).reshape(b, n, c)
        with step("output projection"):
            out = self.proj(out)
        with step("projection dropout"):
            result: Tensor = self.proj_drop(out)
        return result


class DWConv(nn.Module):
    """v2's 3x3 depthwise conv inside the MLP (tokens to map and back)."""

    def __init__(self, hidden: int, dd: dict[str, Any]) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, **dd)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        b, _, c = x.shape
        with step("tokens to map"):
            # A view is legal here only because the transpose splits N into H*W unchanged (pitfall 10).
            x = x.transpose(1, 2).view(b, c, h, w)
        with step("DW conv 3x3"):
            x = self.dwconv(x)
        with step("map to tokens"):
            x = x.flatten(2).transpose(1, 2)
        return x


class Mlp(nn.Module):
    """fc1 -> [ReLU (linear SRA)] -> [DWConv (v2)] -> GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, dim: int, hidden: int, *, version: int, linear: bool, dd: dict[str, Any]) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, **dd)
        # In place, as in the official code: it writes over fc1's output and allocates nothing.
        self.relu = nn.ReLU(inplace=True) if linear else None
        self.dwconv = DWConv(hidden, dd) if version == 2 else None
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, **dd)
        self.drop = nn.Dropout(0.0)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        with step("MLP fc1"):
            x = self.fc1(x)
        if self.relu is not None:
            with step("MLP ReLU"):
                x = self.relu(x)
        if self.dwconv is not None:
            x = self.dwconv(x, h, w)
        with step("MLP activation"):
            x = self.act(x)
        with step("MLP dropout"):
            x = self.drop(x)
        with step("MLP fc2"):
            x = self.fc2(x)
        with step("MLP dropout"):
            x = self.drop(x)
        return x


class Block(nn.Module):
    """One transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))`` (drop-path is identity)."""

    def __init__(self, cfg: PvtConfig, stage: int, dd: dict[str, Any]) -> None:
        super().__init__()
        dim = cfg.dims[stage]
        self.norm1 = nn.LayerNorm(dim, eps=_BLOCK_NORM_EPS, **dd)
        self.attn = Attention(
            dim,
            cfg.heads[stage],
            cfg.sr_ratios[stage],
            qkv_bias=cfg.qkv_bias,
            linear=cfg.linear_sra,
            fused=cfg.attention == "sdpa",
            dd=dd,
        )
        self.norm2 = nn.LayerNorm(dim, eps=_BLOCK_NORM_EPS, **dd)
        self.mlp = Mlp(dim, cfg.mlp_hidden(stage), version=cfg.version, linear=cfg.linear_sra, dd=dd)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        with step("norm1"):
            y = self.norm1(x)
        y = self.attn(y, h, w)
        with step("attention residual add"):
            x = x + y
        with step("norm2"):
            y = self.norm2(x)
        y = self.mlp(y, h, w)
        with step("MLP residual add"):
            x = x + y
        return x


def stage_block_groups(cfg: PvtConfig) -> dict[str, int]:
    """The module path of every block (``block{i}.{j}``), mapped to its 0-based stage: a stage's blocks are built
    alike (:func:`_stage_blocks`), so a tracer may repeat one block's run for the others."""
    return {f"block{stage + 1}.{index}": stage for stage, depth in enumerate(cfg.depths) for index in range(depth)}


def _stage_blocks(cfg: PvtConfig, stage: int, dd: dict[str, Any]) -> list[Block]:
    """The stage's blocks, all built alike. On meta, the first is built and the others are copies of it
    (:func:`meta_copy`): the same modules, with their own parameters. Elsewhere each is constructed, so that
    initialisation draws random values as the official code does."""
    first = Block(cfg, stage, dd)
    others = cfg.depths[stage] - 1
    if dd["device"].type == "meta":
        with torch._C.DisableTorchFunction():  # copying is not initialising: no mode needs to see it
            return [first, *(meta_copy(first) for _ in range(others))]
    return [first, *(Block(cfg, stage, dd) for _ in range(others))]


def meta_copy(module: nn.Module) -> Any:
    """A module like ``module`` (on meta), with its own parameters, buffers and submodules.

    What running its constructor again gives, made by copying attributes instead: parameters and buffers
    are new meta tensors of the same shape, dtype and ``requires_grad``; submodules are copied likewise;
    containers (hook tables, buffer name sets, padding lists) are copied; other values are shared, as the
    constructor's are immutable (ints, tuples, config). Constructing ``nn.Module`` s costs most of a
    deep model's build: ``tests/test_model.py`` compares copies with constructed modules attribute by attribute.
    """
    state: dict[str, Any] = {}
    for name, value in module.__dict__.items():
        if name == "_parameters":
            value = {
                key: None if p is None else nn.Parameter(_meta_like(p), requires_grad=p.requires_grad)
                for key, p in value.items()
            }
        elif name == "_buffers":
            value = {key: None if b is None else _meta_like(b) for key, b in value.items()}
        elif name == "_modules":
            value = {key: None if m is None else meta_copy(m) for key, m in value.items()}
        elif isinstance(value, (dict, set, list)):
            value = value.copy()
        state[name] = value
    copy = object.__new__(type(module))
    copy.__dict__.update(state)
    return copy


def _meta_like(tensor: Tensor) -> Tensor:
    if not tensor.is_meta or not tensor.is_contiguous():
        raise ValueError("meta_copy copies contiguous meta tensors only")
    return torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device)


class PyramidVisionTransformer(nn.Module):
    """PVT v1 or v2 (classifier or backbone) built from a :class:`~pvttrace.config.PvtConfig`.

    Attribute names follow the official code so that parameter paths read the same:
    ``patch_embed{i}``, ``pos_embed{i}`` (v1), ``block{i}.{j}``, ``norm{i}`` (v2), ``norm`` and
    ``cls_token`` (v1 classifier), ``head``.
    """

    def __init__(self, cfg: PvtConfig, *, device: str | torch.device = "meta") -> None:
        super().__init__()
        self.cfg = cfg
        dd: dict[str, Any] = {"device": torch.device(device), "dtype": torch_dtype(cfg.dtype)}
        is_cls = cfg.task == Task.CLS
        last = cfg.num_stages - 1
        in_chans = cfg.in_chans
        for i in range(cfg.num_stages):
            kernel, stride, padding = cfg.patch_kernel(i)
            setattr(self, f"patch_embed{i + 1}", PatchEmbed(in_chans, cfg.dims[i], kernel, stride, padding, dd))
            if cfg.version == 1:
                gh, gw = cfg.pos_grid(i)
                # The last stage's table keeps a class-token slot in the backbone too, as in the official
                # detection code, so that classification checkpoints load.
                slots = gh * gw + (1 if i == last else 0)
                setattr(self, f"pos_embed{i + 1}", nn.Parameter(torch.zeros(1, slots, cfg.dims[i], **dd)))
                setattr(self, f"pos_drop{i + 1}", nn.Dropout(0.0))
            setattr(self, f"block{i + 1}", nn.ModuleList(_stage_blocks(cfg, i, dd)))
            if cfg.version == 2:
                setattr(self, f"norm{i + 1}", nn.LayerNorm(cfg.dims[i], eps=_BLOCK_NORM_EPS, **dd))
            in_chans = cfg.dims[i]
        if cfg.version == 1 and is_cls:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dims[last], **dd))
            self.norm = nn.LayerNorm(cfg.dims[last], eps=_BLOCK_NORM_EPS, **dd)
        if is_cls:
            self.head = nn.Linear(cfg.dims[last], cfg.num_classes, **dd)

    def _pos_embed(self, stage: int, h: int, w: int) -> Tensor:
        """The stage's positional table for an h x w grid, resized bilinearly when the grid differs."""
        table: Tensor = getattr(self, f"pos_embed{stage + 1}")
        last = stage == self.cfg.num_stages - 1
        cls_slot: Tensor | None = None
        if last:
            with step("split pos embed cls slot"):
                cls_slot, table = table[:, :1], table[:, 1:]
        gh, gw = self.cfg.pos_grid(stage)
        if (gh, gw) != (h, w):
            with step("pos embed resize"):
                grid = table.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
                grid = F.interpolate(grid, size=(h, w), mode="bilinear")
                table = grid.reshape(1, -1, h * w).permute(0, 2, 1)
        if cls_slot is not None and self.cfg.has_cls_token:
            with step("join pos embed cls slot"):
                table = torch.cat((cls_slot, table), dim=1)
        return table

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Classifier: logits [B, num_classes]. Backbone: the list of stage maps [B, C_i, H_i, W_i]."""
        cfg = self.cfg
        b = x.shape[0]
        last = cfg.num_stages - 1
        outs: list[Tensor] = []
        for i in range(cfg.num_stages):
            with stage_scope(i + 1):
                x, h, w = getattr(self, f"patch_embed{i + 1}")(x)
                if cfg.version == 1:
                    if i == last and cfg.has_cls_token:
                        with step("prepend cls token"):
                            cls = self.cls_token.expand(b, -1, -1)
                            x = torch.cat((cls, x), dim=1)
                    pos = self._pos_embed(i, h, w)
                    with step("add pos embed"):
                        x = x + pos
                    with step("pos dropout"):
                        x = getattr(self, f"pos_drop{i + 1}")(x)
                for blk in getattr(self, f"block{i + 1}"):
                    x = blk(x, h, w)
                if cfg.version == 2:
                    with step("stage norm"):
                        x = getattr(self, f"norm{i + 1}")(x)
                if i == last and cfg.task == Task.CLS:
                    break
                with step("stage output map"):
                    x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
                outs.append(x)
        if cfg.task == Task.BACKBONE:
            return outs
        if cfg.version == 1:
            with step("final norm"):
                x = self.norm(x)
            with step("take cls token"):
                x = x[:, 0]
        else:
            with step("token mean"):
                x = x.mean(dim=1)
        with step("classifier head"):
            logits: Tensor = self.head(x)
        return logits


def build_model(cfg: PvtConfig, *, device: str | torch.device = "meta") -> PyramidVisionTransformer:
    """Build the PVT described by ``cfg`` on ``device`` (``meta`` allocates no memory), in eval mode.

    Example:
        >>> from pvttrace.config import get_variant
        >>> model = build_model(get_variant("b0"))
        >>> sum(p.numel() for p in model.parameters())
        3666760
    """
    # Local imports: they keep the recorded source lines of the forward unchanged.
    from pvttrace.base.gcpause import gc_paused
    from pvttrace.tracing.noinit import skip_meta_init

    with skip_meta_init(device), gc_paused():  # thousands of modules and parameters, all kept
        return PyramidVisionTransformer(cfg, device=device).eval()
