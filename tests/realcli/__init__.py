"""Tests of the real agent CLIs (Claude Code, Codex, Gemini CLI) against the scripted model server: the adapters
alone (``test_real_clis.py``) and the whole loop through the daemon (``test_daemon_real_clis.py``).

``make test`` and ``make test-agents`` install the CLIs (``scripts/install-agent-clis.sh``, pinned, cached in
``.cache/agent-clis``) and set ``AGENTOS_REAL_CLI_DIR``; without it, or when the npm registry was unreachable and
nothing is installed, the tests are skipped with that reason.
"""
