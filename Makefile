# The two commands of the README: `make demo` and `make test`. Both set up everything on a fresh
# machine (a .venv with pinned torch) and are quick on a second run (stamps skip finished steps).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
PIN    := -c constraints.txt
DEPS   := pyproject.toml constraints.txt

.PHONY: demo test bench bench-tuning bench-precision bench-openvino weights dist clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# The demo needs no torch: lpips-export builds the graph from its template and the verified offline weights.
$(VENV)/.stamp-demo: $(DEPS) | $(PY)
	$(PIP) install -q $(PIN) -e '.[cpu,light-export]'
	touch $@

$(VENV)/.stamp-test: $(DEPS) | $(PY)
	$(PIP) install -q $(PIN) -e '.[cpu,export,light-export,serve,test,video,openvino,ray,trt-rtx,otel]'
	touch $@

# Backbone weights: torchvision's cache or download first, else the verified offline sources.
weights: $(VENV)/.stamp-test
	$(PY) -m lpips_export.fetch_weights

# --out/--models-dir name models/ so that a set LPIPS_RT_MODELS does not send the demo elsewhere.
models/lpips-alex-v0.1.onnx: | $(VENV)/.stamp-demo
	$(VENV)/bin/lpips-export --net alex --distance-only --from-templates --out models

demo: $(VENV)/.stamp-demo models/lpips-alex-v0.1.onnx
	@echo "LPIPS-alex distance, examples/ref.png vs examples/distorted.png (ONNX Runtime, CPU):"
	@$(VENV)/bin/lpips-score examples/ref.png examples/distorted.png --models-dir models

# The sdist and wheel users install (dist/), built as pip would build them (isolated, from the sdist).
dist: $(VENV)/.stamp-test
	$(PY) -m build --outdir dist .

# --durations: the 25 slowest tests are listed at the end of every run (CI's log shows where time goes).
# -n 2 (pytest-xdist): two workers, one per core of the 2-core machines this runs on (measured quiet: 535 s vs 649 s
# in one process; the suite is CPU-bound: 3 workers measured 801 s against 781-848 s for 2, no gain). --dist loadfile: a
# module's tests stay on one worker, so its module fixtures (servers, venvs, builds) are made once; exports are
# made once per run by whichever worker needs one first (tests/conftest.py, RunExports); --no-loadscope-reorder keeps
# the collection order (the longest modules first: LONGEST_MODULES in tests/conftest.py). Each worker computes on its
# own core (tests/conftest.py pins it): 605 s and 984 CPU-s against 806 s and 1377 CPU-s unpinned (2026-12-07).
# TEST_WORKERS=0 runs it in one process (e.g. to debug one failure).
# env -u PYTHONDONTWRITEBYTECODE: where the shell sets it (this workplace does), no process keeps bytecode, so
# every run rewrote and compiled every test module again in each xdist worker: collection took 19.5-20.6 s per
# worker against 13.1-13.5 s once the caches exist (2026-12-08; a fresh clone's first run writes them, and its
# inner Ray run and subprocesses read them). They land in __pycache__ folders, which git ignores; an installed
# wheel has its bytecode too (pip and uv write it).
TEST_WORKERS ?= 2
test: $(VENV)/.stamp-test
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -q --durations=25 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# CPU table (ORT vs torch vs the official package) and the feature-cache speedups: < 10 minutes on 2 cores.
bench: $(VENV)/.stamp-test
	$(PY) benchmarks/cpu.py
	$(PY) benchmarks/cache.py

# Experiments behind decisions recorded in benchmarks/README.md (not part of `make bench`).
bench-tuning: $(VENV)/.stamp-test
	$(PY) benchmarks/ort_tuning.py

bench-precision: $(VENV)/.stamp-test
	$(PY) benchmarks/precision.py

# OpenVINO: bf16 accuracy against fp32 (about 25 minutes), then start-up, shape modes and the fp32 stem's cost.
bench-openvino: $(VENV)/.stamp-test
	$(PY) benchmarks/bf16_accuracy.py
	$(PY) benchmarks/openvino_startup.py

clean:
	rm -rf $(VENV) dist build models/*.onnx models/*.partial examples/cpp/build
