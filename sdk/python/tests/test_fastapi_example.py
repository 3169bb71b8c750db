"""examples/fastapi: agentcast and the app under uvicorn, the user subscribed with the
app's token; the whole run and the whole answer arrive."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import API_KEY, REPO, SECRET, Consumer, Server, free_port, run

APP_DIR = REPO / "examples" / "fastapi"


@pytest.fixture
def app_url(server: Server, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "AGENTCAST_URL": server.url, "AGENTCAST_API_KEY": API_KEY, "AGENTCAST_JWT_SECRET": SECRET}
    log = open(tmp_path / "uvicorn.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(APP_DIR), "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, (tmp_path / "uvicorn.log").read_text()
        try:
            httpx.get(f"{url}/openapi.json", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()


def answer_words(question: str) -> list[str]:
    spec = importlib.util.spec_from_file_location("example_app_words", APP_DIR / "app.py")
    assert spec and spec.loader
    os.environ.setdefault("AGENTCAST_API_KEY", API_KEY)
    os.environ.setdefault("AGENTCAST_JWT_SECRET", SECRET)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.answer_words(question)


def test_fastapi_app_streams_the_whole_answer(server: Server, app_url: str, user: str) -> None:
    question = "Which flight to Lisbon?"

    async def main() -> None:
        async with httpx.AsyncClient(base_url=app_url) as http, server.aclient() as c:
            token = (await http.get("/token", params={"user": user})).json()["token"]
            async with Consumer(c.subscribe(token)) as sub:
                assert sub.sub.welcome is not None and sub.sub.welcome["user_id"] == user
                r = await http.post("/ask", json={"user": user, "question": question})
                assert r.status_code == 202
                ids = r.json()
                await sub.until(lambda: sub.of("agent_completed"), "agent_completed", timeout=30)
                types = [e.type for e in sub.events]
                assert types[:5] == ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "message_started"]
                assert types[-2:] == ["message_completed", "agent_completed"]
                assert all(e.run_id == ids["run_id"] for e in sub.events)
                text = "".join(e.data["delta"] for e in sub.of("message_delta"))
                assert text == "".join(answer_words(question))
                assert sub.of("message_completed")[0].data == {"message_id": ids["message_id"], "length": len(text)}
                assert sub.of("agent_completed")[0].data == {"result": {"chars": len(text)}}
                assert sub.of("agent_started")[0].data == {"goal": question}

    run(main())
