"""Tests of the real agent CLIs (Claude Code, Codex, Gemini CLI) against the scripted model server.

They run only with ``AGENTOS_REAL_CLI_DIR`` set to a directory filled by ``scripts/install-agent-clis.sh``
(``make test-agents``); otherwise they are skipped, so ``make test`` stays fast and needs no network.
"""
