# The two commands a new machine needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit demo bench soak clean test-agents

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/mypy src/
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

demo: $(STAMP)
	$(BIN)/agentos demo

# The adapters against the real Claude Code, Codex and Gemini CLIs (from npm, ~740 MB, cached),
# talking to a scripted model server on 127.0.0.1: no account and no internet beyond the npm registry.
CLI_DIR ?= .cache/agent-clis
test-agents: $(STAMP)
	scripts/install-agent-clis.sh $(CLI_DIR)
	AGENTOS_REAL_CLI_DIR=$(abspath $(CLI_DIR)) $(BIN)/python -m pytest tests/realcli -rs

# The full crash soak (60 issues, 3 repos, >=25 SIGKILLs); `make test` runs a short one.
soak: $(STAMP)
	AGENTOS_SOAK=full $(BIN)/python -m pytest tests/reliability -rs

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
