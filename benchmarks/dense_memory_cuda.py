"""Measure whole-model training memory on a GPU and compare it with pvttrace's prediction.

For each configuration of ``benchmarks/dense_memory.py`` (the SegFormer rows and the RetinaNet
predictions), this builds pvttrace's own whole model on ``--device cuda`` (float32), runs three
training steps (forward with the loss, backward, ``torch.optim.AdamW.step`` with PyTorch's default
multi-tensor path, ``zero_grad()``) and reads ``torch.cuda.max_memory_allocated`` over them. The
prediction is :func:`pvttrace.tracing.heads.predict_gpu_peak` with the ``torch2`` setting (one GPU, no DDP,
gradients freed by ``zero_grad``, foreach AdamW, current autograd), i.e. the step this script runs.
cuDNN workspaces are in the measurement and not in the prediction (``pvttrace.memory.gpustep``).

Without a CUDA GPU it says so and exits with status 0: it need not run in CI.

Usage: python benchmarks/dense_memory_cuda.py --device cuda [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout

GIB = 2**30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (the only device this check measures)")
    parser.add_argument("--quick", action="store_true", help="only the first SegFormer rows (B0, B1 at 512)")
    args = parser.parse_args()
    import torch

    if not args.device.startswith("cuda") or not torch.cuda.is_available():
        print(
            f"no CUDA GPU here (device={args.device!r}, torch.cuda.is_available()={torch.cuda.is_available()}): "
            "nothing measured"
        )
        return 0
    from dense_memory import RETINANET_ROWS, SEGFORMER_ROWS  # type: ignore[import-not-found]

    from pvttrace.config import get_variant
    from pvttrace.memory.gpustep import FRAMEWORKS
    from pvttrace.tracing.dense import default_head
    from pvttrace.tracing.heads import build_dense_model, predict_gpu_peak

    rows = [(name, crop, batch, "segformer", classes) for name, crop, batch, classes, _ in SEGFORMER_ROWS]
    rows += [(name, (800, 1344), batch, "retinanet", 80) for name, batch in RETINANET_ROWS]
    if args.quick:
        rows = rows[:2]
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}; setting torch2")
    print("| model | input | batch | measured GiB | predicted GiB | error |")
    print("|---|---|---|---|---|---|")
    for name, crop, batch, head_name, classes in rows:
        cfg = get_variant(name).with_overrides(img=crop, batch=batch)
        head = default_head(head_name, cfg).with_overrides(num_classes=classes)
        predicted = predict_gpu_peak(cfg, head, setting=FRAMEWORKS["torch2"]).peak / GIB
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            model = build_dense_model(cfg, head, with_loss=True, device=args.device).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=6e-5, weight_decay=0.01)
            images = torch.randn(cfg.input_shape, device=args.device)
            for _ in range(3):
                loss = model(images)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                del loss
            torch.cuda.synchronize()
            measured = torch.cuda.max_memory_allocated() / GIB
            cell = f"{measured:.2f} | {predicted:.2f} | {predicted / measured - 1:+.1%}"
        except torch.cuda.OutOfMemoryError:
            cell = f"out of memory | {predicted:.2f} | -"
        finally:
            model = optimizer = images = None  # type: ignore[assignment]
        print(f"| {head_name} {name} | {crop[0]}x{crop[1]} | {batch} | {cell} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
