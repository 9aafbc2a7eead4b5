"""The command table: every surface generated from it says the same thing about the same command."""

from __future__ import annotations

from typing import Any

import pytest

from agentos.cli.ctl import parser
from agentos.control.arguments import validate
from agentos.control.commands import GROUPS, TABLE
from agentos.control.telegram_commands import ParseError, help_text, parse_command
from agentos.errors import ControlError


def ctl_help(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """What `agentos ctl WORDS --help` prints (one line per entry, however wide the terminal)."""
    with pytest.raises(SystemExit):
        parser().parse_args([*words, "--help"])
    return " ".join(capsys.readouterr().out.split())


class TestCtl:
    def test_every_subcommand_and_argument_has_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`agentos ctl --help` lists every command with its help; each command's --help explains every argument."""
        top = ctl_help(capsys)
        for spec in TABLE.values():
            for form in spec.ctl:
                shown = " ".join((form.help or spec.help).split())
                if len(form.words) == 1:
                    assert shown in top, spec.name
                else:
                    assert GROUPS[form.words[0]] in top
                    assert shown in ctl_help(capsys, form.words[0])
                own = ctl_help(capsys, *form.words)
                for arg in spec.args:
                    if arg.name not in form.fixed:
                        assert " ".join(arg.help.split()) in own, f"{spec.name}: {arg.name}"
                assert "Print JSON instead of a table." in own and "Control socket path" in own

    def test_a_form_fixes_what_its_words_say(self) -> None:
        """`ctl job off NAME` sends the job command with enabled false."""
        ns = parser().parse_args(["job", "off", "dispatch", "--json"])
        assert (ns.spec.name, dict(ns.form.fixed), ns.name, ns.as_json) == ("job", {"enabled": False}, "dispatch", True)


class TestOneCheckForEverySurface:
    @pytest.mark.parametrize(
        ("command", "args", "error"),
        [
            pytest.param("repo_cadence", {"name": "calc", "days": 0}, "argument 'days' must be a whole number ≥ 1"),
            pytest.param("repo_mode", {"name": "calc", "mode": "fast"}, "argument 'mode' must be one of full"),
            pytest.param("job", {"name": "x", "enabled": 1}, "argument 'enabled' must be true or false"),
        ],
    )
    def test_the_socket_names_the_bad_argument(self, command: str, args: dict[str, Any], error: str) -> None:
        """A request the model refuses gets one line naming the argument."""
        with pytest.raises(ControlError) as info:
            validate(TABLE[command], args)
        assert str(info.value).startswith(error) and "\n" not in str(info.value)

    @pytest.mark.parametrize("text", ["/repo cadence calc 0", "/repo mode calc fast"])
    def test_the_chat_refuses_what_the_socket_refuses(self, text: str) -> None:
        """The chat checks with the same model, and answers with the usage."""
        with pytest.raises(ParseError, match=r"^usage: /repo"):
            parse_command(text)

    def test_help_lists_every_chat_command_of_the_table(self) -> None:
        """/help shows every command the table gives a chat form."""
        text = help_text()
        for spec in TABLE.values():
            for form in spec.chat:
                assert "/" + form.words[0] in text, spec.name


class TestOperatorVerbs:
    def test_ctl_retry_reroutes_and_close_takes_wontfix_and_a_reason(self) -> None:
        """`ctl task retry ID --agent NAME`; `ctl task close ID --wontfix --reason ...`; a plain close is not."""
        ns = parser().parse_args(["task", "retry", "calc#3", "--agent", "codex"])
        assert (ns.spec.name, ns.id, ns.agent) == ("retry", "calc#3", "codex")
        ns = parser().parse_args(["task", "close", "calc#3", "--wontfix", "--reason", "out of scope"])
        assert (ns.spec.name, ns.id, ns.wontfix, ns.reason) == ("close", "calc#3", True, "out of scope")
        ns = parser().parse_args(["task", "close", "calc#3"])
        assert validate(TABLE["close"], {"id": ns.id, "wontfix": ns.wontfix, "reason": ns.reason}) == {
            "id": "calc#3",
            "wontfix": False,
            "reason": None,  # no reason given: the close says so
        }

    @pytest.mark.parametrize(
        ("text", "name", "args"),
        [
            pytest.param("/retry calc#3 codex", "retry", {"id": "calc#3", "agent": "codex"}),
            pytest.param("/retry calc#3", "retry", {"id": "calc#3", "agent": None}),
            pytest.param("/close calc#3", "close", {"id": "calc#3", "wontfix": False, "reason": None}),
            pytest.param("/wontfix calc#3", "close", {"id": "calc#3", "wontfix": True, "reason": None}),
        ],
    )
    def test_the_chat_spells_them_in_words(self, text: str, name: str, args: dict[str, Any]) -> None:
        command = parse_command(text)
        assert (command.name, dict(command.args)) == (name, args)
