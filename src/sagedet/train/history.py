"""Per-epoch training metrics, kept in checkpoints and written to /opt/ml/output/data.

``TrainingHistory.write`` produces ``metrics.json`` (a list of objects, one per epoch),
``metrics.csv`` (a header and one row per epoch) and ``training_curves.png`` (train losses, and
validation mAP and COCO AP, against epoch), each replaced atomically. NaN and infinities (no
validation yet, a diverged loss) are written as null in JSON and as an empty cell in CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sagedet.artifacts import atomic_write

METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
CURVES_PNG = "training_curves.png"


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_cross_entropy: float
    train_smooth_l1: float
    validation_map: float
    coco_ap: float
    coco_ap50: float
    learning_rate: float
    images_per_second: float
    seconds: float

    def __post_init__(self) -> None:
        """Numbers may arrive as numpy or torch scalars; keep plain int and floats (JSON-ready)."""
        for f in fields(self):
            convert = int if f.name == "epoch" else float
            setattr(self, f.name, convert(getattr(self, f.name)))


FIELDS = tuple(f.name for f in fields(EpochRecord))


@dataclass
class TrainingHistory:
    records: list[EpochRecord] = field(default_factory=list)

    def append(self, record: EpochRecord) -> None:
        self.records.append(record)

    def to_list(self) -> list[dict]:
        """Plain dicts (NaN kept as float NaN), fit for a checkpoint loaded with weights_only."""
        return [asdict(r) for r in self.records]

    @classmethod
    def from_list(cls, rows: list[dict]) -> TrainingHistory:
        """Inverse of :meth:`to_list`; also reads ``metrics.json`` rows, whose nulls become NaN."""
        nan_for_null = ({k: math.nan if v is None else v for k, v in r.items()} for r in rows)
        return cls([EpochRecord(**row) for row in nan_for_null])

    def write(self, output_data_dir: Path) -> None:
        output_data_dir.mkdir(parents=True, exist_ok=True)
        rows = [{k: v if math.isfinite(v) else None for k, v in r.items()} for r in self.to_list()]
        text = json.dumps(rows, indent=2, allow_nan=False) + "\n"
        atomic_write(output_data_dir / METRICS_JSON, lambda f: f.write(text.encode()))

        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
        atomic_write(output_data_dir / METRICS_CSV, lambda f: f.write(table.getvalue().encode()))

        figure = self._plot()
        atomic_write(output_data_dir / CURVES_PNG, lambda f: figure.savefig(f, format="png"))

    def _plot(self) -> Figure:
        figure = Figure(figsize=(11, 4), dpi=100, layout="constrained")
        losses, quality = figure.subplots(1, 2)
        epochs = [r.epoch for r in self.records]
        for ax, title, series in (
            (losses, "training loss", ("train_loss", "train_cross_entropy", "train_smooth_l1")),
            (quality, "validation", ("validation_map", "coco_ap", "coco_ap50")),
        ):
            for name in series:
                ax.plot(epochs, [getattr(r, name) for r in self.records], marker="o", label=name)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend()
        return figure
