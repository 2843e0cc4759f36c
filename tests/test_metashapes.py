"""Torch-level shape stand-ins (pvttrace.tracing.metashapes) against the real kernels.

A stand-in must give what the CPU kernel gives: shape, strides, dtype, and the input itself where the op returns
it. The model-level test runs the ops of a relative-position bias (timm's MViTv2 computes one per block) on meta
and on CPU and compares every record and every allocation and free the memory tracker logs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from pvttrace.tracing import lifetimes
from pvttrace.tracing.metashapes import meta_stand_in
from pvttrace.tracing.recorder import memory_log


def _tensor(
    shape: tuple[int, ...], device: str, dtype: torch.dtype = torch.float32, *, t: bool = False
) -> torch.Tensor:
    """A tensor of ``shape``; with ``t``, the transpose of a contiguous tensor (a non-standard layout)."""
    if t:
        return torch.empty(shape[::-1], dtype=dtype, device=device).t()
    return torch.empty(shape, dtype=dtype, device=device)


def _index(shape: tuple[int, ...], high: int, device: str) -> torch.Tensor:
    return torch.randint(0, high, shape, device="cpu").to(device)


# (id, func, make args on a device): each stand-in must answer (not None) and equal the CPU kernel.
_ANSWERED: list[tuple[str, Callable[..., Any], Callable[[str], tuple[Any, ...]]]] = [
    ("sub (4,1)-(1,5)", torch.Tensor.sub, lambda d: (_tensor((4, 1), d), _tensor((1, 5), d))),
    ("sub (3,4,1)-(4,5)", torch.Tensor.sub, lambda d: (_tensor((3, 4, 1), d), _tensor((4, 5), d))),
    ("sub (2,1,3)-(1,4,1)", torch.Tensor.sub, lambda d: (_tensor((2, 1, 3), d), _tensor((1, 4, 1), d))),
    ("sub long-float", torch.Tensor.sub, lambda d: (_tensor((4, 1), d, torch.int64), _tensor((1, 5), d))),
    ("sub full-first", torch.Tensor.sub, lambda d: (_tensor((4, 5), d), _tensor((5,), d))),
    ("sub scalar", torch.Tensor.sub, lambda d: (_tensor((4, 5), d, torch.int64), 2.5)),
    ("rsub scalar", torch.Tensor.__rsub__, lambda d: (_tensor((3, 1), d), 1.0)),
    ("add (1,5)+(4,5)", torch.Tensor.add, lambda d: (_tensor((1, 5), d), _tensor((4, 5), d))),
    ("mul (1,1,5)*(3,4,1)", torch.Tensor.mul, lambda d: (_tensor((1, 1, 5), d), _tensor((3, 4, 1), d))),
    ("add_ broadcast", torch.Tensor.add_, lambda d: (_tensor((4, 5), d), _tensor((1, 5), d))),
    ("add_ scalar", torch.Tensor.add_, lambda d: (_tensor((4, 5), d, torch.int64), 3)),
    ("mul_ float", torch.Tensor.mul_, lambda d: (_tensor((2, 3), d), 0.5)),
    ("long of float", torch.Tensor.long, lambda d: (_tensor((3, 4), d),)),
    ("long of long", torch.Tensor.long, lambda d: (_tensor((3, 4), d, torch.int64),)),
    ("float of long", torch.Tensor.float, lambda d: (_tensor((5,), d, torch.int64),)),
    ("int of float", torch.Tensor.int, lambda d: (_tensor((2, 2, 2), d),)),
    ("rows by (3,3)", torch.Tensor.__getitem__, lambda d: (_tensor((7, 5), d), _index((3, 3), 7, d))),
    ("rows by (4,)", torch.Tensor.__getitem__, lambda d: (_tensor((9,), d), _index((4,), 9, d))),
    ("rows by (2,2) of 3-D", torch.Tensor.__getitem__, lambda d: (_tensor((6, 2, 3), d), _index((2, 2), 6, d))),
]


def _same(real: torch.Tensor, stand_in: torch.Tensor, real_args: tuple[Any, ...], meta_args: tuple[Any, ...]) -> None:
    assert stand_in.device.type == "meta"
    assert (tuple(stand_in.shape), stand_in.stride(), stand_in.dtype) == (
        tuple(real.shape),
        real.stride(),
        real.dtype,
    )
    # An op that returns its input (in place, or a conversion to the type it has) must return the same object.
    returned_input = [i for i, a in enumerate(real_args) if a is real]
    assert returned_input == [i for i, a in enumerate(meta_args) if a is stand_in]


@pytest.mark.parametrize(("func", "make"), [(f, m) for _, f, m in _ANSWERED], ids=[i for i, _, _ in _ANSWERED])
def test_stand_ins_equal_the_cpu_kernels(func: Callable[..., Any], make: Callable[[str], tuple[Any, ...]]) -> None:
    torch.manual_seed(0)
    cpu_args = make("cpu")
    meta_args = tuple(a.to("meta") if isinstance(a, torch.Tensor) else a for a in cpu_args)
    with torch.no_grad():
        real = func(*cpu_args)
        stand_in = meta_stand_in(func, meta_args, {})
    assert stand_in is not None
    _same(real, stand_in, cpu_args, meta_args)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((5,), {"dtype": torch.int64}),
        ((2, 9), {}),
        ((2, 9, 3), {}),
        ((9, 2, -2), {}),
        ((0,), {}),
        ((3, 3), {}),
        ((1, 8, 3), {"dtype": torch.float32}),
    ],
)
def test_arange_equals_torchs(args: tuple[int, ...], kwargs: dict[str, Any]) -> None:
    real = torch.arange(*args, **kwargs)
    stand_in = meta_stand_in(torch.arange, args, {**kwargs, "device": torch.device("meta")})
    assert stand_in is not None
    assert (tuple(stand_in.shape), stand_in.dtype) == (tuple(real.shape), real.dtype)


# Calls the stand-ins leave to torch: other layouts, arguments torch refuses, devices other than meta.
_DECLINED: list[tuple[str, Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
    ("sub of a transpose", torch.Tensor.sub, (_tensor((1, 4), "meta", t=True), _tensor((1, 5), "meta")), {}),
    ("sub of booleans", torch.Tensor.sub, (_tensor((2,), "meta", torch.bool), _tensor((2,), "meta", torch.bool)), {}),
    ("sub with alpha", torch.Tensor.sub, (_tensor((2, 2), "meta"), _tensor((2, 2), "meta")), {"alpha": 2}),
    ("add_ growing", torch.Tensor.add_, (_tensor((1, 5), "meta"), _tensor((4, 5), "meta")), {}),
    ("add_ float into long", torch.Tensor.add_, (_tensor((4, 5), "meta", torch.int64), 0.5), {}),
    ("add_ into a transpose", torch.Tensor.add_, (_tensor((4, 5), "meta", t=True), 1.0), {}),
    ("long of a transpose", torch.Tensor.long, (_tensor((4, 5), "meta", t=True),), {}),
    ("rows by booleans", torch.Tensor.__getitem__, (_tensor((3, 2), "meta"), _tensor((3,), "meta", torch.bool)), {}),
    ("rows by int32", torch.Tensor.__getitem__, (_tensor((3, 2), "meta"), _tensor((3,), "meta", torch.int32)), {}),
    ("rows by a 0-d index", torch.Tensor.__getitem__, (_tensor((3, 2), "meta"), _tensor((), "meta", torch.int64)), {}),
    ("arange on cpu", torch.arange, (5,), {"device": "cpu"}),
    ("arange, default device", torch.arange, (5,), {}),
    ("arange of floats", torch.arange, (0.5, 3), {"device": "meta"}),
    ("arange, wrong sign", torch.arange, (5, 2), {"device": "meta"}),
    ("arange, zero step", torch.arange, (1, 5, 0), {"device": "meta"}),
]


@pytest.mark.parametrize(("func", "args", "kwargs"), [c[1:] for c in _DECLINED], ids=[c[0] for c in _DECLINED])
def test_stand_ins_leave_other_calls_to_torch(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with torch.no_grad():
        assert meta_stand_in(func, args, kwargs) is None


def test_in_place_stand_ins_step_aside_with_grad_on() -> None:
    """Autograd's version counters must see writes, so in-place ops run for real whenever grad is on."""
    x = torch.empty(2, 3, device="meta")
    with torch.enable_grad():
        assert meta_stand_in(torch.Tensor.add_, (x, 1.0), {}) is None
    with torch.no_grad():
        assert meta_stand_in(torch.Tensor.add_, (x, 1.0), {}) is x


class _RelativePositions(torch.nn.Module):
    """The decomposed relative-position bias of MViTv2-style attention: integer grids, broadcast differences,
    in-place shifts, a conversion, table lookups by index tensors, einsums and a sliced write."""

    def __init__(self, side: int = 4, dim: int = 6) -> None:
        super().__init__()
        self.side = side
        self.table_h = torch.nn.Parameter(torch.randn(2 * side - 1, dim))
        self.table_w = torch.nn.Parameter(torch.randn(2 * side - 1, dim))
        self.qkv = torch.nn.Linear(dim, 3 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = self.side
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, 1, c).permute(2, 0, 3, 1, 4).unbind(0)
        attn = q @ k.transpose(-2, -1)
        dist = (
            torch.arange(side, device=x.device, dtype=torch.long).unsqueeze(-1) * 1.0
            - torch.arange(side, device=x.device, dtype=torch.long).unsqueeze(0) * 1.0
        )
        dist += (side - 1) * 1.0
        rel_h = self.table_h[dist.long()]
        rel_w = self.table_w[dist.long()]
        r_q = q[:, :, 1:].reshape(b, 1, side, side, c)
        bias_h = torch.einsum("byhwc,hkc->byhwk", r_q, rel_h)
        bias_w = torch.einsum("byhwc,wkc->byhwk", r_q, rel_w)
        attn[:, :, 1:, 1:] = (
            attn[:, :, 1:, 1:].view(b, -1, side, side, side, side) + bias_h.unsqueeze(-1) + bias_w.unsqueeze(-2)
        ).view(b, -1, side * side, side * side)
        return (attn.softmax(-1) @ v).squeeze(1)


def test_relative_positions_trace_on_meta_as_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every record and every allocation and free equal the CPU run, and on meta the grids, differences,
    conversions and lookups are answered by stand-ins (none of them reaches the tracker's dispatch)."""
    torch.manual_seed(0)
    model = _RelativePositions().eval()
    example = torch.randn(2, 17, 6)
    cpu_ops, _, cpu_log = memory_log(model, example, train=False)

    seen: list[str] = []
    dispatch = lifetimes.StorageTracker.__torch_dispatch__

    def spying(self: lifetimes.StorageTracker, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        seen.append(str(func))
        return dispatch(self, func, types, args, kwargs)

    monkeypatch.setattr(lifetimes.StorageTracker, "__torch_dispatch__", spying)
    meta_ops, _, meta_log = memory_log(model.to("meta"), example.to("meta"), train=False)
    assert meta_ops == cpu_ops
    assert meta_log == cpu_log
    assert [op.op for op in meta_ops].count("arange") == 2
    answered = ("aten.arange", "aten.sub", "aten.add_", "aten._to_copy", "aten.index.Tensor")
    assert not [name for name in seen if name.startswith(answered)]
    assert seen  # the einsums still run their aten ops under the tracker
