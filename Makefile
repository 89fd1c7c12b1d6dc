# Two commands for a fresh clone:  `make demo`  (the main job)  and  `make test`  (the whole suite).
# Both bootstrap what they need (two virtual environments), idempotently.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BVENV := .venv-blender
TORCH ?= torch==2.13.0

.PHONY: demo test lint typecheck test-backend test-training test-synthesis test-blender bench addon clean venvs

$(VENV)/.ready: requirements/backend.txt requirements/dev.txt requirements/training.txt requirements/synthesis.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check $(TORCH) -r requirements/backend.txt -r requirements/dev.txt \
		-r requirements/training.txt -r requirements/synthesis.txt
	touch $@

$(BVENV)/.ready: requirements/blender.txt
	test -x $(BVENV)/bin/python || $(PYTHON) -m venv $(BVENV)
	$(BVENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements/blender.txt
	touch $@

venvs: $(VENV)/.ready $(BVENV)/.ready

demo: venvs
	HI3DGEN_PYTHON=$(abspath $(VENV)/bin/python) $(BVENV)/bin/python scripts/demo.py --out out

# Every suite runs, even after one fails; then a summary, and a non-zero exit if any failed.
SUITES := lint typecheck test-backend test-training test-synthesis test-blender

test: venvs
	@failed=""; \
	for suite in $(SUITES); do \
		$(MAKE) --no-print-directory $$suite || failed="$$failed $$suite"; \
	done; \
	echo; echo "make test summary:"; \
	for suite in $(SUITES); do \
		case " $$failed " in *" $$suite "*) echo "  FAILED  $$suite";; *) echo "  ok      $$suite";; esac; \
	done; \
	test -z "$$failed"

lint: $(VENV)/.ready
	$(VENV)/bin/ruff check backend training synthesis blender_addon tests bench scripts build_addon.py

typecheck: $(BVENV)/.ready
	$(BVENV)/bin/python -m mypy --config-file tests/blender/mypy.ini blender_addon

test-backend: $(VENV)/.ready
	$(VENV)/bin/python -m pytest tests/backend -q

test-training: $(VENV)/.ready
	$(VENV)/bin/python -m pytest tests/training -q

# The synthesis tests in the backend venv; the Blender render tests start the bpy interpreter themselves.
test-synthesis: venvs
	$(VENV)/bin/python -m pytest tests/synthesis -q

test-blender: venvs
	HI3DGEN_PYTHON=$(abspath $(VENV)/bin/python) $(BVENV)/bin/python -m pytest tests/blender -q

addon: $(BVENV)/.ready
	$(BVENV)/bin/python build_addon.py

bench: venvs
	$(VENV)/bin/python bench/bench_relief_protocol.py
	$(BVENV)/bin/python bench/bench_mesh_build.py
	$(VENV)/bin/python bench/bench_sparse_conv.py
	$(VENV)/bin/python bench/bench_extraction.py
	$(VENV)/bin/python bench/bench_sampler.py
	$(VENV)/bin/python bench/bench_cli.py
	$(VENV)/bin/python bench/bench_flow_forward.py
	$(VENV)/bin/python bench/bench_nirne.py
	$(VENV)/bin/python bench/bench_synthesis.py

clean:
	rm -rf dist out .pytest_cache
