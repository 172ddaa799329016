"""Models with random weights whose outputs spread as a trained SSD's do, and real-looking pixels:
for tests that compare inference paths (exported graphs, the server's paths) with eager PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from sagedet.artifacts import save_model
from sagedet.model.ssd import build_ssd

CLASS_NAMES = ["rectangle", "ellipse", "triangle"]


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random convolutions and batch-norm statistics: an untrained network's outputs are all but
    constant, which would let a wrong graph pass."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2 / fan_in) ** 0.5)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return model


def write_model(model_dir: Path, network: str, image_shape: int, seed: int = 0) -> None:
    model = calibrate(randomize(build_ssd(network, len(CLASS_NAMES), image_shape), seed))
    save_model(model_dir, model.state_dict(), {"base_network": network, "num_classes": len(CLASS_NAMES),
                                               "image_shape": image_shape, "nms_threshold": 0.45,
                                               "class_names": CLASS_NAMES})


def calibrate(model, logit_std: float = 1.0, code_std: float = 0.5):
    """Scale the head's last layers so that class logits and box codes spread as a trained SSD's do
    (random vgg-16 weights on 0-255 inputs give logits in the hundreds, where float32 rounding alone
    moves saturated softmax scores by more than any real model would)."""
    model.eval()
    with torch.no_grad():
        logits, codes = model(photos(2, model.image_shape))
        for head, spread, target in ((model.head.classification_head, logits.std(), logit_std),
                                     (model.head.regression_head, codes.std(), code_std)):
            for layer in head.module_list:
                last = [m for m in layer.modules() if isinstance(m, nn.Conv2d)][-1]
                last.weight.mul_(target / spread)
                if last.bias is not None:
                    last.bias.mul_(target / spread)
    return model


def photos(count: int, side: int) -> torch.Tensor:
    """Real pixels: coloured rectangles on gradients, resized as the server resizes them."""
    predictor_images = []
    rng = np.random.default_rng(3)
    for _ in range(count):
        pixels = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
        pixels[20:60, 30:90] = rng.integers(0, 256, 3, dtype=np.uint8)
        image = Image.fromarray(pixels, "RGB").resize((side, side))
        predictor_images.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(predictor_images)
