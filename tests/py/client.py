#!/usr/bin/env python3
"""A non-Rust agentcast client for the end-to-end tests (Python `websockets`).

Usage: client.py URL COUNT

Connects, prints `WELCOME <user_id>` after the welcome, then reads COUNT events and prints
`EVENT <type> <seq> <data-json>` for each, acks the last seq, sends an app-level ping and
prints `PONG` when the pong arrives, then `DONE`. Exits 3 if `websockets` is not installed.
"""
import asyncio
import json
import sys

try:
    import websockets
except ImportError:
    print("python package `websockets` is not installed: pip install websockets", file=sys.stderr)
    sys.exit(3)


async def main(url: str, count: int) -> None:
    async with websockets.connect(url, max_size=2**20) as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert welcome["type"] == "welcome", welcome
        print("WELCOME", welcome["user_id"], flush=True)
        last = None
        for _ in range(count):
            ev = json.loads(await asyncio.wait_for(ws.recv(), 5))
            print("EVENT", ev["type"], ev.get("seq"), json.dumps(ev["data"], sort_keys=True), flush=True)
            last = ev.get("seq")
        if last is not None:
            await ws.send(json.dumps({"type": "ack", "seq": last}))
        await ws.send(json.dumps({"type": "ping"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply["type"] == "pong", reply
        print("PONG", flush=True)
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
