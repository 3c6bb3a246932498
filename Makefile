# The course's two commands:  `make run` (set up, then the whole series in batch)  and  `make test`.
# Both create the virtual environment in .venv on first use; nothing is installed by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.course-installed
ARGS ?=
TEST_OUT := $(CURDIR)/runs/test
# Keep test artefacts (smoke checkpoints, figures, results) away from the full run's.
TEST_ENV := COURSE_CHECKPOINT_DIR=$(TEST_OUT)/checkpoints COURSE_FIGURES_DIR=$(TEST_OUT)/figures \
            COURSE_RESULTS_PATH=$(TEST_OUT)/results.json

.PHONY: setup run smoke test unit notebooks lint student grade validate clean outputs sweep

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (DyT course)" >/dev/null
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install everything

run: setup  ## the main job: every notebook in order, full mode (pass ARGS="--smoke -p seed=1" etc.)
	$(PY) -m course_utils.running $(ARGS)

smoke: setup  ## the whole series in smoke mode (about a minute per notebook)
	$(PY) -m course_utils.running --smoke $(ARGS)

lint: setup  ## ruff on the package, the tests and the notebooks; the import contract (tests/test_layers.py)
	$(PY) -m ruff check course_utils tests notebooks
	$(PY) -m pytest -q -p no:cacheprovider tests/test_layers.py

unit: setup  ## unit tests of course_utils
	$(PY) -m pytest -q tests

notebooks: setup  ## papermill runs the series in smoke mode, then nbval validates every notebook
	rm -rf $(TEST_OUT)
	$(TEST_ENV) $(PY) -m course_utils.running --smoke --output-dir $(TEST_OUT)/executed
	$(TEST_ENV) COURSE_SMOKE=1 $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env notebooks

test: lint unit validate notebooks  ## everything CI checks

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
