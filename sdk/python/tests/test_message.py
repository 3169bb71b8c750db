"""Message streams over the streaming publish connection: many writes, a slow consumer,
every delta delivered in order, and a writer held back when the server stops reading."""

from __future__ import annotations

import asyncio
import signal
import time

import agentcast
from conftest import Consumer, Server, run


def assemble(events: list[agentcast.Event], message_id: str) -> tuple[str, list[agentcast.Event]]:
    """The message's text from its deltas, checking that their seqs cover one contiguous
    range in order (a merged delta covers seq_from..seq)."""
    deltas = [e for e in events if e.type == "message_delta" and e.data["message_id"] == message_id]
    prev = None
    for d in deltas:
        first = d.seq_from if d.seq_from is not None else d.seq
        if prev is not None:
            assert first == prev + 1, f"delta seqs not contiguous: {prev} then {first}..{d.seq}"
        prev = d.seq
    return "".join(d.data["delta"] for d in deltas), deltas


def test_message_stream_slow_consumer(server: Server, user: str) -> None:
    words = [f"w{i:05} " + "abcdefgh" * 128 for i in range(4000)]

    async def main() -> None:
        async with server.aclient() as c:
            sub = c.subscribe(server.token(user))
            got: list[agentcast.Event] = []

            written = asyncio.Event()

            async def slow() -> None:
                async for ev in sub:
                    got.append(ev)
                    if ev.type == "message_completed":
                        return
                    if len(got) == 2:
                        await written.wait()  # a reader that stalls: the server merges deltas
                    elif len(got) % 20 == 0:
                        await asyncio.sleep(0.01)

            reader = asyncio.create_task(slow())
            while sub.connects == 0:
                await asyncio.sleep(0.01)
            run_ = c.run(user, "r-msg")
            t0 = time.monotonic()
            async with run_.message("m1") as m:
                for w in words:
                    await m.write(w)
            took = time.monotonic() - t0
            written.set()
            assert m.summary is not None and m.summary.published == len(words) + 2 and m.summary.failed == 0
            await asyncio.wait_for(reader, 30)
            await sub.aclose()
            text, deltas = assemble(got, "m1")
            assert text == "".join(words)
            types = [e.type for e in got]
            assert types[0] == "message_started" and types[-1] == "message_completed"
            assert got[0].data == {"message_id": "m1", "role": "assistant"}
            assert got[-1].data == {"message_id": "m1", "length": len(text)}
            assert len(deltas) < len(words), "the consumer was never slow enough for a merge"
            assert any(d.seq_from is not None for d in deltas)
            print(f"{len(words)} writes in {took:.2f}s, {len(deltas)} frames received")

    run(main())


def test_sync_message_stream(server: Server, user: str) -> None:
    async def main() -> None:
        async with server.aclient() as ac, Consumer(ac.subscribe(server.token(user))) as sub:

            def write() -> str:
                with server.client() as c:
                    with c.run(user, "r-sync").message("m2") as m:
                        for i in range(200):
                            m.write(f"t{i},")
                    assert m.summary is not None and m.summary.published == 202
                    return m.text

            text = await asyncio.to_thread(write)
            await sub.until(lambda: sub.of("message_completed"), "message_completed")
            assert assemble(sub.events, "m2")[0] == text

    run(main())


def test_writer_blocks_while_the_server_does_not_read(own_server: Server, user: str) -> None:
    delta = "x" * 2048

    async def main() -> None:
        async with own_server.aclient(stream_queue=8) as c:
            written = 0
            stalled = asyncio.Event()
            assert own_server.proc is not None
            async with c.run(user, "r-bp").message("m3") as m:
                await m.write("start")
                own_server.proc.send_signal(signal.SIGSTOP)
                try:
                    while not stalled.is_set():
                        try:
                            await asyncio.wait_for(m.write(delta), 1.0)
                        except asyncio.TimeoutError:
                            stalled.set()
                            break
                        written += 1
                        assert written < 50_000, "writes never blocked"
                    queued = m._stream._queue.qsize()
                    assert queued <= 8, queued
                finally:
                    own_server.proc.send_signal(signal.SIGCONT)
                for _ in range(20):
                    await m.write(delta)
            assert m.summary is not None and m.summary.failed == 0
            # The write cancelled while it waited queued nothing; every other line was published.
            assert m.summary.published == written + 1 + 20 + 2
            print(f"the writer blocked after {written} writes of 2 KiB with the server stopped")

    run(main())
