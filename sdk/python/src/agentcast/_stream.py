"""The streaming publish connection: ``POST /api/v1/publish/stream``, full duplex.

httpx sends a whole request body before it reads the answer, so this speaks HTTP/1.1 itself
over an asyncio stream: the body is sent chunked as lines are written, and the receipts
(NDJSON, chunked) are read back at the same time.

Every line carries an ``idempotency_key``. A connection that breaks, a ``503`` line and a
final line that says lines were not read (``shutdown``, ``aborted``) are answered by
reconnecting (bounded attempts, backoff with jitter) and resending, in order, every line
that got no receipt: a line the server had already published answers its first receipt
again and publishes nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import ssl as _ssl
import uuid
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from ._errors import AgentcastError, BadRequest, ConnectionFailed, Unavailable, error_for
from ._retry import RetryPolicy
from ._types import StreamSummary

_END = object()


class _Transient(Exception):
    """The connection ended with lines unanswered; reconnect and resend them."""


def dumps(v: Any) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()


class AsyncPublishStream:
    """One streaming publish: ``await send(body)`` per publish, then ``await close()``.

    ``send`` returns once the line is queued; it waits while ``queue_size`` lines are queued
    and not yet written (the server reads lines only as fast as it publishes them, so a
    slow server slows the writer down, and nothing is buffered without bound). A line the
    server refused for good (400, 409, 413) is raised by the next ``send`` or by ``close``.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        policy: RetryPolicy,
        timeout: float = 10.0,
        queue_size: int = 64,
    ) -> None:
        parts = urlsplit(url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._tls else 80)
        self._path = parts.path.rstrip("/") + "/api/v1/publish/stream"
        self._api_key = api_key
        self._policy = policy
        self._timeout = timeout
        self._queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._error: AgentcastError | None = None
        self._key_prefix = uuid.uuid4().hex
        self._n = 0
        self.published = 0
        self.failed = 0
        self.connections = 0

    async def __aenter__(self) -> AsyncPublishStream:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def send(self, body: dict[str, Any]) -> None:
        """Queues one publish (a ``/api/v1/publish`` body) for the stream."""
        if self._error is not None:
            raise self._error
        if "idempotency_key" not in body:
            self._n += 1
            body = {**body, "idempotency_key": f"{self._key_prefix}-{self._n}"}
        await self._put(dumps(body) + b"\n")

    async def close(self) -> StreamSummary:
        """Ends the body, waits for every receipt; raises the first refusal, if any."""
        self.start()
        assert self._task is not None
        if not self._task.done():
            await self._put(_END)
        await asyncio.shield(self._task)
        if self._error is not None:
            raise self._error
        return StreamSummary(self.published, self.failed, self.connections)

    async def _put(self, item: Any) -> None:
        self.start()
        assert self._task is not None
        if self._task.done():
            raise self._error or ConnectionFailed("the publish stream is closed")
        if not self._queue.full():
            self._queue.put_nowait(item)
            return
        put = asyncio.ensure_future(self._queue.put(item))
        try:
            done, _ = await asyncio.wait({put, self._task}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # A cancelled send queues nothing (unless its put had already gone through).
            put.cancel()
            raise
        if put not in done:
            put.cancel()
            raise self._error or ConnectionFailed("the publish stream is closed")

    async def _run(self) -> None:
        resend: deque[bytes] = deque()
        ending = False
        attempt = 0
        while True:
            self.connections += 1
            progress = [False]
            try:
                await self._connection(resend, ending, progress)
                return
            except _Transient as e:
                reason = str(e)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                reason = f"connection failed: {e!r}"
            except AgentcastError as e:
                if self._error is None:
                    self._error = e
                return
            finally:
                ending = ending or self._ending
            if progress[0]:
                attempt = 0
            if attempt >= self._policy.retries:
                if self._error is None:
                    self._error = Unavailable(reason) if "503" in reason else ConnectionFailed(reason)
                return
            await asyncio.sleep(self._policy.delay(attempt))
            attempt += 1

    _ending = False

    async def _connection(self, resend: deque[bytes], ending: bool, progress: list[bool]) -> None:
        ctx = _ssl.create_default_context() if self._tls else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self._host, self._port, ssl=ctx), self._timeout
        )
        sent: list[bytes] = []
        try:
            host = self._host if self._port in (80, 443) else f"{self._host}:{self._port}"
            writer.write(
                (
                    f"POST {self._path} HTTP/1.1\r\nHost: {host}\r\n"
                    f"Authorization: Bearer {self._api_key}\r\n"
                    "Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n"
                    "User-Agent: agentcast-python\r\n\r\n"
                ).encode()
            )
            write_task = asyncio.ensure_future(self._write(writer, resend, ending, sent))
            try:
                await self._read(reader, sent, resend, progress, write_task)
            finally:
                write_task.cancel()
                try:
                    await write_task
                except (asyncio.CancelledError, Exception):
                    pass
        finally:
            writer.close()

    async def _write(
        self, writer: asyncio.StreamWriter, resend: deque[bytes], ending: bool, sent: list[bytes]
    ) -> None:
        def chunk(lines: list[bytes]) -> None:
            payload = b"".join(lines)
            writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))

        if resend:
            lines = list(resend)
            resend.clear()
            sent.extend(lines)
            chunk(lines)
            await writer.drain()
        if ending:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return
        while True:
            item = await self._queue.get()
            batch: list[bytes] = []
            while True:
                if item is _END:
                    self._ending = True
                    break
                batch.append(item)
                sent.append(item)
                if len(batch) >= 256 or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                chunk(batch)
            if self._ending:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return
            await writer.drain()

    async def _read(
        self,
        reader: asyncio.StreamReader,
        sent: list[bytes],
        resend: deque[bytes],
        progress: list[bool],
        write_task: asyncio.Future[None],
    ) -> None:
        answered = 0

        def unanswered(reason: str) -> _Transient:
            # Everything after the last answered line goes again, in order, on a new
            # connection (the writer is stopped first: `sent` is final once it is cancelled).
            write_task.cancel()
            resend.extendleft(reversed(sent[answered:]))
            return _Transient(reason)

        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, OSError) as e:
            raise unanswered(f"connection failed before the response: {e!r}") from None
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for h in lines[1:]:
            if ":" in h:
                k, v = h.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if status != 200:
            body = b""
            if "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            elif chunked:
                body = b"".join([c async for c in _chunks(reader)])
            err = error_for(status, body)
            if status == 503:
                raise unanswered(f"503: {err.reason}")
            raise err
        buf = b""
        try:
            async for c in _chunks(reader) if chunked else _raw(reader):
                buf += c
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    v = json.loads(line)
                    if "line" not in v:
                        end = v.get("end")
                        if end == "eof" and len(sent) == answered and not resend:
                            return
                        if end == "abuse":
                            raise BadRequest(
                                (v.get("error") or {}).get("message", "publish stream abuse")
                            )
                        raise unanswered(f"stream ended: {end}")
                    n = int(v["line"])
                    if n != answered + 1:
                        raise AgentcastError(f"receipt for line {n}, expected {answered + 1}")
                    err = v.get("error")
                    if err is None:
                        answered += 1
                        self.published += 1
                        progress[0] = True
                        continue
                    status = int(err.get("status", 0))
                    if status == 503:
                        raise unanswered(f"503: {err.get('message', '')}")
                    answered += 1
                    self.failed += 1
                    if self._error is None:
                        self._error = error_for(status, json.dumps({"error": err.get("message", "")}))
        except (asyncio.IncompleteReadError, OSError) as e:
            raise unanswered(f"connection failed: {e!r}") from None
        raise unanswered("the response ended without its final line")


async def _chunks(reader: asyncio.StreamReader):  # type: ignore[no-untyped-def]
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return
        data = await reader.readexactly(size)
        await reader.readexactly(2)
        yield data


async def _raw(reader: asyncio.StreamReader):  # type: ignore[no-untyped-def]
    while True:
        data = await reader.read(65536)
        if not data:
            return
        yield data
