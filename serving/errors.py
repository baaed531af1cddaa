"""Errors that are the client's to fix: an HTTP status and a one-line message naming the culprit."""

from __future__ import annotations


class RequestError(Exception):
    status = 400

    def __init__(self, message: str, status: int | None = None):
        # One line, whatever the caller passed: the body of the error response is this message.
        super().__init__(" ".join(str(message).split()))
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        return str(self)


class BadRequest(RequestError):
    status = 400


class NotAcceptable(RequestError):
    status = 406


class PayloadTooLarge(RequestError):
    status = 413


class UnsupportedMediaType(RequestError):
    status = 415
