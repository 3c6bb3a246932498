# The course's two commands:  `make run` (set up, then the whole series in batch)  and  `make test`.
# Both create the virtual environment in .venv on first use; nothing is installed by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.course-installed
ARGS ?=
TEST_OUT := $(CURDIR)/runs/test
# Debian's Chromium for `make browser` (Playwright from PyPI drives it through executable_path: no browser download).
# Setup installs it when missing, as root with apt-get; elsewhere it says why not, and `make browser` fails until
# CHROMIUM names a Chromium binary.
CHROMIUM ?= /usr/bin/chromium
define install_chromium
if [ -x "$(CHROMIUM)" ]; then :; \
elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
  echo "installing Debian's chromium for make browser: apt-get install -y --no-install-recommends chromium"; \
  export DEBIAN_FRONTEND=noninteractive; \
  { apt-get install -y -q --no-install-recommends chromium \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends chromium; }; } && [ -x "$(CHROMIUM)" ] \
  || { echo "ERROR: Debian's chromium could not be installed: 'apt-get install -y --no-install-recommends chromium' failed (its output is above) or left no $(CHROMIUM); make browser needs it" >&2; exit 1; }; \
else \
  echo "$(2): no Chromium at $(CHROMIUM), and it cannot be installed here: that needs root and apt-get (Debian/Ubuntu), and this is user $$(id -un)$$(command -v apt-get >/dev/null 2>&1 || echo ' without apt-get'). Install Debian's chromium as root, or pass CHROMIUM=/path/to/chromium; make browser fails until then" >&2; $(1) \
fi
endef
# Keep test artefacts (smoke checkpoints, figures, results) away from the full run's.
TEST_ENV := COURSE_CHECKPOINT_DIR=$(TEST_OUT)/checkpoints COURSE_FIGURES_DIR=$(TEST_OUT)/figures \
            COURSE_RESULTS_PATH=$(TEST_OUT)/results.json

.PHONY: setup run smoke test unit notebooks browser lint student grade validate clean outputs sweep

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (DyT course)" >/dev/null
	@$(call install_chromium,true;,WARNING)
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install everything

run: setup  ## the main job: every notebook in order, full mode (pass ARGS="--smoke -p seed=1" etc.)
	$(PY) -m course_utils.running $(ARGS)

smoke: setup  ## the whole series in smoke mode (about a minute per notebook)
	$(PY) -m course_utils.running --smoke $(ARGS)

lint: setup  ## ruff on the package, the tests and the notebooks; the import contract (tests/test_layers.py)
	$(PY) -m ruff check course_utils tests notebooks
	$(PY) -m pytest -q -p no:cacheprovider tests/test_layers.py

unit: setup  ## unit tests of course_utils (the browser check runs in `make browser`)
	$(PY) -m pytest -q tests --ignore=tests/browser

notebooks: setup  ## papermill runs the series in smoke mode, then nbval validates every notebook
	rm -rf $(TEST_OUT)
	$(TEST_ENV) $(PY) -m course_utils.running --smoke --output-dir $(TEST_OUT)/executed
	$(TEST_ENV) COURSE_SMOKE=1 $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env notebooks

browser: setup  ## real browser: JupyterLab + headless Chromium move notebook 02's slider (about a minute)
	@$(call install_chromium,exit 1;,ERROR)
	CHROMIUM_PATH=$(CHROMIUM) $(PY) -m pytest -q -s -p no:cacheprovider tests/browser

test: lint unit validate notebooks browser  ## everything CI checks

SEEDS ?= 0-9
SWEEP_ARGS ?=
sweep: setup  ## make sweep SEEDS=0-9 [SWEEP_ARGS="--local-workers 2"]: notebook 07's ablation for those seeds
	$(PY) -m course_utils.sweep --seeds $(SEEDS) $(SWEEP_ARGS)

student: setup  ## student versions (solutions and hidden tests removed, cell ids kept) in student/
	$(PY) -m course_utils.grading release --out student

grade: setup  ## make grade SUBMISSIONS=folder [GRADES=runs/grades]: one sub-folder per student
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder (one folder per student)"; exit 2; }
	$(PY) -m course_utils.grading grade "$(SUBMISSIONS)" --out $(or $(GRADES),runs/grades) --jobs 2

validate: setup  ## the instructor's notebooks score full marks, the released ones zero
	$(PY) -m course_utils.grading validate --jobs 2

clean:
	rm -rf runs student .pytest_cache

outputs: setup  ## re-execute the notebooks in place (full mode) so the repository ships them with outputs; timed
	cd notebooks && for nb in [0-9][0-9]_*.ipynb; do \
	  start=$$(date +%s); TQDM_DISABLE=1 ../$(PY) -m jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=-1 --ExecutePreprocessor.kernel_name=python3 $$nb || exit 1; \
	  echo "$$nb: $$(( $$(date +%s) - start )) s"; done
