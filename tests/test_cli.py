"""The command line: output, formats, filters, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import invoke

from pvttrace.cli import app


def test_run_prints_the_stage_one_flow() -> None:
    code, out, _ = invoke("run", "--variant", "tiny", "--img", "224", "--width", "140")
    assert code == 0
    for text in (
        "1,932,911,616",
        "13,229,288",
        "[1, 3136, 64]",
        "[1, 1, 3136, 64]",
        "[1, 64, 7, 7]",
        "[2, 1, 1, 49, 64]",
        "[1, 1, 3136, 49]",
        "[1, 64, 56, 56]",
        "scores q@k^T",
        "SR conv",
        "split heads",
        "merge heads",
        "blocks 0-1 (x2 identical)",
        "convention: macs = multiply-accumulates",
    ):
        assert text in out, text


def test_json_has_the_documented_fields_and_is_byte_stable() -> None:
    code, first, _ = invoke("run", "--variant", "b0", "--format", "json")
    _, second, _ = invoke("run", "--variant", "b0", "--format", "json")
    assert code == 0 and first == second and first.endswith("}\n")
    doc = json.loads(first)
    assert doc["schema"] == "pvttrace.trace/1"
    assert doc["config"]["img"] == [224, 224]
    assert doc["totals"]["params"] == 3666760 and doc["totals"]["macs"] == 566065664
    assert doc["totals"]["flops"] == 2 * 566065664
    assert {"param_bytes", "macs", "flops", "params"} <= set(doc["totals"])
    stage_fields = {
        "index",
        "hw",
        "tokens",
        "kv_tokens",
        "dim",
        "heads",
        "sr_ratio",
        "macs",
        "attention_macs",
        "attention_map_bytes",
    }
    assert stage_fields <= set(doc["stages"][0])
    op_fields = {
        "index",
        "module",
        "op",
        "kind",
        "label",
        "inputs",
        "output",
        "dtype",
        "macs",
        "flops",
        "out_bytes",
        "alloc_bytes",
        "view",
        "source",
    }
    assert op_fields <= set(doc["ops"][0])
    assert list(doc) == sorted(doc)


def test_markdown_and_filters() -> None:
    code, out, _ = invoke("run", "--format", "markdown", "--stage", "2", "--kind", "sr_conv,matmul")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| ") and "block2." in line]
    assert len(rows) == 2 * 3  # two blocks x (SR conv, scores, attention@v)
    assert all("block2." in r for r in rows)


def test_all_lists_every_op() -> None:
    code, out, _ = invoke("run", "--variant", "b0", "--all", "--width", "160")
    assert code == 0
    assert "block1.1.attn.sr" in out and "identical" not in out


@pytest.mark.parametrize("variant", ["tiny", "b2"])
def test_backbone_at_detection_size(variant: str) -> None:
    code, out, err = invoke("run", "--variant", variant, "--img", "800x1333", "--task", "backbone", "--width", "200")
    assert code == 0
    assert "backbone" in out
    maps = ["[1, 64, 200,", "[1, 128, 100,", "[1, 320, 50,", "[1, 512, 25,"]
    assert all(m in out for m in maps)
    assert "warning:" in err  # 1333 is not divisible by 4


def test_modules_view_uses_torchinfo() -> None:
    code, out, _ = invoke("run", "--variant", "b0", "--modules")
    assert code == 0
    assert "Total params: 3,666,760" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--img", "0"], "img=0x0 must have a positive height and width"),
        (["run", "--img", "-5"], "img='-5' must be a size"),
        (["run", "--batch", "0"], "batch=0 must be a positive integer"),
        (["run", "--batch", "abc"], "Invalid value for '--batch'"),
        (["run", "--sr", "8,4,2"], "sr_ratios=8,4,2 has 3 value(s) but dims has 4 stage(s)"),
        (["run", "--dims", "64,128,320,500"], "dims[3]=500 is not divisible by heads[3]=8"),
        (["run", "--variant", "tinyy"], "did you mean 'tiny'"),
        (["run", "--sr", "8,4,2,2"], "the class token makes"),
        (["run", "--img", "16"], "too small"),
        (["run", "--kind", "bogus"], "kind='bogus' is not an op kind"),
        (["run", "--stage", "7"], "stage=7 must be between 1 and 4"),
        (["run", "--format", "xml"], "Invalid value for '--format'"),
        (["run", "--bogus"], "No such option: --bogus"),
        (["run", "--linear-sra"], "linear_sra=True needs PVT v2"),
        (["run", "--dtype", "int8"], "dtype='int8' must be one of"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, out, err = invoke(*args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err + out


def test_version() -> None:
    from pvttrace import __version__

    code, out, _ = invoke("--version")
    assert code == 0 and out == f"pvttrace {__version__}\n"


def test_every_command_has_help() -> None:
    import typer.main

    group = typer.main.get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    assert "run" in commands
    for name, command in commands.items():
        assert command.help, f"{name} is missing its help"
        code, out, _ = invoke(name, "--help")
        assert code == 0 and "Usage" in out


def test_help_does_not_import_torch() -> None:
    probe = (
        "import sys\n"
        "from pvttrace.cli import app\n"
        "import typer.main\n"
        "group = typer.main.get_command(app)\n"
        "for args in (['--help'], *([name, '--help'] for name in group.commands)):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, (args, exit.code)\n"
        "print('torch' in sys.modules, 'pvttrace.tracing.recorder' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False False"


def test_every_command_is_in_the_table_of_the_modules_that_declare_them() -> None:
    import typer.main

    from pvttrace.cli import COMMAND_MODULES

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert list(commands) == ["diff", "fit", "formula", "run", "variants", "sweep", "snapshot"]
    assert {name: command.callback.__module__ for name, command in commands.items()} == {
        name: f"pvttrace.cli.{module}" for name, module in COMMAND_MODULES.items()
    }


def test_a_named_command_builds_only_its_own_module_and_prints_the_same_help() -> None:
    """``pvttrace run ...`` registers run's module alone (not sweep's, snapshot's ... nor their libraries); its help
    is the same as with every command registered."""
    probe = (
        "import contextlib, io, sys\n"
        "import typer.main\n"
        "from pvttrace.cli import command_app, main\n"
        "def help_of(call):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            call()\n"
        "        except SystemExit as exit:\n"
        "            assert exit.code == 0, exit.code\n"
        "    return out.getvalue()\n"
        "sys.argv = ['pvttrace', 'run', '--help']\n"
        "alone = help_of(main)\n"
        "print(sorted(typer.main.get_command(command_app(['run'])).commands))\n"
        "prefixes = ('pvttrace.cli.', 'pvttrace.snapshot', 'pvttrace.analyses')\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(prefixes))))\n"
        "full = command_app()\n"
        "print(len(typer.main.get_command(full).commands), help_of(lambda: full(['run', '--help'])) == alone)\n"
        "print('--variant' in alone)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [
        "['run', 'variants']",
        "pvttrace.cli.common pvttrace.cli.guard pvttrace.cli.options pvttrace.cli.parsing pvttrace.cli.run",
        "7 True",
        "True",
    ]


def test_python_dash_m_works() -> None:
    result = subprocess.run([sys.executable, "-m", "pvttrace", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("pvttrace ")


def test_unavailable_cuda_is_bad_input() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    code, _, err = invoke("run", "--device", "cuda")
    assert code == 2
    assert err == "error: device='cuda' is not available: this torch build sees no CUDA GPU (use meta or cpu)\n"


def test_variants_lists_every_preset_with_its_official_name() -> None:
    code, out, _ = invoke("variants", "--width", "100")
    assert code == 0
    rows = [
        line.split() for line in out.splitlines() if line.strip().startswith(("tiny", "small", "medium", "large", "b"))
    ]
    assert [r[0] for r in rows] == ["tiny", "small", "medium", "large", "b0", "b1", "b2", "b2-li", "b3", "b4", "b5"]
    assert rows[7][1:] == ["pvt_v2_b2_li", "v2", "64,128,320,512", "1,2,5,8", "3,4,6,3", "8,8,4,4", "8,4,2,1", "yes"]
    assert rows[10][5:7] == ["3,6,40,3", "4,4,4,4"]
