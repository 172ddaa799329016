"""Winograd F(4x4, 3x3) written in standard ONNX operators, inside ONNX Runtime: does it beat ONNX Runtime's
own direct convolution on resnet-50's 38x38 layers? (ninth session, 2026-11-22: no.)

resnet-50's fastest CPU path is ONNX Runtime (docs/benchmarks.md), whose NCHWc convolutions run near the
CPU's fp32 peak; the only way to less time is less arithmetic, and the 3x3 layers at 38x38 (layer3's six
256->256 convolutions and the stacked head's 1024->100) hold about 40% of it. An earlier try (eighth
session, scratch) gathered the tiles with strided slices and lost (218.5 against 167.1 ms). Here each
converted layer is, with its batch normalization folded in:

- the input transform B^T d B as one grouped convolution (C groups, 1 -> 36 channels, 6x6 kernel, stride
  4) over the padded map: (N, 36C, th, tw);
- a transpose to (N, 36, C, T) and one batched MatMul with the transformed weight U (36, K, C);
- the output transform A^T m A as one MatMul with A^T (x) A^T (16 x 36), then a transpose to
  (N, K, 16, th, tw) and DepthToSpace(4) (torch's pixel_shuffle) to put the 4x4 tiles in place; a crop
  and the bias.

Two exports of the same detector (torchvision's ONNX exporter, as ``sagedet.export.onnx.to_bytes``), one
with those layers, one plain, run in alternation in ONNX Runtime (graph optimizations on, 0.1 s pause
before each timed call as in bench/inference_latency.py); ``--profile`` adds ONNX Runtime's per-operator
time of the converted graph.

    python bench/checks/onnx_winograd.py [--network resnet-50] [--iterations 20] [--no-head] [--profile]
"""

from __future__ import annotations

import argparse
import collections
import copy
import io
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inference_latency import randomize  # noqa: E402
from machine import add_malloc_option, quiet, run_lines, set_malloc  # noqa: E402

from sagedet.export.graph import INPUT_NAMES, OUTPUT_NAMES, DetectionGraph  # noqa: E402
from sagedet.model.ssd import build_ssd  # noqa: E402
from sagedet.model.winograd import toom_cook, transform_weight  # noqa: E402


class OnnxWinogradConv(nn.Module):
    """A 3x3, stride 1, padding 1 convolution (bias included) as F(4x4, 3x3) in exportable operators."""

    def __init__(self, weight: Tensor, bias: Tensor):
        super().__init__()
        bt, _, at = toom_cook(4)
        self.c_in, self.c_out = weight.shape[1], weight.shape[0]
        per_channel = torch.kron(bt, bt).float().reshape(36, 1, 6, 6)
        self.register_buffer("input_transform", per_channel.repeat(self.c_in, 1, 1, 1))
        self.register_buffer("u", transform_weight(weight.double(), 4).float().transpose(1, 2).contiguous())
        self.register_buffer("output_transform", torch.kron(at, at).float())
        self.register_buffer("bias", bias.reshape(1, -1, 1, 1).clone())

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        th, tw = (h + 3) // 4, (w + 3) // 4
        padded = F.pad(x, (1, 4 * tw + 1 - w, 1, 4 * th + 1 - h))
        v = F.conv2d(padded, self.input_transform, stride=4, groups=c)  # (N, C*36, th, tw)
        v = v.reshape(n, c, 36, th * tw).transpose(1, 2)  # (N, 36, C, T)
        m = torch.matmul(self.u, v)  # (N, 36, K, T)
        y = torch.matmul(self.output_transform, m.reshape(n, 36, -1))  # (N, 16, K*T)
        y = y.reshape(n, 4, 4, self.c_out, th, tw).permute(0, 3, 1, 2, 4, 5).reshape(n, 16 * self.c_out, th, tw)
        y = F.pixel_shuffle(y, 4)  # exported as DepthToSpace (CRD)
        return y[:, :, :h, :w] + self.bias


def folded(conv: nn.Conv2d, norm: nn.BatchNorm2d | None) -> tuple[Tensor, Tensor]:
    weight = conv.weight.detach()
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
    if norm is None:
        return weight, bias
    weight, bias = fuse_conv_bn_weights(weight, bias, norm.running_mean, norm.running_var, norm.eps,
                                        norm.weight, norm.bias)
    return weight.detach(), bias.detach()


def convert(graph: DetectionGraph, head: bool) -> list[str]:
    """Replace layer3's 256-channel 3x3 convolutions (batch norm folded) and, with ``head``, the stacked head's
    first (38x38) convolution; the names replaced."""
    names = []
    for name, block in graph.model.features.named_modules():
        conv = getattr(block, "conv2", None)
        if isinstance(conv, nn.Conv2d) and conv.in_channels == conv.out_channels == 256 and conv.stride == (1, 1):
            block.conv2 = OnnxWinogradConv(*folded(conv, block.bn2))
            block.bn2 = nn.Identity()
            names.append(f"{name}.conv2")
    if head:
        graph.model.head.convs[0] = OnnxWinogradConv(*folded(graph.model.head.convs[0], None))
        names.append("head.convs.0")
    return names


def export(graph: nn.Module, size: int) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (torch.rand(1, 3, size, size),), buffer, input_names=INPUT_NAMES,
                          output_names=OUTPUT_NAMES, dynamic_axes={INPUT_NAMES[0]: {0: "batch"}}, opset_version=17,
                          dynamo=False)
    return buffer.getvalue()


def session(model: bytes, profile_prefix: str | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def operator_times(model: bytes, feed: dict, calls: int) -> list[tuple[float, str]]:
    """ms per call by operator type, converted layers' shapes apart, from ONNX Runtime's profile."""
    with tempfile.TemporaryDirectory() as folder:
        profiled = session(model, f"{folder}/profile")
        for _ in range(calls):
            profiled.run(None, feed)
        events = json.loads(Path(profiled.end_profiling()).read_text())
    totals: dict[str, float] = collections.defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"] / 1e3 / calls
    return sorted(((ms, op) for op, ms in totals.items()), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="resnet-50", choices=["resnet-50"])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--no-head", action="store_true", help="leave the stacked head's 38x38 convolution alone")
    parser.add_argument("--profile", action="store_true", help="ONNX Runtime's per-operator times of both graphs")
    add_malloc_option(parser)
    args = parser.parse_args()
    malloc = set_malloc(args)
    size = 300
    torch.manual_seed(0)
    plain = DetectionGraph(randomize(build_ssd(args.network, num_classes=20, image_shape=size)).eval()).eval()
    winograd = copy.deepcopy(plain)
    names = convert(winograd, head=not args.no_head)
    images = torch.rand(1, 3, size, size)
    with torch.no_grad():
        expected = plain(images)
    exported = {"direct": export(plain, size), "winograd": export(winograd, size)}
    sessions = {name: session(model) for name, model in exported.items()}
    feed = {INPUT_NAMES[0]: images.numpy()}
    differences = {}
    for name, runner in sessions.items():
        outputs = runner.run(None, feed)
        differences[name] = max((torch.from_numpy(got) - want).abs().max().item()
                                for got, want in zip(outputs, expected))
        runner.run(None, feed)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(args.iterations):
        for name, runner in sessions.items():
            quiet()
            start = time.perf_counter()
            runner.run(None, feed)
            times[name].append((time.perf_counter() - start) * 1e3)
    print("\n".join(run_lines(malloc)))
    print(f"\n{args.network} at {size} px, one image, ONNX Runtime; converted: {', '.join(names)}\n")
    print("| graph | median ms | min ms | largest difference from eager |\n|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} | {differences[name]:.1e} |")
    ratio = statistics.median(times["winograd"]) / statistics.median(times["direct"])
    print(f"\nwinograd / direct: {ratio:.3f}")
    if args.profile:
        for name, model in exported.items():
            print(f"\n{name}: ms per call by operator (ONNX Runtime profile, 10 calls)\n")
            print("\n".join(f"- {op}: {ms:.2f}" for ms, op in operator_times(model, feed, 10)[:12]))


if __name__ == "__main__":
    main()
