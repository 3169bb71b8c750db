"""The publish clients: ``Agentcast`` (blocking) and ``AsyncAgentcast``."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import httpx

from ._body import item_body, publish_body
from ._errors import AgentcastError, ConnectionFailed, Unavailable, from_response
from ._retry import RetryPolicy
from ._run import AsyncRun, PublishStream, Run
from ._stream import AsyncPublishStream, dumps
from ._subscribe import Subscription
from ._types import BatchItemError, Receipt

BatchResult = Receipt | BatchItemError
TokenSource = str | Callable[[], str] | Callable[[], Awaitable[str]]

# Per-item batch errors that are a 503 for a single publish: the batch is sent again (with
# the same keys, so the items already published are not published twice).
_TRANSIENT_ITEM = ("overloaded", "shutting down", "unavailable")


def _batch_results(v: Any) -> list[BatchResult]:
    return [
        BatchItemError(str(r["error"])) if isinstance(r, dict) and "error" in r else Receipt.from_json(r)
        for r in v
    ]


def _transient_items(results: list[BatchResult]) -> bool:
    return any(
        isinstance(r, BatchItemError) and any(t in r.reason for t in _TRANSIENT_ITEM) for r in results
    )


class _Base:
    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        retries: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        timeout: float = 10.0,
        stream_queue: int = 64,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.policy = RetryPolicy(retries, backoff, max_backoff)
        self.timeout = timeout
        self.stream_queue = stream_queue
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "User-Agent": "agentcast-python",
        }

    def _stream_factory(self) -> AsyncPublishStream:
        return AsyncPublishStream(
            self.url, self.api_key, policy=self.policy, timeout=self.timeout, queue_size=self.stream_queue
        )

    def _give_up(self, last: Exception | None) -> AgentcastError:
        if isinstance(last, AgentcastError):
            return last
        return ConnectionFailed(f"{self.url}: {last!r}")


class AsyncAgentcast(_Base):
    """Publishes to, and subscribes from, an agentcast server (asyncio).

    ``retries`` (5) attempts after the first for transient failures (connection errors,
    timeouts, 503), waiting ``backoff`` (0.2 s) doubling up to ``max_backoff`` (5 s), with
    jitter. Every publish carries an idempotency key, so a retry never publishes twice.
    """

    def __init__(self, url: str, api_key: str, **kw: Any) -> None:
        super().__init__(url, api_key, **kw)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=self.timeout)

    async def __aenter__(self) -> AsyncAgentcast:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: Any) -> Any:
        content = dumps(body)
        last: Exception | None = None
        for attempt in range(self.policy.retries + 1):
            if attempt:
                await asyncio.sleep(self.policy.delay(attempt - 1))
            try:
                r = await self._http.post(path, content=content, headers=self._headers)
            except httpx.TransportError as e:
                last = e
                continue
            if r.status_code == 503:
                last = from_response(r)
                continue
            if r.status_code >= 400:
                raise from_response(r)
            return r.json()
        raise self._give_up(last)

    async def publish(
        self,
        *,
        type: str | None = None,
        user_id: str | None = None,
        channel: str | None = None,
        broadcast: bool = False,
        data: Any = None,
        run_id: str | None = None,
        priority: str | None = None,
        idempotency_key: str | None = None,
        ag_ui: dict[str, Any] | None = None,
    ) -> Receipt:
        """``POST /api/v1/publish``: one event to a user, a channel or everyone."""
        body = publish_body(
            type=type,
            user_id=user_id,
            channel=channel,
            broadcast=broadcast,
            data=data,
            run_id=run_id,
            priority=priority,
            idempotency_key=idempotency_key,
            ag_ui=ag_ui,
        )
        return Receipt.from_json(await self._post("/api/v1/publish", body))

    async def publish_batch(self, items: Sequence[dict[str, Any]]) -> list[BatchResult]:
        """``POST /api/v1/publish/batch``: each item a dict of :meth:`publish`'s arguments;
        one :class:`Receipt` or :class:`BatchItemError` per item, in order."""
        bodies = [item_body(i) for i in items]
        results: list[BatchResult] = []
        for attempt in range(self.policy.retries + 1):
            if attempt:
                await asyncio.sleep(self.policy.delay(attempt - 1))
            results = _batch_results(await self._post("/api/v1/publish/batch", bodies))
            if not _transient_items(results):
                break
        return results

    def stream(self) -> AsyncPublishStream:
        """A streaming publish (``POST /api/v1/publish/stream``):
        ``async with client.stream() as s: await s.send(body)``."""
        return self._stream_factory()

    def run(self, user_id: str, run_id: str | None = None) -> AsyncRun:
        """The emitter of one run (a fresh ``run_id`` when none is given)."""
        return AsyncRun(self, user_id, run_id or uuid.uuid4().hex)

    async def ack(self, token: str, seq: int) -> int:
        """``POST /api/v1/ack`` with a client token: confirms the user's events up to ``seq``."""
        last: Exception | None = None
        for attempt in range(self.policy.retries + 1):
            if attempt:
                await asyncio.sleep(self.policy.delay(attempt - 1))
            try:
                r = await self._http.post(
                    "/api/v1/ack", content=json.dumps({"seq": seq}), headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.TransportError as e:
                last = e
                continue
            if r.status_code == 503:
                last = from_response(r)
                continue
            if r.status_code >= 400:
                raise from_response(r)
            return int(r.json()["acked"])
        raise self._give_up(last)

    def subscribe(
        self,
        token: TokenSource,
        last_seq: int | None = None,
        transport: Literal["websocket", "sse"] = "websocket",
        *,
        channels: Sequence[str] = (),
        ack: bool = True,
        reconnect: bool = True,
    ) -> Subscription:
        """The events of the token's user, as :class:`Event` objects (``async for``).

        Acknowledges every critical event once the loop asks for the next one, reconnects
        after a dropped connection (backoff as for publishes, reset by every connection
        that gets its welcome) and resumes with ``last_seq``; an event already yielded
        (by seq) is never yielded again. ``token`` may be a callable (sync or async) that
        returns a fresh token, called at every connect (a session ends with its token:
        close 4001). Use ``async with client.subscribe(...) as events`` to close the
        connection when leaving the loop early.
        """
        if transport not in ("websocket", "sse"):
            raise ValueError("transport is 'websocket' or 'sse'")
        return Subscription(self, token, last_seq, transport, list(channels), ack, reconnect)


class Agentcast(_Base):
    """The blocking publish client; see :class:`AsyncAgentcast` for the retry policy.
    ``run(...).message()`` streams over a background asyncio thread."""

    def __init__(self, url: str, api_key: str, **kw: Any) -> None:
        super().__init__(url, api_key, **kw)
        self._http = httpx.Client(base_url=self.url, timeout=self.timeout)

    def __enter__(self) -> Agentcast:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: Any) -> Any:
        content = dumps(body)
        last: Exception | None = None
        for attempt in range(self.policy.retries + 1):
            if attempt:
                time.sleep(self.policy.delay(attempt - 1))
            try:
                r = self._http.post(path, content=content, headers=self._headers)
            except httpx.TransportError as e:
                last = e
                continue
            if r.status_code == 503:
                last = from_response(r)
                continue
            if r.status_code >= 400:
                raise from_response(r)
            return r.json()
        raise self._give_up(last)

    def publish(
        self,
        *,
        type: str | None = None,
        user_id: str | None = None,
        channel: str | None = None,
        broadcast: bool = False,
        data: Any = None,
        run_id: str | None = None,
        priority: str | None = None,
        idempotency_key: str | None = None,
        ag_ui: dict[str, Any] | None = None,
    ) -> Receipt:
        """``POST /api/v1/publish``: one event to a user, a channel or everyone."""
        body = publish_body(
            type=type,
            user_id=user_id,
            channel=channel,
            broadcast=broadcast,
            data=data,
            run_id=run_id,
            priority=priority,
            idempotency_key=idempotency_key,
            ag_ui=ag_ui,
        )
        return Receipt.from_json(self._post("/api/v1/publish", body))

    def publish_batch(self, items: Sequence[dict[str, Any]]) -> list[BatchResult]:
        """``POST /api/v1/publish/batch``; see :meth:`AsyncAgentcast.publish_batch`."""
        bodies = [item_body(i) for i in items]
        results: list[BatchResult] = []
        for attempt in range(self.policy.retries + 1):
            if attempt:
                time.sleep(self.policy.delay(attempt - 1))
            results = _batch_results(self._post("/api/v1/publish/batch", bodies))
            if not _transient_items(results):
                break
        return results

    def stream(self) -> PublishStream:
        """A streaming publish: ``with client.stream() as s: s.send(body)``."""
        return PublishStream(self._stream_factory)

    def run(self, user_id: str, run_id: str | None = None) -> Run:
        """The emitter of one run (a fresh ``run_id`` when none is given)."""
        return Run(self, user_id, run_id or uuid.uuid4().hex)


__all__ = ["Agentcast", "AsyncAgentcast", "BatchResult", "Unavailable"]
