"""Config presets, overrides, validation rules and geometry (no torch needed)."""

from __future__ import annotations

import pytest

from pvttrace.base.errors import ConfigError
from pvttrace.cli.options import config_from_text
from pvttrace.cli.parsing import parse_img
from pvttrace.config import (
    VARIANTS,
    Attention,
    DType,
    PvtConfig,
    Task,
    get_variant,
    resolve_config,
    resolve_variant_name,
)


def test_all_eleven_presets_with_official_hyper_parameters() -> None:
    assert list(VARIANTS) == ["tiny", "small", "medium", "large", "b0", "b1", "b2", "b2-li", "b3", "b4", "b5"]
    assert get_variant("large").depths == (3, 8, 27, 3)
    assert get_variant("b5").mlp_ratios == (4, 4, 4, 4)
    assert get_variant("b5").depths == (3, 6, 40, 3)
    assert get_variant("b0").dims == (32, 64, 160, 256)
    assert get_variant("b2-li").linear_sra is True
    for cfg in VARIANTS.values():
        assert cfg.heads == (1, 2, 5, 8)
        assert cfg.sr_ratios == (8, 4, 2, 1)
        assert cfg.qkv_bias is True
        assert cfg.num_classes == 1000


@pytest.mark.parametrize(
    ("spelling", "key"),
    [("pvt_tiny", "tiny"), ("pvt_v2_b2_li", "b2-li"), ("PVT_V2_B0", "b0"), ("b2_li", "b2-li"), ("medium", "medium")],
)
def test_official_names_are_accepted(spelling: str, key: str) -> None:
    assert resolve_variant_name(spelling) == key


def test_unknown_variant_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"variant='tinny' is not a known variant.*did you mean 'tiny'"):
        resolve_variant_name("tinny")


def test_overrides_from_cli_strings() -> None:
    cfg = config_from_text("tiny", img="800x1333", sr="1,1,1,1", task="backbone", batch=2, mlp_ratios="4,4,4,4")
    assert cfg.img == (800, 1333)
    assert cfg.sr_ratios == (1, 1, 1, 1)
    assert cfg.batch == 2
    assert cfg.mlp_hidden(0) == 256
    assert cfg.input_shape == (2, 3, 800, 1333)
    assert cfg.task is Task.BACKBONE


def test_typed_overrides() -> None:
    cfg = resolve_config("tiny", img=(800, 1333), sr=(1, 1, 1, 1), task=Task.BACKBONE, mlp_ratios=[4, 4, 4, 4])
    assert cfg == config_from_text("tiny", img="800x1333", sr="1,1,1,1", task="backbone", mlp_ratios="4,4,4,4")
    assert resolve_config("tiny", img=512).img == (512, 512)
    # Enum fields hold members; a plain string that names one is accepted and stored as the member.
    half = resolve_config("b0", dtype="float16", attention=Attention.SDPA)
    assert half.dtype is DType.FLOAT16 and half.attention is Attention.SDPA
    assert half.to_dict()["dtype"] == "float16" and type(half.to_dict()["dtype"]) is str
    assert PvtConfig.from_dict(half.to_dict()) == half


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"img": "800x1333"},
            r"^img='800x1333' is text; pass a size: an int or \(height, width\) \(pvttrace.cli.parsing",
        ),
        ({"sr": "8,4,2,1"}, r"^sr='8,4,2,1' is text; pass a sequence of numbers"),
        ({"patch": "8"}, r"^patch='8' is text; pass a sequence of numbers"),
        ({"dtype": "float64"}, r"^dtype='float64' must be one of: float32, float16, bfloat16$"),
        ({"attention": 3}, r"^attention=3 must be a string$"),
    ],
)
def test_typed_api_refuses_command_line_text(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config("tiny", **overrides)  # type: ignore[arg-type]


def test_single_patch_value_sets_stage_one_stride() -> None:
    assert resolve_config("tiny", patch=8).patch == (8, 2, 2, 2)
    assert resolve_config("tiny", patch=(4, 2, 2, 1)).patch == (4, 2, 2, 1)
    assert config_from_text("tiny", patch="8").patch == (8, 2, 2, 2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"img": "0"}, r"img=0x0 must have a positive height and width"),
        ({"img": "abc"}, r"img='abc' must be a size such as 224 or 800x1333"),
        ({"batch": 0}, r"batch=0 must be a positive integer"),
        ({"sr": "8,4,2"}, r"sr_ratios=8,4,2 has 3 value\(s\) but dims has 4 stage\(s\)"),
        ({"sr": "8,4,x,1"}, r"sr_ratios='8,4,x,1' must be a comma-separated list of integers"),
        ({"heads": "1,2,3,8"}, r"dims\[2\]=320 is not divisible by heads\[2\]=3"),
        ({"sr": "8,4,2,2"}, r"sr_ratios\[3\]=2 must be 1 for PVT v1 with task=cls: the class token"),
        ({"img": "16"}, r"img=16x16 is too small for sr_ratios\[0\]=8: stage 1's 4x4 grid"),
        ({"img": "8", "sr": "1,1,1,1"}, r"img=8x8 is too small for the pyramid: stage 3 gets a 1x1 input"),
        ({"dtype": "float64"}, r"dtype='float64' must be one of: float32, float16, bfloat16"),
        ({"task": "seg"}, r"task='seg' must be one of: cls, backbone"),
        ({"linear_sra": True}, r"linear_sra=True needs PVT v2"),
        ({"depths": "2,0,2,2"}, r"depths=2,0,2,2 must hold positive values"),
        ({"mlp_ratios": "8,8,nan,4"}, r"must hold finite numbers"),
    ],
)
def test_each_rule_has_a_one_line_message(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        config_from_text("tiny", **overrides)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_v1_backbone_allows_stage_four_reduction() -> None:
    assert resolve_config("tiny", task="backbone", sr=(8, 4, 2, 2)).sr_ratios == (8, 4, 2, 2)


def test_geometry_follows_official_floor_and_ceil() -> None:
    v1 = [g.hw for g in resolve_config("tiny", img=230).geometry()]
    v2 = [g.hw for g in resolve_config("b0", img=230).geometry()]
    assert v1 == [(57, 57), (28, 28), (14, 14), (7, 7)]
    assert v2 == [(58, 58), (29, 29), (15, 15), (8, 8)]
    det = resolve_config("b2", img=(800, 1333), task="backbone").geometry()
    assert [g.hw for g in det] == [(200, 334), (100, 167), (50, 84), (25, 42)]
    assert [g.kv_tokens for g in det] == [1025, 1025, 1050, 1050]


def test_token_and_key_counts_at_224() -> None:
    tiny = get_variant("tiny").geometry()
    assert [g.tokens for g in tiny] == [3136, 784, 196, 50]
    assert [g.kv_tokens for g in tiny] == [49, 49, 49, 50]
    assert [g.kv_tokens for g in get_variant("b2-li").geometry()] == [49] * 4
    big = resolve_config("b2", img=(1280, 800)).geometry()
    assert [g.tokens for g in big] == [64000, 16000, 4000, 1000]
    assert [g.kv_tokens for g in big] == [1000] * 4


def test_non_divisible_sizes_warn_not_fail() -> None:
    cfg = resolve_config("b2", img=230)
    assert any("not divisible by patch stride 4" in w for w in cfg.warnings)
    assert any("not divisible by sr_ratio 4" in w for w in cfg.warnings)
    assert get_variant("tiny").warnings == ()


def test_dict_round_trip() -> None:
    cfg = resolve_config("b2-li", img=(512, 640), batch=3, dtype="bfloat16")
    data = cfg.to_dict()
    assert data["img"] == [512, 640]
    assert data["mlp_ratios"] == [8, 8, 4, 4]
    assert PvtConfig.from_dict(data) == cfg


def test_from_dict_rejects_bad_content() -> None:
    data = get_variant("tiny").to_dict()
    with pytest.raises(ConfigError, match="unknown field"):
        PvtConfig.from_dict({**data, "bogus": 1})
    with pytest.raises(ConfigError, match="missing field"):
        PvtConfig.from_dict({k: v for k, v in data.items() if k != "dims"})
    with pytest.raises(ConfigError, match="must be a list of numbers"):
        PvtConfig.from_dict({**data, "dims": "64"})


def test_parse_img() -> None:
    assert parse_img("224") == (224, 224)
    assert parse_img("800x1333") == (800, 1333)
