"""Request bytes → an RGB image; the request's headers → what to answer; detections → JSON.

Request: Content-Type image/jpeg, image/png or application/x-image; the format is told from the
bytes (a PNG sent as image/jpeg is read as the PNG it is). Only JPEG and PNG are decoded. The EXIF
orientation is applied, so coordinates refer to the image as a viewer shows it; grayscale,
grayscale+alpha, palette, RGBA, CMYK, 1-bit and 16-bit images become 8-bit RGB (alpha is dropped,
16-bit samples keep their high byte). Images over the pixel limit are refused from their header,
before any decoding (decompression bombs). Large JPEGs are decoded at a reduced scale (1/2, 1/4 or
1/8, by the decoder's DCT scaling) that keeps both sides at least twice the model's input side: the
model sees a resize to its input side anyway, and a 12-megapixel photo decodes about 5 times faster
(4000×3000: 0.26 s → 0.05 s here).

Response (``Accept``):

* ``application/json`` (the default, also ``*/*``): the built-in's form,
  ``{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}``, class_id a float,
  corners normalized to [0, 1] by the image's width and height, best score first.
* ``application/json;annotation=1``: the built-in's pixel form,
  ``{"image_size": [{"width", "height", "depth"}], "annotations": [{"class_id", "score", "left",
  "top", "width", "height"}]}``, pixel values rounded to integers.
* ``application/json;verbose=1`` (sagedet's): ``{"image_size": {...}, "threshold", "max_detections",
  "detections": [{"class_id", "class_name", "score", "box": [xmin, ymin, xmax, ymax], "left",
  "top", "width", "height"}]}``.

Custom attributes (``X-Amzn-SageMaker-Custom-Attributes``): comma-separated ``key=value`` items;
``threshold`` (lowest score returned, 0 to 1) and ``max_detections`` (1 to 1000) are read, other
items are left to whoever added them. The response's custom attributes say what was applied.
"""

from __future__ import annotations

import enum
import io
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from sagedet.serve.errors import BadRequest, NotAcceptable, UnsupportedMediaType
from sagedet.serve.settings import MAX_DETECTIONS_LIMIT

if TYPE_CHECKING:
    from sagedet.serve.predictor import Prediction

REQUEST_CONTENT_TYPES = ("image/jpeg", "image/png", "application/x-image")
IMAGE_FORMATS = ("JPEG", "PNG")
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
RESPONSE_CONTENT_TYPE = "application/json"
_SIGNATURES = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Images above the limit are refused by decode_image itself, from the header; PIL's warning for
# them would only repeat that.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


# --- request ---------------------------------------------------------------------------------------
def check_content_type(header: str | None) -> str:
    """The request's media type, if it is one this server reads; else 415."""
    media_type = (header or "").split(";")[0].strip().lower()
    if media_type not in REQUEST_CONTENT_TYPES:
        given = f"Content-Type {header!r}" if header else "no Content-Type"
        raise UnsupportedMediaType(
            f"cannot read {given}: send one JPEG or PNG image as {', '.join(REQUEST_CONTENT_TYPES)}")
    return media_type


@dataclass(frozen=True)
class DecodedImage:
    """``image``: 8-bit RGB, EXIF orientation applied, possibly decoded at a reduced scale;
    ``width``, ``height``: the full size of the oriented image, which coordinates refer to."""

    image: Image.Image
    width: int
    height: int
    format: str


def decode_image(data: bytes, max_pixels: int, decode_side: int | None = None) -> DecodedImage:
    """Decode one JPEG or PNG; every problem with the bytes is a :class:`BadRequest` with its reason.

    ``decode_side``: a JPEG is decoded at the largest reduction (1/2, 1/4 or 1/8) that keeps both
    its sides at least twice ``decode_side``, if any.
    """
    if not data:
        raise BadRequest("the request body is empty: send one JPEG or PNG image")
    # PIL refuses more than twice its limit when it opens a file; decode_image refuses the rest.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as error:
        raise BadRequest(f"the image is refused as a possible decompression bomb: {error}") from error
    except (UnidentifiedImageError, *_DECODE_ERRORS) as error:
        kind = next((name for name, magic in _SIGNATURES.items() if data.startswith(magic)), None)
        if kind is None:
            raise BadRequest(f"the request body is not a JPEG or PNG image (it starts with {data[:8]!r})") from error
        detail = "" if isinstance(error, UnidentifiedImageError) else f" ({error})"
        raise BadRequest(f"the {kind} image does not decode: its header is truncated or damaged{detail}") from error

    kind = image.format or "image"
    width, height = image.size
    if width * height > max_pixels:
        raise BadRequest(
            f"the image is refused as a possible decompression bomb: {width}x{height} = {width * height} pixels, "
            f"over the limit of {max_pixels} (SAGEDET_MAX_IMAGE_PIXELS)")
    orientation = _orientation(image)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    if decode_side and image.format == "JPEG":
        image.draft(None, (2 * decode_side, 2 * decode_side))
    try:
        image.load()
    except _DECODE_ERRORS as error:
        raise BadRequest(f"the {kind} image does not decode: {error}") from error
    if orientation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[orientation])
    return DecodedImage(to_rgb(image), width, height, kind)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block leaves the pixels as stored
        return 1


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: alpha dropped, 16-bit samples reduced to their high byte."""
    mode = image.mode
    if mode == "RGB":
        return image
    try:
        if mode.startswith("I;16") or mode == "I":
            samples = np.asarray(image).astype(np.int64)
            image = Image.fromarray((np.clip(samples, 0, 65535) >> 8).astype(np.uint8), mode="L")
        elif mode == "F":
            image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L")
        elif mode in ("P", "PA") and "transparency" in image.info:
            image = image.convert("RGBA")
        return image.convert("RGB")
    except ValueError as error:
        raise BadRequest(f"cannot convert the image's PIL mode {mode} to RGB: {error}") from error


# --- what to answer ----------------------------------------------------------------------------------
class ResponseForm(enum.Enum):
    PREDICTION = "application/json"
    ANNOTATION = "application/json;annotation=1"
    VERBOSE = "application/json;verbose=1"


_ACCEPTED = "application/json (the default), application/json;annotation=1 or application/json;verbose=1"


def parse_accept(header: str | None) -> ResponseForm:
    """The form to answer in: the first (by q, then order) acceptable media range; else 406."""
    if not header or not header.strip():
        return ResponseForm.PREDICTION
    ranges = []
    for order, item in enumerate(header.split(",")):
        media_type, params = _media_range(item)
        if not media_type:
            continue
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        if quality > 0:
            ranges.append((-quality, order, media_type, params))
    for *_, media_type, params in sorted(ranges):
        if media_type in ("*/*", "application/*"):
            return ResponseForm.PREDICTION
        if media_type != "application/json":
            continue
        annotation = params.get("annotation", "0") == "1"
        verbose = params.get("verbose", "0") == "1"
        if annotation and verbose:
            continue
        return ResponseForm.ANNOTATION if annotation else ResponseForm.VERBOSE if verbose else ResponseForm.PREDICTION
    raise NotAcceptable(f"cannot answer Accept: {header!r}; this server answers {_ACCEPTED}")


def _media_range(item: str) -> tuple[str, dict[str, str]]:
    media_type, *parameters = item.split(";")
    params = {}
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        params[key.strip().lower()] = value.strip().strip('"').lower()
    return media_type.strip().lower(), params


@dataclass(frozen=True)
class Options:
    """Per-request choices: the lowest score returned and the most detections per image."""

    threshold: float
    max_detections: int

    def header(self) -> str:
        return f"threshold={self.threshold:g},max_detections={self.max_detections}"


def parse_custom_attributes(header: str | None, defaults: Options) -> Options:
    """``threshold`` and ``max_detections`` from the custom attributes; 400 naming a bad one."""
    threshold, max_detections = defaults.threshold, defaults.max_detections
    for item in (header or "").replace(";", ",").split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in ("threshold", "max_detections"):
            continue  # someone else's attribute
        if key == "threshold":
            threshold = _attribute_number(key, value)
        else:
            max_detections = _attribute_integer(key, value)
    return Options(threshold, max_detections)


def _attribute_error(key: str, value: str, expected: str) -> BadRequest:
    return BadRequest(f"custom attribute {key}={value!r} in {CUSTOM_ATTRIBUTES}: expected {expected}")


def _attribute_number(key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0.0 <= number <= 1.0:
        raise _attribute_error(key, value, "a number from 0 to 1")
    return number


def _attribute_integer(key: str, value: str) -> int:
    # ASCII digits only: str.isdigit() also takes '²' or '٣', which int() refuses or reads as another
    # digit; past nine significant digits the value is over the limit (int() refuses 4301 digits).
    number = int(value) if re.fullmatch(r"0*[0-9]{1,9}", value) else 0
    if not 1 <= number <= MAX_DETECTIONS_LIMIT:
        raise _attribute_error(key, value, f"an integer from 1 to {MAX_DETECTIONS_LIMIT}")
    return number


# --- response ----------------------------------------------------------------------------------------
def encode(form: ResponseForm, prediction: Prediction, class_names: Sequence[str], options: Options) -> bytes:
    """The response body for ``prediction`` in ``form``."""
    if form is ResponseForm.ANNOTATION:
        body: dict = {
            "image_size": [{"width": prediction.width, "height": prediction.height, "depth": 3}],
            "annotations": [{"class_id": label, "score": _round(score), **_pixels(box, prediction)}
                            for box, score, label in _rows(prediction)],
        }
    elif form is ResponseForm.VERBOSE:
        body = {
            "image_size": {"width": prediction.width, "height": prediction.height, "depth": 3},
            "threshold": options.threshold,
            "max_detections": options.max_detections,
            "detections": [{"class_id": label, "class_name": _name(class_names, label), "score": _round(score),
                            "box": [_round(v) for v in box], **_pixels(box, prediction)}
                           for box, score, label in _rows(prediction)],
        }
    else:
        body = {"prediction": [[float(label), _round(score), *(_round(v) for v in box)]
                               for box, score, label in _rows(prediction)]}
    return json.dumps(body, separators=(",", ":")).encode()


def _rows(prediction: Prediction):
    return zip(prediction.boxes, prediction.scores, prediction.labels)


def _pixels(box: Sequence[float], prediction: Prediction) -> dict[str, int]:
    left, top = round(box[0] * prediction.width), round(box[1] * prediction.height)
    right, bottom = round(box[2] * prediction.width), round(box[3] * prediction.height)
    return {"left": left, "top": top, "width": right - left, "height": bottom - top}


def _round(value: float) -> float:
    return round(float(value), 6)


def _name(class_names: Sequence[str], label: int) -> str:
    return class_names[label] if 0 <= label < len(class_names) else str(label)
