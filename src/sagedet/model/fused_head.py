"""SSD's head for inference with each feature map's class and box convolutions as one convolution.

torchvision's ``SSDHead`` runs two 3x3 convolutions on every feature map, one for the class logits
(A·K channels) and one for the box codes (A·4 channels). Both read the same map, so one convolution
with the two weights stacked computes the same outputs from one pass over it; and the stacked
convolution is wide enough for Winograd's algorithm (:mod:`sagedet.model.winograd`) where the box
convolution alone is not (vgg-16 with 20 classes at 38x38: 512→84 and 512→16 become 512→100). The
exported graphs (:mod:`sagedet.export.graph`) use it; training and the eager path keep torchvision's
head, whose parameters are the model's. On the 2-core AVX-512 Xeon, 20 classes, 300 px
(bench/checks/fused_head.py; docs/benchmarks.md, eighth session): the head alone 18.9 -> 15.1 ms for
vgg-16 and 21.9 -> 17.8 for resnet-50 with the winograd path's rule; whole paths, taking turns with the
unfused path and torchvision, vgg-16's winograd path -1.6% and -1.8%, resnet-50's -4.3%, and resnet-50
on ONNX Runtime -9.5%.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.ssd import SSDHead

_SAME = ("kernel_size", "stride", "padding", "dilation", "groups", "padding_mode")


class FusedSSDHead(nn.Module):
    """The outputs of an ``SSDHead`` (``cls_logits`` (N, Σ H·W·A, K), ``bbox_regression`` (N, Σ H·W·A, 4)),
    from one convolution per feature map whose first A·K output channels are the class convolution's
    and the rest the box convolution's (copies of their weights and biases)."""

    def __init__(self, head: SSDHead):
        super().__init__()
        self.num_classes = head.classification_head.num_columns
        self.convs = nn.ModuleList(_stacked(classes, boxes) for classes, boxes in
                                   zip(head.classification_head.module_list, head.regression_head.module_list))
        self.class_channels = [classes.out_channels for classes in head.classification_head.module_list]

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        logits, codes = [], []
        for conv, split, features in zip(self.convs, self.class_channels, x):
            out = conv(features)
            logits.append(_per_box(out[:, :split], self.num_classes))
            codes.append(_per_box(out[:, split:], 4))
        return {"bbox_regression": torch.cat(codes, dim=1), "cls_logits": torch.cat(logits, dim=1)}


def _per_box(out: Tensor, columns: int) -> Tensor:
    """(N, A·columns, H, W) → (N, H·W·A, columns), in the order of torchvision's ``SSDScoringHead``."""
    n, _, h, w = out.shape
    return out.reshape(n, -1, columns, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, columns)


def _stacked(classes: nn.Conv2d, boxes: nn.Conv2d) -> nn.Conv2d:
    conv = nn.Conv2d(classes.in_channels, classes.out_channels + boxes.out_channels, classes.kernel_size,
                     classes.stride, classes.padding, classes.dilation, classes.groups, bias=True,
                     padding_mode=classes.padding_mode, device=classes.weight.device, dtype=classes.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([classes.weight, boxes.weight]))
        conv.bias.copy_(torch.cat([classes.bias, boxes.bias]))
    return conv


def fusable(head: nn.Module) -> bool:
    """Whether ``head`` is torchvision's ``SSDHead`` (not SSDlite's) with plain, biased convolutions whose
    class and box layers on each map differ only in their output channels."""
    if type(head) is not SSDHead:
        return False
    pairs = list(zip(head.classification_head.module_list, head.regression_head.module_list))
    return all(type(a) is nn.Conv2d and type(b) is nn.Conv2d and a.bias is not None and b.bias is not None
               and a.in_channels == b.in_channels and all(getattr(a, k) == getattr(b, k) for k in _SAME)
               for a, b in pairs)


def fuse_head(head: nn.Module) -> nn.Module:
    """A :class:`FusedSSDHead` computing what ``head`` computes, or ``head`` itself where it is not
    :func:`fusable` (SSDlite's head, a head already fused)."""
    return FusedSSDHead(head) if fusable(head) else head
