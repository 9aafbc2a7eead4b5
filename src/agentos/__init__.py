"""agentos: a self-hosted autonomous software organization."""

__version__ = "0.1.0"
