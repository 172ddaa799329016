"""Request decoding and response encoding, in process (the server tests drive the same code over HTTP)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_harness import encode, scene

from sagedet.serve.codecs import (Options, ResponseForm, check_content_type, decode_image, parse_accept,
                                  parse_custom_attributes, to_rgb)
from sagedet.serve.codecs import encode as encode_response
from sagedet.serve.errors import BadRequest, NotAcceptable, UnsupportedMediaType
from sagedet.serve.predictor import Prediction

LIMIT = 64_000_000


@pytest.mark.parametrize(("orientation", "size"), [(1, (60, 40)), (2, (60, 40)), (3, (60, 40)), (4, (60, 40)),
                                                   (5, (40, 60)), (6, (40, 60)), (7, (40, 60)), (8, (40, 60))])
def test_every_exif_orientation(orientation, size):
    stored = scene(60, 40)
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = decode_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()), LIMIT)
    assert (decoded.width, decoded.height) == decoded.image.size == size
    assert decoded.format == "JPEG" and decoded.image.mode == "RGB"


def test_large_jpeg_is_decoded_at_a_reduced_scale_but_reports_its_size():
    data = encode(scene(1300, 1000, noise=0), "JPEG", quality=90)
    reduced = decode_image(data, LIMIT, decode_side=100)
    assert (reduced.width, reduced.height) == (1300, 1000)
    assert reduced.image.size == (325, 250)  # 1/4: both sides still at least 2 × 100
    assert decode_image(data, LIMIT, decode_side=150).image.size == (650, 500)  # 1/4 would leave 250 < 300
    assert decode_image(data, LIMIT, decode_side=60).image.size == (163, 125)
    assert decode_image(data, LIMIT, decode_side=300).image.size == (1300, 1000)
    assert decode_image(encode(scene(1300, 1000, noise=0), "PNG"), LIMIT, decode_side=150).image.size == (1300, 1000)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # pytest resets codecs' filter
def test_pixel_limit_is_checked_before_decoding():
    data = encode(Image.new("L", (1000, 1000)), "PNG")
    assert decode_image(data, 1_000_000).image.size == (1000, 1000)
    with pytest.raises(BadRequest, match=r"decompression bomb: 1000x1000 = 1000000 pixels, over the limit of 999999 "
                                         r"\(SAGEDET_MAX_IMAGE_PIXELS\)"):
        decode_image(data, 999_999)
    with pytest.raises(BadRequest, match="decompression bomb"):
        decode_image(data, 400_000)  # over twice the limit: PIL's own check refuses it on opening


def test_sixteen_bit_samples_keep_their_high_byte():
    samples = np.array([[0, 255, 256, 65535], [4660, 32768, 1000, 40000]], dtype=np.uint16)
    rgb = to_rgb(Image.fromarray(samples))
    assert rgb.mode == "RGB"
    assert np.array_equal(np.asarray(rgb)[..., 0], samples >> 8)


def test_alpha_is_dropped():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (10, 20, 30)


@pytest.mark.parametrize("header", ["image/jpeg", "image/png", "application/x-image", "Image/PNG; q=1"])
def test_content_types_read(header):
    assert check_content_type(header) == header.split(";")[0].lower()


@pytest.mark.parametrize("header", [None, "", "image/gif", "image/jpg", "application/octet-stream"])
def test_content_types_refused(header):
    with pytest.raises(UnsupportedMediaType):
        check_content_type(header)


@pytest.mark.parametrize(("header", "form"), [
    (None, ResponseForm.PREDICTION), ("application/json", ResponseForm.PREDICTION),
    ("application/json;annotation=1", ResponseForm.ANNOTATION), ("APPLICATION/JSON; Verbose=1", ResponseForm.VERBOSE),
    ("text/html;q=0.9, application/json;annotation=1;q=0.5", ResponseForm.ANNOTATION),
    ("application/json;verbose=1;q=0.2, application/json;annotation=1", ResponseForm.ANNOTATION),
    ("application/json;q=0, */*", ResponseForm.PREDICTION),
])
def test_accept(header, form):
    assert parse_accept(header) is form


@pytest.mark.parametrize("header", ["text/csv", "application/json;q=0", "application/jsonlines", "image/*"])
def test_accept_refused(header):
    with pytest.raises(NotAcceptable):
        parse_accept(header)


def test_custom_attributes():
    defaults = Options(0.1, 100)
    assert parse_custom_attributes(None, defaults) == defaults
    assert parse_custom_attributes("threshold=0.5", defaults) == Options(0.5, 100)
    assert parse_custom_attributes("max_detections=3; threshold=1", defaults) == Options(1.0, 3)
    assert parse_custom_attributes("id=7,threshold", defaults) == defaults
    assert Options(0.25, 7).header() == "threshold=0.25,max_detections=7"


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "1\u00b9", "+5", "-1", "0", "1001", "5.0", "0x10", "",
                                   "1" * 5000])
def test_a_max_detections_that_is_not_ascii_digits_in_range_is_refused_naming_it(value: str):
    """'²'.isdigit() is True but int('²') raises: it was an internal error (500)."""
    with pytest.raises(BadRequest) as refused:
        parse_custom_attributes(f"max_detections={value}", Options(0.1, 100))
    assert str(refused.value) == (f"custom attribute max_detections={value!r} in X-Amzn-SageMaker-Custom-Attributes: "
                                  "expected an integer from 1 to 1000")


def test_max_detections_may_have_leading_zeros():
    assert parse_custom_attributes("max_detections=0000000000007", Options(0.1, 100)) == Options(0.1, 7)
    assert parse_custom_attributes("max_detections=1000", Options(0.1, 100)) == Options(0.1, 1000)


def test_a_bad_attribute_is_answered_400_by_the_app():
    """Through the flask app: the refusal is the usual 400 naming the attribute, not a 500."""
    from sagedet.serve.app import create_app
    from sagedet.serve.settings import ServeSettings

    client = create_app(ServeSettings(model_dir=Path("unused")), predictor=None).test_client()
    response = client.post("/invocations", data=b"not read", headers={
        "Content-Type": "image/png", "X-Amzn-SageMaker-Custom-Attributes": "max_detections=\u00b2"})
    assert response.status_code == 400
    assert response.get_json() == {"error": "custom attribute max_detections='\u00b2' in "
                                            "X-Amzn-SageMaker-Custom-Attributes: expected an integer from 1 to 1000"}


def test_pixel_forms_round_corners_not_sizes():
    prediction = Prediction(width=101, height=51, boxes=[[0.1, 0.2, 0.55, 0.99]], scores=[0.5], labels=[1])
    annotation = encode_response(ResponseForm.ANNOTATION, prediction, ["a", "b"], Options(0, 10))
    assert io.BytesIO(annotation).read() == (b'{"image_size":[{"width":101,"height":51,"depth":3}],"annotations":'
                                             b'[{"class_id":1,"score":0.5,"left":10,"top":10,"width":46,"height":40}]}')
    default = encode_response(ResponseForm.PREDICTION, prediction, ["a", "b"], Options(0, 10))
    assert default == b'{"prediction":[[1.0,0.5,0.1,0.2,0.55,0.99]]}'
