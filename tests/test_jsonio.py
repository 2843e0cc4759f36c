"""pvttrace.base.jsonio: the one JSON reader, typed-field validator and atomic writer (and no second copy)."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from pvttrace import snapshot
from pvttrace.base import jsonio
from pvttrace.base.errors import TraceFileError
from pvttrace.base.jsonio import Fields, json_int, json_shape, parse_json, read_json, write_text_atomic

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "pvttrace"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "f.json is empty"),
        ("  \n", "f.json is empty"),
        ('{"a": [1, 2', "f.json is truncated: the JSON ends early (line 1, column 12)"),
        ("nope", "f.json is not valid JSON (Expecting value at line 1, column 1)"),
        ('{"a": 1}\n{"b": 2}', "f.json is not valid JSON (Extra data at line 2, column 1)"),
        ('{"a": 1, "a": 2}', "f.json has the key 'a' twice in one object; JSON keeps only the last"),
        ("[" * 100_000 + "]" * 100_000, "f.json is not valid JSON (nested too deeply)"),
        ("9" * 5000, "f.json is not valid JSON (it holds a number of more than 4300 digits)"),
    ],
)
def test_parse_json_fails_in_one_line(text: str, message: str) -> None:
    with pytest.raises(TraceFileError) as failure:
        parse_json(text, origin="f.json")
    assert str(failure.value) == message


def test_parse_json_makes_strings_printable_and_read_json_names_the_file(tmp_path: pathlib.Path) -> None:
    assert parse_json('{"k\\u001b": ["\\u001b[31m", 2]}', origin="x") == {"k\\x1b": ["\\x1b[31m", 2]}
    path = tmp_path / "doc.json"
    path.write_text('{"schema": "x"}', encoding="utf-8")
    assert read_json(str(path)) == {"schema": "x"}
    with pytest.raises(TraceFileError, match=re.escape(f"{tmp_path / 'missing.json'} does not exist")):
        read_json(str(tmp_path / "missing.json"))
    with pytest.raises(TraceFileError, match=re.escape(f"{tmp_path} is a directory, not a trace file")):
        read_json(str(tmp_path), what="trace")


def test_fields_name_field_value_and_rule() -> None:
    op = Fields.of({"macs": "7", "view": 1, "output": [1, True], "label": None, "inputs": {}, "name": 3}, "ops[3]")
    failures = {
        "integer": (lambda: op.integer("macs"), "ops[3].macs='7' must be an integer"),
        "boolean": (lambda: op.boolean("view"), "ops[3].view=1 must be true or false"),
        "shape": (lambda: op.shape("output"), "ops[3].output=[1, True] must be a list of integers"),
        "array": (lambda: op.array("inputs"), "ops[3].inputs must be a list"),
        "string": (lambda: op.string("name"), "ops[3].name=3 must be a string"),
        "missing": (lambda: op.integer("stage"), "ops[3] has no field 'stage'"),
        "object": (lambda: Fields.of([], "budgets"), "budgets must be a JSON object"),
    }
    for name, (read, message) in failures.items():
        with pytest.raises(TraceFileError) as failure:
            read()
        assert str(failure.value) == message, name
    assert op.optional_string("label") is None and op.optional_integer("stage") is None
    assert Fields({"stage": 2, "dims": [1, 2]}, "x").optional_integer("stage") == 2
    assert json_int(7) == 7 and json_shape([1, 3]) == (1, 3) and json_shape((2,)) == (2,)
    with pytest.raises(TraceFileError, match=r"^totals.macs=1\.5 must be an integer$"):
        json_int(1.5, "totals.macs")
    with pytest.raises(TraceFileError, match=r"\.\.\.' must be a string$"):
        Fields({"s": ["x" * 200]}, "w").string("s")  # a long value is cut in the message


def test_atomic_writer_is_the_one_the_snapshot_package_exports(tmp_path: pathlib.Path) -> None:
    assert snapshot.write_text_atomic is jsonio.write_text_atomic
    assert snapshot.write_bytes_atomic is jsonio.write_bytes_atomic
    path = tmp_path / "a" / "b.txt"
    write_text_atomic(str(path), "one")
    write_text_atomic(str(path), "two")
    assert path.read_text() == "two" and sorted(p.name for p in path.parent.iterdir()) == ["b.txt"]


def _calls(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
        ):
            names.add(f"{node.func.value.id}.{node.func.attr}")
    return names


def test_one_reader_one_writer_one_markdown_row_and_each_schema_declared_once() -> None:
    once_only = {"os.replace", "tempfile.mkstemp", "json.loads", "json.load", "os.fsync"}
    schemas: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE))
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        if name != "base/jsonio.py":
            assert not (_calls(tree) & once_only), (name, _calls(tree) & once_only)
            assert "object_pairs_hook" not in text, name
        if name != "render/markdown.py":
            assert '"| " + ' not in text and "def _md_row" not in text, name
        for node in ast.walk(tree):
            target = node.targets[0] if isinstance(node, ast.Assign) else None
            if isinstance(target, ast.Name) and target.id.endswith("_SCHEMA"):
                schemas.setdefault(target.id, []).append(name)
    assert schemas == {
        "COVERAGE_SCHEMA": ["costs/coverage.py"],
        "DIFF_SCHEMA": ["analyses/diff.py"],
        "FORMULA_SCHEMA": ["analyses/formula.py"],
        "SNAPSHOT_SCHEMA": ["snapshot/data.py"],
        "SWEEP_SCHEMA": ["analyses/sweep.py"],
        "TRACE_SCHEMA": ["records.py"],
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{\n\t"a": ["b", 1],\r\n "c": {"d": null}\n}', {"a": ["b", 1], "c": {"d": None}}),  # the fast path
        ('{"a": "x\\u001by", "b": ["\\n"]}', {"a": "x\\x1by", "b": ["\\x0a"]}),  # escapes: every string cleaned
        ('{"a": "\x7f\u202e"}', {"a": "\\x7f\\u202e"}),  # raw unprintable characters: every string cleaned
    ],
)
def test_loads_strict_cleans_strings_on_both_paths(text: str, expected: object) -> None:
    assert jsonio.loads_strict(text) == expected


@pytest.mark.parametrize("text", ['{\n "a": 1,\n "a": 2\n}', '{"a": "\\n", "b": {"c": 1, "c": 2}}'])
def test_loads_strict_refuses_duplicate_keys_on_both_paths(text: str) -> None:
    with pytest.raises(TraceFileError, match=r"has the key '(a|c)' twice in one object"):
        jsonio.loads_strict(text)
