"""The public faces: what each package or face module exports is exactly what it means to (httpx's
``tests/test_exported_members.py``)."""

from __future__ import annotations

import types

import pytest

import agentos.control.commands
import agentos.executor
import agentos.forge
import agentos.forge.github
import agentos.issue_text
import agentos.lifecycle
import agentos.state_writer
import agentos.store


def public_names(module: types.ModuleType) -> list[str]:
    """The names a module binds that are not private and not submodules, sorted as ruff sorts ``__all__``."""
    names = [n for n, v in vars(module).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)]
    return sorted(names, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))


class TestExports:
    def test_the_forge_package_exports_exactly_its_public_names(self) -> None:
        """``agentos.forge`` is a face: every public name it binds is in ``__all__``, and nothing else is."""
        assert agentos.forge.__all__ == public_names(agentos.forge)

    @pytest.mark.parametrize(
        "module",
        [
            agentos.forge,
            agentos.forge.github,
            agentos.store,
            agentos.issue_text,
            agentos.state_writer,
            agentos.control.commands,
            agentos.lifecycle,
            agentos.executor,
        ],
        ids=lambda m: m.__name__,
    )
    def test_every_exported_name_exists(self, module: types.ModuleType) -> None:
        """A name in ``__all__`` can be imported (re-exports survive the splits)."""
        assert [n for n in module.__all__ if not hasattr(module, n)] == []

    def test_the_github_face_has_what_agentos_init_uses(self) -> None:
        """Setting up a Projects v2 board needs no private module: its functions are on ``agentos.forge.github``."""
        wanted = {
            "BoardOption",
            "ProjectConfig",
            "missing_status_options",
            "options_with",
            "read_status_field",
            "set_status_options",
        }
        assert wanted <= set(agentos.forge.github.__all__)
