# sagedet — set-up, demo and tests. `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEMO_DIR ?= demo

DEMO_EPOCHS ?= 36
DEMO_PORT ?= 8080

.PHONY: venv demo test test-fast clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints.txt -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# A generated data set in SageMaker's image+JSON layout, trained by the real `train` entrypoint
# through a local /opt/ml tree (SAGEDET_OPT_ML), on the CPU in a few minutes.
demo: venv
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/sagedet sample-data $(DEMO_DIR)/opt_ml --epochs $(DEMO_EPOCHS) --lr-scheduler-step 24,32
	SAGEDET_OPT_ML=$(DEMO_DIR)/opt_ml $(PY) container/train
	@echo "serving $(DEMO_DIR)/opt_ml/model on 127.0.0.1:$(DEMO_PORT) and sending it the validation images"
	SAGEDET_OPT_ML=$(DEMO_DIR)/opt_ml SAGEDET_BIND_HOST=127.0.0.1 SAGEMAKER_BIND_TO_PORT=$(DEMO_PORT) \
		$(PY) container/serve > $(DEMO_DIR)/serve.log 2>&1 & server=$$!; \
	$(VENV)/bin/sagedet invoke $(DEMO_DIR)/opt_ml/input/data/validation/images/*.jpg \
		--endpoint http://127.0.0.1:$(DEMO_PORT) --output $(DEMO_DIR)/predictions; status=$$?; \
	kill -TERM $$server; wait $$server; exit $$status
	@echo
	@echo "model:           $(DEMO_DIR)/opt_ml/model (model.safetensors, model.json)"
	@echo "training curves: $(DEMO_DIR)/opt_ml/output/data/training_curves.png"
	@echo "metrics:         $(DEMO_DIR)/opt_ml/output/data/metrics.json, metrics.csv"
	@echo "predictions:     $(DEMO_DIR)/predictions/*.png (drawn) and *.json (the server's answers); log: $(DEMO_DIR)/serve.log"

test: venv
	$(PY) -m pytest -ra

test-fast: venv
	$(PY) -m pytest -ra -m "not slow"

clean:
	rm -rf $(VENV) $(DEMO_DIR) build src/*.egg-info .pytest_cache
