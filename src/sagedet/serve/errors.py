"""HTTP errors: the client's mistake (4xx) or a busy server (503), each with its reason.

The app answers every one as ``{"error": "<reason>"}`` with the error's status; none of them ends
the worker.
"""

from __future__ import annotations


class HTTPError(Exception):
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(HTTPError):
    status = 400


class NotFound(HTTPError):
    status = 404


class MethodNotAllowed(HTTPError):
    status = 405


class NotAcceptable(HTTPError):
    status = 406


class PayloadTooLarge(HTTPError):
    status = 413


class UnsupportedMediaType(HTTPError):
    status = 415


class ServiceUnavailable(HTTPError):
    status = 503
