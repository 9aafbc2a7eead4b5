"""How an operator names a repository, a PR or an issue (:mod:`agentos.control.refs`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentos.config import Config
from agentos.control.refs import numbered, repo_named
from agentos.errors import ControlError


def config(tmp_path: Path, *names: str) -> Config:
    return Config.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "repos": [{"name": n, "path": str(tmp_path / n), "test_command": "true"} for n in names],
            "agents": {"claude": {"kind": "claude"}},
        }
    )


class TestRepoNamed:
    def test_a_configured_repo_is_found(self, tmp_path: Path) -> None:
        """A configured name gives its repository's config."""
        assert repo_named(config(tmp_path, "calc", "web"), "web").name == "web"

    def test_an_unknown_name_lists_the_repos(self, tmp_path: Path) -> None:
        """An unknown name is refused in one line that lists the configured repositories."""
        with pytest.raises(ControlError, match=r"no repo named 'nope'; repos: calc, web"):
            repo_named(config(tmp_path, "calc", "web"), "nope")


class TestNumbered:
    @pytest.mark.parametrize(
        ("names", "ref", "expected"),
        [
            pytest.param(("calc",), "12", ("calc", 12), id="a-number-with-one-repo"),
            pytest.param(("calc", "web"), "web#3", ("web", 3), id="repo-and-number"),
            pytest.param(("calc",), "calc#7", ("calc", 7), id="repo-and-number-with-one-repo"),
        ],
    )
    def test_a_ref_names_a_repo_and_a_number(
        self, tmp_path: Path, names: tuple[str, ...], ref: str, expected: tuple[str, int]
    ) -> None:
        """``repo#N``, or ``N`` alone when one repository is configured, is ``(repo, N)``."""
        assert numbered(config(tmp_path, *names), ref) == expected

    @pytest.mark.parametrize(
        ("names", "ref", "problem"),
        [
            pytest.param(("calc",), "calc#x", "a PR is named repo#N or N", id="not-a-number"),
            pytest.param(("calc", "web"), "3", "more than one repo", id="a-bare-number-with-two-repos"),
            pytest.param(("calc",), "nope#3", "no repo named 'nope'", id="an-unknown-repo"),
        ],
    )
    def test_a_bad_ref_is_refused_in_one_line(
        self, tmp_path: Path, names: tuple[str, ...], ref: str, problem: str
    ) -> None:
        """A ref that names no configured repository and number is refused, saying how to name one."""
        with pytest.raises(ControlError, match=problem):
            numbered(config(tmp_path, *names), ref)
