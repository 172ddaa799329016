"""A client of a running sagedet server: send images to /invocations, keep the answers, draw them.

``sagedet invoke`` uses it (and ``make demo`` through it): the same requests SageMaker's runtime
would send an endpoint, from the standard library alone.
"""

from __future__ import annotations

import json
import mimetypes
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageOps

from ..errors import SagedetError
from .draw import draw_detections
from .predictor import Prediction

VERBOSE = "application/json;verbose=1"


def wait_for_ping(endpoint: str, timeout: float) -> None:
    """Poll ``/ping`` (as SageMaker does) until it answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SagedetError(f"{endpoint}/ping did not answer 200 within {timeout:g} s")
        time.sleep(0.5)


def invoke(endpoint: str, image: Path, custom_attributes: str | None = None) -> dict:
    """The server's verbose answer for one image file."""
    headers = {"Content-Type": mimetypes.guess_type(image.name)[0] or "application/x-image", "Accept": VERBOSE}
    if custom_attributes:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
    request = urllib.request.Request(f"{endpoint}/invocations", data=image.read_bytes(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise SagedetError(f"{image}: the server answered {error.code}: {error.read().decode(errors='replace')}") from None


def _prediction(answer: dict) -> tuple[Prediction, list[str]]:
    detections = answer["detections"]
    names: dict[int, str] = {d["class_id"]: d["class_name"] for d in detections}
    class_names = [names.get(i, str(i)) for i in range(max(names, default=-1) + 1)]
    size = answer["image_size"]
    prediction = Prediction(size["width"], size["height"], [d["box"] for d in detections],
                            [d["score"] for d in detections], [d["class_id"] for d in detections])
    return prediction, class_names


def invoke_files(endpoint: str, images: Sequence[Path], output: Path, custom_attributes: str | None = None,
                 draw_min_score: float = 0.5) -> list[Path]:
    """Send each image, write ``<stem>.json`` (the answer) and ``<stem>.png`` (drawn) into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for image in images:
        answer = invoke(endpoint, image, custom_attributes)
        (output / f"{image.stem}.json").write_text(json.dumps(answer, indent=1))
        prediction, class_names = _prediction(answer)
        with Image.open(image) as picture:
            drawn = draw_detections(ImageOps.exif_transpose(picture), prediction, class_names, draw_min_score)
        drawn.save(output / f"{image.stem}.png")
        written.append(output / f"{image.stem}.png")
    return written
