#!/usr/bin/env python3
"""An AG-UI producer for the end-to-end tests, as a LangGraph or CrewAI adapter would be one:
the events are built with the official `ag-ui-protocol` models and encoded with its
`EventEncoder`, then forwarded to agentcast's streaming publish connection.

Usage: ag_ui_publish.py BASE_URL API_KEY USER

Builds one run (RUN_STARTED, TEXT_MESSAGE_START / CONTENT x3 / END, a tool call with streamed
arguments and its result, STATE_SNAPSHOT, STATE_DELTA, RUN_FINISHED), prints `SENT <json>`
for each (the encoder's JSON, byte for byte), POSTs them as NDJSON lines
`{"user_id": USER, "ag_ui": <json>}` to BASE_URL/api/v1/publish/stream and prints
`RECEIPT <seq>` per line, then `DONE`. Exits 3 if `ag-ui-protocol` or `httpx` is missing.
"""
import json
import sys

try:
    import httpx
    from ag_ui.core import (
        RunFinishedEvent,
        RunStartedEvent,
        StateDeltaEvent,
        StateSnapshotEvent,
        TextMessageContentEvent,
        TextMessageEndEvent,
        TextMessageStartEvent,
        ToolCallArgsEvent,
        ToolCallEndEvent,
        ToolCallResultEvent,
        ToolCallStartEvent,
    )
    from ag_ui.encoder import EventEncoder
except ImportError as e:
    print(f"needs python packages: pip install ag-ui-protocol==1.0.0 httpx ({e})", file=sys.stderr)
    sys.exit(3)


def main():
    base, api_key, user = sys.argv[1:4]
    events = [
        RunStartedEvent(thread_id="thread-py", run_id="run-py"),
        TextMessageStartEvent(message_id="msg-py", role="assistant"),
        *[TextMessageContentEvent(message_id="msg-py", delta=d) for d in ["Grüß ", "\"dich\"", "\n!"]],
        TextMessageEndEvent(message_id="msg-py"),
        ToolCallStartEvent(tool_call_id="call-py", tool_call_name="lookup", parent_message_id="msg-py"),
        *[ToolCallArgsEvent(tool_call_id="call-py", delta=d) for d in ['{"q": ', '"x"}']],
        ToolCallEndEvent(tool_call_id="call-py"),
        ToolCallResultEvent(message_id="res-py", tool_call_id="call-py", content="42", role="tool"),
        StateSnapshotEvent(snapshot={"count": 1, "items": ["a"]}),
        StateDeltaEvent(delta=[{"op": "replace", "path": "/count", "value": 2}]),
        RunFinishedEvent(thread_id="thread-py", run_id="run-py", result={"answer": 42}),
    ]
    encoder = EventEncoder()
    lines = []
    for ev in events:
        sse = encoder.encode(ev)
        assert sse.startswith("data: ") and sse.endswith("\n\n"), sse
        raw = sse[len("data: "):-2]
        print(f"SENT {raw}", flush=True)
        lines.append('{"user_id": ' + json.dumps(user) + ', "ag_ui": ' + raw + "}\n")
    r = httpx.post(
        f"{base}/api/v1/publish/stream",
        content="".join(lines).encode(),
        headers={"authorization": f"Bearer {api_key}", "content-type": "application/x-ndjson"},
        timeout=30,
    )
    r.raise_for_status()
    for line in r.text.splitlines():
        receipt = json.loads(line)
        if "seq" in receipt:
            print(f"RECEIPT {receipt['seq']}", flush=True)
        elif "error" in receipt:
            print(f"ERROR {line}", flush=True)
    print("DONE", flush=True)


main()
