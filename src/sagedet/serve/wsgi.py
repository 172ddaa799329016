"""What gunicorn calls in each worker, ``sagedet.serve.wsgi:load()``: settings + model → the app.

gunicorn loads the app in the worker before the worker accepts a connection (``preload_app`` is
off), so a worker answers ``/ping`` only once its own model is loaded and has run once. A model
that cannot be loaded stops the whole server (exit status 4) with the reason on stderr.
"""

from __future__ import annotations

import logging
import os

from flask import Flask

from sagedet.errors import SagedetError

WORKER_SLOT = "SAGEDET_WORKER_SLOT"
"""Set by container/gunicorn.conf.py in each worker: 0, 1, ... (picks the GPU)."""


def load() -> Flask:
    from gunicorn.errors import AppImportError

    from sagedet.model.precision import cpu_has_native_bf16
    from sagedet.serve.app import create_app
    from sagedet.serve.predictor import Batching, Predictor, resolve_device
    from sagedet.serve.settings import load_settings

    log = logging.getLogger("gunicorn.error")
    try:
        settings = load_settings()
        slot = int(os.environ.get(WORKER_SLOT, "0"))
        device = resolve_device(settings.device, slot)
        batching = Batching(settings.batch_limit(device.type), settings.batch_delay_ms / 1000)
        predictor = Predictor.load(settings.model_dir, settings.device, slot, settings.torch_threads(),
                                   inference_path=settings.inference_path, batching=batching,
                                   decode_slots=settings.decode_slots(device.type), precision=settings.precision)
    except SagedetError as error:
        raise AppImportError(f"sagedet serve: cannot load the model: {error}") from error
    if predictor.engine.precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning("sagedet worker %d: SAGEDET_PRECISION=bf16 on a CPU without bf16 instructions (AVX512_BF16 or "
                    "AMX): oneDNN emulates them, slower than float32", os.getpid())
    for name, why in predictor.engine.failed.items():
        log.warning("sagedet worker %d: the %s inference path %s", os.getpid(), name, why)
    log.info("sagedet worker %d: %s loaded from %s in %.1f s", os.getpid(), predictor.describe(),
             settings.model_dir, predictor.load_seconds)
    return create_app(settings, predictor)
