"""One-shot questions (:mod:`agentos.llm`) through the **real** Claude Code CLI, with a scripted model server.

The CLI runs as :meth:`~agentos.llm.Llm.ask` runs it: read-only (``--tools ""``), in the scratch directory, the
prompt on stdin. The server answers the tool-less main request from ``one_shot_answers``: garbage then a valid
JSON object gives the validated model on the retry (whose prompt carries the correction); garbage twice gives None.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from agentos.llm import Llm
from tests.fakes.model_server import ModelServer
from tests.realcli.clis import KEYS, NODE, assert_installed, binary, cli_setup

PROMPT = "Several runs failed the same way: name the problem. llm-marker-8f2e"


class Named(BaseModel):
    title: str = Field(min_length=5)
    explanation: str = ""


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    assert_installed()


@pytest.fixture
async def server() -> AsyncIterator[ModelServer]:
    model = ModelServer()
    await model.start()
    try:
        yield model
    finally:
        await model.stop()


def claude(server: ModelServer, tmp_path: Path) -> Llm:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.pathsep.join([str(binary("claude").parent), str(Path(NODE or "node").parent), "/usr/bin", "/bin"]),
        "HOME": str(home),
        "TMPDIR": str(tmp_path),
        "LANG": "C.UTF-8",
        **KEYS,
    }
    return Llm("planner", cli_setup("claude", server, home), workdir=tmp_path / "llm", timeout_s=120, base_env=env)


def asked(server: ModelServer) -> list[dict[str, object]]:
    """The bodies of the one-shot (main, tool-less) requests the CLI made."""
    return [r.body for r in server.requests if r.reply == "one_shot"]


def last_user_text(body: dict[str, object]) -> str:
    return json.dumps(body["messages"])


class TestClaudeOneShot:
    async def test_garbage_then_json_gives_the_model_on_the_retry(self, server: ModelServer, tmp_path: Path) -> None:
        """The first answer is prose, the second a valid object: the validated model; the CLI had no tools."""
        server.one_shot_answers = [
            "I think it is a disk problem.",
            'Sure:\n```json\n{"title": "Disk full on the runner", "explanation": "The tmp dir fills up."}\n```',
        ]
        llm = claude(server, tmp_path)
        named = await llm.ask(PROMPT, Named)
        assert named == Named(title="Disk full on the runner", explanation="The tmp dir fills up.")
        first, second = asked(server)
        assert first["tools"] == [] and second["tools"] == []  # read-only: the model is offered no tool at all
        assert PROMPT in last_user_text(first) and "not valid" not in last_user_text(first)
        assert "Your previous answer was not valid: no JSON object in the answer" in last_user_text(second)
        assert list((tmp_path / "llm").iterdir()) == []

    async def test_garbage_twice_gives_none(self, server: ModelServer, tmp_path: Path) -> None:
        """Two answers that do not validate: None after exactly two runs of the CLI."""
        server.one_shot_answers = ['{"title": "x"}']
        llm = claude(server, tmp_path)
        assert await llm.ask(PROMPT, Named) is None
        _, second = asked(server)
        assert "title: String should have at least 5 characters" in last_user_text(second)
        assert (llm.asked, llm.answered) == (1, 0)
