"""Moved to :mod:`agentos.ops.status_page`; this re-export keeps the daemon's import working until it moves."""

from agentos.ops.status_page import LOCAL_HOSTS, LagProbe, StatusPage, needs_token

__all__ = ["LOCAL_HOSTS", "LagProbe", "StatusPage", "needs_token"]
