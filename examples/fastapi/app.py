"""A FastAPI backend that streams an agent's answer to the user through agentcast.

``POST /ask`` starts a run for a user and returns at once; the run publishes
``agent_started``, a tool call, the answer token by token as a message stream
(``run.message()``: one streaming publish connection, backpressure included) and
``agent_completed``. ``GET /token?user=U`` mints the client token the user's browser
connects with (``/ws?token=...`` or ``/sse?token=...``, or ``web/client.js``).

The "LLM" is a local generator that yields words with small sleeps: no network.

    AGENTCAST_URL=http://127.0.0.1:8080 AGENTCAST_API_KEY=... AGENTCAST_JWT_SECRET=... \
        uvicorn app:app --port 8000
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI
from pydantic import BaseModel

import agentcast

AGENTCAST_URL = os.environ.get("AGENTCAST_URL", "http://127.0.0.1:8080")
API_KEY = os.environ["AGENTCAST_API_KEY"]
JWT_SECRET = os.environ["AGENTCAST_JWT_SECRET"]

app = FastAPI(title="agentcast FastAPI example")
client = agentcast.AsyncAgentcast(AGENTCAST_URL, API_KEY)
_runs: set[asyncio.Task[None]] = set()  # running answers (a task needs a reference)


class Ask(BaseModel):
    user: str
    question: str


def answer_words(question: str) -> list[str]:
    """The words the fake model answers ``question`` with (deterministic)."""
    text = (
        f"You asked: {question} Here is what I found after searching: "
        "three options match, the second is the cheapest, and all of them leave in the morning."
    )
    return [w + " " for w in text.split(" ")]


async def fake_llm(question: str) -> AsyncIterator[str]:
    for w in answer_words(question):
        await asyncio.sleep(0.005)
        yield w


async def answer(run: agentcast.AsyncRun, question: str, message_id: str) -> None:
    try:
        await run.started(goal=question)
        await run.thinking("Searching the web", step=1, total_steps=2)
        await run.tool_executing("web_search", {"q": question}, call_id="c1")
        await asyncio.sleep(0.02)
        await run.tool_completed("web_search", {"hits": 3}, duration_ms=20, call_id="c1")
        async with run.message(message_id) as m:
            async for token in fake_llm(question):
                await m.write(token)
        await run.completed(result={"chars": len(m.text)})
    except agentcast.AgentcastError as e:
        await run.error("ANSWER_FAILED", str(e), fatal=True)


@app.post("/ask", status_code=202)
async def ask(req: Ask) -> dict[str, str]:
    run = client.run(req.user, f"run-{uuid.uuid4().hex[:12]}")
    message_id = f"msg-{uuid.uuid4().hex[:12]}"
    task = asyncio.create_task(answer(run, req.question, message_id))
    _runs.add(task)
    task.add_done_callback(_runs.discard)
    return {"run_id": run.run_id, "message_id": message_id}


@app.get("/token")
def token(user: str) -> dict[str, str]:
    return {"token": agentcast.mint_token(JWT_SECRET, user, ttl=3600), "user": user}
