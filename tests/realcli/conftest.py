"""The e2e suite's daemon fixture (``make_loop``: a real ``agentos run`` over a fresh repository and local forge)
for the tests that run the real CLIs through the daemon."""

from tests.e2e.conftest import make_loop

__all__ = ["make_loop"]
