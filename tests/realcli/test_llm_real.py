"""One-shot questions (:mod:`agentos.llm`) through the **real** Claude Code CLI, with a scripted model server.

The CLI runs as :meth:`~agentos.llm.Llm.ask` runs it: read-only (``--tools ""``), in the scratch directory, the
prompt on stdin. The server answers the tool-less main request from ``one_shot_answers``: garbage then a valid
JSON object gives the validated model on the retry (whose prompt carries the correction); garbage twice gives None.

Read-only is proven against a model that tries to write: it asks Gemini CLI (``--approval-mode plan`` plus the
deny-every-tool policy) to escape plan mode and write, edit and run a command, Codex (``--sandbox read-only``, its own
sandbox) to do the same through its shell, and Claude Code (``--tools ""``) to call Write and Bash it was not offered;
the scratch directory stays as it was, and the JSON answer still comes back. ``make test-agents-latest`` runs the
same tests against the newest releases.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from agentos.config import AgentKind, SandboxConfig
from agentos.llm import Llm
from tests.fakes.model_server import ModelServer, Script, Shell, ToolCall, WriteFile
from tests.realcli.clis import KEYS, NODE, binary, cli_setup

PROMPT = "Several runs failed the same way: name the problem. llm-marker-8f2e"


class Named(BaseModel):
    title: str = Field(min_length=5)
    explanation: str = ""


def claude(server: ModelServer, tmp_path: Path) -> Llm:
    return one_shot("claude", server, tmp_path)


def one_shot(kind: AgentKind, server: ModelServer, tmp_path: Path) -> Llm:
    """The :class:`Llm` that runs the real ``kind`` against ``server``, as the loops run it (scratch dir ``llm/``)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.pathsep.join([str(binary(kind).parent), str(Path(NODE or "node").parent), "/usr/bin", "/bin"]),
        "HOME": str(home),
        "TMPDIR": str(tmp_path),
        "LANG": "C.UTF-8",
        **KEYS,
    }
    return Llm("planner", cli_setup(kind, server, home), workdir=tmp_path / "llm", timeout_s=120, base_env=env)


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


ANSWER = '{"title": "Disk full on the runner", "explanation": "The tmp dir fills up."}'


def scratch_with_a_file(tmp_path: Path) -> tuple[Path, Path]:
    """The scratch dir with ``keep.txt`` in it (to be edited), and the path of a file to be created."""
    (tmp_path / "llm").mkdir()
    keep = tmp_path / "llm" / "keep.txt"
    keep.write_text("original\n")
    return keep, tmp_path / "llm" / "pwned.txt"


class TestReadOnlyAgainstAModelThatWrites:
    async def test_gemini_plan_mode_escape_writes_nothing(self, server: ModelServer, tmp_path: Path) -> None:
        """Gemini's model enters and exits plan mode (headless, exit_plan_mode alone would switch to YOLO), then
        writes, edits and runs a command: each call is refused, nothing changes, and the answer is the model."""
        keep, pwned = scratch_with_a_file(tmp_path)
        server.script = Script(
            steps=[
                ToolCall("enter_plan_mode", {"reason": "plan first"}),
                ToolCall("write_file", {"file_path": "plan.md", "content": "# Plan\n\n1. Write pwned.txt\n"}),
                ToolCall("exit_plan_mode", {"plan_filename": "plan.md"}),
                WriteFile(str(pwned), "owned\n"),
                ToolCall(
                    "replace",
                    {"file_path": str(keep), "old_string": "original", "new_string": "changed", "instruction": "edit"},
                ),
                ToolCall("run_shell_command", {"command": f"echo owned > {pwned}", "description": "write"}),
            ],
            final=ANSWER,
        )
        llm = one_shot("gemini", server, tmp_path)
        named = await llm.ask(PROMPT, Named)
        assert named == Named(title="Disk full on the runner", explanation="The tmp dir fills up.")
        results = server.tool_results("gemini")
        assert len(results) == 6 and all("not found" in r for r in results), results
        assert not pwned.exists() and keep.read_text() == "original\n"
        assert sorted(p.name for p in (tmp_path / "llm").iterdir()) == ["keep.txt"]
        assert keep.read_text() == "original\n"
        assert not list((tmp_path / "home").rglob("plan.md"))  # not even a plan file in Gemini's plans dir
        main = [r.body for r in server.requests if r.reply.startswith("tool:") or r.reply == "final"]
        assert main and all(b["tools"] == [{"functionDeclarations": []}] for b in main)  # offered no tool at all

    async def test_claude_without_tools_writes_nothing(self, server: ModelServer, tmp_path: Path) -> None:
        """Claude's model (offered no tool: ``--tools ""``) calls Write and Bash anyway: Claude Code runs neither,
        nothing changes, and the answer is the model."""
        keep, pwned = scratch_with_a_file(tmp_path)
        server.script = Script(
            steps=[
                WriteFile(str(pwned), "owned\n"),
                Shell(f"sed -i s/original/changed/ {keep}"),
                Shell(f"echo owned > {pwned}"),
            ],
            final=ANSWER,
        )
        llm = one_shot("claude", server, tmp_path)
        named = await llm.ask(PROMPT, Named)
        assert named == Named(title="Disk full on the runner", explanation="The tmp dir fills up.")
        results = server.tool_results("anthropic")
        assert len(results) == 3 and all("No such tool available" in r for r in results), results
        assert not pwned.exists() and keep.read_text() == "original\n"
        assert sorted(p.name for p in (tmp_path / "llm").iterdir()) == ["keep.txt"]
        assert keep.read_text() == "original\n"
        main = [r.body for r in server.requests if r.reply.startswith("tool:") or r.reply == "final"]
        assert len(main) == 4 and all(not b.get("tools") for b in main)  # offered no tool at all

    async def test_codex_read_only_sandbox_writes_nothing(self, server: ModelServer, tmp_path: Path) -> None:
        """Codex's model writes a file, edits one and redirects a command's output: the read-only sandbox refuses
        each (a read-only file system), nothing changes, and the answer is the model."""
        keep, pwned = scratch_with_a_file(tmp_path)
        server.script = Script(
            steps=[
                WriteFile(str(pwned), "owned\n"),
                Shell(f"sed -i s/original/changed/ {keep}"),
                Shell(f"echo owned > {pwned}"),
            ],
            final=ANSWER,
        )
        llm = one_shot("codex", server, tmp_path)
        named = await llm.ask(PROMPT, Named)
        assert named == Named(title="Disk full on the runner", explanation="The tmp dir fills up.")
        results = server.tool_results("openai")
        # Each command ran in codex's own sandbox and was refused by its read-only file system (not merely because
        # the sandbox could not start: `bwrap: execvp codex-linux-sandbox`, as with a HOME inside TMPDIR).
        assert len(results) == 3 and all("Read-only file system" in r for r in results), results
        assert not pwned.exists() and keep.read_text() == "original\n"
        assert sorted(p.name for p in (tmp_path / "llm").iterdir()) == ["keep.txt"]
        assert keep.read_text() == "original\n"


class TestInsideTheSandbox:
    """With ``sandbox.mode: bubblewrap`` the one-shot question runs in the attempt's sandbox (:mod:`agentos.llm`):
    the CLI's files come from a login template (``agents.<name>.home``), its model traffic goes through an egress
    session of its own to the scripted server, and the answer still comes back validated."""

    @pytest.mark.parametrize("kind", ["claude", "codex", "gemini"])
    async def test_the_answer_comes_back_through_the_proxy(
        self, kind: AgentKind, server: ModelServer, tmp_path: Path
    ) -> None:
        server.one_shot_answers = [ANSWER]
        server.script = Script(steps=[], final=ANSWER)
        llm = one_shot(kind, server, tmp_path)
        template = tmp_path / "home"
        hosts = [server.url.removeprefix("http://")] if kind == "codex" else []  # codex: its URL is in config.toml
        llm.cfg = llm.cfg.model_copy(update={"home": str(template), "allow_hosts": hosts})
        llm.sandbox = SandboxConfig(mode="bubblewrap", tmp_mb=256)
        llm.state_dir = tmp_path / "state"
        named = await llm.ask(PROMPT, Named)
        assert named == Named(title="Disk full on the runner", explanation="The tmp dir fills up.")
        assert server.requests, "the CLI reached the model server (through the proxy: the sandbox has no other way)"
        assert list((tmp_path / "llm").iterdir()) == []

    async def test_codex_read_only_sandbox_holds_inside_ours(self, server: ModelServer, tmp_path: Path) -> None:
        """Codex's own read-only sandbox nests in agentos's: a model that writes in its working folder gets
        "Read-only file system" (not a sandbox that failed to start), and the answer still comes back."""
        server.script = Script(steps=[Shell("echo owned > here.txt"), Shell("mkdir made")], final=ANSWER)
        llm = one_shot("codex", server, tmp_path)
        llm.cfg = llm.cfg.model_copy(
            update={"home": str(tmp_path / "home"), "allow_hosts": [server.url.removeprefix("http://")]}
        )
        llm.sandbox = SandboxConfig(mode="bubblewrap", tmp_mb=256)
        llm.state_dir = tmp_path / "state"
        named = await llm.ask(PROMPT, Named)
        assert named == Named(title="Disk full on the runner", explanation="The tmp dir fills up.")
        results = server.tool_results("openai")
        assert len(results) == 2 and all("Read-only file system" in r for r in results), results
