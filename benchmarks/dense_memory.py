"""Predicted training memory of whole models against the frameworks' published "Mem (GB)".

Generates the comparison table of docs/dense-models.md: MMSegmentation's SegFormer rows (ADE20K
512x512 batch 2, 150 classes; B5 also at 640x640; Cityscapes 1024x1024 batch 1, 19 classes; 8 GPUs,
AdamW, float32), each predicted by :func:`pvttrace.tracing.heads.predict_gpu_peak` with ONE setting for the
framework (``mmcv1-ddp``: MMCV 1.x keeps gradients between steps, the per-parameter AdamW loop of
PyTorch 1.x, DistributedDataParallel's gradient buckets), and the RetinaNet predictions (MMDetection's
COCO setting: 1333x800 resize, padded to a multiple of 32: 800x1344; batch 2, 1 for PVTv2-B4/B5).
"Mem (GB)" is ``max_memory_allocated / 2**20`` MB divided by 1024, i.e. GiB.

Usage: python benchmarks/dense_memory.py [--ablation]   (about a minute on the meta device; 4x with --ablation)
"""

from __future__ import annotations

import statistics
import sys

from pvttrace.config import get_variant
from pvttrace.memory.gpustep import FRAMEWORKS
from pvttrace.tracing.dense import default_head
from pvttrace.tracing.heads import predict_gpu_peak

SETTING = FRAMEWORKS["mmcv1-ddp"]
GIB = 2**30

#: (backbone, crop (H, W), batch per GPU, classes, published Mem (GB)) from MMSegmentation's SegFormer README.
SEGFORMER_ROWS = [
    *((f"mit-b{i}", (512, 512), 2, 150, mem) for i, mem in enumerate((2.1, 2.6, 3.6, 4.8, 6.1, 7.2))),
    ("mit-b5", (640, 640), 2, 150, 11.5),
    *((f"mit-b{i}", (1024, 1024), 1, 19, mem) for i, mem in enumerate((3.64, 4.49, 7.42, 10.86, 15.07, 18.00))),
]

#: (backbone, batch per GPU) of the standard RetinaNet configs; input 800x1344 (1333x800 padded to 32).
RETINANET_ROWS = [("tiny", 2), ("small", 2), ("medium", 2), *((f"b{i}", 2 if i < 4 else 1) for i in range(6))]


def segformer_table() -> tuple[list[str], list[float]]:
    """Markdown rows of the SegFormer comparison and the relative errors."""
    lines = [
        "| model | crop | batch | classes | predicted GiB | published | error |",
        "|---|---|---|---|---|---|---|",
    ]
    errors = []
    for name, crop, batch, classes, published in SEGFORMER_ROWS:
        cfg = get_variant(name).with_overrides(img=crop, batch=batch)
        head = default_head("segformer", cfg).with_overrides(num_classes=classes)
        predicted = predict_gpu_peak(cfg, head, setting=SETTING).peak / GIB
        error = predicted / published - 1
        errors.append(error)
        lines.append(
            f"| SegFormer-{name[4:].upper()} | {crop[0]}x{crop[1]} | {batch} | {classes} | {predicted:.2f} | "
            f"{published:.2f} | {error:+.1%} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    return lines, errors


def retinanet_table() -> list[str]:
    """Markdown rows of the RetinaNet predictions (no published memory to compare with)."""
    lines = ["| backbone | input | batch | predicted GiB |", "|---|---|---|---|"]
    for name, batch in RETINANET_ROWS:
        cfg = get_variant(name).with_overrides(img=(800, 1344), batch=batch)
        peak = predict_gpu_peak(cfg, default_head("retinanet", cfg), setting=SETTING).peak / GIB
        label = f"PVT-{name.capitalize()}" if name[0] != "b" else f"PVTv2-{name.upper()}"
        lines.append(f"| {label} | 800x1344 | {batch} | {peak:.2f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def ablation() -> list[str]:
    """Median and worst error of the SegFormer rows as the setting's switches are turned on one by one."""
    from dataclasses import replace

    steps = [
        ("torch 2 step on one GPU (grads freed, foreach AdamW)", FRAMEWORKS["torch2"]),
        (
            "+ gradients kept between steps, per-parameter AdamW (MMCV 1.x, torch 1.x)",
            replace(SETTING, ddp_buckets=False, softmax_saves_input=False),
        ),
        ("+ DDP gradient buckets (8 GPUs)", replace(SETTING, softmax_saves_input=False)),
        ("+ softmax/log-softmax keep their input (torch < 1.11) = mmcv1-ddp", SETTING),
    ]
    lines = ["| setting | median abs error | worst abs error |", "|---|---|---|"]
    for title, setting in steps:
        errors = []
        for name, crop, batch, classes, published in SEGFORMER_ROWS:
            cfg = get_variant(name).with_overrides(img=crop, batch=batch)
            head = default_head("segformer", cfg).with_overrides(num_classes=classes)
            errors.append(abs(predict_gpu_peak(cfg, head, setting=setting).peak / GIB / published - 1))
        lines.append(f"| {title} | {statistics.median(errors):.1%} | {max(errors):.1%} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main() -> None:
    """Print both tables and the acceptance figures (``--ablation``: also each switch's effect)."""
    if "--ablation" in sys.argv[1:]:
        print("\n".join(ablation()) + "\n")
    seg, errors = segformer_table()
    absolute = [abs(e) for e in errors]
    print(f"SegFormer, setting {SETTING.name}:")
    print("\n".join(seg))
    print(
        f"\nmedian |error| {statistics.median(absolute):.1%} (target <= 10%), "
        f"worst {max(absolute):.1%} (target <= 20%)\n"
    )
    print("RetinaNet (MMDetection COCO setting, same memory model):")
    print("\n".join(retinanet_table()))


if __name__ == "__main__":
    main()
