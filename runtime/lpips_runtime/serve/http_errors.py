"""The service's errors: each is one HTTP status, a machine-readable code and the one-line message
the CLI would print for the same problem."""
from __future__ import annotations

import json

from ..errors import ImageTooLargeError, InputError, LpipsError, first_line


MAX_MESSAGE = 500  # characters of an error message: what it echoes of a request is bounded too
MAX_ECHO = 80  # characters of one value from the request quoted in a message


def echo(value) -> str:
    """A value from the request, as quoted in an error message: its repr, cut to ``MAX_ECHO`` characters."""
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + f"... ({len(text)} characters)"


class ServiceError(Exception):
    """A request that gets an error response ``{"error": message, "code": code}`` with ``status``.
    ``message`` is cut to ``MAX_MESSAGE`` characters (values quoted from the request: ``echo``)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "..."
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def from_lpips_error(exc: LpipsError) -> ServiceError:
    """The HTTP answer to a library error about one request's input: 413 for an image over the pixel
    limit (refused before decoding), 422 for anything else that cannot be scored (undecodable, size
    mismatch, too small), 500 for what is not about the input."""
    message = first_line(exc)
    if isinstance(exc, ImageTooLargeError):
        return ServiceError(413, "image_too_large", message)
    if isinstance(exc, InputError):
        return ServiceError(422, "bad_image", message)
    return ServiceError(500, "scoring_failed", message)


def bad_request(message: str) -> ServiceError:
    return ServiceError(400, "bad_request", message)


def load_json(data: bytes | memoryview, what: str):
    """``data`` parsed as JSON; malformed, not UTF-8 or nested past Python's recursion limit -> 400 naming
    ``what`` (never a 500 with a RecursionError traceback)."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise bad_request(f"{what} is JSON nested too deeply") from None


def unauthorized(message: str) -> ServiceError:
    return ServiceError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def overloaded(message: str, retry_after_s: int) -> ServiceError:
    return ServiceError(503, "overloaded", message, {"Retry-After": str(retry_after_s)})


def error_body(error: ServiceError) -> bytes:
    """The JSON body of every error response (schema: ``schemas.ErrorBody``)."""
    import json

    return json.dumps({"error": error.message, "code": error.code}).encode()


async def send_error(send, error: ServiceError, close: bool = False) -> None:
    """Answer an ASGI request with ``error`` from outside the app (middleware). ``close``: the request
    body was not read, so the connection cannot carry another request."""
    body = error_body(error)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    if close and "Connection" not in error.headers:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
