"""lpips-serve's front door: the HTTP connection protocol, bounded before any request reaches the app.

ASGI middleware only sees a request once its head (request line and header fields) has been parsed, so
the bounds on heads and connections live here, in a subclass of uvicorn's httptools protocol:

* **head size and count**: a head over ``max_head_bytes`` or with more than ``max_headers`` fields is
  answered 431 and the connection closed. Bytes are counted as they arrive, before the parser sees
  more than one read past the limit, so a refused head costs time in proportion to the limit, never to
  what the client keeps sending (the parser's own cost grows with the square of a field's length).
* **head read timeout**: a connection that has not sent a complete head ``header_timeout_s`` after it
  opened (or after its first byte, for later requests on a kept-alive connection) is answered 408 and
  closed. Idle kept-alive connections are closed by uvicorn after ``timeout_keep_alive``.
* **connection cap**: at most ``max_connections`` connections. When a new one would pass the cap, the
  connection that has been idle longest (nothing owed to it: still sending its head, between kept-alive
  requests, or after its answer) is closed to make room, so slow or idle connections can never keep
  ``/healthz``, ``/readyz`` or a scoring request out. Only when every connection is owed an answer
  (bounded by ``--max-queue`` and ``--timeout-s``) is the new connection refused (503, closed).

A refused connection is closed gracefully: the answer is written, the write side shut, and what the
client still sends is read and dropped (unparsed) for at most ``LINGER_S`` seconds, so that it reads the
answer instead of a reset.
"""
from __future__ import annotations

import json
import time

from ..optional import require

# Without the [serve] extra: one MissingExtraError naming it, not a bare ModuleNotFoundError.
require("httptools", "serve", "lpips-serve")
require("uvicorn", "serve", "lpips-serve")

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .settings import ServeSettings

LINGER_S = 1.0  # how long a refused connection's further bytes are read and dropped
LINGER_BYTES = 1 << 20  # ... and at most this many, then it is closed outright


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a head that must be refused."""


def _answer(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": message, "code": code}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


def guarded_protocol(limits: ServeSettings) -> type:
    """uvicorn's httptools protocol bounded by the front-door fields of ``limits`` (a class: uvicorn makes
    one per connection)."""

    class GuardedHttpProtocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:
            self._head_bytes = 0  # bytes of the current head received so far
            self._header_count = 0
            self._in_head = True  # the next bytes belong to a request head
            self._idle_since: float | None = time.monotonic()  # None while an answer is owed
            self._refused = False
            self._refusal: bytes | None = None
            self._lingered = 0
            self._head_timer = None
            super().connection_made(transport)
            self._arm_head_timer()
            self._make_room()

        # -- the cap ----------------------------------------------------------------------------

        def _make_room(self) -> None:
            live = [c for c in self.connections if not getattr(c, "_refused", False)]
            if len(live) <= limits.max_connections:
                return
            idle = [c for c in live if c is not self and getattr(c, "_idle_since", None) is not None]
            if idle:
                oldest = min(idle, key=lambda c: c._idle_since)
                oldest._refused = True
                oldest.transport.abort()  # nothing is owed to it: make room at once
                return
            self._refuse(_answer(503, "Service Unavailable", "too_many_connections",
                                 f"all {limits.max_connections} connections are busy with requests: retry later "
                                 "(lpips-serve --max-connections)"))

        # -- heads --------------------------------------------------------------------------------

        def _arm_head_timer(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(limits.header_timeout_s, self._head_timed_out)

        def _disarm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._in_head and not self._refused:
                self._refuse(_answer(408, "Request Timeout", "header_timeout",
                                     f"request head not complete within {limits.header_timeout_s:g} s"))

        def data_received(self, data: bytes) -> None:
            if self._refused:  # lingering: drop what still comes, unparsed
                self._lingered += len(data)
                if self._lingered > LINGER_BYTES:
                    self.transport.abort()
                return
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and not self._refused and self._head_bytes > limits.max_head_bytes:
                self._refuse(_answer(431, "Request Header Fields Too Large", "headers_too_large",
                                     f"request head over {limits.max_head_bytes} bytes"))

        def send_400_response(self, msg: str) -> None:  # uvicorn's answer to a parser error
            if self._refusal is not None:  # the error is ours, raised from a callback
                self._refuse(self._refusal)
            else:
                self._refused = True
                super().send_400_response(msg)

        def on_message_begin(self) -> None:
            self._in_head = True
            self._header_count = 0
            self._arm_head_timer()
            super().on_message_begin()

        def on_header(self, name: bytes, value: bytes) -> None:
            self._header_count += 1
            if self._header_count > limits.max_headers:
                self._refusal = _answer(431, "Request Header Fields Too Large", "headers_too_large",
                                        f"more than {limits.max_headers} header fields")
                raise _Refused
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_bytes = 0
            self._idle_since = None
            self._disarm_head_timer()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True  # a pipelined request's head may follow in the same read

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.pipeline:
                self._idle_since = time.monotonic()

        def _refuse(self, answer: bytes) -> None:
            """Answer (unless an earlier answer is still being written) and close gracefully."""
            self._refused = True
            self._disarm_head_timer()
            self._unset_keepalive_if_required()
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                self.transport.abort()  # a pipelined head while an answer is owed: no clean answer is possible
                return
            self.transport.write(answer)
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self.loop.call_later(LINGER_S, self.transport.abort)
            else:
                self.transport.close()

        def connection_lost(self, exc) -> None:
            self._disarm_head_timer()
            super().connection_lost(exc)

    return GuardedHttpProtocol

