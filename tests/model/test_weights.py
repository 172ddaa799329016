"""Pretrained ImageNet weights come from the local cache only; the tests write the weights themselves."""

import pytest
import torch
from torchvision.models import mobilenet_v3_large, resnet50, vgg16

from sagedet.errors import ModelError
from sagedet.model.ssd import build_ssd
from sagedet.model.weights import PRETRAINED, load_pretrained_state, weights_path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEDET_WEIGHTS_DIR", str(tmp_path))
    return tmp_path


def _write_classifier(factory, base_network):
    torch.manual_seed(123)
    state = factory().state_dict()
    path = weights_path(base_network)
    torch.save(state, path)
    return state


def test_file_names_are_torchvisions():
    assert PRETRAINED["vgg-16"].file_name == "vgg16_features-amdegroot-88682ab5.pth"
    assert PRETRAINED["resnet-50"].file_name == "resnet50-0676ba61.pth"
    assert PRETRAINED["mobilenet-v3"].file_name == "mobilenet_v3_large-8738ca79.pth"


@pytest.mark.parametrize("base_network, factory, source_key, layer", [
    ("vgg-16", vgg16, "features.0.weight", "conv1_1"),
    ("vgg-16", vgg16, "features.28.weight", "conv5_3"),
    ("resnet-50", resnet50, "layer3.5.conv3.weight", "layer3.5.conv3"),
    ("mobilenet-v3", mobilenet_v3_large, "features.16.0.weight", "features.16.0"),
])
def test_base_network_starts_from_the_cached_weights(cache, base_network, factory, source_key, layer):
    written = _write_classifier(factory, base_network)
    model = build_ssd(base_network, 2, 300, load_pretrained_state(base_network))
    assert torch.equal(model.base_layers[layer].weight, written[source_key])


def test_missing_weights_say_where_and_how(cache):
    with pytest.raises(ModelError) as error:
        load_pretrained_state("resnet-50")
    message = str(error.value)
    assert str(cache / "resnet50-0676ba61.pth") in message
    assert "never downloads" in message and "use_pretrained_model=0" in message


def test_a_file_for_another_network_is_refused(cache):
    torch.save(resnet50().state_dict(), weights_path("vgg-16"))
    with pytest.raises(ModelError, match="lack .* expected tensors"):
        build_ssd("vgg-16", 2, 300, load_pretrained_state("vgg-16"))


def test_a_file_with_pickled_code_is_not_executed(cache):
    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"x": Payload()}, weights_path("mobilenet-v3"))
    with pytest.raises(ModelError, match="does not load"):
        load_pretrained_state("mobilenet-v3")
