"""Where a configuration leaves the official code: what it would fail on, and what pvttrace extends.

Pure data (no torch, rich or typer). pvttrace traces every valid configuration; the official code
(``whai362/PVT``: ``classification/pvt.py``, ``detection/pvt.py``, ``*/pvt_v2.py``) does not run
all of them, and some options have no official counterpart. This module says which, so that
commands can warn and JSON can carry the answer (reference ``pvt.md`` sections 6 and 8).

* v1 adds a stage's positional table without resizing whenever the stage's token count equals
  stage 1's table size (``_get_pos_embed`` compares with ``patch_embed1.num_patches``). When the
  stage's own table has another size, the add fails (``tiny`` at 448: stage 2 has 3136 tokens, its
  table 784 slots); pvttrace resizes the table instead. When the sizes agree but the grids do not
  (112x448: a 56x56 table on a 28x112 grid), the official code runs with the table laid out wrongly.
* The v1 detection/segmentation backbone asserts that each stage's nominal input
  (``img_size // 2**(i+1)``) divides by its patch stride.
* Patch strides: the official v1 code takes only stage 1's ``patch_size`` (later strides are 2);
  the official v2 code and timm hard-code 7x7/4 and 3x3/2 patch embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pvttrace.config import PvtConfig

__all__ = ["Fidelity", "fidelity", "official_warnings"]

#: Strides of the official patch embeddings after stage 1 (both versions).
_LATER_STRIDE = 2
#: Stage 1's stride in the official v2 code (7x7 conv, stride 4); v1 takes it from ``patch_size``.
_V2_FIRST_STRIDE = 4


@dataclass(frozen=True, slots=True)
class Fidelity:
    """How a configuration relates to the official code."""

    official_failures: tuple[str, ...]
    """Why the official code would raise on this configuration (empty: it runs)."""
    departures: tuple[str, ...]
    """Where the official code runs but computes something else that pvttrace corrects."""
    extensions: tuple[str, ...]
    """Options pvttrace builds that have no official counterpart."""

    @property
    def official_runs(self) -> bool:
        """True when the official code would run this configuration."""
        return not self.official_failures

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``fidelity`` field of a trace document)."""
        return {
            "official_runs": self.official_runs,
            "official_failures": list(self.official_failures),
            "departures": list(self.departures),
            "extensions": list(self.extensions),
        }

    def notes(self) -> tuple[str, ...]:
        """One line per finding, for headers."""
        return (
            tuple(f"official code would fail: {m}" for m in self.official_failures)
            + tuple(f"official code differs: {m}" for m in self.departures)
            + tuple(f"extension, no official counterpart: {m}" for m in self.extensions)
        )


def fidelity(cfg: PvtConfig) -> Fidelity:
    """Compare ``cfg`` with what the official code builds and runs."""
    return Fidelity(official_failures(cfg), _departures(cfg), _extensions(cfg))


def official_warnings(cfg: PvtConfig) -> list[str]:
    """Warnings for the config: where the official code would fail or compute something else.

    Extensions are not warned about (the user asked for them); headers and JSON name them.
    """
    return [f"the official code would fail here: {m}" for m in official_failures(cfg)] + [
        f"the official code differs here: {m}" for m in _departures(cfg)
    ]


def official_failures(cfg: PvtConfig) -> tuple[str, ...]:
    """Reasons the official code would raise on ``cfg``."""
    failures: list[str] = []
    if cfg.version != 1:
        return ()
    for index, (h, w), (gh, gw), skipped in _pos_checks(cfg):
        if skipped and gh * gw != h * w:
            failures.append(
                f"stage {index} has {h * w} tokens, equal to stage 1's table size, so the official v1 code adds "
                f"stage {index}'s {gh * gw}-slot positional table without resizing it and the add fails; "
                f"pvttrace resizes the {gh}x{gw} table to {h}x{w}"
            )
    if cfg.task == "backbone":
        size_h, size_w = cfg.pos_size
        for i, stride in enumerate(cfg.patch):
            in_h, in_w = (size_h, size_w) if i == 0 else (size_h // 2 ** (i + 1), size_w // 2 ** (i + 1))
            if in_h % stride or in_w % stride:
                failures.append(
                    f"the official v1 backbone asserts that stage {i + 1}'s nominal input {in_h}x{in_w} "
                    f"(from pos_size {size_h}x{size_w}) divides by its patch stride {stride}"
                )
                break
    return tuple(failures)


def _departures(cfg: PvtConfig) -> tuple[str, ...]:
    if cfg.version != 1:
        return ()
    return tuple(
        f"stage {index}: the official v1 code lays stage {index}'s {gh}x{gw} positional table over the "
        f"{h}x{w} grid without resizing it (same token count); pvttrace resizes it"
        for index, (h, w), (gh, gw), skipped in _pos_checks(cfg)
        if skipped and gh * gw == h * w and (gh, gw) != (h, w)
    )


def _pos_checks(cfg: PvtConfig) -> list[tuple[int, tuple[int, int], tuple[int, int], bool]]:
    """Per v1 stage: (1-based index, grid, table grid, whether the official code skips the resize)."""
    gh1, gw1 = cfg.pos_grid(0)
    return [
        (geo.index, geo.hw, cfg.pos_grid(geo.index - 1), geo.hw[0] * geo.hw[1] == gh1 * gw1) for geo in cfg.geometry()
    ]


def _extensions(cfg: PvtConfig) -> tuple[str, ...]:
    later = cfg.patch[1:]
    strides = ",".join(map(str, cfg.patch))
    if cfg.version == 2 and (cfg.patch[0] != _V2_FIRST_STRIDE or any(s != _LATER_STRIDE for s in later)):
        message = (
            f"patch strides {strides}: the official v2 code and timm fix 7x7/4 then 3x3/2 patch embeddings; "
            "pvttrace builds a (2P-1)x(2P-1) conv with stride P and padding P-1 per stride P"
        )
        return (message,)
    if cfg.version == 1 and any(s != _LATER_STRIDE for s in later):
        return (f"patch strides {strides}: the official v1 code takes only stage 1's patch_size (later strides 2)",)
    return ()
