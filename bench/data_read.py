"""Records/s read and decoded from a .rec file against the same images as image+JSON files, on CPU.

The script generates ``--images`` JPEGs (``--image-size``, default 500×375, like Pascal VOC) with
sagedet's synthetic data set, writes them once as SageMaker's image+JSON layout and once as a .rec
file (A=2, B=5 labels, the same JPEG bytes, with and without its .idx), then measures, alternating
the formats ``--rounds`` times and keeping each one's best round:

- **index**: building the training source (image+JSON: every JSON and image header; .rec: every
  record's framing and label, from the .idx or by walking the file);
- **read**: the raw samples only (file reads; no decoding);
- **read + decode**: raw sample → decoded, resized 300×300 tensor (the validation transform), in this
  process, one at a time;
- **DataLoader**: the same through a DataLoader with ``--workers`` workers and batch 32 (what training
  does), and for the .rec also streamed from the file as Pipe mode streams it (records parsed in the
  main process, decoded in the workers).

    python bench/data_read.py [--images 400] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from sagedet.data.detection_label import format_detection_label
from sagedet.data.imagejson import ImageJsonSource
from sagedet.data.loaders import build_loader
from sagedet.data.pipe import PipeStream
from sagedet.data.recordio import RecordWriter, pack
from sagedet.data.recordio_source import RecordIOSource, stream_samples
from sagedet.data.dataset import DetectionDataset
from sagedet.data.synthetic import write_synthetic_dataset
from sagedet.data.transforms import eval_transform
from machine import run_lines

NUM_CLASSES = 3


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_rec(source: ImageJsonSource, rec: Path, with_index: bool) -> None:
    with open(rec, "wb") as out, (open(rec.with_suffix(".idx"), "w") if with_index else open(os.devnull, "w")) as idx:
        writer = RecordWriter(out, idx if with_index else None)
        for i in range(len(source)):
            raw = source.read(i)
            writer.write(pack(format_detection_label(raw.objects), raw.image_bytes, id=i))


def timed(call) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def drain(loader) -> int:
    return sum(len(batch.names) for batch in loader)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--image-size", default="500x375")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.image_size.lower().split("x"))
    torch.set_num_threads(1)
    transform = eval_transform(300)

    with tempfile.TemporaryDirectory(prefix="sagedet-data-read-") as work:
        root = Path(work)
        log(f"writing {args.images} {width}x{height} JPEGs as image+JSON and as .rec")
        write_synthetic_dataset(root, "train", args.images, seed=3, image_size=(width, height))
        original = ImageJsonSource(root / "train", root / "train_annotation", NUM_CLASSES, "train")
        (root / "rec").mkdir()
        (root / "rec_noidx").mkdir()
        write_rec(original, root / "rec" / "train.rec", with_index=True)
        write_rec(original, root / "rec_noidx" / "train.rec", with_index=False)
        rec_size = (root / "rec" / "train.rec").stat().st_size

        def open_json():
            return ImageJsonSource(root / "train", root / "train_annotation", NUM_CLASSES, "train")

        def open_rec():
            return RecordIOSource(root / "rec", NUM_CLASSES, 350, "train")

        def open_rec_walk():
            return RecordIOSource(root / "rec_noidx", NUM_CLASSES, 350, "train")

        sources = {"image+JSON": open_json(), ".rec": open_rec()}

        def read_all(source):
            return lambda: [source.read(i) for i in range(len(source))]

        def decode_all(source):
            dataset = DetectionDataset(source, transform)
            return lambda: [dataset[i] for i in range(len(dataset))]

        def loader(source):
            return lambda: drain(build_loader(source, transform, 32, training=False, workers=args.workers,
                                              pin_memory=False))

        class FileStream(PipeStream):
            def __init__(self):
                super().__init__(root / "rec" / "train", "train",
                                 lambda stream, name: stream_samples(stream, name, NUM_CLASSES, 350), timeout=1)

            def samples(self, epoch):
                with open(root / "rec" / "train.rec", "rb", buffering=1 << 20) as stream:
                    yield from self.parse(stream, "train_0")

        measures = {
            ("index", "image+JSON"): open_json,
            ("index", ".rec (with .idx)"): open_rec,
            ("index", ".rec (walking the file)"): open_rec_walk,
            ("read", "image+JSON"): read_all(sources["image+JSON"]),
            ("read", ".rec"): read_all(sources[".rec"]),
            ("read + decode", "image+JSON"): decode_all(sources["image+JSON"]),
            ("read + decode", ".rec"): decode_all(sources[".rec"]),
            ("DataLoader", "image+JSON"): loader(sources["image+JSON"]),
            ("DataLoader", ".rec"): loader(sources[".rec"]),
            ("DataLoader", ".rec streamed (Pipe mode)"): loader(FileStream()),
        }
        best: dict[tuple[str, str], float] = {}
        for round_ in range(args.rounds):
            for key, call in measures.items():
                seconds = timed(call)
                best[key] = min(best.get(key, float("inf")), seconds)
            log(f"round {round_ + 1} of {args.rounds} done")

    rows = []
    for (stage, form), seconds in best.items():
        baseline = best[(stage, "image+JSON")]
        rows.append(f"| {stage} | {form} | {args.images / seconds:,.0f} | {baseline / seconds:.2f}× |")
    lines = [
        *run_lines(),
        f"- data: {args.images} JPEGs {width}×{height} (.rec {rec_size / 1e6:.1f} MB); best of {args.rounds} rounds; "
        f"decoding with 1 torch thread; DataLoader: {args.workers} workers, batch 32",
        "",
        "| stage | format | records/s | vs image+JSON |",
        "|---|---|---|---|",
        *rows,
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
