"""Training on every GPU of a host and on several hosts, through torch.distributed.

The ``train`` entrypoint is the launcher: when the job has more than one process — several hosts
in resourceconfig.json, or several GPUs on this host — it starts one worker process per GPU (one
per host on CPU) with torchrun's environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), forwards SIGTERM to them, and fails the
job with the first failing worker's reason. The workers join one process group (NCCL on CUDA,
gloo on CPU) and train with DistributedDataParallel.

- The first host of ``hosts`` is the rendezvous; this host's node rank is its position in ``hosts``.
  Host names are resolved with retries (SageMaker's DNS comes up late): ``SAGEDET_DNS_TIMEOUT``
  seconds, default 600. ``SAGEDET_HOST_ADDRESSES`` (a JSON object, host → address) overrides the
  resolution (tests map the hosts to 127.0.0.1). ``SAGEDET_MASTER_PORT`` (default 29500).
- ``network_interface_name`` becomes ``NCCL_SOCKET_IFNAME`` and ``GLOO_SOCKET_IFNAME`` unless set.
- A worker that loses a peer fails at its next collective (at once when the peer's connections
  close; after ``SAGEDET_DIST_TIMEOUT`` seconds, default 600, when they hang).
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ConfigError, SagedetError
from ..sagemaker.resources import Resources

HOST_ADDRESSES_ENV = "SAGEDET_HOST_ADDRESSES"
MASTER_PORT_ENV = "SAGEDET_MASTER_PORT"
DNS_TIMEOUT_ENV = "SAGEDET_DNS_TIMEOUT"
DIST_TIMEOUT_ENV = "SAGEDET_DIST_TIMEOUT"
FAILURE_FILE_ENV = "SAGEDET_WORKER_FAILURE_FILE"
DEFAULT_MASTER_PORT = 29500
STOP_GRACE_SECONDS = 60
"""After one worker fails, how long the launcher lets the others on this host end by themselves."""


def _env_number(name: str, default: float, low: float, integer: bool = False) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = low - 1
    if not value >= low:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"environment variable {name}={raw!r}: expected {kind} >= {low:g}")
    return value


# --- the plan: who runs where ------------------------------------------------------------------------
@dataclass(frozen=True)
class Topology:
    """The job's processes: ``local_processes`` on each of ``hosts``."""

    hosts: tuple[str, ...]
    node_rank: int
    local_processes: int
    interface: str | None

    @property
    def world_size(self) -> int:
        return len(self.hosts) * self.local_processes

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def plan(resources: Resources, gpus: int) -> Topology:
    return Topology(resources.hosts, resources.hosts.index(resources.current_host), max(1, gpus),
                    resources.network_interface_name)


def resolve(host: str, timeout: float | None = None, poll: float = 2.0) -> str:
    """``host``'s IPv4 address: from SAGEDET_HOST_ADDRESSES, else DNS, retried until ``timeout``."""
    raw = os.environ.get(HOST_ADDRESSES_ENV, "").strip()
    if raw:
        try:
            mapping = json.loads(raw)
            if not isinstance(mapping, dict):
                raise ValueError
        except ValueError:
            raise ConfigError(f"environment variable {HOST_ADDRESSES_ENV}={raw!r}: expected a JSON object mapping "
                              'host names to addresses, e.g. {"algo-1": "127.0.0.1"}') from None
        if host in mapping:
            return str(mapping[host])
    timeout = _env_number(DNS_TIMEOUT_ENV, 600.0, 0.0) if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        except socket.gaierror as error:
            if time.monotonic() >= deadline:
                raise SagedetError(f"cannot resolve host {host!r} (the rendezvous host, first of resourceconfig.json's "
                                   f"hosts) within {timeout:g} s: {error}") from None
            time.sleep(poll)


# --- the launcher --------------------------------------------------------------------------------------
EXIT_STOPPED = 128 + signal.SIGTERM  # a training process (and the job) stopped on SIGTERM: 143


@dataclass(frozen=True)
class LaunchResult:
    code: int
    reason: str | None


def launch(topology: Topology, command: list[str], log: Callable[[str], None]) -> LaunchResult:
    """Run ``command`` once per local process with torchrun's environment; wait for all of them.

    The result's code is 0 when every worker exited 0, 143 when they stopped on SIGTERM, else the
    first failing worker's code, with its failure reason."""
    # One host (a GPU machine outside SageMaker, whose name is no "algo-1"): its processes meet on loopback.
    master = "127.0.0.1" if len(topology.hosts) == 1 else resolve(topology.hosts[0])
    port = int(_env_number(MASTER_PORT_ENV, DEFAULT_MASTER_PORT, 1, integer=True))
    env = dict(os.environ, MASTER_ADDR=master, MASTER_PORT=str(port), WORLD_SIZE=str(topology.world_size),
               LOCAL_WORLD_SIZE=str(topology.local_processes), GROUP_RANK=str(topology.node_rank),
               NODE_RANK=str(topology.node_rank))
    if topology.interface:
        env.setdefault("NCCL_SOCKET_IFNAME", topology.interface)
        env.setdefault("GLOO_SOCKET_IFNAME", topology.interface)
    log(f"distributed: {len(topology.hosts)} host(s) x {topology.local_processes} process(es); this host is node "
        f"{topology.node_rank}; rendezvous {topology.hosts[0]} ({master}:{port})")
    with tempfile.TemporaryDirectory(prefix="sagedet-workers-") as work:
        workers = []
        for local_rank in range(topology.local_processes):
            rank = topology.node_rank * topology.local_processes + local_rank
            failure = Path(work) / f"failure-{rank}"
            worker_env = dict(env, RANK=str(rank), LOCAL_RANK=str(local_rank), **{FAILURE_FILE_ENV: str(failure)})
            workers.append((rank, failure, subprocess.Popen(command, env=worker_env)))

        stop_codes = {EXIT_STOPPED}

        def forward(signum, frame):  # noqa: ANN001 - signal handler signature
            # a worker still starting (importing torch, before its own handler) dies of the signal itself
            stop_codes.add(-signum)
            for _, _, process in workers:
                if process.poll() is None:
                    process.send_signal(signum)

        previous = signal.signal(signal.SIGTERM, forward)
        try:
            return _wait(workers, stop_codes)
        finally:
            signal.signal(signal.SIGTERM, previous)
            for _, _, process in workers:
                if process.poll() is None:
                    process.kill()
                    process.wait()


def _wait(workers: list[tuple[int, Path, subprocess.Popen]], stop_codes: set[int]) -> LaunchResult:
    """``stop_codes``: the exit codes of a stopped worker (143; also -SIGTERM once SIGTERM was forwarded),
    read as they are when each worker is checked."""
    first_failure: tuple[int, Path, int] | None = None
    deadline = None
    while any(process.poll() is None for _, _, process in workers):
        for rank, failure, process in workers:
            code = process.poll()
            if first_failure is None and code is not None and code != 0 and code not in stop_codes:
                first_failure = (rank, failure, code)
                deadline = time.monotonic() + STOP_GRACE_SECONDS
        if deadline is not None and time.monotonic() > deadline:
            for _, _, process in workers:
                if process.poll() is None:
                    process.terminate()
            deadline = time.monotonic() + 10
        time.sleep(0.1)
    for rank, failure, process in workers:
        if first_failure is None and process.returncode != 0 and process.returncode not in stop_codes:
            first_failure = (rank, failure, process.returncode)
    if first_failure is not None:
        rank, failure, code = first_failure
        reason = failure.read_text(encoding="utf-8") if failure.is_file() else None
        prefix = f"training process {rank} failed (exit code {code})"
        if reason is None and code == -signal.SIGABRT:
            reason = (f"it aborted (SIGABRT) before it could write its reason: a native abort, such as NCCL's "
                      f"watchdog ending a process whose collective waited longer than {DIST_TIMEOUT_ENV} seconds "
                      f"for another process (the log above says which)")
        return LaunchResult(code, f"{prefix}: {reason}" if reason else prefix)
    stopped = any(process.returncode in stop_codes for _, _, process in workers)
    return LaunchResult(EXIT_STOPPED if stopped else 0, None)


# --- inside a worker -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rank:
    """This process's place in the job (torchrun's variables)."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def node_rank(self) -> int:
        return self.rank // self.local_world_size

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Rank | None":
        """None when this process was not started by the launcher."""
        env = os.environ if environ is None else environ
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return None
        try:
            return cls(int(env["RANK"]), int(env.get("LOCAL_RANK", "0")), int(env["WORLD_SIZE"]),
                       int(env.get("LOCAL_WORLD_SIZE", "1")))
        except ValueError:
            raise ConfigError("torchrun's RANK, LOCAL_RANK, WORLD_SIZE and LOCAL_WORLD_SIZE must be integers") from None


SOLO = Rank(0, 0, 1, 1)


def worker_failure_file() -> Path | None:
    raw = os.environ.get(FAILURE_FILE_ENV)
    return Path(raw) if raw else None


class Collective:
    """The few collectives the training loop needs; with one process, each is the identity."""

    def __init__(self, rank: Rank, device: torch.device) -> None:
        self.rank = rank
        self.device = device
        self.active = rank.world_size > 1

    @classmethod
    def join(cls, rank: Rank, device: torch.device) -> "Collective":
        """Join the job's process group (NCCL on CUDA, gloo on CPU)."""
        collective = cls(rank, device)
        if collective.active:
            timeout = _env_number(DIST_TIMEOUT_ENV, 600.0, 1.0)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                                    rank=rank.rank, world_size=rank.world_size,
                                    timeout=datetime.timedelta(seconds=timeout))
        return collective

    def leave(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()

    def step(self, has_batch: bool, stop: bool) -> tuple[bool, bool]:
        """(every process has a batch, some process was asked to stop): one small all-reduce, so
        that all processes take the same number of steps and stop at the same step."""
        if not self.active:
            return has_batch, stop
        flags = torch.tensor([0.0 if has_batch else 1.0, 1.0 if stop else 0.0], device=self.device)
        self._all_reduce(flags)
        missing, stopping = flags.tolist()
        return missing == 0, stopping > 0

    def all_gather(self, value: Any) -> list[Any]:
        if not self.active:
            return [value]
        values: list[Any] = [None] * self.rank.world_size
        self._call(dist.all_gather_object, values, value)
        return values

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value``, on every process."""
        if not self.active:
            return value
        box = [value]
        self._call(dist.broadcast_object_list, box, src=0)
        return box[0]

    def share_buffers(self, module: torch.nn.Module) -> None:
        """Process 0's buffers (batch-norm statistics) in every process's ``module``: each process's
        last training forward updated its own, and all must evaluate the same model."""
        if self.active:
            for buffer in module.buffers():
                self._call(dist.broadcast, buffer, src=0)

    def barrier(self) -> None:
        if self.active:
            self._call(dist.barrier)

    def _all_reduce(self, tensor: torch.Tensor) -> None:
        self._call(dist.all_reduce, tensor)

    @contextmanager
    def model_step(self) -> Iterator[None]:
        """Around the training step's forward and backward passes, where DistributedDataParallel
        broadcasts the buffers and all-reduces the gradients: a process that vanished shows there as a
        gloo or NCCL error (the first collective after a host dies is as likely one of these as one of
        the loop's own), named as the loop's collectives name it. Other errors (out of memory, a bad
        loss) pass through as they are."""
        try:
            yield
        except (RuntimeError, dist.DistBackendError) as error:
            if self.active and _communication_error(error):
                raise _lost_contact(error) from None
            raise

    def _call(self, operation, *args, **kwargs) -> None:  # noqa: ANN001
        try:
            operation(*args, **kwargs)
        except (RuntimeError, dist.DistBackendError) as error:
            raise _lost_contact(error) from None


_COMMUNICATION_MARKERS = ("gloo", "NCCL", "Connection reset by peer", "Connection closed by peer")
"""What a communication failure's message holds: gloo's errors name their source file (.../gloo/transport/
tcp/pair.cc:545] Read error ...: Connection reset by peer), NCCL's are DistBackendErrors naming NCCL."""


def _communication_error(error: BaseException) -> bool:
    return isinstance(error, dist.DistBackendError) or any(marker in str(error) for marker in _COMMUNICATION_MARKERS)


def _lost_contact(error: BaseException) -> SagedetError:
    return SagedetError(f"lost contact with another training process (host or GPU): {error}; that process's "
                        "failure file says why it stopped")
