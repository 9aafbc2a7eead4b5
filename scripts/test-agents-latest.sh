#!/usr/bin/env bash
# `make test-agents-latest`: the real-CLI tests (tests/realcli) against the NEWEST published Claude Code, Codex and
# Gemini CLI, not the pins of scripts/install-agent-clis.sh, and a compatibility table per CLI.
#
#   scripts/test-agents-latest.sh [DIR] [PYTHON]    DIR defaults to .cache/agent-clis-latest, PYTHON to .venv/bin/python
#
# Asks the npm registry for each package's latest version (`npm view NAME version`), installs those into DIR
# (a cache of its own: the pinned install in .cache/agent-clis is left alone), runs tests/realcli with
# AGENTOS_REAL_CLI_DIR=DIR, and prints CLI, pinned version, latest version, and tests passed/failed/skipped.
# Extra pytest arguments go in PYTEST_ARGS (e.g. PYTEST_ARGS='-k llm').
# Exit status: 0 when every test passed, 1 when one failed, 2 when the registry or the install failed.
set -euo pipefail

DIR="${1:-.cache/agent-clis-latest}"
PYTHON="${2:-.venv/bin/python}"
HERE="$(cd "$(dirname "$0")" && pwd)"
say() { printf 'test-agents-latest: %s\n' "$*" >&2; }

pinned() {  # the default version of $1 (e.g. CODEX_VERSION) in install-agent-clis.sh
  sed -n "s/^$1=\"\${$1:-\([^}]*\)}\"$/\1/p" "$HERE/install-agent-clis.sh"
}

latest() {
  local version
  if ! version="$(npm view "$1" version --fetch-timeout=20000 --fetch-retries=1 2>/dev/null)" || [ -z "$version" ]; then
    say "could not ask the npm registry ($(npm config get registry 2>/dev/null)) for the latest $1"
    exit 2
  fi
  echo "$version"
}

CLAUDE_PINNED="$(pinned CLAUDE_CODE_VERSION)"
CODEX_PINNED="$(pinned CODEX_VERSION)"
GEMINI_PINNED="$(pinned GEMINI_CLI_VERSION)"
CLAUDE_LATEST="$(latest @anthropic-ai/claude-code)"
CODEX_LATEST="$(latest @openai/codex)"
GEMINI_LATEST="$(latest @google/gemini-cli)"
say "latest: claude-code $CLAUDE_LATEST, codex $CODEX_LATEST, gemini-cli $GEMINI_LATEST"

CLAUDE_CODE_VERSION="$CLAUDE_LATEST" CODEX_VERSION="$CODEX_LATEST" GEMINI_CLI_VERSION="$GEMINI_LATEST" \
  "$HERE/install-agent-clis.sh" "$DIR" || { say "installing the latest CLIs into $DIR failed"; exit 2; }
if [ ! -f "$DIR/.installed" ]; then
  say "nothing installed in $DIR: $(cat "$DIR/.registry-unreachable" 2>/dev/null || echo 'see above')"
  exit 2
fi

REPORT="$DIR/report.xml"
rm -f "$REPORT"
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of words
AGENTOS_REAL_CLI_DIR="$(cd "$DIR" && pwd)" "$PYTHON" -m pytest tests/realcli -rs --junitxml="$REPORT" ${PYTEST_ARGS:-} || true
"$PYTHON" "$HERE/agent-compat-table.py" "$REPORT" \
  "claude=$CLAUDE_PINNED:$CLAUDE_LATEST" "codex=$CODEX_PINNED:$CODEX_LATEST" "gemini=$GEMINI_PINNED:$GEMINI_LATEST"
