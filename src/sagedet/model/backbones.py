"""Base networks: feature extractors that turn a normalized image batch into SSD's feature maps.

Each builder returns a :class:`BaseNetwork` holding the extractor and the *layer names* that
``freeze_layer_pattern`` is matched against (``re.match``, so a pattern matches from the start of a
name). The names, listed by ``sagedet layers BASE_NETWORK``:

- ``vgg-16``: ``conv1_1, conv1_2, conv2_1, conv2_2, conv3_1 … conv3_3, conv4_1 … conv4_3, conv5_1 …
  conv5_3, fc6, fc7`` — the names of the original VGG/SSD model, so the built-in's example
  ``^(conv1_|conv2_).*`` freezes the first two blocks.
- ``resnet-50``: torchvision's module names of the trunk up to ``layer3``: ``conv1, bn1,
  layer1.0.conv1, layer1.0.bn1, …, layer1.0.downsample.0, …, layer3.5.bn3``.
- ``mobilenet-v3``: torchvision's module names of MobileNetV3-Large's features: ``features.0.0,
  features.0.1, features.1.block.0.0, …, features.16.1``.

The extra layers SSD adds after the base network are never frozen by the pattern.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet50, vgg16
from torchvision.models.detection.ssd import SSDFeatureExtractorVGG
from torchvision.models.detection.ssdlite import _mobilenet_extractor, _normal_init

from ..errors import ModelError


@dataclass
class BaseNetwork:
    features: nn.Module  # normalized images (B, 3, S, S) -> list of feature maps
    layers: dict[str, nn.Module]  # named base-network layers, for freeze_layer_pattern
    image_mean: tuple[float, float, float]  # on the [0, 1] scale
    image_std: tuple[float, float, float]
    head: str  # "ssd" (plain 3x3 convolutions) or "ssdlite" (depthwise separable)
    cpu_channels_last: bool = False
    """Whether training on the CPU runs in channels-last (NHWC) memory: oneDNN's NHWC kernels trained
    mobilenet-v3 1.4x and resnet-50 1.1x faster than NCHW on a 2-core AVX2 CPU, and vgg-16 0.76x
    (bench/train_throughput.py). CUDA always trains channels-last."""


class _ListOutput(nn.Module):
    """Adapts torchvision's extractors, which return an OrderedDict, to a list of maps."""

    def __init__(self, extractor: nn.Module):
        super().__init__()
        self.extractor = extractor

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.extractor(x).values())


def _leaf_layers(module: nn.Module, prefix: str = "") -> dict[str, nn.Module]:
    """Modules that own parameters directly, by their torchvision name."""
    return {
        f"{prefix}{name}": m
        for name, m in module.named_modules()
        if name and any(True for _ in m.parameters(recurse=False))
    }


def _load_classifier_state(model: nn.Module, state: dict[str, torch.Tensor], used_prefixes: tuple[str, ...],
                           base_network: str) -> None:
    """Load an ImageNet classifier's weights, requiring every key of the layers SSD uses."""
    own = model.state_dict()
    needed = [k for k in own if k.startswith(used_prefixes)]
    missing = [k for k in needed if k not in state]
    if missing:
        raise ModelError(
            f"the pretrained weights for base_network={base_network} lack {len(missing)} of the "
            f"{len(needed)} expected tensors (first: {missing[:3]}); is this torchvision's file for {base_network}?"
        )
    wrong = [k for k in needed if state[k].shape != own[k].shape]
    if wrong:
        raise ModelError(
            f"the pretrained weights for base_network={base_network} have tensors of the wrong shape: "
            + ", ".join(f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})" for k in wrong[:3])
        )
    model.load_state_dict({k: state[k] for k in needed}, strict=False)


def _vgg_layer_names(features: nn.Sequential) -> dict[str, nn.Module]:
    names: dict[str, nn.Module] = {}
    stage, index = 1, 1
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            names[f"conv{stage}_{index}"] = layer
            index += 1
        elif isinstance(layer, nn.MaxPool2d):
            stage, index = stage + 1, 1
    return names


def build_vgg16(image_shape: int, pretrained: dict[str, torch.Tensor] | None) -> BaseNetwork:
    classifier = vgg16()
    if pretrained is not None:
        _load_classifier_state(classifier, pretrained, ("features.",), "vgg-16")
    layers = _vgg_layer_names(classifier.features)
    # SSD512 adds one more extra block (SSD paper, footnote 5); torchvision's extractor does both.
    extractor = SSDFeatureExtractorVGG(classifier.features, highres=image_shape >= 512)
    fc = extractor.extra[0][-1]
    layers["fc6"], layers["fc7"] = fc[1], fc[3]
    # torchvision's SSD300 VGG weights expect 0-255 inputs minus the mean (Caffe convention).
    return BaseNetwork(_ListOutput(extractor), layers, (0.48235, 0.45882, 0.40784), (1 / 255, 1 / 255, 1 / 255), "ssd",
                       cpu_channels_last=False)


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ResNetSSDFeatures(nn.Module):
    """ResNet-50 up to layer3 with layer3 at stride 8 (as NVIDIA's SSD300), then SSD's extra blocks.

    At image_shape 300 the maps are 38, 19, 10, 5, 3 and 1 cells wide.
    """

    def __init__(self, classifier: nn.Module):
        super().__init__()
        layer3 = classifier.layer3
        layer3[0].conv2.stride = (1, 1)
        layer3[0].downsample[0].stride = (1, 1)
        self.trunk = nn.Sequential(
            classifier.conv1, classifier.bn1, classifier.relu, classifier.maxpool,
            classifier.layer1, classifier.layer2, layer3,
        )
        channels = [1024, 512, 512, 256, 256, 256]
        middle = [256, 256, 128, 128, 128]
        self.extra = nn.ModuleList()
        for i, (cin, mid, cout) in enumerate(zip(channels[:-1], middle, channels[1:])):
            stride, padding = (2, 1) if i < 3 else (1, 0)
            self.extra.append(nn.Sequential(*_conv_bn_relu(cin, mid, 1), *_conv_bn_relu(mid, cout, 3, stride, padding)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.trunk(x)
        maps = [x]
        for block in self.extra:
            x = block(x)
            maps.append(x)
        return maps


def build_resnet50(image_shape: int, pretrained: dict[str, torch.Tensor] | None) -> BaseNetwork:
    classifier = resnet50()
    if pretrained is not None:
        _load_classifier_state(classifier, pretrained, ("conv1.", "bn1.", "layer1.", "layer2.", "layer3."), "resnet-50")
    layers = {name: m for name, m in _leaf_layers(classifier).items() if not name.startswith(("layer4", "fc"))}
    features = ResNetSSDFeatures(classifier)
    return BaseNetwork(features, layers, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "ssd", cpu_channels_last=True)


def build_mobilenet_v3(image_shape: int, pretrained: dict[str, torch.Tensor] | None) -> BaseNetwork:
    """SSDlite's MobileNetV3-Large extractor, as torchvision's ssdlite320_mobilenet_v3_large."""
    # BN momentum 0.1 (PyTorch's default), not torchvision's 0.03 tuned for 600-epoch COCO runs: with
    # 0.03 the running statistics lag far behind the weights in short trainings from scratch.
    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.1)
    classifier = mobilenet_v3_large(norm_layer=norm_layer)
    if pretrained is None:
        _normal_init(classifier)
    else:
        _load_classifier_state(classifier, pretrained, ("features.",), "mobilenet-v3")
    layers = _leaf_layers(classifier.features, prefix="features.")
    extractor = _mobilenet_extractor(classifier, trainable_layers=6, norm_layer=norm_layer)
    return BaseNetwork(_ListOutput(extractor), layers, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "ssdlite",
                       cpu_channels_last=True)


BUILDERS: dict[str, Callable[[int, dict[str, torch.Tensor] | None], BaseNetwork]] = {
    "vgg-16": build_vgg16,
    "resnet-50": build_resnet50,
    "mobilenet-v3": build_mobilenet_v3,
}


def build_base_network(name: str, image_shape: int, pretrained: dict[str, torch.Tensor] | None) -> BaseNetwork:
    return BUILDERS[name](image_shape, pretrained)
