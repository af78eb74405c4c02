"""Refusing request bodies over `max_bytes` early: a pure ASGI middleware in front of the app.

A body announced by Content-Length as too large gets a 413 before any of it is read. A body without
one (chunked) is counted as the app reads it and cut off with a 413 at the first chunk past the
limit, so at most `max_bytes` plus one chunk is ever read.
"""

from __future__ import annotations

import json


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _message(self, size: int | None) -> bytes:
        got = f"{size} bytes" if size is not None else "more than that"
        return json.dumps({"detail": f"the request body is too large: {got}; at most {self.max_bytes} bytes here "
                                     "(the server's DESIGNERBOX_MAX_BODY_BYTES)"}).encode()

    async def _refuse(self, send, size: int | None) -> None:
        body = self._message(size)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.max_bytes:
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                size = None
            if size is not None and size > self.max_bytes:
                return await self._refuse(send, size)
        seen, too_large, started = 0, False, False

        async def counted_receive():
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message):
            nonlocal started
            if too_large:  # the app turned our exception into a response of its own: ours goes instead
                if not started:
                    started = True
                    await self._refuse(send, None)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not too_large:  # not ours (our BodyTooLarge may come back wrapped by the app's error handling)
                raise
            if not started:
                await self._refuse(send, None)
