import json

import pytest

from sagedet.errors import ConfigError
from sagedet.sagemaker.paths import SageMakerPaths
from sagedet.sagemaker.resources import Resources, load_resources


@pytest.fixture
def paths(tmp_path):
    return SageMakerPaths(tmp_path)


def write(paths, config):
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.resource_config_file.write_text(json.dumps(config))


def test_missing_file_is_a_single_host(paths):
    assert load_resources(paths) == Resources("algo-1", ("algo-1",), None)


def test_cluster(paths):
    write(paths, {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"],
                  "network_interface_name": "eth0", "current_group_name": "homogeneousCluster"})
    assert load_resources(paths) == Resources("algo-2", ("algo-1", "algo-2"), "eth0")


def test_local_mode_host_names(paths):
    write(paths, {"current_host": "algo-1-x7k2p", "hosts": ["algo-1-x7k2p", "algo-2-ab3cd"]})
    resources = load_resources(paths)
    assert resources.hosts == ("algo-1-x7k2p", "algo-2-ab3cd")
    assert resources.network_interface_name is None


def test_current_host_not_in_hosts(paths):
    write(paths, {"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]})
    with pytest.raises(ConfigError, match="current_host 'algo-3' is not one of the hosts algo-1, "):
        load_resources(paths)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"hosts": ["algo-1"]}, "'current_host' must be a host name"),
        ({"current_host": "algo-1", "hosts": []}, "'hosts' must be a non-empty list"),
        ({"current_host": "algo-1", "hosts": "algo-1"}, "'hosts' must be a non-empty list"),
        ({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": 3},
         "'network_interface_name' must be a string"),
        (["algo-1"], "must hold a JSON object"),
    ],
)
def test_invalid_config(paths, config, message):
    write(paths, config)
    with pytest.raises(ConfigError, match=message) as caught:
        load_resources(paths)
    assert str(paths.resource_config_file) in str(caught.value)


def test_bad_json(paths):
    paths.config_dir.mkdir(parents=True)
    paths.resource_config_file.write_text("{")
    with pytest.raises(ConfigError, match="resource config file .* is not valid JSON"):
        load_resources(paths)
