"""The built-in algorithm's metric lines on stdout, which SageMaker parses with regexes.

Training jobs and tuning jobs register :data:`METRIC_DEFINITIONS` (the built-in's own, so a user's
existing definitions and the tuning objective ``validation:mAP`` keep working). Each line is
written whole and flushed at once, so SageMaker sees it while training runs.
"""

from __future__ import annotations

import sys
from typing import TextIO

METRIC_DEFINITIONS: list[dict] = [
    {
        "Name": "train:cross_entropy",
        "Regex": r"#quality_metric: host=\S+, epoch=\S+, batch=\S+ train cross_entropy <loss>=(\S+)",
    },
    {
        "Name": "train:smooth_l1",
        "Regex": r"#quality_metric: host=\S+, epoch=\S+, batch=\S+ train smooth_l1 <loss>=(\S+)",
    },
    {
        "Name": "validation:mAP",
        "Regex": r"#quality_metric: host=\S+, epoch=\S+, validation mAP <score>=\((\S+)\)",
    },
    {
        "Name": "train:throughput",
        "Regex": r"#throughput_metric: host=\S+, train throughput=(\S+) records/second",
    },
    {"Name": "train:progress", "Regex": r"#progress_metric: host=\S+, completed (\S+) %"},
]


class MetricsLogger:
    """Writes the metric lines of one host.

    Epochs are 0-based, as the built-in's MXNet training loop numbers them; ``batch`` is the
    caller's batch index within the epoch. Values are written with up to 6 significant digits,
    progress with at most one decimal. ``stream`` defaults to ``sys.stdout`` at the time of
    writing.
    """

    def __init__(self, host: str, stream: TextIO | None = None) -> None:
        self.host = host
        self._stream = stream

    def _write(self, line: str) -> None:
        stream = self._stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def train_loss(self, epoch: int, batch: int, cross_entropy: float, smooth_l1: float) -> None:
        prefix = f"#quality_metric: host={self.host}, epoch={epoch}, batch={batch} train"
        self._write(f"{prefix} cross_entropy <loss>={cross_entropy:.6g}")
        self._write(f"{prefix} smooth_l1 <loss>={smooth_l1:.6g}")

    def validation_map(self, epoch: int, map_: float) -> None:
        self._write(
            f"#quality_metric: host={self.host}, epoch={epoch}, validation mAP <score>=({map_:.6g})"
        )

    def throughput(self, records_per_second: float) -> None:
        self._write(
            f"#throughput_metric: host={self.host}, train throughput={records_per_second:.6g} "
            "records/second"
        )

    def progress(self, percent: float) -> None:
        self._write(f"#progress_metric: host={self.host}, completed {round(percent, 1):g} %")
