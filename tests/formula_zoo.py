"""Models for the formula tests, importable as ``formula_zoo:FACTORY`` (tests/ is on sys.path)."""

from __future__ import annotations

import torch
from torch import nn


class ReadsValues(nn.Module):
    """A forward whose shapes depend on tensor values: no formula in the sizes exists."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[y > 0]  # data-dependent size


def reads_values() -> ReadsValues:
    return ReadsValues()


class Tokens(nn.Module):
    """Takes [B, N, C] tokens: it has no H and W."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def tokens() -> Tokens:
    return Tokens()


class Slices(nn.Module):
    """Slices, views, concatenation and writes whose sizes depend on H and W in each way the stand-ins compute:
    strided slices (``1::2``), negative starts, a stop past the end, a stop given by a size, ``-1`` in a view."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # [B, 8, h, w]
        h, w = y.shape[2], y.shape[3]
        even = nn.functional.pad(y, (0, w % 2, 0, h % 2))  # as Swin's patch merging: even sizes, then 2x2
        merged = torch.cat(
            [even[:, :, 0::2, 0::2], even[:, :, 1::2, 0::2], even[:, :, 0::2, 1::2], even[:, :, 1::2, 1::2]], 1
        )
        edge = y[:, :, -3:, : w // 2]  # the last 3 rows (fewer when h < 3), half the columns
        wide = y[:, :, :1000, :]  # a stop past the end where h < 1000
        mask = y.new_zeros((h, w))
        mask[1:, : w // 3] = 1.0  # a write: no shape changes
        tokens = merged.flatten(2).transpose(1, 2)  # [B, N, 32]
        out = self.fc(tokens).reshape(y.shape[0], -1)
        return torch.cat(
            [out, edge.reshape(y.shape[0], -1), wide.reshape(y.shape[0], -1), (y * mask).reshape(y.shape[0], -1)], 1
        )


def slices() -> Slices:
    return Slices()
