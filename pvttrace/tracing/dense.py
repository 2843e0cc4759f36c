"""Dense-prediction heads on the configurable PVT: which head, and its hyper-parameters.

Pure data. This module must not import torch, rich or typer. The modules themselves are in
:mod:`pvttrace.tracing.heads`. Standard hyper-parameters follow the frameworks' configs (see
``docs/dense-models.md``):

* ``segformer``: MMSegmentation's ``SegformerHead`` / NVlabs' All-MLP decoder; decoder width 256
  for MiT-B0/B1 and 768 for B2-B5 (256 for any other backbone, as the B0 base config); 150 classes
  (ADE20K); dropout 0.1.
* ``retinanet``: MMDetection's RetinaNet-FPN; FPN width 256 from stage 2 on plus two extra levels
  (P6 from the last backbone map, P7 from P6), 4 stacked 3x3 convs per branch, 9 anchors, 80 classes.
* ``semantic-fpn``: the PVT paper's segmentation model (MMSegmentation ``fpn_r50``): FPN width 256
  with 4 outputs, an FPN head of 128 channels, 150 classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pvttrace.base.errors import ConfigError
from pvttrace.config import PvtConfig
from pvttrace.records import Trace

__all__ = ["PARTS", "HeadConfig", "HeadKind", "default_head", "part_of", "resolve_head", "saved_by_part"]

#: Parts of a whole model after its backbone stages, in forward order.
PARTS = ("neck", "head", "loss")


def part_of(module: str) -> str:
    """The named part of a dense model that module path ``module`` belongs to.

    ``backbone``, ``neck``, ``head`` (``decode_head``/``bbox_head``), ``loss``, or ``model`` for
    ops issued by the whole model's own forward (the labels of the batch).
    """
    root = module.split(".", 1)[0]
    if root in ("decode_head", "bbox_head"):
        return "head"
    return root if root in ("backbone", *PARTS) else "model"


def saved_by_part(trace: Trace) -> list[tuple[str, int]]:
    """Saved-for-backward bytes of a training trace per backbone stage, then per neck, head and loss.

    These are what a training step holds between forward and backward, so they show where its
    peak comes from. Parts the model lacks (a neck for SegFormer) are left out.
    """
    rows: dict[str, int] = {f"stage {s.index}": 0 for s in trace.stages}
    present = {part_of(op.module) for op in trace.ops}
    rows.update({part: 0 for part in PARTS if part in present})
    for op in trace.ops:
        part = part_of(op.module)
        key = f"stage {op.stage}" if part == "backbone" and op.stage is not None else part
        if key in rows:
            rows[key] += op.saved_bytes
    return list(rows.items())


class HeadKind(StrEnum):
    """The built-in dense-prediction heads."""

    SEGFORMER = "segformer"
    RETINANET = "retinanet"
    SEMANTIC_FPN = "semantic-fpn"

    @property
    def is_detection(self) -> bool:
        """True for detection heads (focal + box losses), False for segmentation (cross-entropy)."""
        return self == HeadKind.RETINANET


@dataclass(frozen=True, slots=True)
class HeadConfig:
    """Hyper-parameters of a neck + head on a PVT backbone (validated on construction)."""

    kind: str
    num_classes: int
    channels: int
    """SegFormer decoder width, or the FPN width (RetinaNet, semantic FPN)."""
    head_channels: int
    """Channels of RetinaNet's stacked convs or the semantic FPN head (SegFormer: unused)."""
    stacked_convs: int = 4
    """RetinaNet: 3x3 convs per branch."""
    num_anchors: int = 9
    """RetinaNet: anchors per position (3 scales x 3 ratios)."""
    gt_boxes: int = 7
    """RetinaNet: ground-truth boxes per image the anchor assignment is sized for (COCO's mean is about 7)."""
    dropout: float = 0.1
    """Dropout before the segmentation classifier."""

    def __post_init__(self) -> None:
        try:
            HeadKind(self.kind)
        except ValueError:
            known = ", ".join(k.value for k in HeadKind)
            raise ConfigError(f"head={self.kind!r} is not a known head (known: {known})") from None
        for name in ("num_classes", "channels", "head_channels", "stacked_convs", "num_anchors", "gt_boxes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"head {name}={value!r} must be a positive integer")
            if value > 1 << 20:
                raise ConfigError(f"head {name}={value} must be at most {1 << 20}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"head dropout={self.dropout!r} must be in [0, 1)")

    @property
    def head(self) -> HeadKind:
        """The head kind as an enum."""
        return HeadKind(self.kind)

    def with_overrides(self, **changes: Any) -> HeadConfig:
        """A validated copy with ``changes`` (None values keep the current one)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def describe(self) -> str:
        """One line naming the head and its main hyper-parameters."""
        if self.head == HeadKind.SEGFORMER:
            return f"SegFormer head (width {self.channels}, {self.num_classes} classes)"
        if self.head == HeadKind.RETINANET:
            return f"RetinaNet-FPN (width {self.channels}, {self.num_anchors} anchors, {self.num_classes} classes)"
        return f"Semantic FPN (FPN {self.channels}, head {self.head_channels}, {self.num_classes} classes)"


#: SegFormer's decoder width per MiT preset (MMSegmentation configs: 256 for B0/B1, 768 for B2-B5).
SEGFORMER_CHANNELS = {"mit-b0": 256, "mit-b1": 256}


def default_head(kind: str, backbone: PvtConfig) -> HeadConfig:
    """The standard hyper-parameters of head ``kind`` on ``backbone`` (see the module docstring).

    Raises:
        ConfigError: an unknown head name.
    """
    head = HeadConfig(kind=kind, num_classes=1, channels=1, head_channels=1).head
    if head == HeadKind.SEGFORMER:
        width = SEGFORMER_CHANNELS.get(backbone.variant, 768 if backbone.variant.startswith("mit-") else 256)
        return HeadConfig(kind=head.value, num_classes=150, channels=width, head_channels=width)
    if head == HeadKind.RETINANET:
        return HeadConfig(kind=head.value, num_classes=80, channels=256, head_channels=256)
    return HeadConfig(kind=head.value, num_classes=150, channels=256, head_channels=128)


def resolve_head(
    kind: str,
    backbone: PvtConfig,
    *,
    num_classes: int | None = None,
    channels: int | None = None,
    head_channels: int | None = None,
) -> HeadConfig:
    """The standard head with the given overrides (None keeps the standard value).

    Raises:
        ConfigError: an unknown head or a value that breaks a rule.
    """
    return default_head(kind, backbone).with_overrides(
        num_classes=num_classes, channels=channels, head_channels=head_channels
    )
