PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test bench clean

$(BIN)/hypersweep: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Runs the quickstart study into ./runs (MLflow + Optuna SQLite stores).
# A second `make demo` reruns the study under a new name (quickstart-digits-mlp-rerun-N).
DEMO_STORES = --tracking-uri sqlite:///runs/mlflow.db --storage sqlite:///runs/optuna.db
demo: $(BIN)/hypersweep
	mkdir -p runs
	if [ -f runs/optuna.db ]; then \
		$(BIN)/hypersweep rerun studies/quickstart.yaml $(DEMO_STORES); \
	else \
		$(BIN)/hypersweep run studies/quickstart.yaml $(DEMO_STORES); \
	fi

test: $(BIN)/hypersweep
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(BIN)/hypersweep
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) runs *.egg-info
