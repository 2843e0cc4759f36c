"""Training traces of models with batch norm: they work, and leave the user's model unchanged."""

from __future__ import annotations

import torch
from torch import nn

from pvttrace.tracing.recorder import trace_model


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4)
    )


def test_train_trace_of_a_batchnorm_model_on_cpu_mutates_nothing() -> None:
    model = _bn_net().train()
    model[4].eval()  # a frozen norm inside a training model
    model[1].running_mean.fill_(0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    marker = torch.full_like(model[0].weight, 3.0)
    model[0].weight.grad = marker
    example = torch.randn(2, 3, 8, 8)
    trace = trace_model(model, example, train=True)
    assert trace.training is not None
    # forward with grad saved the conv inputs and BN outputs: far more than nothing
    assert trace.training.saved_activation_bytes >= example.numel() * 4
    after = model.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert int(model[1].num_batches_tracked) == 0
    assert model[0].weight.grad is marker and model[3].weight.grad is None
    assert all(m.track_running_stats for m in (model[1], model[4]))
    assert model.training and model[1].training and not model[4].training


def test_train_trace_of_a_batchnorm_model_on_meta_matches_inference_ops() -> None:
    model = _bn_net().to("meta").train()
    trace = trace_model(model, torch.empty(2, 3, 8, 8, device="meta"), train=True)
    assert [op.op for op in trace.ops].count("nn.functional.batch_norm") == 2
    assert model.training  # the caller's mode is restored too


def test_timm_resnet18_trains_under_trace() -> None:
    timm = __import__("pytest").importorskip("timm")
    model = timm.create_model("resnet18", pretrained=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace = trace_model(model, torch.randn(1, 3, 64, 64), train=True)
    assert trace.training is not None and trace.training.grad_bytes == trace.totals.param_bytes
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
