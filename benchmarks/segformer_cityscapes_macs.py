"""SegFormer's whole-model MACs at Cityscapes' 1024x2048 against the paper's GFLOPs rows.

Generates the 1024x2048 table of docs/dense-models.md: for B0-B5, ``totals.macs`` of the traced model with
the Cityscapes head (19 classes) and with a 150-class head, and the 150-class count plus one add per output
element of every conv with a bias (what mmcv's conv hook, used by NVlabs' ``tools/get_flops.py``, adds and
pvttrace's ``macs`` convention does not). Every row is printed, close or not.

Usage: python benchmarks/segformer_cityscapes_macs.py   (about a minute on the meta device)
"""

from __future__ import annotations

import torch
from torch import nn

from pvttrace.config import get_variant
from pvttrace.tracing.dense import default_head
from pvttrace.tracing.heads import build_dense_model, trace_dense

SIZE = (1024, 2048)
#: SegFormer paper, Table (Cityscapes column), GFLOPs of B0-B5.
PAPER = (125.5, 243.7, 717.1, 962.9, 1240.6, 1460.4)


def conv_bias_adds(variant: str, classes: int) -> int:
    """Output elements of every biased conv of the model: mmcv's conv hook charges one add for each."""
    cfg = get_variant(variant).with_overrides(img=SIZE)
    model = build_dense_model(cfg, default_head("segformer", cfg).with_overrides(num_classes=classes))
    total = 0

    def count(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d) and module.bias is not None:
            total += output.numel()

    handles = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(torch.empty(1, 3, *SIZE, device="meta"))
    for handle in handles:
        handle.remove()
    return total


def macs(variant: str, classes: int) -> int:
    """``totals.macs`` of the SegFormer of ``variant`` with ``classes`` classes at 1024x2048."""
    cfg = get_variant(variant).with_overrides(img=SIZE)
    return trace_dense(cfg, default_head("segformer", cfg).with_overrides(num_classes=classes)).totals.macs


def main() -> None:
    rows: dict[str, list[str]] = {"19 classes": [], "150 classes": [], "150 classes + conv biases": []}
    for i in range(6):
        variant = f"mit-b{i}"
        with_150 = macs(variant, 150)
        rows["19 classes"].append(f"{macs(variant, 19) / 1e9:.2f}")
        rows["150 classes"].append(f"{with_150 / 1e9:.2f}")
        rows["150 classes + conv biases"].append(f"{(with_150 + conv_bias_adds(variant, 150)) / 1e9:.2f}")
    print("| SegFormer at 1024x2048 (GMACs) | B0 | B1 | B2 | B3 | B4 | B5 |")
    print("|---|---|---|---|---|---|---|")
    for name, cells in rows.items():
        print(f"| pvttrace, {name} | {' | '.join(cells)} |")
    print(f"| SegFormer paper, Cityscapes | {' | '.join(f'{g:g}' for g in PAPER)} |")


if __name__ == "__main__":
    main()
