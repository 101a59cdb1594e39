# Two set-up commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out

.PHONY: demo test lint bench bench-ingest bench-declarations monthly clean browser java

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/detector --db $(OUT)/demo.duckdb demo --out $(OUT)

test: $(STAMP) browser java
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check detector pipelines tests

bench: $(STAMP)
	$(BIN)/python bench/run.py $(if $(ROWS),--rows $(ROWS))
	$(BIN)/python bench/profile.py $(if $(ROWS),--rows $(ROWS))
	$(BIN)/python bench/engines.py

# Only the ingest cases: one big file and the same rows as one file per reporter-year, against
# DuckDB's typed read_csv of the same files (bench/results_ingest.md; a few minutes).
bench-ingest: $(STAMP)
	$(BIN)/python bench/run.py --ingest-only --scales 5000000

# Declaration scoring alone: 1M new lines of a month, a model trained on 12 labelled months (a few minutes).
bench-declarations: $(STAMP)
	$(BIN)/python bench/declarations.py $(if $(LINES),--lines $(LINES))

monthly: $(STAMP)
	$(BIN)/python -m pipelines.monthly --inbox $(INBOX) $(if $(MONTH),--month $(MONTH))

# The HTML report is checked in a real headless browser; install Debian's chromium where missing.
browser:
	@command -v chromium >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped")

# The Spark engine's test runs Spark in local mode, which needs a Java runtime: Debian's headless JRE.
java:
	@command -v java >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null) \
	  || echo "java not installed: the Spark engine test will be skipped")

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
