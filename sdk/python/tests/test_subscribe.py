"""Subscribe over WebSocket and SSE: history, acks, resume with last_seq, the critical-first
replay deduplicated across a reconnect, and the graceful restart of the server."""

from __future__ import annotations

import asyncio
import signal

import pytest

import agentcast
from conftest import Consumer, Server, run, take

TRANSPORTS = ["websocket", "sse"]


async def offline_events(c: agentcast.AsyncAgentcast, user: str) -> list[agentcast.Receipt]:
    return [
        await c.publish(user_id=user, type="custom.a", data={"i": 0}),
        await c.publish(user_id=user, type="agent_started", run_id="r1", data={"goal": "g"}),
        await c.publish(user_id=user, type="custom.b", data={"i": 2}),
        await c.publish(user_id=user, type="agent_completed", run_id="r1", data={"result": 1}),
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_replay_critical_first_dedup_across_a_reconnect(server: Server, user: str, transport: str) -> None:
    async def main() -> None:
        async with server.aclient() as c:
            r = await offline_events(c, user)
            assert all(x.connections == 0 for x in r)
            start = r[0].seq - 1
            sub = c.subscribe(server.token(user), last_seq=start, transport=transport)
            got: list[agentcast.Event] = []
            async with sub:
                async for ev in sub:
                    got.append(ev)
                    if len(got) == 2:
                        # The critical events come first; they do not move the cursor, so the
                        # next connection replays them again: the subscription drops them.
                        assert [e.type for e in got] == ["agent_started", "agent_completed"]
                        assert sub.last_seq == start
                        sub.drop_connection()
                    if ev.type == "custom.b":
                        break
                assert sub.connects == 2
                assert [e.type for e in got] == ["agent_started", "agent_completed", "custom.a", "custom.b"]
                assert sorted(e.seq for e in got) == [x.seq for x in r]
                assert sub.last_seq == r[2].seq
            # Both critical events were acknowledged: a connection without last_seq starts
            # after the ack cursor (the last critical, r[3]) and replays nothing.
            async with Consumer(c.subscribe(server.token(user), transport=transport)) as fresh:
                await c.publish(user_id=user, type="custom.c", data={})
                await fresh.until(lambda: fresh.of("custom.c"), "the live event")
                assert [e.type for e in fresh.events] == ["custom.c"], [e.raw for e in fresh.events]

    run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resume_with_last_seq(server: Server, user: str, transport: str) -> None:
    async def main() -> None:
        async with server.aclient() as c:
            tok = server.token(user)
            async with Consumer(c.subscribe(tok, transport=transport)) as a:
                rs = [await c.publish(user_id=user, type="custom.n", data={"n": n}) for n in range(3)]
                await a.until(lambda: len(a.events) == 3, "three events")
                cursor = a.sub.last_seq
                assert cursor == rs[-1].seq
            rs += [await c.publish(user_id=user, type="custom.n", data={"n": n}) for n in range(3, 6)]
            sub = c.subscribe(tok, last_seq=cursor, transport=transport)
            async with sub:
                evs = await take(sub, 3)
            assert [e.data["n"] for e in evs] == [3, 4, 5]
            assert [e.seq for e in evs] == [x.seq for x in rs[3:]]
            # A cursor from before what is held gets a gap first.
            async with c.subscribe(tok, last_seq=1, transport=transport) as old:
                first = await take(old, 1)
            assert first[0].type == "gap" and first[0]["from"] == 2

    run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_subscription_survives_a_restart(own_server: Server, user: str, transport: str) -> None:
    async def main() -> None:
        async with own_server.aclient(retries=12, backoff=0.05, max_backoff=1.0) as c:
            sub = c.subscribe(own_server.token(user), transport=transport)
            async with Consumer(sub) as con:
                for n in range(10):
                    await c.publish(user_id=user, type="custom.n", data={"n": n})
                await con.until(lambda: len(con.of("custom.n")) == 10, "ten events")
                await asyncio.to_thread(own_server.stop, signal.SIGTERM)
                await asyncio.to_thread(own_server.start)
                for n in range(10, 20):
                    await c.publish(user_id=user, type="custom.n", data={"n": n})
                await con.until(lambda: len(con.of("custom.n")) == 20, "twenty events")
                assert [e.data["n"] for e in con.of("custom.n")] == list(range(20))
                assert sub.connects == 2

    run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_token_expiry_4001_reconnects_with_a_fresh_token(tmp_path, user: str, transport: str) -> None:  # type: ignore[no-untyped-def]
    # No leeway: a session ends at its token's exp with close 4001.
    s = Server(tmp_path, env={"AGENTCAST_JWT_LEEWAY_SECS": "0"})
    s.start()
    try:
        minted: list[str] = []

        def fresh() -> str:
            minted.append(s.token(user, ttl=2))
            return minted[-1]

        async def main() -> None:
            async with s.aclient() as c:
                sub = c.subscribe(fresh, transport=transport)
                async with Consumer(sub) as con:
                    await c.publish(user_id=user, type="custom.n", data={"n": 0})
                    await con.until(lambda: sub.connects >= 2, "a reconnect after 4001", timeout=10)
                    await c.publish(user_id=user, type="custom.n", data={"n": 1})
                    await con.until(lambda: len(con.of("custom.n")) == 2, "both events")
                    assert [e.data["n"] for e in con.of("custom.n")] == [0, 1]
                    assert len(minted) >= 2
                # A plain string token: 4001 raises Unauthorized.
                with pytest.raises(agentcast.Unauthorized) as e:
                    async for _ in c.subscribe(s.token(user, ttl=1), transport=transport):
                        pass
                assert "4001" in e.value.reason

        run(main())
    finally:
        s.stop()
