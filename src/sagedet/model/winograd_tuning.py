"""Which of a CPU training model's Winograd layers are faster than torch's convolution on this machine,
measured once before training, the others given back to torch's convolution.

Why measure: how a layer's Winograd convolution compares with oneDNN's, forward and backward, depends
on the CPU far more than the fixed rule of :func:`sagedet.model.winograd.tile_for` can say. On the
2-core AVX2 AMD EPYC the rule was tuned on, every layer it takes won; on a 2-core AVX-512 Xeon
(Ice Lake), where oneDNN's kernels are about three times faster on large maps, vgg-16's conv1_2 took
1.21x oneDNN's time at 300 px and 3.12x at 512 px, and conv2_2 at 512 px (128 channels at 256x256)
1.48x, so that a vgg-16 training step at 512 px was only 1.09x torchvision's (bench/checks/
winograd_layers.py --backward --batch 8, bench/train_throughput.py; docs/benchmarks.md, ninth
session). The Trainer therefore times each converted layer's forward and backward pass both ways on
its own map size, on the job's batch (:data:`MAX_IMAGES` at most), and keeps Winograd only where it is
faster, as cuDNN's benchmark mode picks a convolution algorithm and as the server picks its inference
path.

Each layer is timed alone, with random inputs of its shape and memory format and a copy of its
parameters; the two ways take turns (a warm-up each, then :data:`ROUNDS` rounds, the fastest of
each compared). Both ways compute the same convolution to float32 rounding, so the choice changes
speed only.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sagedet.model.winograd import WinogradConv2d, tile_for, unconvert

MAX_IMAGES = 8
"""The most images per timed pass: the training batch, up to this. Winograd's share of a layer's time that
does not grow with the batch (the weight's transform, forward and backward, on every step) weighs more
in small batches: with 2 images vgg-16's 19x19 layers took 0.95-1.03x torch's time, with 8 0.45-0.52x
(AVX-512 Xeon, scratch runs of :func:`measure`), so the batch the job trains with is what is timed, where
that is affordable: 40-53 s for vgg-16 at 300 px and 133-138 s at 512 px with 8 images on a 2-core CPU,
against hours of training.
Above 8 images the fixed share only shrinks further, so a layer that wins at 8 wins at 32."""
ROUNDS = 2
"""Timed passes each way; the fastest counts. One pass each way on one image warms up first."""


@dataclass(frozen=True)
class LayerTiming:
    name: str
    shape: tuple[int, ...]  # the timed input, (images, C_in, H, W)
    torch_ms: float  # forward + backward with torch's convolution
    winograd_ms: float  # the same with Winograd's, at the tile tile_for gives

    @property
    def winograd_wins(self) -> bool:
        return self.winograd_ms < self.torch_ms


def _input_shapes(model: nn.Module, image_shape: int) -> dict[str, tuple[int, ...]]:
    """Each Winograd layer's input shape for one image of ``image_shape`` pixels (one forward pass)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(_: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            shapes.setdefault(name, tuple(inputs[0].shape))
        return hook

    hooks = [module.register_forward_pre_hook(record(name))
             for name, module in model.named_modules() if isinstance(module, WinogradConv2d)]
    parameter = next(model.parameters())
    training = model.training
    model.eval()  # no batch-norm statistics updated by this pass
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_shape, image_shape, dtype=parameter.dtype, device=parameter.device))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    return shapes


def _step_time(layer: nn.Module, x: Tensor, gradient: Tensor) -> float:
    x.grad = None
    start = time.perf_counter()
    layer(x).backward(gradient)
    return (time.perf_counter() - start) * 1e3


def time_layer(conv: WinogradConv2d, shape: tuple[int, ...], channels_last: bool,
               rounds: int = ROUNDS) -> tuple[float, float]:
    """ms of one forward and backward pass of ``conv`` on an input of ``shape``: with torch's convolution
    and with Winograd's (the fastest of ``rounds``, the two taking turns)."""
    winograd = copy.deepcopy(conv)
    plain = unconvert(copy.deepcopy(conv))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator).to(conv.weight.device, conv.weight.dtype, memory_format=memory_format)
    x.requires_grad_(True)
    gradient = torch.randn((shape[0], conv.out_channels, *shape[2:]), generator=generator).to(x)
    for layer in (plain, winograd):  # warm-up
        _step_time(layer, x[:1].detach().requires_grad_(True), gradient[:1])
    times: dict[str, list[float]] = {"torch": [], "winograd": []}
    for _ in range(rounds):
        for key, layer in (("torch", plain), ("winograd", winograd)):
            times[key].append(_step_time(layer, x, gradient))
    return min(times["torch"]), min(times["winograd"])


def measure(model: nn.Module, image_shape: int, batch: int, channels_last: bool, rounds: int = ROUNDS,
            stop: Callable[[], bool] = lambda: False, timer: Callable[..., tuple[float, float]] = time_layer,
            ) -> list[LayerTiming]:
    """Time every Winograd layer of ``model`` that computes by Winograd in a training step at this
    ``image_shape`` (:func:`tile_for` with a backward pass) on ``batch`` images, at most
    :data:`MAX_IMAGES`; layers it leaves to torch's convolution on their map are not timed. Once ``stop()``
    is true (the job was asked to stop) the layers not yet timed are left out: they keep Winograd.
    ``timer`` is :func:`time_layer` or a function like it."""
    images = max(1, min(batch, MAX_IMAGES))
    timings = []
    modules = dict(model.named_modules())
    for name, shape in _input_shapes(model, image_shape).items():
        conv = modules[name]
        if tile_for(shape[2], shape[3], conv.in_channels, conv.out_channels, backward=True) is None:
            continue
        if stop():
            break
        timed = (images, *shape[1:])
        torch_ms, winograd_ms = timer(conv, timed, channels_last, rounds)
        timings.append(LayerTiming(name, timed, torch_ms, winograd_ms))
    return timings


def slower_layers(timings: list[LayerTiming]) -> list[str]:
    """The names of the timed layers where Winograd was not faster."""
    return [timing.name for timing in timings if not timing.winograd_wins]


def choose(model: nn.Module, image_shape: int, batch: int, channels_last: bool,
           stop: Callable[[], bool] = lambda: False) -> tuple[list[str], str]:
    """:func:`measure`, then the layers to give back to torch's convolution (:func:`use_torch_convolution`)
    and the log line (:func:`describe`) saying what was timed and chosen."""
    start = time.perf_counter()
    timings = measure(model, image_shape, batch, channels_last, stop=stop)
    return slower_layers(timings), describe(timings, time.perf_counter() - start)


def use_torch_convolution(model: nn.Module, names: list[str]) -> None:
    """Give the named Winograd layers of ``model`` back to torch's convolution (same parameters)."""
    modules = dict(model.named_modules())
    for name in names:
        unconvert(modules[name])


def describe(timings: list[LayerTiming], seconds: float) -> str:
    """One log line: what was timed, what was kept and what was given back, with the times."""
    kept = [t for t in timings if t.winograd_wins]
    back = [t for t in timings if not t.winograd_wins]
    if not timings:
        return "no layer computes by Winograd at this image_shape"
    images = timings[0].shape[0]
    line = (f"Winograd against torch's convolution, forward and backward, timed layer by layer on {images} "
            f"image(s) ({seconds:.0f} s): Winograd kept for {len(kept)} of {len(timings)} layers "
            f"({sum(t.winograd_ms for t in kept):.0f} ms against torch's {sum(t.torch_ms for t in kept):.0f} ms)")
    if back:
        slower = ", ".join(f"{t.name} ({t.winograd_ms:.0f} ms against {t.torch_ms:.0f})" for t in back)
        line += f"; torch's convolution for {len(back)}, where Winograd was slower: {slower}"
    return line
