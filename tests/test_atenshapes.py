"""The aten-level shape stand-ins (pvttrace.tracing.atenshapes) against torch's own meta kernels.

Three layers of evidence: every stand-in output equals the real kernel's, call by call; whole
traces (records, totals, training memory, the raw lifetime log) are identical with and without the
stand-ins; and a training trace no longer imports sympy or torch._dynamo. CPU agreement of the
training figures is tests/test_memory.py's job (it runs with the stand-ins, the default).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch
from torch._prims_common import suggest_memory_format as torch_suggest_memory_format

from pvttrace.cli.options import config_from_text
from pvttrace.config import PvtConfig
from pvttrace.tracing import atenshapes
from pvttrace.tracing.model import build_model
from pvttrace.tracing.recorder import memory_log, trace_config

CASES = [
    ("tiny", "64", 1, {}),
    ("tiny", "64", 2, {}),
    ("b0", "64", 2, {}),
    ("b2-li", "64", 1, {}),
    ("b2-li", "64", 2, {}),
    ("tiny", "64", 2, {"attention": "sdpa"}),
    ("tiny", "64", 1, {"attention": "sdpa", "sr": "1,1,1,1"}),
    ("b0", "64", 2, {"task": "backbone"}),
]


def _cfg(variant: str, img: str, batch: int, extra: dict[str, str]) -> PvtConfig:
    return config_from_text(variant, img=img, batch=batch, **extra)


@pytest.fixture
def checked() -> Iterator[None]:
    atenshapes.CHECK = True
    try:
        yield
    finally:
        atenshapes.CHECK = False


@pytest.mark.parametrize(("variant", "img", "batch", "extra"), CASES)
def test_every_stand_in_output_equals_the_meta_kernels(
    checked: None, variant: str, img: str, batch: int, extra: dict[str, str]
) -> None:
    # With CHECK, each stand-in call also runs the real kernel and raises StandInMismatch on any
    # difference in shape, strides, dtype, offset, storage size or aliasing.
    trace = trace_config(_cfg(variant, img, batch, extra), train=True)
    assert trace.training is not None and trace.training.saved_activation_bytes > 0


@pytest.mark.parametrize(("variant", "img", "batch", "extra"), CASES)
def test_traces_equal_record_for_record_without_the_stand_ins(
    variant: str, img: str, batch: int, extra: dict[str, str]
) -> None:
    cfg = _cfg(variant, img, batch, extra)
    model = build_model(cfg)
    example = torch.empty(cfg.input_shape, device="meta")
    fast = trace_config(cfg, train=True)
    fast_log = memory_log(model, example, train=True)[2]
    atenshapes.ENABLED = False
    try:
        slow = trace_config(cfg, train=True)
        slow_log = memory_log(model, example, train=True)[2]
    finally:
        atenshapes.ENABLED = True
    assert fast.ops == slow.ops
    assert fast.totals == slow.totals
    assert fast.training == slow.training
    # The storage lifetimes themselves: every allocation and free at the same moment, same saved tensors.
    assert fast_log.events == slow_log.events
    assert fast_log.saved == slow_log.saved
    assert fast_log.kinds == slow_log.kinds


def test_a_training_trace_imports_neither_sympy_nor_dynamo() -> None:
    probe = (
        "import sys; from pvttrace.config import resolve_config; from pvttrace.tracing.recorder import trace_config; "
        "t = trace_config(resolve_config('b2', img=128, batch=2), train=True, optimizer='adamw'); "
        "assert t.training.backward_peak_bytes > 0; "
        "print(sorted(m for m in ('sympy', 'torch._dynamo') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.empty(2, 3, 4, 5, device="meta"),
        lambda: torch.empty(2, 3, 4, 5, device="meta").contiguous(memory_format=torch.channels_last),
        lambda: torch.empty(1, 3, 1, 1, device="meta").contiguous(memory_format=torch.channels_last),
        lambda: torch.empty(2, 16, 8, device="meta").transpose(1, 2).reshape(2, 8, 4, 4),
        lambda: torch.empty(2, 64, 8, device="meta").transpose(1, 2).reshape(2, 8, 8, 8),
        lambda: torch.empty(2, 3, 4, 5, 6, device="meta").contiguous(memory_format=torch.channels_last_3d),
        lambda: torch.empty(2, 3, 4, 5, device="meta").permute(0, 2, 1, 3),
        lambda: torch.empty(3, 4, device="meta"),
    ],
)
def test_suggest_memory_format_equals_torchs(make: object) -> None:
    x = make()  # type: ignore[operator]
    assert atenshapes.suggest_memory_format(x) == torch_suggest_memory_format(x)


def test_elementwise_layout_follows_the_first_operand() -> None:
    a = torch.empty(2, 8, 4, device="meta").transpose(1, 2)  # [2, 4, 8], strides (32, 1, 4)
    b = torch.empty(2, 4, 8, device="meta")
    for first, second in ((a, b), (b, a), (a, torch.empty(8, device="meta"))):
        ours = atenshapes.aten_stand_in(torch.ops.aten.add.Tensor, (first, second), {})
        real = torch.ops.aten.add.Tensor(first, second)
        assert (ours.shape, ours.stride()) == (real.shape, real.stride())
