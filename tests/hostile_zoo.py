"""Hostile model factories for the reliability tests and the fuzz campaign.

Referred to as ``hostile_zoo:FACTORY``; tests/ is on sys.path."""

from __future__ import annotations

import sys

import torch
from torch import nn


class _Exits(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sys.exit(0)


def exits_in_factory() -> nn.Module:
    sys.exit(0)


def exits_in_forward() -> nn.Module:
    return _Exits()


class _Interrupts(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise KeyboardInterrupt


def interrupts() -> nn.Module:
    return _Interrupts()


class _Prints(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("hello from the model's forward")
        return self.fc(x)


def prints() -> nn.Module:
    print("hello from the factory")
    return _Prints()


class _Metadata(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("the metadata of this model is missing")


def metadata_error() -> nn.Module:
    return _Metadata()


class _WeightBranch(nn.Module):
    """Control flow that depends on weight values: only a seeded build makes it deterministic."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        steps = int(self.fc.weight.abs().sum().item() * 1000) % 7
        for _ in range(steps):
            y = y.relu() + 1
        return y


def weight_branch() -> nn.Module:
    return _WeightBranch()


def lazy() -> nn.Module:
    return nn.Sequential(nn.LazyLinear(4), nn.ReLU())


def deep() -> nn.Module:
    model: nn.Module = nn.Linear(8, 8)
    for _ in range(2000):
        model = nn.Sequential(model)
    return model


def linear() -> nn.Module:
    return nn.Linear(8, 4)


class _Slow(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import time

        for _ in range(600):
            time.sleep(0.05)
        return x


def slow() -> nn.Module:
    return _Slow()


_IMPORTED_MARKER = "hostile_zoo_marker.txt"


def marks_the_working_directory() -> nn.Module:
    """Leaves a file behind when called: proves whether a check ran the factory."""
    with open(_IMPORTED_MARKER, "w", encoding="utf-8") as handle:
        handle.write("ran\n")
    return nn.Linear(8, 4)


class _PrintsAny(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("hello from the model's forward")
        return x.relu()


def prints_any() -> nn.Module:
    """Prints from the factory and the forward, and takes any input shape (for the fuzz campaign)."""
    print("hello from the factory")
    return _PrintsAny()
