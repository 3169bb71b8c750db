#!/usr/bin/env python3
"""The report of scripts/scale.sh: reads the scenario files it left in WORK (machine.json,
<scenario>.bench.json from `agentcast bench --json`, <scenario>.facts.json with each
process's CPU over the whole scenario) and writes OUT/report.json and OUT/report.md.

Exit status 1 when a scenario lost, leaked or duplicated an event, failed a connect, or
broke its own rule (redis: refusals are 503 and none before the kill; storm: every closed
connection resumed); targets missed are reported, not failed.

    python3 scripts/scale_report.py WORK OUT idle per-user broadcast redis storm
"""
import json
import os
import sys

TARGETS = {
    "idle": "≤ 8 KiB/connection",
    "per-user": "p99 ≤ 10 ms",
    "broadcast": "p99 ≤ 1 s",
    "redis": "503 only while Redis is down; 0 loss",
    "storm": "≤ 15 s kill → last resume; 0 loss",
}


def load(path):
    with open(path) as f:
        return json.load(f)


def ms(us):
    return "n/a" if us is None else f"{us / 1000:.1f} ms"



def why_failed(b):
    """`: 1200 × 503, 30 × timeout` from the bench's reconnect_failure_reasons, or ''."""
    by = b.get("reconnect_failure_reasons") or {}
    if not by:
        return ""
    return ": " + ", ".join(f"{n} × {why}" for why, n in sorted(by.items(), key=lambda x: -x[1]))

def checks(name, b, f):
    """(failures, notes) of one scenario."""
    bad, notes = [], []
    for key in ("loss", "leaks", "duplicates", "connect_failed", "protocol_errors"):
        if b.get(key):
            bad.append(f"{key} {b[key]}")
    if b.get("connections", 0) == 0:
        bad.append("no connection")
    if name in ("idle", "per-user", "broadcast") and b.get("publish_errors"):
        bad.append(f"{b['publish_errors']} publish errors ({b.get('publish_error')})")
    if name in ("idle", "per-user", "broadcast") and b.get("disconnects"):
        bad.append(f"{b['disconnects']} disconnects")
    if name == "redis":
        e, e503 = b.get("publish_errors", 0), b.get("publish_errors_503", 0)
        kill, up = f["redis_killed_unix_ms"], f["redis_up_unix_ms"]
        first, last = b.get("publish_error_first_unix_ms"), b.get("publish_error_last_unix_ms")
        if e != e503:
            bad.append(f"{e - e503} refusals other than 503 ({b.get('publish_error')})")
        if e == 0:
            notes.append("no publish was refused (Redis down too briefly?)")
        elif first is not None and first < kill:
            bad.append(f"a refusal {kill - first} ms before Redis was killed")
        if last is not None:
            f["recovery_ms"] = max(0, last - up)
            f["refusal_window_ms"] = [first - kill, last - kill]
            notes.append(
                f"Redis down {up - kill} ms; 503s from +{first - kill} ms to +{last - kill} ms "
                f"after the kill: publishes accepted again {max(0, last - up)} ms after Redis "
                f"was back")
        if b.get("disconnects"):
            bad.append(f"{b['disconnects']} WebSocket disconnects while Redis was down")
    if name == "storm":
        if b.get("resumes", 0) < b.get("disconnects", 0):
            bad.append(f"{b['disconnects'] - b['resumes']} closed connections never resumed")
        if b.get("last_resume_unix_ms") and b.get("disconnects"):
            f["kill_to_last_resume_ms"] = b["last_resume_unix_ms"] - f["killed_unix_ms"]
            notes.append(
                f"{b['disconnects']} connections closed with the node, {b['resumes']} resumed "
                f"({b.get('reconnect_failures', 0)} failed attempts retried"
                f"{why_failed(b)}); kill → last "
                f"resume {f['kill_to_last_resume_ms'] / 1000:.1f} s; {b.get('publish_errors', 0)} "
                f"publishes failed on the killed node's connections")
        else:
            bad.append("no connection closed: was the node killed?")
    if b.get("extra_deliveries"):
        notes.append(f"{b['extra_deliveries']} extra deliveries (publishes not answered 200 "
                     "yet stored)")
    return bad, notes


def meets(name, b, f):
    """Whether the target is met, and by how much it is missed."""
    lat = b.get("latency", {})
    if name == "idle":
        v, t, unit = b.get("server_kib_per_connection"), 8.0, " KiB"
    elif name == "per-user":
        v, t, unit = (lat.get("p99_us") or 0) / 1000, 10.0, " ms"
    elif name == "broadcast":
        v, t, unit = (lat.get("p99_us") or 0) / 1000, 1000.0, " ms"
    elif name == "storm":
        v, t, unit = (f.get("kill_to_last_resume_ms") or 0) / 1000, 15.0, " s"
    else:
        return "yes" if "recovery_ms" in f else "n/a"
    if v is None:
        return "n/a"
    return "yes" if v <= t else f"**no**: {v:.1f}{unit}, {v / t:.1f}× the target"


def measured(name, b, f):
    lat = b.get("latency", {})
    if name == "idle":
        return (f"{b.get('server_kib_per_connection')} KiB/connection "
                f"(Σ node RSS {b.get('server_rss_kib_before')} → "
                f"{b.get('server_rss_kib_connected')} KiB); connect "
                f"{b.get('connect_rate', 0):.0f}/s")
    text = (f"p50 {ms(lat.get('p50_us'))}, p99 {ms(lat.get('p99_us'))}, p99.9 "
            f"{ms(lat.get('p999_us'))}, max {ms(lat.get('max_us'))}; "
            f"{b.get('events_sent', 0):,} events, {b.get('events_per_sec', 0):.1f}/s (target "
            f"{b.get('target_rate', 0):.1f}/s); "
            f"loss {b.get('loss')}, leaks {b.get('leaks')}, dups {b.get('duplicates')}")
    if name == "broadcast":
        text += f"; {b.get('server_cpu_us_per_delivery')} µs node CPU per delivery"
    if name == "storm" and "kill_to_last_resume_ms" in f:
        text += f"; kill → last resume {f['kill_to_last_resume_ms'] / 1000:.1f} s"
    if name == "redis" and "recovery_ms" in f:
        text += (f"; 503s {b.get('publish_errors_503')}, accepted again "
                 f"{f['recovery_ms'] / 1000:.1f} s after Redis was back")
    return text


def cpu(b, f):
    per = b.get("server_cpu_secs_per_pid") or []
    window = " + ".join("†" if v is None else f"{v:.1f}" for v in per)
    whole = " + ".join("n/a" if n["cpu_secs"] is None else f"{n['cpu_secs']:.1f}" for n in f["nodes"])
    return (f"window: nodes {b.get('server_cpu_secs')} s ({window}), bench "
            f"{b.get('client_cpu_secs')} s, {b.get('duration_secs', 0):.1f} s window; "
            f"whole scenario: nodes {whole}, Redis {f['redis_cpu_secs_whole']}, bench "
            f"{f['bench_cpu_secs_whole']} s")


def main():
    work, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    machine = load(os.path.join(work, "machine.json"))
    scenarios, failed = [], False
    for name in names:
        bp, fp = (os.path.join(work, f"{name}.{k}.json") for k in ("bench", "facts"))
        if not (os.path.exists(bp) and os.path.exists(fp)):
            scenarios.append({"scenario": name, "ok": False, "failures": ["did not run"]})
            failed = True
            continue
        b, f = load(bp), load(fp)
        bad, notes = checks(name, b, f)
        failed |= bool(bad)
        scenarios.append({"scenario": name, "ok": not bad, "failures": bad, "notes": notes,
                          "target": TARGETS[name], "measured": measured(name, b, f),
                          "meets_target": meets(name, b, f),
                          "cpu": cpu(b, f), "facts": f, "bench": b})
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "report.json"), "w") as fh:
        json.dump({"machine": machine, "scenarios": scenarios}, fh, indent=2)
        fh.write("\n")
    m = machine
    lines = [
        "# Scale run",
        "",
        f"`{m['command']}` at commit `{m['commit']}`, started {m['started']}: {m['nodes']} nodes "
        f"on one port (`--reuse-port`), a private `redis-server`, {m['procs']} bench receiver "
        f"processes; {m['connections']:,} connections ({m['users']:,} users for per-user "
        f"load), {m['rate']:,} events/s, {m['duration']} s windows, broadcast every 2 s for "
        f"{m['broadcast_duration']} s; storm with {m['storm_connections']:,} connections.",
        "",
        f"Machine: {m['cores']} cores, {m['mem_total_kib'] // 1024:,} MiB "
        f"({m['mem_available_kib'] // 1024:,} MiB available), open files hard limit "
        f"{m['nofile_hard']:,}, `ip_local_port_range` {m['ip_local_port_range']} "
        f"({m['ephemeral_ports']:,} ports per source address), `somaxconn` {m['somaxconn']}, "
        f"kernel {m['kernel']}, {m['redis']}, load {m['load_at_start']} at the start. "
        "Every process (Redis, the nodes, the bench) shares those cores.",
        "",
        "| scenario | measured | target | met | CPU seconds (window per node; whole scenario) "
        "| checks (loss, leaks, dups, connects, 503s, resumes) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in scenarios:
        if "measured" not in s:
            lines.append(f"| {s['scenario']} | did not run | | | | **fail** |")
            continue
        ok = "pass" if s["ok"] else "**fail**: " + "; ".join(s["failures"])
        lines.append(f"| {s['scenario']} | {s['measured']} | {s['target']} | "
                     f"{s['meets_target']} | {s['cpu']} | {ok} |")
    lines.append("")
    for s in scenarios:
        for n in s.get("notes", []):
            lines.append(f"- {s['scenario']}: {n}")
    lines += ["", "† a node killed during the window (its CPU until the kill is in the "
              "whole-scenario column).", ""]
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
