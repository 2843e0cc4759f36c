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
