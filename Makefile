# Two commands for a new user: `make demo` and `make test`. Each sets up .venv if missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH_STAMP := $(VENV)/.torch
OUT    ?= demo-out

.PHONY: demo test test-all bench install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The tests also run the U-net under a second Keras backend (PyTorch, CPU); where torch
# cannot be installed that one test is skipped with its reason.
$(TORCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet 'torch==2.13.0' || echo "torch 2.13.0 not installable here; the second-backend test will be skipped"
	touch $(TORCH_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cathodeflow demo --out $(OUT)

# Two pytest workers, each taking whole test files (module fixtures such as the S3 server
# are built once per file): about 9 min here against 14 min in one process.
test: $(TORCH_STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

test-all: $(TORCH_STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m ''

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(OUT) .pytest_cache .hypothesis
