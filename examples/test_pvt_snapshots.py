"""Example: keep shape snapshots of your PVT configurations in your own test suite.

pvttrace's pytest plugin registers itself when pvttrace is installed and provides the
``pvt_snapshot`` fixture. Write the snapshots once, review and commit them:

    pytest tests/test_pvt_snapshots.py --pvttrace-update    # writes tests/snapshots/*.json next to this file

From then on the tests fail, with a report naming stages and ops, as soon as a change alters a
shape, a token count or a cost. Refresh deliberately with ``--pvttrace-update`` again. The same
files can be checked without pytest: ``pvttrace snapshot check tests/snapshots/``
(``github-actions-snapshot.yml`` runs both in CI).
"""

from __future__ import annotations

import pytest

from pvttrace.config import PvtConfig, resolve_config
from pvttrace.pytest_plugin import PvtSnapshot

CONFIGS: dict[str, PvtConfig] = {
    "b0-224": resolve_config("b0"),
    "b2-800x1333-backbone": resolve_config("b2", img=(800, 1333), task="backbone"),
    # A modified model: keys/values reduced less in stages 1-2 (the configuration your branch ships).
    "b2-sr-4-2-1-1-512": resolve_config("b2", img=512, sr=(4, 2, 1, 1), task="backbone"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shapes_match_the_snapshot(pvt_snapshot: PvtSnapshot, name: str) -> None:
    pvt_snapshot(CONFIGS[name], f"snapshots/{name}.json")


def test_detection_backbone_stays_within_budget(pvt_snapshot: PvtSnapshot) -> None:
    # Same file as above (traced once per session); budgets are checked on top of the shapes.
    pvt_snapshot(
        CONFIGS["b2-800x1333-backbone"],
        "snapshots/b2-800x1333-backbone.json",
        max_macs="150G",
        max_params="30M",
        max_attention_map="300MiB",
    )
