"""GFLOP of one forward pass at 300 px per base network (torch.utils.flop_counter)."""
import torch
from torch.utils.flop_counter import FlopCounterMode

from sagedet.model.ssd import build_ssd

for n in ["vgg-16", "resnet-50", "mobilenet-v3"]:
    m = build_ssd(n, 20, 300).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as f:
        m(torch.rand(1, 3, 300, 300))
    print(n, f.get_total_flops() / 1e9, "GFLOP")
