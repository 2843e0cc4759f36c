"""Small models for the any-model tests, importable as ``anymodel_zoo:FACTORY`` (tests/ is on sys.path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Mix(nn.Module):
    """Every attention spelling plus the ops fvcore and mmcv count differently."""

    def __init__(self, need_weights: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.gn = nn.GroupNorm(4, 16)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.deconv = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.need_weights = need_weights
        self.w = nn.Parameter(torch.randn(8, 8))
        self.b = nn.Parameter(torch.randn(8))
        self.pool = nn.AdaptiveAvgPool2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gn(self.bn(self.conv(x)))
        x = self.deconv(self.up(x))
        x = F.interpolate(x, size=(16, 16), mode="nearest")
        t = x.flatten(2).transpose(1, 2)
        t = self.attn(t, t, t, need_weights=self.need_weights)[0]
        scores = torch.einsum("bnc,bmc->bnm", t, t)
        mixed = torch.einsum("bnm,bmc->bnc", scores.softmax(-1), t)
        y = torch.addmm(self.b, mixed.reshape(-1, 8), self.w)
        z = torch.bmm(scores, t)
        return y.sum() + z.sum() + self.pool(x).sum()


def mix() -> Mix:
    return Mix(need_weights=True)


def mix_fused() -> Mix:
    return Mix(need_weights=False)


class Sdpa(nn.Module):
    """Fused attention with 2 heads: q [B, 2, 16, 4] against 8 keys."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.kv = nn.Linear(8, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.q(x).reshape(b, n, 2, 4).transpose(1, 2)
        k, v = self.kv(x[:, :8]).reshape(b, 8, 2, 2, 4).permute(2, 0, 3, 1, 4).unbind(0)
        return F.scaled_dot_product_attention(q, k, v)


def sdpa() -> Sdpa:
    return Sdpa()


class Broken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)).reshape(3, -1, 5)


def broken() -> Broken:
    return Broken()


def fails() -> nn.Module:
    raise ValueError("embed_dim=7 is not divisible by heads=2")


def not_a_module() -> int:
    return 3


class ReadsValues(nn.Module):
    """Reads a tensor value in its forward (impossible on meta) and uses an op without a cost rule."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        repeats = 1 + int(bool(y.abs().sum().item() >= 0))
        return torch.special.erf(y).repeat(repeats, 1, 1, 1)


def reads_values() -> ReadsValues:
    return ReadsValues()


def meta_hostile() -> nn.Module:
    """A factory that reads a tensor value while building (fails under ``torch.device("meta")``)."""
    width = int(torch.tensor(4).item())
    return nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU())


class _Mixer(nn.Module):
    """PVT's spatial-reduction attention under other names: to_q / to_kv / shrink / out."""

    def __init__(self, dim: int, heads: int, ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.shrink = nn.Conv2d(dim, dim, ratio, ratio)
        self.shrink_norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        q = self.to_q(x).reshape(b, n, self.heads, c // self.heads).transpose(1, 2)
        y = self.shrink(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        k, v = self.to_kv(self.shrink_norm(y)).reshape(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(-1)
        return self.out((attn @ v).transpose(1, 2).reshape(b, n, c))


class _Unit(nn.Module):
    def __init__(self, dim: int, heads: int, ratio: int) -> None:
        super().__init__()
        self.pre = nn.LayerNorm(dim)
        self.mixer = _Mixer(dim, heads, ratio)
        self.post = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.mixer(self.pre(x), h, w)
        return x + self.ffn(self.post(x))


class _Level(nn.Module):
    def __init__(self, cin: int, dim: int, stride: int, heads: int, ratio: int, depth: int) -> None:
        super().__init__()
        self.embedder = nn.Conv2d(cin, dim, stride, stride)
        self.units = nn.ModuleList(_Unit(dim, heads, ratio) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embedder(x)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        for unit in self.units:
            t = unit(t, h, w)
        return t.transpose(1, 2).reshape(b, c, h, w)


class MyPvt(nn.Module):
    """A user's PVT-style model with its own names: ``levels.N.embedder``, ``levels.N.units.M.mixer.shrink``.

    On a 128x128 image: stage 1 is 32x32 (2 units, 1 head, SR 4), stage 2 16x16 (3 units, 2 heads, SR 2).
    """

    def __init__(self) -> None:
        super().__init__()
        self.levels = nn.ModuleList([_Level(3, 32, 4, 1, 4, 2), _Level(32, 64, 2, 2, 2, 3)])
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for level in self.levels:
            x = level(x)
        return self.classifier(x.mean((2, 3)))


def my_pvt() -> MyPvt:
    return MyPvt()


class Cumulative(nn.Module):
    """A linear layer, then ``torch.cumsum`` (an op pvttrace has no built-in rule for)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(self.fc(x), dim=1)


def cumulative() -> Cumulative:
    return Cumulative()


class TwoInputs(nn.Module):
    """Image features and a text embedding, the text given by keyword (as HF models take it)."""

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Conv2d(3, 8, 4, 4)
        self.text = nn.Linear(16, 8)

    def forward(self, pixels: torch.Tensor, *, tokens: torch.Tensor) -> torch.Tensor:
        img = self.image(pixels).flatten(2).transpose(1, 2)  # [B, 64, 8]
        txt = self.text(tokens)  # [B, 5, 8]
        return img @ txt.transpose(1, 2)  # [B, 64, 5]


def two_inputs() -> TwoInputs:
    return TwoInputs()


def two_inputs_kwargs() -> dict[str, torch.Tensor]:
    return {"pixels": torch.empty(2, 3, 32, 32), "tokens": torch.empty(2, 5, 16)}


def one_tensor_positional() -> tuple[torch.Tensor, ...]:
    return (torch.empty(2, 3, 32, 32),)
