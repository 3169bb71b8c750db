"""Fixtures: the real ``agentcast`` binary on a free loopback port.

The binary is ``$AGENTCAST_BIN``, by default ``target/debug/agentcast`` under the repository
root (``scripts/sdk-python.sh`` builds it and sets the variable). A missing binary fails
the tests: none of them runs without a server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import agentcast

REPO = Path(__file__).resolve().parents[3]
SECRET = "sdk-python-test-secret-0123456789-abcdef"
API_KEY = "sdk-python-test-api-key"


def binary() -> Path:
    b = Path(os.environ.get("AGENTCAST_BIN", REPO / "target" / "debug" / "agentcast"))
    if not b.is_absolute():
        b = REPO / b
    assert b.is_file(), f"no agentcast binary at {b}: build it (cargo build -p agentcast-server --bin agentcast) or set AGENTCAST_BIN"
    return b


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One agentcast process; ``restart`` keeps its port."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.log = tmp / f"agentcast-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCAST_")}
        env.update({"AGENTCAST_JWT_SECRET": SECRET, "AGENTCAST_API_KEY": API_KEY, **self.env})
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary()), "serve", "--listen", f"127.0.0.1:{self.port}", "--log-level", "warn"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"agentcast exited: {self.log.read_text()}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"agentcast not ready: {self.log.read_text()}"
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def token(self, user: str, **kw: Any) -> str:
        return agentcast.mint_token(SECRET, user, **kw)

    def client(self, **kw: Any) -> agentcast.Agentcast:
        return agentcast.Agentcast(self.url, API_KEY, **kw)

    def aclient(self, **kw: Any) -> agentcast.AsyncAgentcast:
        return agentcast.AsyncAgentcast(self.url, API_KEY, **kw)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("agentcast"))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own (for tests that restart it)."""
    s = Server(tmp_path)
    s.start()
    yield s
    s.stop(signal.SIGKILL)


@pytest.fixture
def user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def run(coro: Any, timeout: float = 60) -> Any:
    """Runs a coroutine to its end (the tests are plain pytest, no plugin)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def take(sub: agentcast.Subscription, n: int, timeout: float = 15, pred: Any = None) -> list[agentcast.Event]:
    """The next ``n`` events of ``sub`` (those matching ``pred``), within ``timeout`` s."""
    out: list[agentcast.Event] = []

    async def loop() -> None:
        async for ev in sub:
            if pred is None or pred(ev):
                out.append(ev)
                if len(out) >= n:
                    return

    try:
        await asyncio.wait_for(loop(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"{len(out)} of {n} events within {timeout}s: {[e.raw for e in out]}") from None
    return out


class Consumer:
    """Drives a subscription in a task: ``events`` grows as they arrive. ``async with``
    returns once the first connection got its welcome."""

    def __init__(self, sub: agentcast.Subscription) -> None:
        self.sub = sub
        self.events: list[agentcast.Event] = []
        self.task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        async for ev in self.sub:
            self.events.append(ev)

    async def __aenter__(self) -> Consumer:
        self.task = asyncio.create_task(self._loop())
        await self.until(lambda: self.sub.connects >= 1, "a welcome")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):
            pass
        await self.sub.aclose()

    async def until(self, cond: Any, what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert self.task is not None
            if self.task.done():
                self.task.result()
                raise AssertionError(f"the subscription ended before {what}")
            assert time.monotonic() < deadline, f"no {what} within {timeout}s: {[e.raw for e in self.events]}"
            await asyncio.sleep(0.01)

    def of(self, type: str) -> list[agentcast.Event]:
        return [e for e in self.events if e.type == type]
