"""gunicorn's configuration for ``serve`` (see sagedet.serve.settings for the variables).

Threaded workers (gthread), each with its own copy of the model, loaded after the fork
(``preload_app`` off) and before the worker accepts a connection; the master imports the code
(torch, torchvision, flask) but never touches the model or CUDA. Within a worker one request at a
time runs the model while other threads read requests and answer ``/ping`` at once, so a health
check never waits behind a queue of invocations. SIGTERM: the master stops listening, each worker
finishes the requests it has accepted (within ``graceful_timeout``, below SageMaker's 30 s before
SIGKILL) and the server exits 0. ``GUNICORN_CMD_ARGS`` overrides any setting here.
"""

import os
import sys
import threading
import time

from gunicorn.errors import AppImportError

import sagedet.serve.app  # noqa: F401 - torch, torchvision, flask imported once, here: workers fork with them
from sagedet.serve.settings import load_settings
from sagedet.serve.wsgi import WORKER_SLOT

_settings = load_settings()

bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.workers
worker_class = "gthread"
threads = 16  # requests one worker holds at once: one in the model, the others decoding or waiting
timeout = _settings.timeout  # a worker whose main loop is silent this long is restarted
graceful_timeout = 25
keepalive = 30
preload_app = False
max_requests = 0
accesslog = "-"
errorlog = "-"
loglevel = "info"
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms'
control_socket_disable = True  # no runtime control interface (and no shared ~/.gunicorn socket)
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"  # the heartbeat file: never on a slow or full overlay disk


def on_starting(server):
    s = _settings
    server.log.info(
        "sagedet serve: model %s, %d workers, timeout %d s, max payload %s, default threshold %g and "
        "max_detections %d, batch %s", s.model_dir, s.workers, s.timeout,
        f"{s.max_payload_mb} MiB" if s.max_payload_mb else "unlimited", s.score_threshold, s.max_detections,
        s.batch)


def pre_fork(server, worker):
    """Give the new worker the lowest slot no live worker has (its GPU is slot mod the GPU count)."""
    taken = {getattr(w, "sagedet_slot", None) for w in server.WORKERS.values()}
    worker.sagedet_slot = next(i for i in range(len(taken) + 1) if i not in taken)


def post_fork(server, worker):
    os.environ[WORKER_SLOT] = str(worker.sagedet_slot)
    # Loading the model can outlast `timeout`: keep the worker's heartbeat going until it serves.
    worker.sagedet_loading = threading.Event()

    def heartbeat():
        while not worker.sagedet_loading.wait(1.0):
            try:
                worker.notify()
            except (OSError, ValueError):  # the worker is exiting
                return

    threading.Thread(target=heartbeat, name="sagedet-loading-heartbeat", daemon=True).start()
    worker.load_wsgi = _reported_once(worker, worker.load_wsgi)


def _reported_once(worker, load_wsgi):
    """A model that cannot load fails every worker at once; the master stops the server at the first
    report (exit 4) and would crash on a second one arriving while it stops. So a worker other than
    slot 0 waits up to 10 s to be told to stop (the master already has the reason) before reporting."""
    def load():
        try:
            load_wsgi()
        except AppImportError:
            worker.sagedet_loading.set()
            deadline = time.monotonic() + (10 if worker.sagedet_slot else 0)
            while worker.alive and time.monotonic() < deadline:
                time.sleep(0.1)
            if not worker.alive:  # stopped by the master, which has the reason: leave at once, quietly
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)
            raise
    return load


def post_worker_init(worker):
    worker.sagedet_loading.set()


def worker_abort(worker):
    worker.log.error("sagedet worker %d: no heartbeat for %d s (SAGEMAKER_MODEL_SERVER_TIMEOUT); restarting it",
                     worker.pid, worker.timeout)
