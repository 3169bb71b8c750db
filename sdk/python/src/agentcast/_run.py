"""Per-run emitters, mirroring the Rust ``UserEmitter`` (engine/src/emitter.rs): one method
per agent event, each writing the ``data`` members the server's enrichment reads."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._stream import AsyncPublishStream
from ._types import Receipt, StreamSummary

if TYPE_CHECKING:
    from ._client import Agentcast, AsyncAgentcast

T = TypeVar("T")


def _opt(d: dict[str, Any], **kv: Any) -> dict[str, Any]:
    for k, v in kv.items():
        if v is not None:
            d[k] = v
    return d


def started_data(goal: str | None, agent: str | None, expected_ms: int | None, extra: dict[str, Any]) -> dict[str, Any]:
    return _opt({}, goal=goal, agent=agent, expected_ms=expected_ms) | extra


def thinking_data(
    text: str | None, step: int | None, total_steps: int | None, progress: float | None
) -> dict[str, Any]:
    return _opt({}, message=text, step=step, total_steps=total_steps, progress=progress)


def tool_executing_data(tool: str, args: Any, call_id: str | None) -> dict[str, Any]:
    d = _opt({"tool": tool}, call_id=call_id)
    d["input"] = {} if args is None else args
    return d


def tool_completed_data(tool: str, result: Any, duration_ms: int | None, call_id: str | None) -> dict[str, Any]:
    d = _opt({"tool": tool}, call_id=call_id)
    d["output"] = result
    return _opt(d, duration_ms=duration_ms)


def error_data(code: str | int, message: str, fatal: bool | None, category: str | None) -> dict[str, Any]:
    d: dict[str, Any] = {"code": code}
    _opt(d, category=category)
    d["message"] = message
    return _opt(d, fatal=fatal)


class AsyncMessage:
    """A message stream of one run: ``message_started`` on enter, one ``message_delta`` per
    :meth:`write`, ``message_completed`` (with ``length``, the text's length in characters)
    on exit, all over one streaming publish connection. ``write`` waits while the stream's
    queue of unwritten lines is full (backpressure)."""

    def __init__(self, stream: AsyncPublishStream, user_id: str, run_id: str, message_id: str, role: str) -> None:
        self._stream = stream
        self.user_id = user_id
        self.run_id = run_id
        self.message_id = message_id
        self.role = role
        self._parts: list[str] = []
        self.summary: StreamSummary | None = None

    def _body(self, type: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"user_id": self.user_id, "type": type, "run_id": self.run_id, "data": data}

    @property
    def text(self) -> str:
        """Everything written so far."""
        return "".join(self._parts)

    async def __aenter__(self) -> AsyncMessage:
        self._stream.start()
        await self._stream.send(
            self._body("message_started", {"message_id": self.message_id, "role": self.role})
        )
        return self

    async def write(self, delta: str) -> None:
        """Publishes one ``message_delta`` (empty strings are skipped)."""
        if not delta:
            return
        await self._stream.send(self._body("message_delta", {"message_id": self.message_id, "delta": delta}))
        self._parts.append(delta)

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        data: dict[str, Any] = {"message_id": self.message_id, "length": len(self.text)}
        if exc_type is not None:
            data["interrupted"] = True
            try:
                await self._stream.send(self._body("message_completed", data))
                self.summary = await self._stream.close()
            except Exception:
                pass
            return
        await self._stream.send(self._body("message_completed", data))
        self.summary = await self._stream.close()


class AsyncRun:
    """The events of one run of one user (``AsyncAgentcast.run``). Every method publishes
    one event with this run's ``run_id`` to every connection of the user, and returns its
    :class:`Receipt`."""

    def __init__(self, client: AsyncAgentcast, user_id: str, run_id: str) -> None:
        self.client = client
        self.user_id = user_id
        self.run_id = run_id

    async def emit(self, type: str, data: Any = None, *, priority: str | None = None) -> Receipt:
        """An event of any type (custom types included) for this run."""
        return await self.client.publish(
            user_id=self.user_id, type=type, run_id=self.run_id, data=data, priority=priority
        )

    async def started(
        self, goal: str | None = None, *, agent: str | None = None, expected_ms: int | None = None, **extra: Any
    ) -> Receipt:
        """``agent_started`` (critical): ``{"goal", "agent", "expected_ms"}``, each when given."""
        return await self.emit("agent_started", started_data(goal, agent, expected_ms, extra))

    async def thinking(
        self,
        text: str | None = None,
        *,
        step: int | None = None,
        total_steps: int | None = None,
        progress: float | None = None,
    ) -> Receipt:
        """``agent_thinking`` (low): ``{"message": text, "step", "total_steps", "progress"}``."""
        return await self.emit("agent_thinking", thinking_data(text, step, total_steps, progress))

    async def tool_executing(self, tool: str, args: Any = None, call_id: str | None = None) -> Receipt:
        """``tool_executing``: ``{"tool", "call_id"?, "input": args}``."""
        return await self.emit("tool_executing", tool_executing_data(tool, args, call_id))

    async def tool_completed(
        self, tool: str, result: Any = None, duration_ms: int | None = None, call_id: str | None = None
    ) -> Receipt:
        """``tool_completed``: ``{"tool", "call_id"?, "output": result, "duration_ms"?}``."""
        return await self.emit("tool_completed", tool_completed_data(tool, result, duration_ms, call_id))

    async def completed(self, result: Any = None) -> Receipt:
        """``agent_completed`` (critical): ``{"result": result}``; closes the run."""
        return await self.emit("agent_completed", {"result": result})

    async def error(
        self, code: str | int, message: str, *, fatal: bool | None = None, category: str | None = None
    ) -> Receipt:
        """``agent_error`` (critical): ``{"code", "category"?, "message", "fatal"?}``."""
        return await self.emit("agent_error", error_data(code, message, fatal, category))

    def message(self, message_id: str | None = None, *, role: str = "assistant") -> AsyncMessage:
        """``async with run.message() as m: await m.write(delta)``."""
        return AsyncMessage(
            self.client.stream(), self.user_id, self.run_id, message_id or uuid.uuid4().hex, role
        )


class _LoopThread:
    """One asyncio loop in a daemon thread, for the sync client's streaming connections."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def call(cls, coro: Coroutine[Any, Any, T]) -> T:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="agentcast-stream", daemon=True).start()
                cls._loop = loop
            loop = cls._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


class PublishStream:
    """The blocking face of :class:`AsyncPublishStream` (``Agentcast.stream``)."""

    def __init__(self, factory: Callable[[], AsyncPublishStream]) -> None:
        async def make() -> AsyncPublishStream:
            s = factory()
            s.start()
            return s

        self._inner = _LoopThread.call(make())

    def __enter__(self) -> PublishStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, body: dict[str, Any]) -> None:
        """Queues one publish; blocks while the queue of unwritten lines is full."""
        _LoopThread.call(self._inner.send(body))

    def close(self) -> StreamSummary:
        return _LoopThread.call(self._inner.close())


class Message:
    """The blocking face of :class:`AsyncMessage`: ``with run.message() as m: m.write(d)``;
    ``write`` blocks while the stream's queue of unwritten lines is full."""

    def __init__(self, factory: Callable[[], AsyncPublishStream], user_id: str, run_id: str, message_id: str, role: str) -> None:
        self._factory = factory
        self._args = (user_id, run_id, message_id, role)
        self._inner: AsyncMessage | None = None
        self.message_id = message_id

    def __enter__(self) -> Message:
        async def enter() -> AsyncMessage:
            m = AsyncMessage(self._factory(), *self._args)
            return await m.__aenter__()

        self._inner = _LoopThread.call(enter())
        return self

    def write(self, delta: str) -> None:
        assert self._inner is not None, "use `with run.message() as m`"
        _LoopThread.call(self._inner.write(delta))

    @property
    def text(self) -> str:
        return self._inner.text if self._inner else ""

    @property
    def summary(self) -> StreamSummary | None:
        return self._inner.summary if self._inner else None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self._inner is not None
        _LoopThread.call(self._inner.__aexit__(exc_type, exc, tb))


class Run:
    """The events of one run of one user (``Agentcast.run``); blocking."""

    def __init__(self, client: Agentcast, user_id: str, run_id: str) -> None:
        self.client = client
        self.user_id = user_id
        self.run_id = run_id

    def emit(self, type: str, data: Any = None, *, priority: str | None = None) -> Receipt:
        """An event of any type (custom types included) for this run."""
        return self.client.publish(user_id=self.user_id, type=type, run_id=self.run_id, data=data, priority=priority)

    def started(
        self, goal: str | None = None, *, agent: str | None = None, expected_ms: int | None = None, **extra: Any
    ) -> Receipt:
        return self.emit("agent_started", started_data(goal, agent, expected_ms, extra))

    def thinking(
        self,
        text: str | None = None,
        *,
        step: int | None = None,
        total_steps: int | None = None,
        progress: float | None = None,
    ) -> Receipt:
        return self.emit("agent_thinking", thinking_data(text, step, total_steps, progress))

    def tool_executing(self, tool: str, args: Any = None, call_id: str | None = None) -> Receipt:
        return self.emit("tool_executing", tool_executing_data(tool, args, call_id))

    def tool_completed(
        self, tool: str, result: Any = None, duration_ms: int | None = None, call_id: str | None = None
    ) -> Receipt:
        return self.emit("tool_completed", tool_completed_data(tool, result, duration_ms, call_id))

    def completed(self, result: Any = None) -> Receipt:
        return self.emit("agent_completed", {"result": result})

    def error(
        self, code: str | int, message: str, *, fatal: bool | None = None, category: str | None = None
    ) -> Receipt:
        return self.emit("agent_error", error_data(code, message, fatal, category))

    def message(self, message_id: str | None = None, *, role: str = "assistant") -> Message:
        return Message(self.client._stream_factory, self.user_id, self.run_id, message_id or uuid.uuid4().hex, role)
