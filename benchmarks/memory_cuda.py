"""Compare pvttrace's memory estimates (meta device) with real measurements, and record them in docs/.

On CUDA the measurement is ``torch.cuda.max_memory_allocated`` (caching allocator: tensor bytes
rounded up to 512-byte blocks, plus kernel workspaces such as cuDNN's); on CPU (a dry run of
the same script) it is the peak of ``torch.profiler`` memory events. For each configuration:

* inference: the activation peak of one ``no_grad`` forward (max allocated minus what was
  allocated before the forward, plus the input) against ``Totals.peak_activation_bytes``;
* training (``train`` rows): the peak of a second optimizer step (forward, backward with a
  ones seed, ``AdamW.step``, ``zero_grad``) against ``TrainingMemory.peak_bytes``, which counts
  gradients for the whole step and is therefore an upper bound when ``zero_grad`` frees them.

Usage (not part of the test suite)::

    python benchmarks/memory_cuda.py                   # CUDA: writes docs/memory-cuda.md
    python benchmarks/memory_cuda.py --device cpu      # dry run: small configs, docs/memory-cpu.md
    python benchmarks/memory_cuda.py --out -           # print instead of writing
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout

from pvttrace.base.units import format_bytes
from pvttrace.cli.options import config_from_text
from pvttrace.config import PvtConfig
from pvttrace.tracing.model import build_model, torch_dtype
from pvttrace.tracing.recorder import trace_config


@dataclass(frozen=True)
class Case:
    """One configuration to estimate and measure."""

    variant: str
    img: str
    batch: int
    sr: str | None = None
    attention: str = "explicit"
    train: bool = False

    def config(self) -> PvtConfig:
        return config_from_text(self.variant, img=self.img, batch=self.batch, sr=self.sr, attention=self.attention)

    def label(self) -> str:
        sr = f" sr {self.sr}" if self.sr else ""
        mode = "train (adamw)" if self.train else "inference"
        return f"{self.variant} @{self.img} b{self.batch}{sr} {self.attention}, {mode}"


CUDA_CASES = (
    Case("tiny", "224", 32),
    Case("tiny", "224", 32, attention="sdpa"),
    Case("b0", "224", 32),
    Case("b2", "512", 8),
    Case("b2", "512", 8, attention="sdpa"),
    Case("tiny", "1280x800", 1, sr="1,1,1,1"),
    Case("tiny", "1280x800", 1, sr="1,1,1,1", attention="sdpa"),
    Case("tiny", "1280x800", 2),
    Case("b2-li", "800x1333", 2),
    Case("tiny", "224", 32, train=True),
    Case("b0", "224", 32, train=True),
    Case("b2", "512", 4, train=True),
    Case("b2", "512", 4, attention="sdpa", train=True),
)

CPU_CASES = (
    Case("tiny", "128", 2),
    Case("tiny", "128", 2, attention="sdpa"),
    Case("b0", "128", 2),
    Case("tiny", "96", 1, sr="1,1,1,1"),
    Case("tiny", "128", 2, train=True),
    Case("b0", "96", 2, train=True),
)


def _cpu_peak(run: object) -> int:
    """Peak of the CPU allocator's live bytes while ``run()`` executes (torch.profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()  # type: ignore[operator]
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def measure(case: Case, device: str) -> int:
    """Measured peak: activations (inference) or the whole second training step (training)."""
    cfg = case.config()
    torch.manual_seed(0)
    model = build_model(cfg, device=device)
    example = torch.randn(cfg.input_shape, device=device, dtype=torch_dtype(cfg.dtype))
    input_bytes = example.untyped_storage().nbytes()
    if not case.train:

        def forward() -> None:
            with torch.no_grad():
                model(example)

        if device == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            forward()
            torch.cuda.synchronize()
            return int(torch.cuda.max_memory_allocated() - before + input_bytes)
        return _cpu_peak(forward) + input_bytes

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)

    def step() -> None:
        out = model(example)
        outputs = out if isinstance(out, list) else [out]
        torch.autograd.backward(outputs, [torch.ones_like(t) for t in outputs])
        del out, outputs
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # first step creates the optimizer state
    static = sum(p.untyped_storage().nbytes() for p in model.parameters())
    state = sum(t.untyped_storage().nbytes() for s in optimizer.state.values() for t in s.values() if t.dim())
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()  # params, optimizer state, input
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - before + static + state + input_bytes)
    return int(_cpu_peak(step) + static + state + input_bytes)


def estimate(case: Case) -> int:
    """pvttrace's estimate on the meta device (activation peak, or the training-step peak)."""
    trace = trace_config(case.config(), train=case.train, optimizer="adamw")
    if case.train and trace.training is not None:
        return trace.training.peak_bytes
    return trace.totals.peak_activation_bytes


def report(device: str, cases: tuple[Case, ...]) -> str:
    """The markdown document: one row per case, estimate vs measurement."""
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    what = "torch.cuda.max_memory_allocated" if device == "cuda" else "torch.profiler memory events"
    lines = [
        f"# pvttrace memory estimates vs {what}",
        "",
        f"Device: {name}; torch {torch.__version__}. Generated by `python benchmarks/memory_cuda.py"
        f"{' --device cpu' if device == 'cpu' else ''}`.",
        "",
        "Inference rows compare the activation peak (input included); training rows compare the whole",
        "second AdamW step (params + optimizer state + activations + grads) with pvttrace's training peak,",
        "which counts gradients for the whole step (an upper bound when zero_grad frees them).",
        "",
        "| configuration | estimate | measured | estimate / measured |",
        "| --- | ---: | ---: | ---: |",
    ]
    for case in cases:
        est = estimate(case)
        try:
            got = measure(case, device)
        except torch.OutOfMemoryError:
            lines.append(f"| {case.label()} | {format_bytes(est)} | out of memory | - |")
            continue
        finally:
            if device == "cuda":
                torch.cuda.empty_cache()
        lines.append(f"| {case.label()} | {format_bytes(est)} | {format_bytes(got)} | {est / got:.3f} |")
    return "\n".join(lines) + "\n"


def _write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".memory-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--out", default=None, help="Output markdown (default docs/memory-<device>.md; - prints).")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu for a dry run")
    cases = CUDA_CASES if args.device == "cuda" else CPU_CASES
    text = report(args.device, cases)
    out = args.out or os.path.join(os.path.dirname(__file__), "..", "docs", f"memory-{args.device}.md")
    if out == "-":
        sys.stdout.write(text)
    else:
        _write_atomically(out, text)
        sys.stdout.write(f"wrote {os.path.normpath(out)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
