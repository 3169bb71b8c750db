// sdk/js/src/client.js against a real agentcast server, in Node.js (>= 20, run with
// --experimental-websocket), through a TCP proxy in this script that can stop accepting: the
// server "goes away" (every proxied socket destroyed, the port refusing connections) while
// events are published straight to the server, and comes back on the same port.
// The client must:
// 1. wait before each attempt a delay within the documented bounds [d/2, d],
//    d = min(maxDelayMs, initialDelayMs·2^k) for its k-th retry, jittered (not a fixed
//    fraction of d) and growing with k until the cap;
// 2. once the port accepts again, reconnect with `?last_seq=` its last seq and receive every
//    event published meanwhile, each exactly once, in seq order.
// Exits 0 printing {"ok":true,…} on success, 1 with a reason otherwise.
//
//   node --experimental-websocket client_backoff_resume.mjs <http://host:port> <hs256 secret> <api key>
import { createHmac } from 'node:crypto';
import net from 'node:net';
import { AgentcastClient } from '../../sdk/js/src/client.js';

const [base, secret, apiKey] = process.argv.slice(2);
const target = new URL(base);
const INITIAL = 100;
const MAX = 800;
/** Retries to watch while the port refuses: 100, 200, 400, 800, then 800 at the cap. */
const RETRIES_WHILE_DOWN = 6;
/** `connectTimeoutMs`: a refused attempt is given up after it. */
const CONNECT_TIMEOUT = 300;

function fail(why) {
  console.error(`FAIL: ${why}`);
  process.exit(1);
}

function mint(user) {
  const b64 = (s) => Buffer.from(s).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64(JSON.stringify({ sub: user, iat: now, exp: now + 3600 }));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

async function publish(user, n) {
  const r = await fetch(`${base}/api/v1/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: user, type: 'tool_executing', run_id: 'r', data: { n } }),
  });
  if (r.status !== 200) fail(`publish answered ${r.status}`);
  return (await r.json()).seq;
}

// ---- a proxy that can refuse connections -------------------------------------------------
const sockets = new Set();
const proxy = net.createServer((down) => {
  const up = net.connect(Number(target.port), target.hostname);
  for (const s of [down, up]) {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  }
  down.pipe(up).pipe(down);
});
const listen = (port) => new Promise((ok) => proxy.listen(port, '127.0.0.1', ok));
await listen(0);
const port = proxy.address().port;
function serverGone() {
  proxy.close();
  for (const s of sockets) s.destroy();
}

// ---- the client --------------------------------------------------------------------------
const urls = [];
const Native = globalThis.WebSocket;
globalThis.WebSocket = class extends Native {
  constructor(url, protocols) {
    urls.push(new URL(url));
    super(url, protocols);
  }
};
const user = 'node-backoff';
const retries = [];
const seqs = [];
const ns = [];
const waiters = [];
const until = (pred, what, ms = 15000) =>
  new Promise((resolve) => {
    const timer = setTimeout(() => fail(`timed out waiting for ${what}: retries ${JSON.stringify(retries)}, events ${ns}`), ms);
    const check = () => {
      if (!pred()) return false;
      clearTimeout(timer);
      resolve();
      return true;
    };
    if (!check()) waiters.push(check);
  });
const poke = () => {
  for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i]()) waiters.splice(i, 1);
};
let welcomes = 0;
const client = new AgentcastClient({
  url: `ws://127.0.0.1:${port}/ws`,
  transport: 'websocket',
  token: mint(user),
  initialDelayMs: INITIAL,
  maxDelayMs: MAX,
  // Node 20's WebSocket fires `error` but never `close` on a refused connection: the
  // client's connect timeout is what retries it here (a browser fires `close` at once).
  connectTimeoutMs: CONNECT_TIMEOUT,
  onStatus(status, detail) {
    if (status === 'reconnecting' && detail.delayMs != null) {
      retries.push({ attempt: detail.attempt, delayMs: detail.delayMs, at: Date.now() });
      poke();
    }
  },
  onWelcome() {
    welcomes += 1;
    poke();
  },
  onAny(ev) {
    seqs.push(ev.seq);
    ns.push(ev.data.n);
    poke();
  },
  onError(e) {
    if (e.code !== 'connect_failed') console.error('client error', e.code, e.message);
  },
});
client.connect();

await until(() => welcomes === 1, 'the first welcome');
const before = [];
for (let n = 1; n <= 3; n++) before.push(await publish(user, n));
await until(() => seqs.length === 3, 'the first three events');

// The server goes away; events keep being published to it.
serverGone();
const meanwhile = [];
for (let n = 4; n <= 8; n++) meanwhile.push(await publish(user, n));
await until(() => retries.length >= RETRIES_WHILE_DOWN, `${RETRIES_WHILE_DOWN} retries while down`, 20000);
// It comes back on the same port.
await listen(port);
const backAt = Date.now();
await until(() => welcomes === 2 && seqs.length === 8, 'the resume and the events published meanwhile');
const resumedAfterMs = Date.now() - backAt;
client.close();

// 1. Delays within [d/2, d] (rounded to whole ms), jittered, growing until the cap.
const checked = retries.slice(0, RETRIES_WHILE_DOWN);
const ratios = [];
checked.forEach(({ attempt, delayMs }, i) => {
  const k = attempt - 1;
  if (k !== i) fail(`retry ${i} counted as attempt ${attempt}: ${JSON.stringify(retries)}`);
  const d = Math.min(MAX, INITIAL * 2 ** k);
  if (delayMs < Math.floor(d / 2) || delayMs > d) {
    fail(`retry ${k} waited ${delayMs} ms, outside [${d / 2}, ${d}]: ${JSON.stringify(retries)}`);
  }
  ratios.push(delayMs / d);
  if (i > 0 && d < MAX && delayMs < checked[i - 1].delayMs) {
    fail(`retry ${k} waited less than retry ${k - 1}: ${JSON.stringify(retries)}`);
  }
});
if (Math.max(...ratios) - Math.min(...ratios) < 0.02) {
  fail(`delays are not jittered (the same fraction of their bound): ${JSON.stringify(ratios)}`);
}
const last = checked[checked.length - 1].delayMs;
if (last < MAX / 2 || checked[0].delayMs > INITIAL) fail(`delays did not grow to the cap: ${JSON.stringify(checked)}`);
// The gaps between attempts follow the delays (the attempts really waited).
for (let i = 1; i < checked.length; i++) {
  const waited = checked[i].at - checked[i - 1].at;
  if (waited + 5 < checked[i - 1].delayMs) fail(`attempt ${i} came ${waited} ms after a ${checked[i - 1].delayMs} ms delay`);
}
// A welcome within the next delay once the port accepts again.
if (resumedAfterMs > MAX + CONNECT_TIMEOUT + 2000) fail(`resumed ${resumedAfterMs} ms after the server came back`);

// 2. Resumed from its last seq; every event once, in order.
const resume = urls[urls.length - 1];
if (urls[0].searchParams.has('last_seq')) fail(`the first connection resumed: ${urls[0]}`);
if (resume.searchParams.get('last_seq') !== String(before[2])) {
  fail(`the reconnect asked for last_seq ${resume.searchParams.get('last_seq')}, not ${before[2]}`);
}
if (JSON.stringify(seqs) !== JSON.stringify([...before, ...meanwhile])) {
  fail(`seqs ${JSON.stringify(seqs)}, published ${JSON.stringify([...before, ...meanwhile])}`);
}
if (JSON.stringify(ns) !== '[1,2,3,4,5,6,7,8]') fail(`events ${JSON.stringify(ns)}`);
console.log(JSON.stringify({ ok: true, delays: checked.map((r) => r.delayMs), attempts: urls.length, resumedAfterMs }));
process.exit(0);
