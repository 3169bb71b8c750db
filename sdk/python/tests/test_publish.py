"""Publish and batch: receipts, and the events a real subscriber receives."""

from __future__ import annotations

import agentcast
from conftest import Consumer, Server, run


def test_publish_receipt_and_delivery(server: Server, user: str) -> None:
    async def main() -> None:
        async with server.aclient() as c:
            async with Consumer(c.subscribe(server.token(user))) as sub:
                r = await c.publish(user_id=user, type="agent_started", run_id="r1", data={"goal": "plan a trip"})
                assert isinstance(r, agentcast.Receipt)
                assert r.connections == 1 and isinstance(r.seq, int)
                await sub.until(lambda: sub.of("agent_started"), "the event")
                ev = sub.of("agent_started")[0]
                assert ev.seq == r.seq and ev.run_id == "r1" and ev.priority == "critical"
                assert ev.data == {"goal": "plan a trip"}
                assert ev.meta == {"elapsed_ms": 0}

    run(main())


def test_sync_publish_and_batch(server: Server, user: str) -> None:
    async def main() -> None:
        async with server.aclient() as ac, Consumer(ac.subscribe(server.token(user))) as sub:
            with server.client() as c:
                one = c.publish(user_id=user, type="custom.note", data={"n": 0}, priority="low")
                assert one.connections == 1 and one.seq is not None
                res = c.publish_batch(
                    [
                        {"user_id": user, "type": "custom.note", "data": {"n": 1}},
                        {"user_id": user, "type": "agent_thinking", "data": {"n": 2}},  # no run_id: refused
                        {"channel": "job:1", "type": "custom.note", "data": {"n": 3}},
                        {"user_id": user, "type": "custom.note", "data": {"n": 4}, "idempotency_key": "k-" + user},
                    ]
                )
                assert isinstance(res[0], agentcast.Receipt) and res[0].seq == one.seq + 1
                assert isinstance(res[1], agentcast.BatchItemError) and "run_id" in res[1].reason
                assert res[2] == agentcast.Receipt(seq=None, connections=0)
                assert isinstance(res[3], agentcast.Receipt) and res[3].seq == one.seq + 2
                # The same key and request: the first receipt, nothing published again.
                again = c.publish(user_id=user, type="custom.note", data={"n": 4}, idempotency_key="k-" + user)
                assert again == res[3]
            await sub.until(lambda: len(sub.of("custom.note")) >= 3, "three notes")
            await __import__("asyncio").sleep(0.2)
            notes = sub.of("custom.note")
            assert [e.data["n"] for e in notes] == [0, 1, 4], [e.raw for e in notes]
            assert [e.seq for e in notes] == [one.seq, one.seq + 1, one.seq + 2]
            assert notes[0].priority == "low"

    run(main())


def test_channel_and_broadcast(server: Server, user: str) -> None:
    async def main() -> None:
        async with server.aclient() as c:
            tok = server.token(user, channels=["job:*"])
            async with Consumer(c.subscribe(tok, channels=["job:7"])) as sub:
                await __import__("asyncio").sleep(0.2)  # the subscribe message is processed
                r = await c.publish(channel="job:7", type="custom.progress", run_id="r1", data={"p": 1})
                assert r.seq is None and r.connections == 1
                b = await c.publish(broadcast=True, type="custom.notice", data={"all": True})
                assert b.seq is None and b.connections >= 1
                await sub.until(lambda: sub.of("custom.progress") and sub.of("custom.notice"), "both")
                assert sub.of("custom.progress")[0].channel == "job:7"
                assert sub.of("custom.notice")[0].channel == "*"

    run(main())


def test_ag_ui_publish(server: Server, user: str) -> None:
    async def main() -> None:
        async with server.aclient() as c, Consumer(c.subscribe(server.token(user))) as sub:
            r = await c.publish(user_id=user, ag_ui={"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "Hi"})
            assert r.connections == 1
            await sub.until(lambda: sub.of("message_delta"), "the delta")
            assert sub.of("message_delta")[0].data == {"message_id": "m1", "delta": "Hi"}
            with __import__("pytest").raises(agentcast.BadRequest) as e:
                await c.publish(user_id=user, ag_ui={"type": "TEXT_MESSAGE_CONTENT", "delta": "Hi"})
            assert "messageId" in e.value.reason

    run(main())
