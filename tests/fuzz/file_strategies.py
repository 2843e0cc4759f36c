"""Hypothesis strategies for damaged snapshot and trace files, and the commands that read them.

A fuzzed file starts from one of the sandbox's valid documents (two snapshots and two traces of small
configurations, see :mod:`fuzz.harness`) and is damaged in one of these ways:

* random bytes; the valid text cut at a random byte; a few bytes flipped or deleted;
* one to three structural edits at random places of the JSON tree: a value replaced by one of another
  type (null, bools, strings, unicode, lists, objects, floats), by a huge or negative number (beyond
  int64, 5000-digit literals, ``NaN``, ``Infinity``, ``1e999``), by a deeply nested list (up to 100,000
  levels), or by a valid but extreme configuration value (8192x8192 images, batch 4096, 64-stage lists,
  4096-wide dims, a million blocks), or a stored count beyond int64 or a float; a key deleted, an unknown
  key added, a list element duplicated;
* another encoding (UTF-16, a UTF-8 BOM, Latin-1).

:func:`file_commands` pairs each file with a command that reads it: ``snapshot check`` (with
``--rtol``/``--limit``, sometimes ``--update``), ``diff`` against a valid file (every output format, and
``--plot``), or ``snapshot write`` onto it.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from fuzz.harness import seed_files

#: The name the fuzzed file gets in the sandbox.
FUZZED = "fuzzed.json"

_BASES = ("good.json", "one-stage.json", "good.json", "trace.json", "trace-one-stage.json")

_RAW = "\u0000raw{}\u0000"
"""Placeholder for a JSON fragment that ``json.dumps`` cannot produce (it is swapped in after dumping)."""

_RAW_FRAGMENTS = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1" + "0" * 5000,
    "-" + "9" * 4301,
    "1.0e-400",
    "[" * 100_000 + "]" * 100_000,
    "[" * 990 + "]" * 990,
    "{" * 50 + "}" * 50,
    '"\\ud800"',
    '"\\u0000"',
)

_EXTREME_CONFIG_VALUES: dict[str, tuple[Any, ...]] = {
    "img": ([8192, 8192], [1, 1], [0, 5], [10**12, 10**12], [33, 4097], 64, [224]),
    "batch": (4096, 10**20, 0, 2**63),
    "dims": (
        [4096, 4096, 4096, 4096],
        [8] * 64,
        [2**40, 8, 8, 8],
        [8.0, 16.0, 24.0, 32.0],
        [8.5, 16, 24, 32],
        [0, 10**400, 8, 8],
    ),
    "heads": ([64, 64, 64, 64], [1] * 64, [3, 1, 1, 1]),
    "depths": ([1] * 64, [10**6, 1, 1, 1], [64, 1, 1, 1]),
    "mlp_ratios": ([1e308, 1, 1, 1], [0.01, 1, 1, 1], [1] * 64, [4096, 1, 1, 1], [10**400, 1, 1, 1]),
    "sr_ratios": ([1] * 64, [64, 1, 1, 1], [0, 1, 1, 1]),
    "patch": ([1] * 64, [4, 1, 1, 1], [8192, 2, 2, 2]),
    "pos_size": ([1, 1], [10**10, 10**10], [8192, 8192]),
    "num_classes": (10**9, 2**62),
    "in_chans": (4096, 10**15),
    # Stored counts (ops, stages, totals): beyond int64 and beyond a float.
    "macs": (10**400, 2**64, -1),
    "params": (10**400, -(10**400)),
    "attention_map_bytes": (10**400,),
    "kv_tokens": (10**400, 0),
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every node (the root excluded); of long lists only the first two and the last element."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key in value:
            found.append((*prefix, key))
            found.extend(_paths(value[key], (*prefix, key)))
    elif isinstance(value, list):
        indices = range(len(value)) if len(value) <= 3 else (0, 1, len(value) - 1)
        for index in indices:
            found.append((*prefix, index))
            found.extend(_paths(value[index], (*prefix, index)))
    return found


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    node = document
    for key in path[:-1]:
        node = node[key]
    return node


_numbers = st.one_of(
    st.sampled_from(
        [0, -1, 1, 2, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400, -(10**400)]
    ),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, -0.0, 1e308, 5e-324, 1.0, 64.0]),
)

_other_types = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            "ünïcødé 🙂",
            "pvttrace.snapshot/1",
            "pvttrace.snapshot/2",
            "pvttrace.snapshot/0",
            "pvttrace.trace/1",
            "pvttrace.snapshot/01",
            "x" * 5000,
            "\u202e",
            "cls",
            "sdpa",
        ]
    ),
    st.lists(st.integers(-3, 9), max_size=5),
    st.lists(st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(-2, 2), max_size=3),
    st.just([]),
    st.just({}),
)


@st.composite
def _replacement(draw: st.DrawFn, key: Any) -> Any:
    branch = draw(st.integers(0, 9))
    if branch <= 2:
        return draw(_numbers)
    if branch <= 5:
        return draw(_other_types)
    if branch <= 7 and key in _EXTREME_CONFIG_VALUES:
        return draw(st.sampled_from(_EXTREME_CONFIG_VALUES[key]))
    return _RAW.format(draw(st.integers(0, len(_RAW_FRAGMENTS) - 1)))


@st.composite
def _edited_document(draw: st.DrawFn, base: str) -> bytes:
    document = json.loads(seed_files()[base])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(document, path), path[-1]
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "duplicate"]))
        if action == "replace":
            parent[key] = draw(_replacement(key))
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["bogus", "", "ünï", "schema2"]))] = draw(_other_types)
        elif isinstance(parent, list):
            parent.insert(key, parent[key])
        else:
            parent[key] = [parent[key], parent[key]]
    text = json.dumps(
        document,
        sort_keys=draw(st.booleans()),
        indent=draw(st.sampled_from([None, 2])),
        ensure_ascii=draw(st.booleans()),
        allow_nan=True,
    )
    for index, fragment in enumerate(_RAW_FRAGMENTS):
        text = text.replace(json.dumps(_RAW.format(index), ensure_ascii=False), fragment)
        text = text.replace(json.dumps(_RAW.format(index)), fragment)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def _byte_damage(draw: st.DrawFn, base: str) -> bytes:
    data = bytearray(seed_files()[base])
    kind = draw(st.sampled_from(["truncate", "truncate", "flip", "delete"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        else:
            del data[at : at + draw(st.integers(1, 40))]
    return bytes(data)


@st.composite
def _reencoded(draw: st.DrawFn, base: str) -> bytes:
    text = seed_files()[base].decode()
    encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-8-sig", "latin-1", "utf-32"]))
    if encoding == "latin-1":
        text = text.replace('"b0"', '"b0\u00e9"').replace('"tiny"', '"tiny\u00e9"')
    return text.encode(encoding)


@st.composite
def fuzzed_files(draw: st.DrawFn) -> bytes:
    """The bytes of one damaged snapshot or trace file."""
    base = draw(st.sampled_from(_BASES))
    kind = draw(st.sampled_from(["edit"] * 6 + ["bytes", "damage", "damage", "encoding"]))
    if kind == "edit":
        return draw(_edited_document(base))
    if kind == "damage":
        return draw(_byte_damage(base))
    if kind == "encoding":
        return draw(_reencoded(base))
    return draw(st.binary(max_size=300))


@st.composite
def file_commands(draw: st.DrawFn) -> list[str]:
    """A command that reads (and may write) the fuzzed file."""
    kind = draw(st.sampled_from(["check"] * 5 + ["update", "update", "diff", "diff", "write"]))
    if kind in ("check", "update"):
        args = ["snapshot", "check", FUZZED]
        if draw(st.booleans()):
            args += ["--rtol", draw(st.sampled_from(["0", "0.5", "1e-9"]))]
        if draw(st.booleans()):
            args += ["--limit", draw(st.sampled_from(["0", "2"]))]
        if draw(st.integers(0, 4)) == 0:
            args.append(draw(st.sampled_from(["good.json", "stale.json", "snaps"])))
        return [*args, "--update"] if kind == "update" else args
    if kind == "diff":
        other = draw(st.sampled_from(["good.json", "trace.json", "one-stage.json"]))
        pair = [FUZZED, other] if draw(st.booleans()) else [other, FUZZED]
        formats = [
            [],
            ["--ops"],
            ["-f", "json"],
            ["--ops", "--changed-only"],
            ["-f", "markdown", "--ops"],
            ["-f", "csv"],
            ["--plot", "plot.svg"],
        ]
        return ["diff", *pair, *draw(st.sampled_from(formats))]
    args = ["snapshot", "write", FUZZED, "--variant", "b0", "--depths", "1,1,1,1", "--img", "32"]
    return [*args, "--force"] if draw(st.booleans()) else args
