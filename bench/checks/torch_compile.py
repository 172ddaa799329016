"""torch.compile (inductor, CPU) against what sagedet runs, for single-image inference and for the
training step (2026-11-22; on the 2-core AVX2 machine neither beat what sagedet runs, so neither is used).

    .venv/bin/python bench/checks/torch_compile.py inference NETWORK 0|1    (1: Winograd 3x3 layers first)
    .venv/bin/python bench/checks/torch_compile.py training NETWORK SIZE ROUNDS

inference: eager forward (no NMS) median of 10 calls, then torch.compile with inductor's freezing,
its first call's seconds, its largest output difference and median, then eager again.
training: torchvision's step, ours (Winograd layers, as the Trainer on the CPU) and ours with the model's
forward and loss compiled, batch 8, steps alternating for ROUNDS rounds after two warm-up steps each.
"""

import statistics
import sys
import time
from pathlib import Path

import torch
import torch._inductor.config as inductor_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inference_latency import randomize  # noqa: E402
from train_throughput import OursStepper  # noqa: E402
from winograd_training import build_steppers, timed_rounds  # noqa: E402

from sagedet.model.ssd import build_ssd  # noqa: E402
from sagedet.model.winograd import use_winograd  # noqa: E402


def median_ms(call, image, n=10):
    for _ in range(2):
        call(image)
    seconds = []
    for _ in range(n):
        started = time.perf_counter()
        call(image)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000


def inference(network: str, winograd: bool) -> None:
    inductor_config.freezing = True
    torch.manual_seed(0)
    model = randomize(build_ssd(network, 20, 300)).eval()
    if winograd:
        use_winograd(model)
    image = torch.rand(1, 3, 300, 300)
    with torch.no_grad():
        reference = model(image)
        print("eager ms", median_ms(model, image))
        started = time.perf_counter()
        compiled = torch.compile(model)
        out = compiled(image)
        print("compile s", time.perf_counter() - started)
        print("largest difference", max((a - b).abs().max().item() for a, b in zip(out, reference)))
        print("compiled ms", median_ms(compiled, image))
        print("eager ms", median_ms(model, image))


class CompiledStepper(OursStepper):
    def __init__(self, model, device):
        super().__init__(model, device)
        detector = self.model

        def forward_and_loss(images, boxes, labels):
            cls_logits, box_codes = detector(images)
            return detector.loss(cls_logits, box_codes, boxes, labels)
        self.forward_and_loss = torch.compile(forward_and_loss)

    def losses(self, batch):
        return self.forward_and_loss(batch.images, batch.boxes, batch.labels)


def training(network: str, size: int, rounds: int) -> None:
    steppers, inputs = build_steppers(network, size, [("ours", OursStepper), ("ours compiled", CompiledStepper)],
                                      peer_label="torchvision")
    for name, step in steppers.items():
        started = time.perf_counter()
        step(inputs[name][0])
        step(inputs[name][1])
        print(name, "two warm-up steps s", time.perf_counter() - started, flush=True)
    seconds = timed_rounds(steppers, inputs, rounds)
    peer_median = statistics.median(seconds["torchvision"])
    for name, values in seconds.items():
        median = statistics.median(values)
        print(name, f"{8 / median:.3f} images/s {peer_median / median:.2f}x torchvision",
              [round(v, 2) for v in values])


if __name__ == "__main__":
    if sys.argv[1] == "inference":
        inference(sys.argv[2], sys.argv[3] == "1")
    else:
        training(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
