"""Typed errors, one per 4xx the server answers, each raised by a real refusal."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import pytest

import agentcast
from conftest import API_KEY, Consumer, Server, run


def raises(cls: type[agentcast.AgentcastError], fn, *a, **kw) -> agentcast.AgentcastError:  # type: ignore[no-untyped-def]
    with pytest.raises(cls) as e:
        fn(*a, **kw)
    assert isinstance(e.value, agentcast.AgentcastError)
    assert e.value.status == cls.status
    return e.value


def test_publish_errors(server: Server, user: str) -> None:
    with server.client() as c:
        e = raises(agentcast.BadRequest, c.publish, user_id=user, data={})  # no type
        assert "type" in e.reason, e.reason
        e = raises(agentcast.BadRequest, c.publish, user_id=user, type="tool_executing")  # no run_id
        assert "run_id" in e.reason
        c.publish(user_id=user, type="custom.x", data={"a": 1}, idempotency_key="key-" + user)
        e = raises(agentcast.Conflict, c.publish, user_id=user, type="custom.x", data={"a": 2}, idempotency_key="key-" + user)
        assert "reused with a different request" in e.reason
        e = raises(agentcast.PayloadTooLarge, c.publish, user_id=user, type="custom.x", data={"s": "x" * (1 << 20)})
        e = raises(agentcast.PayloadTooLarge, c.publish_batch, [{"user_id": user, "type": "custom.x"}] * 1001)
        assert "1000" in e.reason or "batch" in e.reason, e.reason
    with agentcast.Agentcast(server.url, "wrong-key") as bad:
        e = raises(agentcast.Unauthorized, bad.publish, user_id=user, type="custom.x")
        assert e.reason
    with agentcast.Agentcast(server.url, "k" * 20_000) as huge:
        e = raises(agentcast.RequestHeaderFieldsTooLarge, huge.publish, user_id=user, type="custom.x")
        assert e.reason == "Request Header Fields Too Large"


def test_stream_errors(server: Server, user: str) -> None:
    async def main() -> None:
        async with server.aclient() as c:
            # A line refused for good (400) is raised by close; the lines around it publish.
            s = c.stream()
            async with Consumer(c.subscribe(server.token(user))) as sub:
                with pytest.raises(agentcast.BadRequest) as e:
                    async with s:
                        await s.send({"user_id": user, "type": "custom.x", "data": {"n": 1}})
                        await s.send({"user_id": user, "type": "message_delta", "run_id": "r", "data": {"delta": "x"}})
                        await s.send({"user_id": user, "type": "custom.x", "data": {"n": 3}})
                assert "message_id" in e.value.reason, e.value.reason
                assert (s.published, s.failed) == (2, 1)
                await sub.until(lambda: len(sub.of("custom.x")) == 2, "the two good lines")
            async with agentcast.AsyncAgentcast(server.url, "wrong-key") as bad:
                with pytest.raises(agentcast.Unauthorized):
                    async with bad.run(user, "r").message() as m:
                        await m.write("never")

    run(main())


def test_unsupported_media_type_and_request_timeout(tmp_path: Path, user: str) -> None:
    # Neither is reachable through the SDK's own calls (it always sends NDJSON, and its whole
    # body at once): the typed error is built from the real server's answer.
    s = Server(tmp_path, env={"AGENTCAST_HANDSHAKE_TIMEOUT_MS": "300"})
    s.start()
    try:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        r = httpx.post(f"{s.url}/api/v1/publish/stream", headers={**auth, "Content-Type": "text/plain"}, content=b"{}\n")
        e = agentcast.from_response(r)
        assert isinstance(e, agentcast.UnsupportedMediaType) and e.status == 415 and e.reason

        # A body that stops half-way: a raw socket, so the answer is read whatever happens
        # to the unsent rest (an HTTP client may fail its write once the server closes).
        body = b'{"user_id":"u","type":"custom.x"}'
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
            sock.sendall(
                b"POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (API_KEY.encode(), len(body), body[:10])
            )
            answer = b""
            while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < 2:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        head, _, rest = answer.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        r = httpx.Response(status, content=rest)
        e = agentcast.from_response(r)
        assert isinstance(e, agentcast.RequestTimeout) and e.status == 408 and e.reason
    finally:
        s.stop()


def test_subscribe_and_ack_errors(server: Server, user: str) -> None:
    async def main() -> None:
        async with server.aclient() as c:
            for transport in ("websocket", "sse"):
                with pytest.raises(agentcast.Unauthorized):
                    async for _ in c.subscribe("not-a-jwt", transport=transport):
                        pass
                with pytest.raises(agentcast.BadRequest):
                    async for _ in c.subscribe(server.token(user), last_seq=-1, transport=transport):
                        pass
            with pytest.raises(agentcast.Forbidden) as e:
                async for _ in c.subscribe(server.token(user, channels=["job:1"]), transport="sse", channels=["admin"]):
                    pass
            assert "admin" in e.value.reason
            # The free tier's connections_per_user (5), WebSocket and SSE together: the sixth is 429.
            tok = server.token(user)
            subs = [c.subscribe(tok, transport="websocket" if i % 2 else "sse") for i in range(5)]
            consumers = [Consumer(s) for s in subs]
            for con in consumers:
                await con.__aenter__()
            try:
                with pytest.raises(agentcast.RateLimited):
                    async for _ in c.subscribe(tok):
                        pass
            finally:
                for con in consumers:
                    await con.__aexit__(None, None, None)
            with pytest.raises(agentcast.BadRequest):
                await c.ack(tok, -1)
            with pytest.raises(agentcast.Unauthorized):
                await c.ack("not-a-jwt", 1)
            r = await c.publish(user_id=user, type="agent_started", run_id="r", data={})
            assert await c.ack(tok, r.seq) == r.seq

    run(main())


def test_connection_failed_after_bounded_retries() -> None:
    from conftest import free_port

    c = agentcast.Agentcast(f"http://127.0.0.1:{free_port()}", API_KEY, retries=2, backoff=0.05)
    t0 = time.monotonic()
    with pytest.raises(agentcast.ConnectionFailed):
        c.publish(user_id="u", type="custom.x")
    assert time.monotonic() - t0 < 2


def test_mint_token(server: Server, user: str) -> None:
    async def main() -> None:
        async with server.aclient() as c:
            tok = agentcast.mint_token(server_secret(), user, tier="mid", channels=["job:*"], ttl=600)
            async with Consumer(c.subscribe(tok)) as con:
                assert con.sub.welcome is not None
                assert con.sub.welcome["user_id"] == user and con.sub.welcome["tier"] == "mid"
            expired = agentcast.mint_token(server_secret(), user, ttl=-3600)
            wrong = agentcast.mint_token("another-secret-of-at-least-32-bytes!!", user)
            too_long = agentcast.mint_token(server_secret(), user, ttl=8 * 24 * 3600)
            bad_tier = agentcast.mint_token(server_secret(), user, tier="platinum")
            for t in (expired, wrong, too_long, bad_tier):
                for transport in ("websocket", "sse"):
                    with pytest.raises(agentcast.Unauthorized) as e:
                        async for _ in c.subscribe(t, transport=transport):
                            pass
                    assert e.value.reason
            with pytest.raises(agentcast.Unauthorized) as e:
                await c.ack(expired, 1)
            assert "expired" in e.value.reason, e.value.reason

    run(main())


def server_secret() -> str:
    from conftest import SECRET

    return SECRET


def test_other_statuses_map_to_their_classes(server: Server) -> None:
    # 404, 405 and 426 are not answers to the SDK's own calls; the mapping of any answer
    # (agentcast.from_response) is checked against the real server's.
    auth = {"Authorization": f"Bearer {API_KEY}"}
    cases = [
        (httpx.get(f"{server.url}/no-such-route"), agentcast.NotFound),
        (httpx.get(f"{server.url}/api/v1/publish", headers=auth), agentcast.MethodNotAllowed),
        (
            httpx.get(
                f"{server.url}/ws?token={server.token('u426')}",
                headers={
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version": "12",
                },
            ),
            agentcast.UpgradeRequired,
        ),
    ]
    for r, cls in cases:
        e = agentcast.from_response(r)
        assert type(e) is cls and e.status == r.status_code == cls.status and e.reason, (r.status_code, r.text)
