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
        b, n, c = x.shape
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
