"""ASGI middleware that bounds every request: body size while it is read, total time, and no further
work once the client has gone."""
from __future__ import annotations

import asyncio

from .admission import CHARGE_KEY, BodyBudget, Charge, body_cost
from .http_errors import ServiceError, send_error

CLIENT_GONE = "lpips.client_gone"  # scope key set when the client disconnected before its answer


def body_too_large(limit: int) -> ServiceError:
    # The rest of the body stays unread: the connection cannot carry another request.
    return ServiceError(413, "body_too_large", f"request body over the limit of {limit / 2**20:g} MiB "
                        "(lpips-serve --max-body-mb)", {"Connection": "close"})


class RequestGuard:
    """Wraps the app so that each HTTP request

    * is refused with 413 when its ``Content-Length`` passes ``max_body_bytes`` (before any of it is
      read), or as soon as the bytes read pass it (chunked bodies): the app's read raises ``ServiceError``;
    * has the memory its body will cost (``admission.body_cost``) reserved in ``budget`` before any of it
      is read, until its answer is sent: 503 with ``Retry-After`` (connection closed) when it does not fit;
    * is answered 504 when it has no answer after ``timeout_s`` (the app's work is cancelled);
    * is cancelled when the client disconnects before its answer (queued pairs are then dropped by the
      batcher), and recorded with ``scope["lpips.client_gone"] = True``.
    """

    def __init__(self, app, max_body_bytes: int, timeout_s: float, budget: BodyBudget, retry_after_s: int = 1):
        self.app, self.max_body_bytes, self.timeout_s = app, max_body_bytes, timeout_s
        self.budget, self.retry_after_s = budget, retry_after_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_error(send, ServiceError(400, "bad_request", "invalid Content-Length header"), close=True)
                return
            if int(declared) > self.max_body_bytes:
                await send_error(send, body_too_large(self.max_body_bytes))
                return
        cost = body_cost(headers, self.max_body_bytes)
        if not self.budget.reserve(cost):
            await send_error(send, ServiceError(
                503, "overloaded", "the service is reading as many request bodies as its memory allows: retry "
                "later (lpips-serve --max-bodies-mb)", {"Retry-After": str(self.retry_after_s)}), close=True)
            return
        charge = scope[CHARGE_KEY] = Charge(self.budget, cost)  # routes parsing JSON may raise it
        try:
            await _GuardedRequest(self, scope, receive, send).run()
        finally:
            charge.release()


class _GuardedRequest:
    def __init__(self, guard: RequestGuard, scope, receive, send):
        self.guard, self.scope, self._receive, self._send = guard, scope, receive, send
        self.received = 0
        self.body_done = self.started = self.finished = False
        self.gone = asyncio.Event()
        self.app_task: asyncio.Task | None = None
        self.watcher: asyncio.Task | None = None

    async def receive(self):
        if self.body_done:  # the app asks again (e.g. to poll for a disconnect): answer from the watcher
            await self.gone.wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.guard.max_body_bytes:
                raise body_too_large(self.guard.max_body_bytes)
            if not message.get("more_body", False):
                self.body_done = True
                self.watcher = asyncio.get_running_loop().create_task(self._watch())
        elif message["type"] == "http.disconnect":
            self._client_gone()
        return message

    async def send(self, message):
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        await self._send(message)

    async def _watch(self) -> None:
        """After the body: the server's next message is a disconnect (client gone, or answer sent)."""
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.finished:
            self._client_gone()

    def _client_gone(self) -> None:
        self.scope[CLIENT_GONE] = True
        self.gone.set()
        if self.app_task is not None and not self.app_task.done():
            self.app_task.cancel()

    async def run(self) -> None:
        self.app_task = asyncio.get_running_loop().create_task(self.guard.app(self.scope, self.receive, self.send))
        try:
            done, _ = await asyncio.wait({self.app_task}, timeout=self.guard.timeout_s)
            if not done:
                self.app_task.cancel()
                await asyncio.gather(self.app_task, return_exceptions=True)
                if not self.started and not self.gone.is_set():
                    await send_error(self._send, ServiceError(
                        504, "timeout", f"no answer within {self.guard.timeout_s:g} s (lpips-serve --timeout-s)"),
                        close=not self.body_done)
                return
            if self.app_task.cancelled():  # the client went away: nothing to answer
                return
            self.app_task.result()  # the app's own exceptions propagate to the server, as without the guard
        except asyncio.CancelledError:  # the server itself cancels us (forced shutdown)
            self.app_task.cancel()
            raise
        finally:
            if self.watcher is not None:
                self.watcher.cancel()
