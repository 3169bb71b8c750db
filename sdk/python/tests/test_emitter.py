"""The run emitter: every method's event type and data, as received over a real WebSocket."""

from __future__ import annotations

import asyncio

from conftest import Consumer, Server, run

TYPES = [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_error",
    "custom.step",
    "agent_completed",
]


def expect(events: list, user_run: str) -> None:
    got = {e.type: e for e in events}
    assert [e.type for e in events] == TYPES, [e.raw for e in events]
    assert all(e.run_id == user_run for e in events)
    assert got["agent_started"].data == {"goal": "plan a trip", "agent": "planner", "expected_ms": 30000}
    assert got["agent_started"].priority == "critical"
    assert got["agent_thinking"].data == {"message": "Comparing flights", "step": 2, "total_steps": 5}
    assert got["agent_thinking"].meta["progress"] == {"percent": 40, "step": 2, "total": 5}
    assert got["tool_executing"].data == {"tool": "web_search", "call_id": "c1", "input": {"q": "flights LIS"}}
    assert got["tool_executing"].meta["category"] == "search"
    assert got["tool_completed"].data == {"tool": "web_search", "call_id": "c1", "output": {"hits": 12}, "duration_ms": 30}
    assert "duration_ms" in got["tool_completed"].meta
    assert got["agent_error"].data == {"code": "RATE_LIMIT_EXCEEDED", "category": "rate_limit", "message": "upstream 429", "fatal": False}
    assert got["agent_error"].meta["category"] == "rate_limit" and got["agent_error"].meta["fatal"] is False
    assert got["custom.step"].data == {"k": 1}
    assert got["agent_completed"].data == {"result": {"summary": "3 options"}}
    assert all("lifecycle" not in (e.meta or {}) for e in events), "every event in lifecycle order"


def test_async_run_emitter(server: Server, user: str) -> None:
    async def main() -> None:
        async with server.aclient() as c, Consumer(c.subscribe(server.token(user))) as sub:
            r = c.run(user, "run-a")
            receipts = [
                await r.started(goal="plan a trip", agent="planner", expected_ms=30000),
                await r.thinking("Comparing flights", step=2, total_steps=5),
                await r.tool_executing("web_search", {"q": "flights LIS"}, call_id="c1"),
                await r.tool_completed("web_search", {"hits": 12}, duration_ms=30, call_id="c1"),
                await r.error("RATE_LIMIT_EXCEEDED", "upstream 429", fatal=False, category="rate_limit"),
                await r.emit("custom.step", {"k": 1}),
                await r.completed(result={"summary": "3 options"}),
            ]
            assert all(x.connections == 1 for x in receipts)
            await sub.until(lambda: len(sub.events) >= len(TYPES), "every event")
            expect(sub.events, "run-a")
            assert [e.seq for e in sub.events] == [x.seq for x in receipts]

    run(main())


def test_sync_run_emitter(server: Server, user: str) -> None:
    async def main() -> None:
        async with server.aclient() as ac, Consumer(ac.subscribe(server.token(user))) as sub:

            def emit() -> None:
                with server.client() as c:
                    r = c.run(user, "run-s")
                    r.started(goal="plan a trip", agent="planner", expected_ms=30000)
                    r.thinking("Comparing flights", step=2, total_steps=5)
                    r.tool_executing("web_search", {"q": "flights LIS"}, call_id="c1")
                    r.tool_completed("web_search", {"hits": 12}, duration_ms=30, call_id="c1")
                    r.error("RATE_LIMIT_EXCEEDED", "upstream 429", fatal=False, category="rate_limit")
                    r.emit("custom.step", {"k": 1})
                    r.completed(result={"summary": "3 options"})

            await asyncio.to_thread(emit)
            await sub.until(lambda: len(sub.events) >= len(TYPES), "every event")
            expect(sub.events, "run-s")

    run(main())
