# spinefx: the two commands of the README, and the longer checks.
#   make run    set up .venv if missing, then run the default workflow (demo cohort, 2 CPU cores)
#   make test   set up .venv if missing, then lint and run the default test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.spinefx-installed
CORES ?= 2

.PHONY: run test lint test-slow test-slurm test-container report dag bench clean retrain

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

# Retrain one fold, then let the DAG redo what depends on it (merge, tables, figures, final model), nothing else:
#   make retrain FOLD=3 [ARGS="--configfile my.yaml"]
retrain: $(STAMP)
	@test -n "$(FOLD)" || { echo 'usage: make retrain FOLD=k [ARGS="--configfile my.yaml"]' >&2; exit 2; }
	$(BIN)/snakemake --cores $(CORES) --forcerun results/train/fold_$(FOLD)/model.pt $(ARGS)

report: $(STAMP)
	$(BIN)/snakemake --report results/report.html

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/
	$(BIN)/snakemake --lint
	$(PY) scripts/config_readme.py --check
	$(PY) scripts/architecture.py --check

test: lint
	$(BIN)/pytest -q -m "not slow and not slurm and not container"

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

test-slurm: $(STAMP)
	bash scripts/slurm_up.sh
	$(BIN)/pytest -q -m slurm; status=$$?; bash scripts/slurm_down.sh; exit $$status

test-container: $(STAMP)
	$(BIN)/pytest -q -m container

dag: $(STAMP)
	$(BIN)/snakemake --rulegraph | dot -Tpng > docs/rulegraph.png

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf results/* logs benchmarks .snakemake
	touch results/.gitkeep
