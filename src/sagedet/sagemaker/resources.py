"""resourceconfig.json → this host's name and the training cluster's hosts.

SageMaker writes ``/opt/ml/input/config/resourceconfig.json`` as ``{"current_host": "algo-1",
"hosts": ["algo-1", "algo-2"], "network_interface_name": "eth0"}`` (extra keys, e.g. instance
groups, are ignored). The container's hostname is not the host's identity: this file is. Without
the file (a plain ``docker run``) the job is one host, ``algo-1``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagedet.errors import ConfigError
from sagedet.sagemaker.config_file import read_json_object
from sagedet.sagemaker.paths import SageMakerPaths

SINGLE_HOST = "algo-1"


@dataclass(frozen=True)
class Resources:
    """``hosts`` in the order the file lists them."""

    current_host: str
    hosts: tuple[str, ...]
    network_interface_name: str | None


def load_resources(paths: SageMakerPaths) -> Resources:
    """Read and validate resourceconfig.json."""
    path = paths.resource_config_file
    if not path.exists():
        return Resources(SINGLE_HOST, (SINGLE_HOST,), None)
    config = read_json_object(path, "resource config")
    current_host = config.get("current_host")
    hosts = config.get("hosts")
    interface = config.get("network_interface_name")
    if not isinstance(current_host, str) or not current_host:
        raise ConfigError(f"resource config {path}: 'current_host' must be a host name")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise ConfigError(f"resource config {path}: 'hosts' must be a non-empty list of host names")
    if interface is not None and not isinstance(interface, str):
        raise ConfigError(f"resource config {path}: 'network_interface_name' must be a string")
    if current_host not in hosts:
        raise ConfigError(
            f"resource config {path}: current_host {current_host!r} is not one of the hosts "
            f"{', '.join(hosts)}"
        )
    return Resources(current_host, tuple(hosts), interface or None)
