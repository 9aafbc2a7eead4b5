"""Which agents no live Ray node can run, and the one line that says what to offer (issue 20)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("ray", reason="ray is not installed: pip install 'agentos[ray]'")

from agentos.runners.ray_runner import unplaceable


def node(alive: bool = True, **resources: float) -> dict[str, Any]:
    return {"Alive": alive, "Resources": {"CPU": 2.0, **resources}}


@pytest.mark.parametrize(
    ("need", "nodes", "line"),
    [
        pytest.param({"agentos": 1.0}, [node(agentos=2)], None, id="fits"),
        pytest.param(
            {"agentos": 1.0, "claude": 1.0}, [node(agentos=2), node(agentos=2, claude=1)], None, id="one-fits"
        ),
        pytest.param(
            {"agentos": 1.0, "claude": 1.0},
            [node(agentos=2), node(agentos=2, codex=1)],
            """no Ray node offers {"claude": 1}: start a worker with --resources '{"agentos": 1, "claude": 1}'""",
            id="missing-resource",
        ),
        pytest.param(
            {"agentos": 1.0, "claude": 1.0},
            [node(agentos=2), node(False, agentos=2, claude=1)],
            """no Ray node offers {"claude": 1}: start a worker with --resources '{"agentos": 1, "claude": 1}'""",
            id="only-a-dead-node-offers-it",
        ),
        pytest.param(
            {"agentos": 1.0, "claude": 1.0},
            [node(agentos=2), node(claude=1)],
            """no Ray node offers {"agentos": 1, "claude": 1} together: """
            """start a worker with --resources '{"agentos": 1, "claude": 1}'""",
            id="not-on-the-same-node",
        ),
        pytest.param(
            {"agentos": 1.0, "gpu": 0.5},
            [],
            """no Ray node offers {"agentos": 1, "gpu": 0.5}: """
            """start a worker with --resources '{"agentos": 1, "gpu": 0.5}'""",
            id="no-node-at-all",
        ),
    ],
)
def test_unplaceable_names_what_no_live_node_offers(
    need: dict[str, float], nodes: list[dict[str, Any]], line: str | None
) -> None:
    assert unplaceable(need, nodes) == line
