# The README's two commands. Both set everything up from nothing (they create .venv) and are idempotent.
#   make book   install, export the library, run every experiment at the cpu profile, build the HTML book
#   make test   install, nbdev_test, every experiment at the smoke profile, the book, pytest (incl. the browser check)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= cpu
# at the cpu profile two experiments at a time, one thread each: the environment experiment measures this faster than
# one at a time with two threads on the 2-core machine the book is made for (env.jobs_side_by_side_*); elsewhere (a GPU)
# one at a time, since two kernels sharing a GPU are not measured. JOBS=N sets it.
JOBS ?= $(if $(filter cpu,$(PROFILE)),2,1)
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: book test install export nbtest check-clean clean publish dist

# torch first, as the CPU build constraints.txt pins (from PyPI a plain torch is a multi-GB CUDA build), from
# TORCH_INDEX, the PyTorch index that serves it (empty: none; a local wheel mirror is enough), then everything else.
# constraints.txt pins the libraries the committed results were measured with: their versions are in each result's key.
$(STAMP): settings.ini setup.py constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --retries 1 -c constraints.txt \
	  $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

export: install
	$(BIN)/nbdev_export

book: export
	$(BIN)/dlr book --profile $(PROFILE) --jobs $(JOBS)
	$(BIN)/dlr times --readme > /dev/null

# the library notebooks are tested as nbdev_test runs them (execnb, the settings.ini tst_flags skipped), in parallel
# workers with one OpenMP thread each (oversubscribed threads spin and crawl); the executed copies are kept, cached per
# notebook, for the book's API pages, so `make test` runs each notebook once. `nbdev_test --path NB` shows a traceback.
nbtest: export
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/dlr api-outputs --jobs 2

# smoke kernels run one thread each, so two of them at once use the two cores of the machine this is made for
test: nbtest
	$(BIN)/dlr book --profile smoke --jobs 2
	$(BIN)/python -m pytest tests

# CI: the library must be what the notebooks export, the notebooks must carry no outputs or metadata noise,
# and the library and tests must pass ruff (unused imports, undefined names, lines <= 120; see ruff.toml)
check-clean: export
	$(BIN)/ruff check dlr_nb tests nbs book/experiments
	$(BIN)/ruff format --check nbs book/experiments tests
	$(BIN)/nbdev_clean
	@drift=$$(git status --porcelain -- dlr_nb nbs); if [ -n "$$drift" ]; then \
	  echo "nbs/ and dlr_nb/ are out of sync or nbs/ carries outputs; run 'make export' and '.venv/bin/nbdev_clean', then commit:"; \
	  echo "$$drift"; git --no-pager diff --stat -- dlr_nb nbs; exit 1; fi

# `make publish`: build the book (cached experiments are not rerun), commit it to gh-pages with ghp-import and push it;
# PUBLISH_FLAGS="--dry-run" prints the command only, "--remote R --branch B --no-push" as in `dlr publish --help`.
# `make dist`: the wheel and the sdist in dist/ (the release workflow publishes them).
publish: book
	$(BIN)/dlr publish $(PUBLISH_FLAGS)

dist: export
	rm -rf dist
	$(BIN)/python -m build --sdist --wheel --outdir dist .

clean:
	rm -rf book/_build book/results/smoke book/results/*.ipynb book/results/*.md book/results/status.json book/.dlr book/api dist build *.egg-info
