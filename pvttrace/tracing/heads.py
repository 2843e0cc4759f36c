"""Whole dense-prediction models: the configurable PVT plus a neck, a head and (for training) the loss.

``build_dense_model(backbone_cfg, head_cfg)`` returns a :class:`DenseModel` whose submodules are
``backbone`` (the PVT of :mod:`pvttrace.tracing.model`, as a 4-map backbone), ``neck`` (FPN; absent for
SegFormer), ``decode_head`` (segmentation) or ``bbox_head`` (detection), and, with ``with_loss``,
``loss``: its forward then takes the images, makes the labels of a batch (alive for the whole step,
as a framework's data batch is) and returns the scalar loss, so a training trace sees the loss's
memory and its backward. Every step is labelled (``step``); backbone ops carry their stage, the
other parts are told apart by their module path (``neck``, ``decode_head``, ``bbox_head``, ``loss``).

Structures follow the frameworks' code (read via their public repositories; see
``docs/dense-models.md``): NVlabs' SegFormer All-MLP decoder, MMDetection's ``FPN`` and
``RetinaHead``, MMSegmentation's ``FPN`` + ``FPNHead`` (semantic FPN). Weights keep torch's default
initialisation, and label values are zeros: pvttrace needs shapes, costs and memory, not results.
The detection loss runs the focal loss as one fused op (MMCV's CUDA ``sigmoid_focal_loss``: it saves
its input and labels, returns the per-element loss, and its backward allocates one gradient).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pvttrace.base.errors import TraceError, UserInputError
from pvttrace.base.steps import step
from pvttrace.config import Device, PvtConfig, Task
from pvttrace.memory import estimate as memory
from pvttrace.memory.estimate import Optimizer
from pvttrace.memory.gpustep import GpuPeak, GpuSetting, gpu_training_peak
from pvttrace.records import Trace
from pvttrace.tracing.amp import autocast_float16
from pvttrace.tracing.dense import HeadConfig, HeadKind, part_of
from pvttrace.tracing.legacy import legacy_softmax_autograd
from pvttrace.tracing.model import PyramidVisionTransformer, torch_dtype
from pvttrace.tracing.recorder import memory_log, trace_model

__all__ = ["DenseModel", "build_dense_model", "part_of", "predict_gpu_peak", "trace_dense"]


class SegFormerHead(nn.Module):
    """All-MLP decoder: per-stage linear projection to ``channels``, upsampling to 1/4, concatenation,
    1x1 fuse conv with BatchNorm and ReLU, dropout, 1x1 classifier."""

    def __init__(self, in_dims: tuple[int, ...], cfg: HeadConfig, dd: dict[str, Any]) -> None:
        super().__init__()
        width = cfg.channels
        self.linear_c = nn.ModuleList(nn.Linear(dim, width, **dd) for dim in in_dims)
        self.linear_fuse = nn.Conv2d(width * len(in_dims), width, 1, bias=False, **dd)
        self.bn = nn.BatchNorm2d(width, **dd)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout2d(cfg.dropout)
        self.linear_pred = nn.Conv2d(width, cfg.num_classes, 1, **dd)

    def forward(self, feats: list[Tensor]) -> Tensor:
        size = feats[0].shape[2:]
        maps: list[Tensor] = []
        for i in reversed(range(len(feats))):
            x = feats[i]
            b, _, h, w = x.shape
            with step(f"project stage {i + 1}"):
                x = self.linear_c[i](x.flatten(2).transpose(1, 2))
                x = x.permute(0, 2, 1).reshape(b, -1, h, w)
            if x.shape[2:] != size:
                with step(f"upsample stage {i + 1} to 1/4"):
                    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            maps.append(x)
        with step("concatenate"):
            x = torch.cat(maps, dim=1)
        del maps
        with step("fuse conv"):
            x = self.linear_fuse(x)
        with step("fuse norm"):
            x = self.bn(x)
        with step("fuse ReLU"):
            x = self.relu(x)
        with step("decoder dropout"):
            x = self.dropout(x)
        with step("classifier"):
            logits: Tensor = self.linear_pred(x)
        return logits


class FPN(nn.Module):
    """MMDetection/MMSegmentation FPN: 1x1 laterals, nearest top-down sums, 3x3 output convs,
    and extra stride-2 3x3 levels (the first on the last backbone map, as ``add_extra_convs='on_input'``)."""

    def __init__(
        self, in_dims: tuple[int, ...], width: int, *, start_level: int, num_outs: int, dd: dict[str, Any]
    ) -> None:
        super().__init__()
        used = in_dims[start_level:]
        self.start_level = start_level
        self.lateral_convs = nn.ModuleList(nn.Conv2d(dim, width, 1, **dd) for dim in used)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, **dd) for _ in used)
        extra = num_outs - len(used)
        for j in range(extra):
            source = in_dims[-1] if j == 0 else width
            self.fpn_convs.append(nn.Conv2d(source, width, 3, stride=2, padding=1, **dd))
        self.levels = len(used)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        inputs = feats[self.start_level :]
        laterals: list[Tensor] = []
        for i, x in enumerate(inputs):
            with step(f"lateral conv P{i + self.start_level + 2}"):
                laterals.append(self.lateral_convs[i](x))
        for i in range(self.levels - 1, 0, -1):
            with step(f"top-down add P{i + self.start_level + 1}"):
                up = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
                laterals[i - 1] = laterals[i - 1] + up
        outs: list[Tensor] = []
        for i in range(self.levels):
            with step(f"output conv P{i + self.start_level + 2}"):
                outs.append(self.fpn_convs[i](laterals[i]))
        del laterals
        for j in range(self.levels, len(self.fpn_convs)):
            with step(f"extra level P{j + self.start_level + 2}"):
                source = inputs[-1] if j == self.levels else outs[-1]
                outs.append(self.fpn_convs[j](source))
        return outs


class RetinaHead(nn.Module):
    """RetinaNet head shared across levels: stacked 3x3 conv + ReLU branches, class and box convs."""

    def __init__(self, cfg: HeadConfig, dd: dict[str, Any]) -> None:
        super().__init__()
        width = cfg.head_channels
        self.cls_convs = nn.ModuleList(
            nn.Conv2d(cfg.channels if i == 0 else width, width, 3, padding=1, **dd) for i in range(cfg.stacked_convs)
        )
        self.reg_convs = nn.ModuleList(
            nn.Conv2d(cfg.channels if i == 0 else width, width, 3, padding=1, **dd) for i in range(cfg.stacked_convs)
        )
        self.retina_cls = nn.Conv2d(width, cfg.num_anchors * cfg.num_classes, 3, padding=1, **dd)
        self.retina_reg = nn.Conv2d(width, cfg.num_anchors * 4, 3, padding=1, **dd)

    def forward(self, feats: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        outs = []
        for x in feats:
            cls = reg = x
            for conv in self.cls_convs:
                with step("class branch conv + ReLU"):
                    cls = F.relu(conv(cls), inplace=True)
            for conv in self.reg_convs:
                with step("box branch conv + ReLU"):
                    reg = F.relu(conv(reg), inplace=True)
            with step("class logits"):
                cls_score = self.retina_cls(cls)
            with step("box deltas"):
                box = self.retina_reg(reg)
            outs.append((cls_score, box))
        return outs


class SemanticFPNHead(nn.Module):
    """MMSegmentation ``FPNHead``: per level 3x3 conv + BN + ReLU (+ 2x bilinear upsampling) down to 1/4,
    as many times as the level's stride is above stride 4; the levels are summed; dropout; classifier."""

    def __init__(self, levels: int, cfg: HeadConfig, dd: dict[str, Any]) -> None:
        super().__init__()
        width = cfg.head_channels
        self.scale_heads = nn.ModuleList()
        for i in range(levels):
            layers: list[nn.Module] = []
            for k in range(max(1, i)):
                layers += [
                    nn.Conv2d(cfg.channels if k == 0 else width, width, 3, padding=1, bias=False, **dd),
                    nn.BatchNorm2d(width, **dd),
                    nn.ReLU(inplace=True),
                ]
                if i > 0:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout2d(cfg.dropout)
        self.conv_seg = nn.Conv2d(width, cfg.num_classes, 1, **dd)

    def forward(self, feats: list[Tensor]) -> Tensor:
        with step("scale head 1"):
            out = self.scale_heads[0](feats[0])
        for i in range(1, len(feats)):
            with step(f"scale head {i + 1}"):
                level = self.scale_heads[i](feats[i])
            with step("sum levels"):
                if level.shape[2:] != out.shape[2:]:
                    level = F.interpolate(level, size=out.shape[2:], mode="bilinear", align_corners=False)
                out = out + level
        with step("decoder dropout"):
            out = self.dropout(out)
        with step("classifier"):
            logits: Tensor = self.conv_seg(out)
        return logits


class _FusedSigmoidFocalLoss(torch.autograd.Function):
    """The memory behaviour of MMCV's CUDA focal-loss kernel (values are not computed)."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, labels: Tensor) -> Tensor:
        ctx.save_for_backward(logits, labels)
        return logits.new_zeros(logits.shape)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        logits, _ = ctx.saved_tensors
        grad_input = logits.new_zeros(logits.shape)
        grad_input.mul_(grad)
        return grad_input, None


class SegLoss(nn.Module):
    """Cross-entropy on the logits resized to the label size (MMSegmentation ``CrossEntropyLoss``)."""

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        with step("resize logits to label size"):
            logits = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
        with step("cross-entropy"):
            loss = F.cross_entropy(logits, labels, reduction="none", ignore_index=255)
        with step("loss mean"):
            return loss.mean()


class DetLoss(nn.Module):
    """RetinaNet losses over all anchors: IoU assignment, sigmoid focal loss, L1 box loss (MMDetection)."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.gt_boxes = cfg.gt_boxes

    def forward(self, outs: list[tuple[Tensor, Tensor]], batch: int) -> Tensor:
        anchors = sum(cls.shape[1] // self.num_classes * cls.shape[2] * cls.shape[3] for cls, _ in outs)
        device, dtype = outs[0][0].device, outs[0][0].dtype
        targets = []
        for _ in range(batch):
            with step("anchors"):
                boxes = torch.zeros((anchors, 4), device=device, dtype=dtype)
            with step("anchor assignment (IoU matrix)"):
                iou = torch.zeros((self.gt_boxes, anchors), device=device, dtype=dtype)
                best, _ = iou.max(dim=0)
            with step("targets"):
                labels = torch.zeros((anchors,), device=device, dtype=torch.long)
                weights = best.new_ones((anchors,))
                box_targets = torch.zeros_like(boxes)
                box_weights = torch.zeros_like(boxes)
            del iou, best
            targets.append((labels, weights, box_targets, box_weights))
        total: Tensor | None = None
        start = 0
        for cls_score, box in outs:
            _, _, h, w = cls_score.shape
            n = cls_score.shape[1] // self.num_classes * h * w
            level = slice(start, start + n)
            start += n
            with step("class scores to anchors"):
                scores = cls_score.permute(0, 2, 3, 1).reshape(-1, self.num_classes)
            with step("focal loss"):
                labels = torch.cat([t[0][level] for t in targets])
                weights = torch.cat([t[1][level] for t in targets]).reshape(-1, 1)
                loss = _FusedSigmoidFocalLoss.apply(scores, labels) * weights
                cls_loss = loss.sum()
            with step("box deltas to anchors"):
                deltas = box.permute(0, 2, 3, 1).reshape(-1, 4)
            with step("L1 box loss"):
                box_targets = torch.cat([t[2][level] for t in targets])
                box_weights = torch.cat([t[3][level] for t in targets])
                box_loss = (F.l1_loss(deltas, box_targets, reduction="none") * box_weights).sum()
            with step("sum losses"):
                level_loss = cls_loss + box_loss
                total = level_loss if total is None else total + level_loss
        assert total is not None
        return total


class DenseModel(nn.Module):
    """A PVT backbone with a neck and a head; with a loss, ``forward`` returns the training loss."""

    def __init__(
        self, backbone_cfg: PvtConfig, head: HeadConfig, *, with_loss: bool, device: str | torch.device
    ) -> None:
        super().__init__()
        dd: dict[str, Any] = {"device": torch.device(device), "dtype": torch_dtype(backbone_cfg.dtype)}
        self.cfg = backbone_cfg
        self.head_cfg = head
        self.backbone = PyramidVisionTransformer(backbone_cfg, device=device)
        dims = backbone_cfg.dims
        self.neck: FPN | None = None
        self.decode_head: nn.Module | None = None
        self.bbox_head: RetinaHead | None = None
        if head.head == HeadKind.SEGFORMER:
            self.decode_head = SegFormerHead(dims, head, dd)
        elif head.head == HeadKind.RETINANET:
            self.neck = FPN(dims, head.channels, start_level=1, num_outs=5, dd=dd)
            self.bbox_head = RetinaHead(head, dd)
        else:
            self.neck = FPN(dims, head.channels, start_level=0, num_outs=len(dims), dd=dd)
            self.decode_head = SemanticFPNHead(len(dims), head, dd)
        self.loss: nn.Module | None = None
        if with_loss:
            self.loss = DetLoss(head) if head.head.is_detection else SegLoss()

    def forward(self, images: Tensor) -> Any:
        """Segmentation logits at 1/4, RetinaNet's per-level (class, box) maps, or (with a loss) the loss."""
        labels = None
        if self.loss is not None and not self.head_cfg.head.is_detection:
            with step("labels"):
                labels = torch.zeros((images.shape[0], *images.shape[2:]), dtype=torch.long, device=images.device)
        feats = self.backbone(images)
        if self.neck is not None:
            feats = self.neck(feats)
        if self.bbox_head is not None:
            outs = self.bbox_head(feats)
            del feats
            if self.loss is None:
                return [t for pair in outs for t in pair]
            return self.loss(outs, images.shape[0])
        assert self.decode_head is not None
        logits = self.decode_head(feats)
        del feats
        if self.loss is None:
            return logits
        return self.loss(logits, labels)


def build_dense_model(
    backbone_cfg: PvtConfig, head: HeadConfig, *, with_loss: bool = False, device: str | torch.device = "meta"
) -> DenseModel:
    """Build ``head`` on the PVT of ``backbone_cfg`` (as a backbone) on ``device``, in eval mode.

    Example:
        >>> from pvttrace.config import get_variant
        >>> from pvttrace.tracing.dense import default_head
        >>> cfg = get_variant("mit-b0")
        >>> model = build_dense_model(cfg, default_head("segformer", cfg))
        >>> round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
        3.8
    """
    if backbone_cfg.task != Task.BACKBONE:
        backbone_cfg = backbone_cfg.with_overrides(task=Task.BACKBONE.value)
    return DenseModel(backbone_cfg, head, with_loss=with_loss, device=device).eval()


def trace_dense(
    backbone_cfg: PvtConfig,
    head: HeadConfig,
    *,
    device: Device | str = Device.META,
    train: bool = False,
    optimizer: Optimizer | str = Optimizer.ADAMW,
) -> Trace:
    """Trace the whole model (backbone, neck, head; with ``train`` also the loss, backward and optimizer).

    The input is ``backbone_cfg.input_shape``; with ``train`` the forward ends in the loss (the labels of
    the batch are made inside it), so the trace's training memory covers the loss and its backward.

    Raises:
        TraceError: the model does not fit on ``device``, or the forward/backward failed.
        UserInputError: an unavailable device or an unknown optimizer.
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError(
            f"device={str(device)!r} is not available: this torch build sees no CUDA GPU (use meta or cpu)"
        )
    try:
        model = build_dense_model(backbone_cfg, head, with_loss=train, device=device)
        example = torch.zeros(model.cfg.input_shape, device=device, dtype=torch_dtype(backbone_cfg.dtype))
    except (RuntimeError, MemoryError) as exc:
        message = " ".join(str(exc).split())[:300]
        raise TraceError(f"cannot build the model and its input on {device}: {type(exc).__name__}: {message}") from exc
    name = f"{head.kind} on {backbone_cfg.variant}"
    return trace_model(model, example, config=model.cfg, model_name=name, train=train, optimizer=optimizer)


def predict_gpu_peak(
    backbone_cfg: PvtConfig,
    head: HeadConfig,
    *,
    optimizer: Optimizer | str = Optimizer.ADAMW,
    setting: GpuSetting,
    amp: bool = False,
) -> GpuPeak:
    """Predict ``torch.cuda.max_memory_allocated`` of training the whole model (see :mod:`pvttrace.memory.gpustep`).

    One forward with the loss and one backward run on the meta device under the storage tracker; with
    ``amp`` the forward follows autocast's float16 policy (:mod:`pvttrace.tracing.amp`; float32 parameters,
    gradients and optimizer state).

    Raises:
        TraceError: the forward or backward failed.
        UserInputError: an unknown optimizer.
    """
    memory.optimizer_state_bytes(optimizer, 0)  # validates the name
    model = build_dense_model(backbone_cfg, head, with_loss=True, device="meta")
    example = torch.zeros(model.cfg.input_shape, device="meta", dtype=torch_dtype(backbone_cfg.dtype))
    with legacy_softmax_autograd(setting.softmax_saves_input), autocast_float16(model, amp):
        _, _, log = memory_log(model, example, train=True)
    return gpu_training_peak(
        log,
        param_sizes=[p.numel() * p.element_size() for p in model.parameters()],
        trainable_sizes=[p.numel() * p.element_size() for p in model.parameters() if p.requires_grad],
        buffer_sizes=[b.numel() * b.element_size() for b in model.buffers()],
        optimizer=optimizer,
        setting=setting,
    )
