"""The README's Python quick start (`### Python` under `## Quick start`), run as written:
its fenced python block with the venv's python against a server started with the quick
start's own secret and API key, alice connected, and what it prints and delivers checked
against what the README says."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import agentcast
from conftest import REPO, Consumer, Server, run


def python_quick_start() -> tuple[str, str, str]:
    """(the whole `### Python` subsection, its python block, its sh block)."""
    readme = (REPO / "README.md").read_text()
    qs = readme[readme.index("\n## Quick start") :]
    qs = qs[: qs.index("\n## ", 5)]
    sub = qs[qs.index("\n### Python") :]
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", sub, re.S | re.M)
    py = [b for info, b in blocks if info == "python"]
    sh = [b for info, b in blocks if info == "sh"]
    assert len(py) == 1 and len(sh) == 1, blocks
    return sub, py[0], sh[0]


def quick_start_env() -> dict[str, str]:
    readme = (REPO / "README.md").read_text()
    line = next(l for l in readme.splitlines() if l.startswith("export AGENTCAST_JWT_SECRET="))
    return dict(kv.split("=", 1) for kv in line.removeprefix("export ").split())


def test_readme_python_quick_start_runs_as_written(tmp_path: Path) -> None:
    text, script, install = python_quick_start()
    assert install.strip() == "pip install ./sdk/python"  # what scripts/sdk-python.sh installs
    env = quick_start_env()
    assert set(env) == {"AGENTCAST_JWT_SECRET", "AGENTCAST_API_KEY"}
    assert env["AGENTCAST_API_KEY"] in script
    server = Server(tmp_path, env=env)
    server.start()
    try:

        async def main() -> tuple[subprocess.CompletedProcess[str], list[agentcast.Event]]:
            async with agentcast.AsyncAgentcast(server.url, env["AGENTCAST_API_KEY"]) as c:
                token = agentcast.mint_token(env["AGENTCAST_JWT_SECRET"], "alice")
                async with Consumer(c.subscribe(token)) as alice:
                    src = script.replace("http://127.0.0.1:8080", server.url)
                    assert src != script, "the script talks to the quick start's server"
                    out = await asyncio.to_thread(
                        subprocess.run, [sys.executable, "-c", src], capture_output=True, text=True, timeout=60
                    )
                    assert out.returncode == 0, out.stderr
                    await alice.until(lambda: alice.of("agent_completed"), "agent_completed")
                    return out, alice.events

        out, events = run(main())
        # It prints two receipts, as the README shows them.
        printed = out.stdout.strip().splitlines()
        shown = re.findall(r"`(Receipt\(seq=\d+, connections=\d+\))`", text)
        assert len(printed) == len(shown) == 2, (printed, shown)
        for p, s in zip(printed, shown):
            pm = re.fullmatch(r"Receipt\(seq=(\d+), connections=(\d+)\)", p)
            sm = re.fullmatch(r"Receipt\(seq=(\d+), connections=(\d+)\)", s)
            assert pm and sm, (p, s)
            assert pm.group(2) == sm.group(2)
        seqs = [int(re.search(r"seq=(\d+)", p).group(1)) for p in printed]  # type: ignore[union-attr]
        shown_seqs = [int(re.search(r"seq=(\d+)", p).group(1)) for p in shown]  # type: ignore[union-attr]
        assert seqs[1] - seqs[0] == shown_seqs[1] - shown_seqs[0]
        # Terminal 2 gets the nine events the README names, in order.
        types = [e.type for e in events]
        assert types == [
            "agent_started",
            "tool_executing",
            "tool_completed",
            "message_started",
            "message_delta",
            "message_delta",
            "message_delta",
            "message_completed",
            "agent_completed",
        ], types
        assert len(re.findall(r"`(agent_started|tool_\w+|message_\w+|agent_completed)`", text)) == 7
        deltas = [e.data["delta"] for e in events if e.type == "message_delta"]
        named = re.search(r"three\s+`message_delta`s \((.*?)\)", text, re.S)
        assert named, "the README names the deltas"
        assert deltas == re.findall(r"`([^`]*)`", named.group(1))
        assert "".join(deltas) == "Three flights found."
        assert [e.seq for e in events][0] == seqs[0] and events[-1].seq == seqs[1]
    finally:
        server.stop()
