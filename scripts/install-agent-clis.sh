#!/usr/bin/env bash
# Install the real agent CLIs (Claude Code, Codex, Gemini CLI) from the npm registry into a cache directory,
# at pinned versions, for the real-CLI tests (tests/realcli, `make test-agents`).
#
#   scripts/install-agent-clis.sh [DIR]        DIR defaults to .cache/agent-clis
#
# The binaries end up in DIR/node_modules/.bin/{claude,codex,gemini}; point AGENTOS_REAL_CLI_DIR at DIR.
# Idempotent: when DIR already holds these versions and each binary answers --version, nothing is fetched.
# Versions can be overridden with CLAUDE_CODE_VERSION, CODEX_VERSION and GEMINI_CLI_VERSION.
#
# When the npm registry cannot be reached and DIR holds no complete install, the script writes the reason to
# DIR/.registry-unreachable and exits 0: the real-CLI tests then skip with that reason instead of failing.
# Any other failure (npm error, a binary that does not run) exits non-zero.
set -euo pipefail

DIR="${1:-.cache/agent-clis}"
CLAUDE_CODE_VERSION="${CLAUDE_CODE_VERSION:-2.1.197}"
CODEX_VERSION="${CODEX_VERSION:-0.169.0}"
GEMINI_CLI_VERSION="${GEMINI_CLI_VERSION:-0.61.0}"

PACKAGES=(
  "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}"
  "@openai/codex@${CODEX_VERSION}"
  "@google/gemini-cli@${GEMINI_CLI_VERSION}"
)
WANT="${PACKAGES[*]}"
STAMP="$DIR/.installed"
UNREACHABLE="$DIR/.registry-unreachable"
BIN="$DIR/node_modules/.bin"

say() { printf 'install-agent-clis: %s\n' "$*" >&2; }

for tool in node npm; do
  command -v "$tool" >/dev/null || { say "$tool is not installed (Gemini CLI needs Node.js >= 20)"; exit 1; }
done
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  say "Node.js $(node --version) is too old: Gemini CLI ${GEMINI_CLI_VERSION} needs >= 20"
  exit 1
fi

# Claude Code's npm package ships a placeholder bin/claude.exe; its postinstall (install.cjs) puts the native
# binary of the matching @anthropic-ai/claude-code-<platform> package there. npm >= 11 warns about (and may
# skip) dependency install scripts that are not approved, so run it ourselves when the placeholder is left.
fix_claude() {
  local pkg="$DIR/node_modules/@anthropic-ai/claude-code"
  if [ -f "$pkg/install.cjs" ] && ! "$BIN/claude" --version >/dev/null 2>&1; then
    say "running Claude Code's postinstall (native binary)"
    (cd "$pkg" && node install.cjs)
  fi
}

installed_ok() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] || return 1
  "$BIN/claude" --version 2>/dev/null | grep -qF "$CLAUDE_CODE_VERSION" || return 1
  "$BIN/codex" --version 2>/dev/null | grep -qF "$CODEX_VERSION" || return 1
  "$BIN/gemini" --version 2>/dev/null | grep -qF "$GEMINI_CLI_VERSION" || return 1
}

mkdir -p "$DIR"
if installed_ok; then
  rm -f "$UNREACHABLE"
  say "up to date in $DIR: $WANT"
  exit 0
fi

if ! npm ping --fetch-timeout=20000 --fetch-retries=1 >/dev/null 2>&1; then
  registry="$(npm config get registry 2>/dev/null || echo 'the npm registry')"
  echo "npm registry unreachable ($registry): could not install $WANT" > "$UNREACHABLE"
  say "$(cat "$UNREACHABLE"); the real-CLI tests will be skipped"
  exit 0
fi

# A private package.json pins exact versions, so a re-run never drifts to a newer release.
cat > "$DIR/package.json" <<EOF
{
  "name": "agentos-agent-clis",
  "private": true,
  "description": "The real agent CLIs for agentos's tests (scripts/install-agent-clis.sh)",
  "dependencies": {
    "@anthropic-ai/claude-code": "${CLAUDE_CODE_VERSION}",
    "@openai/codex": "${CODEX_VERSION}",
    "@google/gemini-cli": "${GEMINI_CLI_VERSION}"
  }
}
EOF
rm -f "$STAMP" "$UNREACHABLE"
say "installing into $DIR: $WANT"
(cd "$DIR" && npm install --no-audit --no-fund --loglevel=error)
fix_claude

for name in claude codex gemini; do
  if ! version="$("$BIN/$name" --version 2>&1)"; then
    say "$name does not run after the install: $version"
    exit 1
  fi
  say "$name: $version"
done
echo "$WANT" > "$STAMP"
