"""The consumer: ``AsyncAgentcast.subscribe`` over WebSocket (``/ws``) or SSE (``/sse``)."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import websockets
from websockets.asyncio.client import connect as ws_connect

from ._errors import AgentcastError, Unauthorized, Unavailable, error_for
from ._types import Event

if TYPE_CHECKING:
    from ._client import AsyncAgentcast, TokenSource

_SEEN_MAX = 100_000


class _Closed(Exception):
    """The server ended the session with a close code."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason


class Subscription:
    """An async iterator of :class:`Event`; also an async context manager that closes the
    connection on exit. ``welcome`` is the latest welcome message, ``connects`` how many
    connections were opened, ``last_seq`` the resume cursor."""

    def __init__(
        self,
        client: AsyncAgentcast,
        token: TokenSource,
        last_seq: int | None,
        transport: str,
        channels: list[str],
        ack: bool,
        reconnect: bool,
    ) -> None:
        self._client = client
        self._token = token
        self.last_seq = last_seq
        self.transport = transport
        self.channels = channels
        self._ack = ack
        self._reconnect = reconnect
        self.welcome: dict[str, Any] | None = None
        self.connects = 0
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._gen: AsyncIterator[Event] | None = None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._gen is None:
            self._gen = self._events()
        return await self._gen.__anext__()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()  # type: ignore[attr-defined]

    async def _fresh_token(self) -> str:
        t = self._token
        if isinstance(t, str):
            return t
        v = t()
        if inspect.isawaitable(v):
            v = await v
        return str(v)

    def _remember(self, seq: int) -> bool:
        """False when ``seq`` was already yielded."""
        if seq in self._seen:
            return False
        self._seen.add(seq)
        self._seen_order.append(seq)
        if len(self._seen_order) > _SEEN_MAX:
            self._seen.discard(self._seen_order.popleft())
        return True

    def drop_connection(self) -> None:
        """Drops the current connection once the loop asks for the next event; the
        subscription reconnects at once and resumes from :attr:`last_seq` (what a network
        change calls for; also how the tests force a resume mid-replay)."""
        self._drop = True

    _drop = False

    async def _events(self) -> AsyncIterator[Event]:
        policy = self._client.policy
        attempt = 0
        while True:
            token = await self._fresh_token()
            reason: Exception | None = None
            welcome_seq = None
            try:
                source = self._ws(token) if self.transport == "websocket" else self._sse(token)
                try:
                    async for kind, v, ack in source:
                        if kind == "welcome":
                            self.welcome = v
                            self.connects += 1
                            attempt = 0
                            welcome_seq = v.get("last_seq")
                            continue
                        ev = Event.from_json(v)
                        if ev.type in ("pong", "error"):
                            continue
                        if ev.seq is not None:
                            if not self._remember(ev.seq):
                                continue
                            # A resume replays critical events first, out of seq order: those
                            # do not move the cursor (the events before them are still coming);
                            # every other event arrives in seq order.
                            if ev.priority != "critical" or welcome_seq is None or ev.seq > welcome_seq:
                                self.last_seq = max(self.last_seq or 0, ev.seq)
                        yield ev
                        if self._ack and ev.seq is not None and ev.priority == "critical":
                            try:
                                await ack(ev.seq)
                            except (OSError, AgentcastError, websockets.ConnectionClosed, httpx.TransportError):
                                pass  # the connection is gone; the resume replays what needs it
                        if self._drop:
                            self._drop = False
                            break
                    else:
                        raise _Closed(None, "the connection ended")
                finally:
                    await source.aclose()
                continue  # dropped on request: reconnect at once
            except _Closed as e:
                if e.code == 4001 and isinstance(self._token, str):
                    raise Unauthorized("token expired (close 4001); pass a callable token to refresh") from None
                if e.code == 1008:
                    raise AgentcastError(f"closed for abuse: {e.reason}") from None
                reason = e
            except Unavailable as e:
                reason = e
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException, httpx.TransportError) as e:
                reason = e
            if not self._reconnect:
                raise AgentcastError(f"subscription ended: {reason!r}")
            if attempt >= policy.retries:
                raise AgentcastError(f"subscription: no connection after {attempt + 1} attempts: {reason!r}")
            await asyncio.sleep(policy.delay(attempt))
            attempt += 1

    def _query(self, token: str, extra: dict[str, str]) -> str:
        q = {"token": token, **extra}
        if self.last_seq is not None:
            q["last_seq"] = str(self.last_seq)
        return "&".join(f"{k}={quote(v, safe='')}" for k, v in q.items())

    async def _ws(self, token: str) -> AsyncGenerator[tuple[str, dict[str, Any], Any], None]:
        parts = urlsplit(self._client.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", self._query(token, {}), ""))
        try:
            conn = await ws_connect(url, open_timeout=self._client.timeout, max_size=None, compression=None)
        except websockets.InvalidStatus as e:
            raise error_for(e.response.status_code, bytes(e.response.body or b"")) from None
        async with conn as ws:

            async def ack(seq: int) -> None:
                await ws.send(json.dumps({"type": "ack", "seq": seq}))

            first = True
            try:
                async for msg in ws:
                    v = json.loads(msg)
                    if first and v.get("type") == "welcome":
                        first = False
                        for ch in self.channels:
                            await ws.send(json.dumps({"type": "subscribe", "channel": ch}))
                        yield "welcome", v, ack
                        continue
                    yield "event", v, ack
            except websockets.ConnectionClosed as e:
                rcvd = e.rcvd
                raise _Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from None
            # The close the loop ended on (websockets 13.0 has these on its protocol only).
            code = getattr(ws, "close_code", None) or getattr(ws.protocol, "close_code", None)
            reason = getattr(ws, "close_reason", None) or getattr(ws.protocol, "close_reason", None)
            raise _Closed(code, reason or "")

    async def _sse(self, token: str) -> AsyncGenerator[tuple[str, dict[str, Any], Any], None]:
        extra = {"channels": ",".join(self.channels)} if self.channels else {}
        url = f"/sse?{self._query(token, extra)}"
        http = self._client._http

        async def ack(seq: int) -> None:
            await self._client.ack(token, seq)

        timeout = httpx.Timeout(self._client.timeout, read=None)
        async with http.stream("GET", url, timeout=timeout) as r:
            if r.status_code != 200:
                raise error_for(r.status_code, await r.aread())
            event: str | None = None
            data: list[str] = []
            async for line in r.aiter_lines():
                if line == "":
                    if data:
                        payload = "\n".join(data)
                        if event == "close":
                            c = json.loads(payload)
                            raise _Closed(c.get("code"), c.get("reason", ""))
                        v = json.loads(payload)
                        yield ("welcome" if event == "welcome" else "event"), v, ack
                    event, data = None, []
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
        raise _Closed(None, "the stream ended")
