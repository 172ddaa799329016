# sagedet — set-up, demo and tests. `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEMO_DIR ?= demo

DEMO_EPOCHS ?= 36
DEMO_PORT ?= 8080

.PHONY: venv demo test test-fast clean docker-engine build-cpu build-gpu train-local serve-local push docker-test sdk-local

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

# --- Docker images (README: "The images") ------------------------------------------------------------------
# AIRGAP=1: no image registry and no package index reached by the build: a debootstrap base image and
# a wheelhouse the host's pip downloads (docker/build.sh). Caches in docker/.cache/ (git-ignored).
IMAGE ?= sagedet
CPU_IMAGE ?= $(IMAGE):cpu
GPU_IMAGE ?= $(IMAGE):gpu
AIRGAP ?= 0
LOCAL_DIR ?= local
LOCAL_IMAGE ?= $(CPU_IMAGE)
LOCAL_EPOCHS ?= $(DEMO_EPOCHS)
LOCAL_PORT ?= 8080
DOCKER_RUN_ARGS ?=
ECR_REPOSITORY ?= sagedet
PUSH_IMAGE ?= $(CPU_IMAGE)
SDK_VENV ?= docker/.cache/sdk-venv
SDK_VERSION ?= 2.257.7

docker-engine:
	docker/engine.sh

build-cpu: docker-engine
	AIRGAP=$(AIRGAP) docker/build.sh cpu $(CPU_IMAGE)

build-gpu: docker-engine
	AIRGAP=$(AIRGAP) docker/build.sh gpu $(GPU_IMAGE)

# The image's `train` on the demo's generated data, with a local /opt/ml tree mounted where SageMaker
# mounts it; the model lands in $(LOCAL_DIR)/opt_ml/model, and as SageMaker's $(LOCAL_DIR)/model.tar.gz.
train-local: docker-engine
	rm -rf $(LOCAL_DIR) && mkdir -p $(LOCAL_DIR)
	docker run --rm -v $(abspath $(LOCAL_DIR)):/data $(LOCAL_IMAGE) \
		sagedet sample-data /data/opt_ml --epochs $(LOCAL_EPOCHS) --lr-scheduler-step 24,32
	docker run --rm --shm-size=1g $(DOCKER_RUN_ARGS) -v $(abspath $(LOCAL_DIR))/opt_ml:/opt/ml $(LOCAL_IMAGE) train
	tar -czf $(LOCAL_DIR)/model.tar.gz -C $(LOCAL_DIR)/opt_ml/model .
	@echo "model: $(LOCAL_DIR)/opt_ml/model and $(LOCAL_DIR)/model.tar.gz; metrics: $(LOCAL_DIR)/opt_ml/output/data"

# The image's `serve` on the model train-local wrote, on 127.0.0.1:$(LOCAL_PORT) (Ctrl-C stops it).
# From another shell: curl -s -H 'Content-Type: image/jpeg' --data-binary @IMAGE.jpg http://127.0.0.1:$(LOCAL_PORT)/invocations
# or: .venv/bin/sagedet invoke $(LOCAL_DIR)/opt_ml/input/data/validation/images/*.jpg --endpoint http://127.0.0.1:$(LOCAL_PORT) --output $(LOCAL_DIR)/predictions
serve-local: docker-engine
	@test -f $(LOCAL_DIR)/opt_ml/model/model.safetensors || { echo "no model in $(LOCAL_DIR)/opt_ml/model: run make train-local first" >&2; exit 1; }
	docker run --rm $(DOCKER_RUN_ARGS) -p 127.0.0.1:$(LOCAL_PORT):8080 -v $(abspath $(LOCAL_DIR))/opt_ml/model:/opt/ml/model:ro \
		$(LOCAL_IMAGE) serve

# Create the ECR repository if needed, log in, tag and push. Account: AWS_ACCOUNT_ID or the caller's;
# region: AWS_REGION, AWS_DEFAULT_REGION or the AWS CLI's configuration.
push:
	docker/push.sh $(PUSH_IMAGE) $(ECR_REPOSITORY)

# The SageMaker Python SDK v2, in a virtual environment of its own, for its local mode.
$(SDK_VENV)/.installed:
	$(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install --quiet "sagemaker==$(SDK_VERSION)"
	touch $@

# SDK local mode on generated data: Estimator(image_uri=$(LOCAL_IMAGE), instance_type="local").fit(),
# deploy to "local", predict (examples/sagemaker_sdk.py local; no AWS account needed).
sdk-local: docker-engine $(SDK_VENV)/.installed
	rm -rf $(LOCAL_DIR)/sdk && mkdir -p $(LOCAL_DIR)/sdk
	docker run --rm -v $(abspath $(LOCAL_DIR))/sdk:/data $(LOCAL_IMAGE) sagedet sample-data /data/opt_ml
	$(SDK_VENV)/bin/python examples/sagemaker_sdk.py local --image-uri $(LOCAL_IMAGE) \
		--data $(LOCAL_DIR)/sdk/opt_ml/input/data --work $(LOCAL_DIR)/sdk/work --epochs 4

# Build Dockerfile.cpu with no registry and no index (AIRGAP=1), then run the image for real:
# tests/docker (train, serve, incremental training, failure file, SIGTERM, SDK local mode).
# `make test` skips those. The build's untagged stage images are removed after it (PRUNE_STAGES=1) to leave the
# disk to the tests.
docker-test: venv docker-engine $(SDK_VENV)/.installed
	AIRGAP=1 PRUNE_STAGES=1 docker/build.sh cpu $(CPU_IMAGE)
	SAGEDET_DOCKER_IMAGE=$(CPU_IMAGE) SAGEDET_SDK_PYTHON=$(abspath $(SDK_VENV))/bin/python \
		$(PY) -m pytest -ra -m docker tests/docker
