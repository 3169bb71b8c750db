#!/usr/bin/env python3
"""A third-party server-sent events client for the end-to-end tests (Python `httpx`).

Usage: sse_client.py BASE_URL TOKEN COUNT

Streams `GET BASE_URL/sse?token=TOKEN` with httpx, parses the event stream (WHATWG rules:
`field: value` lines, a blank line dispatches, `:` starts a comment), prints
`WELCOME <user_id>` after the welcome event, then for each of COUNT events
`EVENT <id> <event> <data.seq>`, acks the last id with `POST /api/v1/ack` (Bearer TOKEN) and
prints `ACKED <seq>`. Exits 3 if `httpx` is not installed.
"""
import json
import sys

try:
    import httpx
except ImportError:
    print("python package `httpx` is not installed: pip install httpx", file=sys.stderr)
    sys.exit(3)


def events(lines):
    """Yields (id, event, data) per dispatched event; comments and retry are skipped."""
    ev_id, ev_type, data = None, None, []
    for line in lines:
        if line == "":
            if data:
                yield ev_id, ev_type, "\n".join(data)
            ev_type, data = None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "id":
            ev_id = value
        elif field == "event":
            ev_type = value
        elif field == "data":
            data.append(value)


def main(base: str, token: str, count: int) -> None:
    timeout = httpx.Timeout(5.0)
    with httpx.Client(base_url=base, timeout=timeout) as client:
        with client.stream("GET", "/sse", params={"token": token}) as resp:
            assert resp.status_code == 200, resp.status_code
            assert resp.headers["content-type"].startswith("text/event-stream")
            stream = events(resp.iter_lines())
            _, ev_type, data = next(stream)
            welcome = json.loads(data)
            assert ev_type == "welcome", ev_type
            print("WELCOME", welcome["user_id"], flush=True)
            last = None
            for _ in range(count):
                ev_id, ev_type, data = next(stream)
                ev = json.loads(data)
                assert ev["type"] == ev_type, (ev, ev_type)
                print("EVENT", ev_id, ev_type, ev["seq"], flush=True)
                last = int(ev_id)
        r = client.post("/api/v1/ack", json={"seq": last},
                        headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, (r.status_code, r.text)
        print("ACKED", r.json()["acked"], flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
