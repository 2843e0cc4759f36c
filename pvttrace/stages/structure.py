"""Stages of any model, read off the data: where the feature-map resolution changes, and the blocks between.

Module names say little about structure outside the PVT layouts (Swin's ``layers.N``, ResNet's
``layerN``, a user's ``levels.N.units.M``), so a model without a built-in config gets its stages
from what its forward did:

* **Blocks** are the repeated units of a model: the innermost indexed modules (``*.N``) of a
  container holding several modules of one type (or one, where the same container pattern holds
  several elsewhere: a stage of depth 1). A list whose members each run at a different
  resolution (Twins' ``pos_block.N``, ``patch_embeds.N``) is one module per stage, not blocks.
* **Resolution** of an op comes from its output: ``[B, N, C]`` tokens, or a 4-D map whose
  spatial dims are the two that are not the channel count -- the width of the latest op with
  weights (conv out-channels, linear out-features, norm width), so Swin's channels-last
  ``[B, 28, 28, 192]`` reads 28x28. Outputs whose batch is not the input's (windows) tell nothing.
  Tokens map back to the grid they were flattened from (``N = H*W`` plus up to 8 class/register tokens).
* **Stages** are runs of consecutive blocks at one resolution; an isotropic model (ViT, Mixer)
  is one stage. Ops between two stages belong to the earlier one until an op's output is at the
  next stage's resolution (the downsampling), and to the next one from there. Ops before the
  first stage at another resolution (ResNet's 112x112 conv) are the **stem** (stage ``None``),
  ops after the last stage once the map is gone (pooling, classifier) the **head**.

Pure data: no torch, rich or typer.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from pvttrace.records import LAYOUT_KINDS, OpKind, OpRecord, Shape

__all__ = ["StageGeometry", "Structure", "derive_structure"]

_INDEXED = re.compile(r"^(.*)\.(\d+)$")
_WEIGHTED = frozenset({OpKind.CONV, OpKind.PATCH_EMBED, OpKind.SR_CONV, OpKind.DW_CONV, OpKind.LINEAR, OpKind.NORM})
#: Attention internals ([B, heads, N, N'] scores and their products) are never feature maps.
_NOT_MAPS = frozenset({OpKind.MATMUL, OpKind.SDPA, OpKind.SOFTMAX, OpKind.MHA})
#: Class, distillation and register tokens a transformer prepends to its patch tokens.
_MAX_EXTRA_TOKENS = 8

Key = tuple[int, int]
"""A resolution: the grid (H, W), or (0, N) for tokens whose grid is unknown."""


@dataclass(frozen=True, slots=True)
class StageGeometry:
    """What the data says about one stage: its grid, token count, channels and depth."""

    index: int
    hw: tuple[int, int]
    """(0, 0) when the stage has only tokens of unknown grid."""
    tokens: int
    """Tokens per image of the stage's ``[B, N, C]`` activations; 0 when it has none (a convnet)."""
    channels: int
    depth: int


@dataclass(frozen=True, slots=True)
class Structure:
    """Ops re-stamped with derived stage and block, the stages' geometry, and each module's stage."""

    ops: tuple[OpRecord, ...]
    stages: tuple[StageGeometry, ...]
    module_stages: dict[str, int | None]
    """Stage of every module all of whose ops ran in one stage (None: stem or head)."""


def _parent_pattern(parent: str) -> str:
    return re.sub(r"\.\d+(?=\.|$)", ".*", parent)


def _block_paths(module_types: Mapping[str, str], used: set[str]) -> list[str]:
    """Innermost indexed modules that are repeated units (see the module docstring)."""
    children: dict[str, list[str]] = {}
    for path in module_types:
        match = _INDEXED.match(path)
        if match and path in used:
            children.setdefault(match.group(1), []).append(path)
    repeated: dict[str, str] = {}  # parent -> the type its members share
    for parent, paths in children.items():
        types = {module_types[p] for p in paths}
        if len(types) == 1:
            repeated[parent] = types.pop()
    multi = {(_parent_pattern(p), t) for p, t in repeated.items() if len(children[p]) > 1}
    candidates = [
        path
        for parent, kind in repeated.items()
        if len(children[parent]) > 1 or (_parent_pattern(parent), kind) in multi
        for path in children[parent]
    ]
    # The innermost ones: no other candidate lies inside them.
    enclosing = {prefix for path in candidates for prefix in _prefixes(path)}
    return [p for p in candidates if p not in enclosing]


def _inside(module: str, path: str) -> bool:
    return module == path or module.startswith(path + ".")


class _Reader:
    """Reads each op's resolution, tracking the channel count and the grids tokens come from."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.channels = 0
        self.grids: dict[int, Key] = {}

    def read(self, op: OpRecord) -> Key | None:
        out = op.output
        if op.kind in _WEIGHTED and len(op.inputs) >= 2:
            weight = op.inputs[1]
            if op.kind == OpKind.NORM:
                self.channels = weight[0] if len(weight) == 1 else self.channels
            elif weight:
                self.channels = weight[0]
        if not out or out[0] != self.batch:
            return None
        if len(out) == 4:
            if op.kind in _NOT_MAPS:
                return None
            grid = _spatial(out, self.channels, op.kind)
            if grid is None or (min(grid) == 1 and max(grid) > 1):
                # [B, 1 head, N, d] read as a 1 x N map: a single head's tokens, not a grid.
                return None
            if op.kind in LAYOUT_KINDS:
                # A reshape says where dims go, not what they mean: trust it only for a grid already seen.
                return grid if self.grids.get(grid[0] * grid[1]) == grid else None
            self.grids[grid[0] * grid[1]] = grid
            return grid
        if len(out) == 3 and out[2] == self.channels:
            n = out[1]
            for extra in range(_MAX_EXTRA_TOKENS + 1):
                if n - extra in self.grids:
                    return self.grids[n - extra]
            return (0, n)
        return None


def _spatial(out: Shape, channels: int, kind: OpKind) -> Key | None:
    """The (H, W) of a 4-D activation: the two dims that are not the channel count."""
    if kind in (OpKind.CONV, OpKind.PATCH_EMBED, OpKind.DW_CONV) or out[1] == channels:
        return (out[2], out[3])
    if out[3] == channels:
        return (out[1], out[2])
    return None


def _same_or_unknown(key: Key | None, stage_key: Key | None) -> bool:
    """Before stage 1: an op that is no map of another resolution (tokens of unknown grid are none)."""
    return key is None or key == stage_key or key[0] == 0


def _stage_of_op(
    ops: Sequence[OpRecord], keys: Sequence[Key | None], blocks: Sequence[tuple[int, int, int]]
) -> list[int | None]:
    """Stage of every op, given the blocks' (first op, last op, stage) in execution order."""
    stage_of: list[int | None] = [None] * len(ops)
    stage_key: dict[int, Key | None] = {}
    for first, last, stage in blocks:
        for i in range(first, last + 1):
            stage_of[i] = stage
        stage_key.setdefault(stage, keys[last])
    # Between blocks: the earlier stage until an op reaches the next stage's resolution.
    for (_, prev_last, prev_stage), (next_first, _, next_stage) in itertools.pairwise(blocks):
        current = prev_stage
        for i in range(prev_last + 1, next_first):
            if current != next_stage and keys[i] is not None and keys[i] == stage_key[next_stage]:
                current = next_stage
                # What the downsampling module did before its output reached the new resolution
                # (Swin's pad and reshape to 2x2 patches) belongs to it.
                downsampler = ops[i].module.rpartition(".")[0]
                j = i - 1
                while j > prev_last and downsampler and _inside(ops[j].module, downsampler):
                    stage_of[j] = next_stage
                    j -= 1
            stage_of[i] = current
    first_block, last_block = blocks[0][0], blocks[-1][1]
    # Before the first block: stage 1 back to the first op on a map of another resolution (the stem
    # ends there); a handful of tokens (ViT's class token) is no map.
    i = first_block - 1
    while i >= 0 and _same_or_unknown(keys[i], stage_key[blocks[0][2]]):
        stage_of[i] = blocks[0][2]
        i -= 1
    # After the last block: the last stage while the output is still at its resolution.
    last_stage = blocks[-1][2]
    for i in range(last_block + 1, len(ops)):
        if keys[i] != stage_key[last_stage] and not (keys[i] is None and len(ops[i].output) >= 3):
            break
        stage_of[i] = last_stage
    return stage_of


def derive_structure(ops: Sequence[OpRecord], module_types: Mapping[str, str], batch: int) -> Structure | None:
    """Stages and blocks of a model from its op records and module types (path -> type name).

    None when the model has no repeated blocks (then it has no stages to show).
    """
    reader = _Reader(batch)
    keys: list[Key | None] = []
    channels: list[int] = []  # the channel count as of each op
    first_op: dict[str, int] = {}  # module path -> index of its first op, in order of first ops
    last_op: dict[str, int] = {}
    for i, op in enumerate(ops):
        keys.append(reader.read(op))
        channels.append(reader.channels)
        first_op.setdefault(op.module, i)
        last_op[op.module] = i
    enclosing = {module: _prefixes(module) for module in first_op}
    used = set(first_op).union(*enclosing.values())
    # The first and last op inside each candidate block, from its modules' (a pass per block made this
    # quadratic: most of a deep model's trace). Modules come in order of their first ops, so a block's
    # first module holds its first op.
    block_paths = _block_paths(module_types, used)
    wanted = set(block_paths)
    starts: dict[str, int] = {}
    ends: dict[str, int] = {}
    for module, first in first_op.items():
        last = last_op[module]
        for path in (module, *enclosing[module]):
            if path in wanted:
                starts.setdefault(path, first)
                ends[path] = max(ends.get(path, last), last)
    spans = sorted((starts[path], ends[path], path) for path in block_paths if path in starts)
    # One module per stage (pos_block.N, patch_embeds.N) is not a list of blocks.
    by_parent: dict[str, list[tuple[int, int, str]]] = {}
    for span in spans:
        by_parent.setdefault(span[2].rsplit(".", 1)[0], []).append(span)
    per_stage = {
        parent
        for parent, members in by_parent.items()
        if len(members) > 1 and len({_block_key(keys, m) for m in members}) == len(members)
    }
    spans = [s for s in spans if s[2].rsplit(".", 1)[0] not in per_stage]
    # Nested spans (a block list inside another block's forward) keep the outer one.
    spans = [s for s in spans if not any(o is not s and o[0] <= s[0] and s[1] <= o[1] and o[2] != s[2] for o in spans)]
    if not spans:
        return None
    blocks: list[tuple[int, int, int]] = []
    geometry: list[StageGeometry] = []
    previous: Key | None = None
    for first, last, _ in spans:
        key = _block_key(keys, (first, last, ""))
        if not blocks or key != previous:
            geometry.append(StageGeometry(len(geometry) + 1, (0, 0), 0, 0, 0))
        blocks.append((first, last, len(geometry)))
        previous = key
        current = geometry[-1]
        tokens = next(
            (op.output[1] for op in reversed(ops[first : last + 1]) if _is_tokens(op, batch, channels[op.index])), 0
        )
        hw = key if key is not None and key[0] else current.hw
        geometry[-1] = replace(
            current, hw=hw, tokens=tokens or current.tokens, channels=channels[last], depth=current.depth + 1
        )
    stage_of = _stage_of_op(ops, keys, blocks)
    block_of: list[int | None] = [None] * len(ops)
    counts: dict[int, int] = {}
    for first, last, stage in blocks:
        for i in range(first, last + 1):
            block_of[i] = counts.get(stage, 0)
        counts[stage] = counts.get(stage, 0) + 1
    restamped = tuple(
        op if op.stage == stage and op.block == block else op.with_structure(stage=stage, block=block)
        for op, stage, block in zip(ops, stage_of, block_of, strict=True)
    )
    return Structure(restamped, tuple(geometry), _module_stages(restamped))


def _is_tokens(op: OpRecord, batch: int, channels: int) -> bool:
    out = op.output
    return len(out) == 3 and out[0] == batch and out[2] == channels


def _block_key(keys: Sequence[Key | None], span: tuple[int, int, str]) -> Key | None:
    """A block's resolution: that of its last op with one (its output)."""
    first, last, _ = span
    return next((keys[i] for i in range(last, first - 1, -1) if keys[i] is not None), None)


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))] if path else []


def _module_stages(ops: Sequence[OpRecord]) -> dict[str, int | None]:
    """Stage of every module path (the ops' modules and their enclosing modules) whose ops ran in one stage.

    Stages are gathered per distinct module first, then added to its enclosing paths: a deep model issues
    several ops per module, and splitting every op's path into its prefixes was most of this.
    """
    by_module: dict[str, set[int | None]] = {}
    for op in ops:
        by_module.setdefault(op.module, set()).add(op.stage)
    seen: dict[str, set[int | None]] = {}
    for module, stages in by_module.items():
        # Innermost first. A path's stages always include those of every path inside it, so once a path
        # holds these stages, so does every path around it.
        path = module
        while True:
            held = seen.setdefault(path, set())
            if stages <= held:
                break
            held |= stages
            if "." not in path:
                break
            path = path.rpartition(".")[0]
    return {path: stages.pop() for path, stages in seen.items() if len(stages) == 1}
