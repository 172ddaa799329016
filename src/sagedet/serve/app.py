"""The flask routes: ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``.

Every error answers ``{"error": "<reason>"}`` with its status: 400 a bad image or custom attribute,
404 an unknown path, 405 a wrong method, 406 an Accept this server cannot answer, 413 a body over
SAGEMAKER_MAX_PAYLOAD_IN_MB, 415 a Content-Type it cannot read, 503 a worker too busy to start the
request within SAGEMAKER_MODEL_SERVER_TIMEOUT. Only a bug answers 500; none ends the worker.
"""

from __future__ import annotations

import json

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from sagedet.serve.codecs import (CUSTOM_ATTRIBUTES, RESPONSE_CONTENT_TYPE, Options, check_content_type, encode,
                                  parse_accept, parse_custom_attributes)
from sagedet.serve.errors import HTTPError, PayloadTooLarge
from sagedet.serve.predictor import Predictor
from sagedet.serve.settings import MAX_PAYLOAD, ServeSettings

ROUTES = "GET /ping, POST /invocations and GET /execution-parameters"


def create_app(settings: ServeSettings, predictor: Predictor) -> Flask:
    app = Flask("sagedet.serve")
    defaults = Options(settings.score_threshold, settings.max_detections)

    @app.get("/ping")
    def ping() -> Response:
        # A worker answers only once its model is loaded and has run (sagedet.serve.wsgi).
        return _json({"status": "healthy"})

    @app.get("/execution-parameters")
    def execution_parameters() -> Response:
        return _json(settings.execution_parameters())

    @app.post("/invocations")
    def invocations() -> Response:
        check_content_type(request.headers.get("Content-Type"))
        form = parse_accept(request.headers.get("Accept"))
        options = parse_custom_attributes(request.headers.get(CUSTOM_ATTRIBUTES), defaults)
        data = _read_body(settings)
        prediction = predictor.predict_bytes(data, options, settings.max_image_pixels, settings.timeout)
        body = encode(form, prediction, predictor.class_names, options)
        return Response(body, 200, {"Content-Type": RESPONSE_CONTENT_TYPE, CUSTOM_ATTRIBUTES: options.header()})

    @app.errorhandler(HTTPError)
    def http_error(error: HTTPError) -> Response:
        return _json({"error": error.message}, error.status)

    @app.errorhandler(HTTPException)
    def werkzeug_error(error: HTTPException) -> Response:
        if error.code == 404:
            message = f"no such path: {request.method} {request.path}; this server answers {ROUTES}"
        elif error.code == 405:
            message = f"{request.path} does not answer {request.method}; this server answers {ROUTES}"
        else:
            message = error.description or error.name
        return _json({"error": message}, error.code or 500)

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> Response:
        app.logger.exception("internal error answering %s %s", request.method, request.path)
        return _json({"error": f"internal error: {type(error).__name__}: {error}"}, 500)

    return app


def _read_body(settings: ServeSettings) -> bytes:
    """The body, refused with 413 past the limit: at once by its Content-Length, or as soon as a
    chunked body grows past it (nothing more is read)."""
    limit = settings.max_payload_bytes
    length = request.content_length
    if limit is None:
        return request.get_data(cache=False)
    if length is not None and length > limit:
        raise PayloadTooLarge(f"the request body is {length} bytes, over the limit of {settings.max_payload_mb} MiB "
                              f"({limit} bytes, {MAX_PAYLOAD})")
    chunks, size = [], 0
    while chunk := request.stream.read(min(1 << 20, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is over the limit of {settings.max_payload_mb} MiB "
                                  f"({limit} bytes, {MAX_PAYLOAD})")
    return b"".join(chunks)


def _json(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body), status, mimetype=RESPONSE_CONTENT_TYPE)
