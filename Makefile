# The two commands a new machine needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit demo bench soak clean test-agents test-agents-latest test-systemd

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The real Claude Code, Codex and Gemini CLIs (from npm, pinned, ~740 MB, cached in CLI_DIR) are part of every
# `make test`: tests/realcli runs them against a scripted model server on 127.0.0.1, alone and through the daemon.
# No account and no internet beyond the npm registry; when that is unreachable they skip, saying so (-rs).
CLI_DIR ?= .cache/agent-clis

test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || echo "chromium not installed (needs root and apt): the status-page screenshot test will be skipped"
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } || echo "bubblewrap not installed (needs root and apt): the sandbox tests will be skipped"
	@scripts/build-systemd-root.sh || echo "the Debian root for the real-systemd test could not be built (needs root, apt and debootstrap): tests/system will be skipped"
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/mypy src/
	$(BIN)/lint-imports
	scripts/install-agent-clis.sh $(CLI_DIR)
	AGENTOS_REAL_CLI_DIR=$(abspath $(CLI_DIR)) $(BIN)/python -m pytest -rs

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

demo: $(STAMP)
	$(BIN)/agentos demo

# Only the real-CLI tests (tests/realcli): the adapters and the daemon with the real CLIs.
test-agents: $(STAMP)
	scripts/install-agent-clis.sh $(CLI_DIR)
	AGENTOS_REAL_CLI_DIR=$(abspath $(CLI_DIR)) $(BIN)/python -m pytest tests/realcli -rs

# The same tests against the newest published CLIs (`npm view NAME version`), installed into a cache of their own,
# and a compatibility table: CLI, pinned version, latest version, tests passed/failed. Fails when any test fails.
# Not part of `make test` (the pins are): run it before moving a pin, or when users report a new release broke.
LATEST_CLI_DIR ?= .cache/agent-clis-latest

test-agents-latest: $(STAMP)
	scripts/test-agents-latest.sh $(LATEST_CLI_DIR) $(BIN)/python

# The real-systemd test (tests/system): a Debian root made once with debootstrap, cached outside the clone
# (/var/cache/agentos-test/debian-root), booted with systemd-nspawn; agentos from a wheel of this checkout,
# `agentos init --yes`, `systemctl start agentos` and the rest. About 2 minutes once the root is cached.
# `make test` runs it only when the root is already cached (it skips saying so otherwise).
test-systemd: $(STAMP)
	scripts/build-systemd-root.sh
	$(BIN)/python -m pytest tests/system -rs

# The reliability soak (tests/reliability, docs/security.md): 60 issues over 3 repos with fake agents of mixed
# behaviour and the daemon SIGKILLed 25+ times, compared with an uninterrupted run of the same seed; then the
# GitHub fault soaks (20% of API requests failing). AGENTOS_SOAK_SEED=N varies plans, kill moments and faults.
# About 8 minutes on 2 CPUs; `make test` runs the short versions.
soak: $(STAMP)
	AGENTOS_SOAK=full $(BIN)/python -m pytest tests/reliability/test_soak.py tests/reliability/test_github_faults.py -rs

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
