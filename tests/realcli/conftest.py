"""Fixtures shared by the real-CLI tests: the install check, the scripted model server, and the e2e suite's
daemon fixture (``make_loop``: a real ``agentos run`` over a fresh repository and local forge)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.conftest import make_loop
from tests.fakes.model_server import ModelServer

__all__ = ["make_loop"]


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    """Every real-CLI module needs the binaries: skipped with the reason, or failed, before any test runs. (Imported
    here: :mod:`tests.realcli.clis` skips whoever imports it without the CLIs, which a conftest may not.)"""
    from tests.realcli.clis import assert_installed

    assert_installed()


@pytest.fixture
async def server() -> AsyncIterator[ModelServer]:
    """The scripted model server on 127.0.0.1, stopped after the test (the daemon tests serve it from a thread)."""
    model = ModelServer()
    await model.start()
    try:
        yield model
    finally:
        await model.stop()
