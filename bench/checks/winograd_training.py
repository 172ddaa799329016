"""Training step with and without Winograd 3x3 layers, and torchvision's step for the same network,
the models' steps alternating in one process (so that drifts of the shared machine hit all):
images/s and the ratio to ours without Winograd. Ours with Winograd twice: converted as the server
converts (the layers that win a forward pass alone) and as the Trainer converts (also the narrower
layers that win only with the backward pass, 2026-11-22), and since the ninth session of 2026-11-22
a fourth time as the Trainer now does: each of those layers timed against torch's convolution first,
the slower given back to it. With ``--kept-tiles``, also the Trainer's
layers keeping their transformed input tiles for the backward pass, as they did before the sixth
session of 2026-11-22 (now computed again there from the layer's input, to save memory).

    .venv/bin/python bench/checks/winograd_training.py NETWORK IMAGE_SHAPE ROUNDS [--kept-tiles]
"""

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train_throughput import OursStepper, PeerStepper, Stepper, peer_inputs, random_batches, torchvision_peer  # noqa: E402,E501

from sagedet.model import winograd  # noqa: E402
from sagedet.model.ssd import build_ssd  # noqa: E402
from sagedet.model.winograd import use_winograd  # noqa: E402


class WithoutWinograd(Stepper):
    """Our step as before Winograd: torch's convolutions everywhere."""

    losses = OursStepper.losses


class WideLayersOnly(Stepper):
    """Our step with only the layers the server converts (``use_winograd`` without ``training``)."""

    def __init__(self, model, device):
        super().__init__(model, device)
        use_winograd(self.model)

    losses = OursStepper.losses


class TimedLayers(OursStepper):
    """The Trainer's layers since the ninth session: each timed against torch's convolution on 8 images,
    the slower given back (``sagedet.model.winograd_tuning``)."""

    def __init__(self, model, device):
        super().__init__(model, device, batch_size=8)


def products_keeping_tiles(x, u, input_transform):
    """``winograd._products_for_autograd`` as it was before the sixth session: autograd keeps the
    transformed tiles V for the weight's gradient."""
    return torch.bmm(winograd._tracked_transformed_input(x, input_transform), u)


class KeptTiles(OursStepper):
    """The Trainer's layers, keeping the transformed tiles for the backward pass."""

    def __call__(self, inputs) -> None:
        recomputing = winograd._products_for_autograd
        winograd._products_for_autograd = products_keeping_tiles
        try:
            super().__call__(inputs)
        finally:
            winograd._products_for_autograd = recomputing


def build_steppers(network: str, size: int, kinds: list[tuple[str, type[Stepper]]],
                   peer_label: str | None = None) -> tuple[dict[str, Stepper], dict[str, list]]:
    """torchvision's step (built beside the first model, before any conversion) and one step of each
    kind, every model from seed 0, with their two batches of 8 each."""
    cpu = torch.device("cpu")
    batches = random_batches(2, 8, size, 20)
    steppers, inputs = {}, {}
    for i, (name, kind) in enumerate(kinds):
        torch.manual_seed(0)
        model = build_ssd(network, 20, size)
        if i == 0:
            peer, peer_name = torchvision_peer(network, model)
            label = peer_label or f"torchvision ({peer_name})"
            steppers[label] = PeerStepper(peer, cpu)
            inputs[label] = [peer_inputs(b) for b in batches]
        steppers[name] = kind(model, cpu)
        inputs[name] = batches
    return steppers, inputs


def timed_rounds(steppers: dict[str, Stepper], inputs: dict[str, list], rounds: int) -> dict[str, list[float]]:
    """Seconds of each step, the steppers taking turns, one step each per round."""
    seconds = {name: [] for name in steppers}
    for r in range(rounds):
        for name, step in steppers.items():
            started = time.perf_counter()
            step(inputs[name][r % 2])
            seconds[name].append(time.perf_counter() - started)
    return seconds


def main() -> None:
    network, size, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    kinds = [("torch convolutions", WithoutWinograd), ("Winograd, the server's layers", WideLayersOnly),
             ("Winograd, every layer the training rule takes", OursStepper),
             ("Winograd, the Trainer's layers (each timed, the slower given back)", TimedLayers)]
    if "--kept-tiles" in sys.argv[4:]:
        kinds.append(("Winograd, the Trainer's layers, tiles kept", KeptTiles))
    steppers, inputs = build_steppers(network, size, kinds)
    for name, step in steppers.items():
        step(inputs[name][0])  # warm-up
    seconds = timed_rounds(steppers, inputs, rounds)
    base = statistics.median(seconds["torch convolutions"])
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"{network} {size} batch 8 | {name} | {8 / median:.3f} images/s | {base / median:.2f}x | "
              f"steps {', '.join(f'{v:.2f}' for v in values)} s")


if __name__ == "__main__":
    main()
