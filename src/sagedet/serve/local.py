"""``sagedet predict IMAGE... --model DIR``: the server's detections for local files, without a server.

Each image gives one JSON line on stdout, ``{"image": "<path>", ...}`` with the body the server
would answer for it (same decoding, same model, same forms); with ``draw_dir`` each image is also
written there as ``<name>.png`` with its boxes, class names and scores drawn. An image that cannot
be read is reported on stderr and the others go on.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sagedet.devices import parse_device, present_device
from sagedet.errors import ConfigError
from sagedet.model.precision import inference_dtype
from sagedet.model.saved import model_dir_of
from sagedet.serve.codecs import Options, ResponseForm, decode_image, encode
from sagedet.serve.draw import draw_detections
from sagedet.serve.errors import HTTPError
from sagedet.serve.predictor import Predictor, resolve_device
from sagedet.serve.settings import DEFAULT_MAX_IMAGE_PIXELS, MAX_DETECTIONS_LIMIT

FORMS = {"prediction": ResponseForm.PREDICTION, "annotation": ResponseForm.ANNOTATION, "verbose": ResponseForm.VERBOSE}


def predict_files(images: Sequence[Path], model: Path, threshold: float = 0.0, max_detections: int = 200,
                  form: str = "prediction", draw_dir: Path | None = None, draw_min_score: float = 0.5,
                  device: str = "auto", out=None, precision: str = "auto") -> int:
    """Returns the number of images that could not be read."""
    out = out or sys.stdout
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold {threshold}: expected a number from 0 to 1")
    if not 1 <= max_detections <= MAX_DETECTIONS_LIMIT:
        raise ConfigError(f"--max-detections {max_detections}: expected an integer from 1 to {MAX_DETECTIONS_LIMIT}")
    options = Options(threshold, max_detections)
    device = _checked_device(device)
    inference_dtype(precision, resolve_device(device), "--precision")  # before the model is read
    with tempfile.TemporaryDirectory(prefix="sagedet-predict-") as work:
        predictor = Predictor.load(model_dir_of(model, Path(work)), device, precision=precision)
    if draw_dir is not None:
        draw_dir.mkdir(parents=True, exist_ok=True)
    taken = {path.resolve() for path in images}
    failures = 0
    for path in images:
        try:
            data = path.read_bytes()
            decoded = decode_image(data, DEFAULT_MAX_IMAGE_PIXELS, predictor.image_shape)
        except (OSError, HTTPError) as error:
            print(f"sagedet predict: {path}: {getattr(error, 'message', error)}", file=sys.stderr)
            failures += 1
            continue
        prediction = predictor.predict(decoded, options)
        body = json.loads(encode(FORMS[form], prediction, predictor.class_names, options))
        print(json.dumps({"image": str(path), **body}), file=out, flush=True)
        if draw_dir is not None:
            full = decoded if decoded.image.size == (decoded.width, decoded.height) else decode_image(
                data, DEFAULT_MAX_IMAGE_PIXELS)
            target = _free_name(draw_dir, path.stem, taken)
            draw_detections(full.image, prediction, predictor.class_names, draw_min_score).save(target, "PNG")
    return failures


def _checked_device(value: str) -> str:
    """``--device`` checked as the server checks SAGEDET_DEVICE, its errors naming the option."""
    try:
        name = parse_device(value)
    except ValueError as error:
        raise ConfigError(f"--device {value!r}: {error}") from None
    if name != "auto":
        present_device(name, f"--device {value}")
    return name


def _free_name(folder: Path, stem: str, taken: set[Path]) -> Path:
    """``folder/<stem>.png``, or ``<stem>-1.png``, ... if that is an input image or already written."""
    candidate, n = folder / f"{stem}.png", 0
    while candidate.resolve() in taken:
        n += 1
        candidate = folder / f"{stem}-{n}.png"
    taken.add(candidate.resolve())
    return candidate
