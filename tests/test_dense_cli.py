"""The command line on whole models: run, diff and sweep with --head, and their input errors."""

from __future__ import annotations

import json

from helpers import invoke


def test_run_head_json_has_the_whole_model() -> None:
    code, out, _ = invoke("run", "--head", "segformer", "--variant", "mit-b0", "--img", "64", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["model"] == "segformer on mit-b0"
    assert doc["totals"]["params"] == 3_752_694  # 3.75 M, published 3.8 M
    modules = {op["module"].split(".")[0] for op in doc["ops"]}
    assert {"backbone", "decode_head"} <= modules
    assert doc["outputs"] == [[1, 150, 16, 16]]  # logits at 1/4, ADE20K's 150 classes


def test_run_head_train_names_the_loss_and_stage_params() -> None:
    code, out, _ = invoke(
        "run",
        "--head",
        "semantic-fpn",
        "--variant",
        "tiny",
        "--img",
        "64",
        "--train",
        "--num-classes",
        "19",
        "--width",
        "120",
        "--ops",
    )
    assert code == 0
    assert "semantic-fpn on tiny: tiny (PVT v1, backbone)" in out
    assert "training peak" in out and "cross-entropy" in out


def test_diff_head_train_shows_parts() -> None:
    code, out, _ = invoke(
        "diff",
        "--head",
        "segformer",
        "--variant",
        "mit-b0",
        "--sr",
        "8,4,2,1",
        "--sr",
        "4,2,1,1",
        "--train",
        "--img",
        "64",
        "--format",
        "markdown",
    )
    assert code == 0
    table = out.split("### Training memory by part", 1)[1]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert {"stage 1", "stage 4", "head", "loss", "training peak"} <= set(rows)


def test_sweep_head_train_peak_memory() -> None:
    code, out, _ = invoke(
        "sweep",
        "--head",
        "retinanet",
        "--variant",
        "b0",
        "--img",
        "64,128",
        "--train",
        "--metric",
        "peak_memory_bytes",
        "--format",
        "json",
    )
    assert code == 0
    doc = json.loads(out)
    assert "peak_memory_bytes" in json.dumps(doc)


def test_head_input_errors_are_one_line_exit_2() -> None:
    cases = [
        (("run", "--head", "mask-rcnn"), "head='mask-rcnn' is not a known head"),
        (("run", "--head-width", "64"), "head_width=64 needs --head"),
        (("run", "--head", "segformer", "--head-width", "0"), "head channels=0 must be a positive integer"),
        (("run", "--head", "segformer", "--model", "timm:resnet18"), "works on built-in variants only"),
        (("diff", "--head", "segformer", "--model", "timm:resnet18", "--model", "timm:resnet34"), "not with --model"),
        (("run", "--head", "segformer", "--gpu-setting", "torch2"), "gpu_setting='torch2' needs --head and --train"),
        (("run", "--head", "segformer", "--train", "--gpu-setting", "torch3"), "gpu_setting='torch3' must be one of"),
    ]
    for args, message in cases:
        code, _, err = invoke(*args)
        assert code == 2, args
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_fit_head_train_answer_fits_and_next_does_not() -> None:
    code, out, _ = invoke(
        "fit",
        "--memory",
        "256MiB",
        "--head",
        "segformer",
        "--variant",
        "mit-b0",
        "--img",
        "64",
        "--train",
        "--format",
        "json",
    )
    assert code == 0, out
    doc = json.loads(out)
    assert doc["peak_bytes"] <= 256 * 2**20 < doc["next_peak_bytes"]


def test_run_gpu_setting_prints_the_prediction() -> None:
    from pvttrace.base.units import format_bytes
    from pvttrace.config import get_variant
    from pvttrace.memory.gpustep import FRAMEWORKS
    from pvttrace.tracing.dense import default_head
    from pvttrace.tracing.heads import predict_gpu_peak

    code, out, _ = invoke(
        "run",
        "--head",
        "segformer",
        "--variant",
        "mit-b0",
        "--img",
        "64",
        "--train",
        "--gpu-setting",
        "torch2",
        "--stage",
        "4",
    )
    assert code == 0
    cfg = get_variant("mit-b0").with_overrides(img=(64, 64))
    peak = predict_gpu_peak(cfg, default_head("segformer", cfg), setting=FRAMEWORKS["torch2"])
    assert f"predicted torch.cuda.max_memory_allocated (torch2): {format_bytes(peak.peak)}" in out
