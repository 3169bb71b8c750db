// The agentcast-client package in Node.js (>= 20, no flags: no global WebSocket nor
// EventSource), imported by its package name, against a real agentcast server (dev mode,
// `jwt_leeway_secs = 0`), over one transport: `ws` (the `ws` package as the `WebSocket`
// option) or `sse` (the `eventsource` package as the `EventSource` option). Both packages
// come from tests/browser/node_modules (`npm ci --prefix tests/browser`).
//
// 1. A run with a streamed message. The test's transport wrapper hides the first delivery of
//    the run's `tool_executing` from the client (as if the server had dropped it), so the
//    client's resume point stays below it while later seqs were handed out. The server
//    closes the connection mid-message (dev disconnect, 1012); events published while the
//    client is down arrive after its own resume (`?last_seq=` its resume point), and the
//    server replays the seqs above that point again: the client must hand out the missing
//    one and none twice (a resume replays critical events first, so duplicates are caught by
//    a set of every seq seen, merged deltas' `seq_from`..`seq` ranges included). Every
//    published seq is delivered, and the assembled text is the text published.
// 2. Acks: the server counts no unacked critical event, and a fresh client of the user
//    connecting without `last_seq` (so from the ack cursor) gets no replay.
// 3. Token refresh: a 2-second token expires, the server closes with 4001, `getToken` is
//    called with `expired: true`, and an event published after the reconnect arrives.
// Exits 0 printing {"ok":true,…}, 1 with the reason otherwise.
//
//   node sdk/js/test/node_client.mjs <http://host:port> <hs256 secret> <api key> <ws|sse>
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { AgentcastClient, TOKEN_EXPIRED } from 'agentcast-client';

const [base, secret, apiKey, which] = process.argv.slice(2);
const transport = which === 'sse' ? 'sse' : 'websocket';

function fail(why) {
  console.error(`FAIL (${which}): ${why}`);
  process.exit(1);
}
if (which !== 'ws' && which !== 'sse') fail('give ws or sse as the fourth argument');
if (typeof globalThis.WebSocket !== 'undefined' || typeof globalThis.EventSource !== 'undefined') {
  fail('this Node.js has a global WebSocket or EventSource: the options would not be what is tested');
}

const require = createRequire(new URL('../../../tests/browser/package.json', import.meta.url));
let WsPackage;
let EventSourcePackage;
try {
  WsPackage = require('ws').WebSocket;
  EventSourcePackage = require('eventsource').EventSource;
} catch (e) {
  fail(`this test needs ws and eventsource: run \`npm ci --prefix tests/browser\` (${e.message})`);
}
/** Every URL the client opened, over either transport. */
const opened = [];
/** Seqs of every frame that reached the wrapper (the client's own dedup is what is tested). */
const frames = [];
/** Hides the first `tool_executing` from the client; true when `data` is to be dropped. */
let hidden = null;
function hide(data) {
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    return false;
  }
  if (typeof msg.seq === 'number') frames.push(msg.seq);
  if (hidden === null && msg.type === 'tool_executing') {
    hidden = msg.seq;
    return true;
  }
  return false;
}
class RecordingWebSocket extends WsPackage {
  constructor(url) {
    opened.push(new URL(url));
    super(url);
  }

  set onmessage(fn) {
    super.onmessage = fn && ((m) => {
      if (!hide(m.data)) fn(m);
    });
  }

  get onmessage() {
    return super.onmessage;
  }
}
class RecordingEventSource extends EventSourcePackage {
  constructor(url) {
    opened.push(new URL(url));
    super(url);
  }

  addEventListener(type, fn, options) {
    super.addEventListener(type, (e) => {
      if (typeof e.data !== 'string' || !hide(e.data)) fn(e);
    }, options);
  }
}
const constructors = transport === 'sse'
  ? { EventSource: RecordingEventSource }
  : { WebSocket: RecordingWebSocket };

const b64 = (s) => Buffer.from(s).toString('base64url');
function mint(user, ttlSecs) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64(JSON.stringify({ sub: user, iat: now, exp: now + ttlSecs }));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

async function post(path, body, auth = true) {
  const headers = { 'content-type': 'application/json' };
  if (auth) headers.authorization = `Bearer ${apiKey}`;
  const r = await fetch(`${base}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
  const json = await r.json();
  if (r.status !== 200) fail(`${path} answered ${r.status}: ${JSON.stringify(json)}`);
  return json;
}
const publish = async (user, type, data) => (await post('/api/v1/publish', { user_id: user, type, run_id: 'run-1', data })).seq;
const stats = async () => (await fetch(`${base}/api/v1/stats`)).json();

/** Polls `pred` every 20 ms; fails with `what` after `ms`. */
async function until(what, pred, ms = 15000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  fail(`timed out waiting for ${what}`);
}

const wsUrl = `${base.replace(/^http/, 'ws')}/ws`;

// ---- 1: a run with a streamed message, a server close mid-message, the resume -------------
const user = `pkg-${which}`;
const seen = new Set();
const delivered = [];
const statuses = [];
const acks = [];
let welcomes = 0;
const client = new AgentcastClient({
  url: wsUrl,
  transport,
  ...constructors,
  token: mint(user, 3600),
  ackDelayMs: 50,
  // The hidden seq must still be a hole when the server closes the connection.
  holeTimeoutMs: 20000,
  // The first retry after the server's 1012 waits 2.5-5 s: room for the publishes meanwhile
  // on a loaded machine.
  serverCloseDelayMs: 2500,
  on: {
    agent_started(ev) {
      if (ev.data.goal !== 'answer') fail(`agent_started data ${JSON.stringify(ev.data)}`);
    },
  },
  onWelcome() {
    welcomes += 1;
  },
  onStatus(status, detail) {
    statuses.push({ status, code: detail.code });
  },
  onAny(ev) {
    const from = typeof ev.seq_from === 'number' ? ev.seq_from : ev.seq;
    for (let s = from; s <= ev.seq; s++) {
      if (seen.has(s)) fail(`seq ${s} delivered twice (${ev.type}; delivered ${JSON.stringify(delivered)})`);
      seen.add(s);
    }
    delivered.push(ev.seq);
  },
  onAck(seq) {
    acks.push(seq);
  },
  onError(e) {
    if (e.code !== 'connect_failed') fail(`client error ${e.code}: ${e.message}`);
  },
});
client.connect();
await until('the first welcome', () => welcomes === 1);

const published = [];
const text = [];
const pub = async (type, data) => {
  published.push(await publish(user, type, data));
  if (type === 'message_delta') text.push(data.delta);
};
await pub('agent_started', { goal: 'answer' });
await pub('tool_executing', { tool: 'web_search' });
await pub('message_started', { message_id: 'm1', role: 'assistant' });
const token = (i) => `tok${i} "ü"\n`;
for (let i = 0; i < 10; i++) await pub('message_delta', { message_id: 'm1', delta: token(i) });
await until('the first 13 events but the hidden one', () => seen.size === 12);
if (hidden !== published[1] || seen.has(hidden)) fail(`hidden ${hidden}, published ${published}`);
const framesBefore = frames.length;

const kick = await post('/api/v1/dev/disconnect', { user_id: user }, false);
if (kick.connections !== 1) fail(`dev disconnect saw ${kick.connections} connections`);
await until('the client to notice the close', () => client.status === 'reconnecting');
for (let i = 10; i < 20; i++) await pub('message_delta', { message_id: 'm1', delta: token(i) });
await pub('message_completed', { message_id: 'm1' });
await pub('agent_completed', { summary: 'done' });
if (client.status !== 'reconnecting') fail('the client reconnected before the publishes: the resume proves nothing');
await until('every published seq after the resume', () => published.every((s) => seen.has(s)));
await new Promise((r) => setTimeout(r, 300)); // a duplicate would arrive now
if (welcomes !== 2 || client.reconnects !== 1) fail(`${welcomes} welcomes, ${client.reconnects} reconnects`);
const close = statuses.find((s) => s.status === 'reconnecting' && s.code != null);
if (!close || close.code !== 1012) fail(`the server's close was ${JSON.stringify(close)}, not 1012`);
const resumeUrl = opened[opened.length - 1];
if (opened[0].searchParams.has('last_seq')) fail(`the first connection resumed: ${opened[0]}`);
// The resume point is the seq before the hidden one; the server replayed what followed it.
if (resumeUrl.searchParams.get('last_seq') !== String(published[0])) {
  fail(`the resume asked for last_seq ${resumeUrl.searchParams.get('last_seq')}, not ${published[0]}`);
}
const replayedAgain = frames.slice(framesBefore).filter((s) => s > hidden && s <= published[12]);
if (!replayedAgain.length) fail('the resume replayed no seq the client had seen: the dedup was not tested');
for (const s of seen) if (!published.includes(s)) fail(`seq ${s} delivered but never published`);
const message = client.messages.get('m1');
if (!message || !message.done || message.text !== text.join('') || message.role !== 'assistant') {
  fail(`assembled message ${JSON.stringify(message)}`);
}
if (client.lastSeq !== published[published.length - 1]) fail(`resume point ${client.lastSeq}`);

// ---- 2: acks ------------------------------------------------------------------------------
const lastSeq = published[published.length - 1];
await until('the ack of the last event', () => acks.includes(lastSeq));
await until('the server to count no unacked critical event', async () => {
  const s = await stats();
  return s.engine.unacked_critical === 0 && s.engine.acks >= 2;
});
client.close();
const replayed = [];
let fresh = 0;
const second = new AgentcastClient({
  url: wsUrl,
  transport,
  ...constructors,
  token: mint(user, 3600),
  onWelcome() {
    fresh += 1;
  },
  onAny(ev) {
    replayed.push(ev.seq);
  },
});
second.connect();
await until('the second client', () => fresh === 1);
await new Promise((r) => setTimeout(r, 500)); // a replay would arrive now
second.close();
if (replayed.length) fail(`a connect from the ack cursor replayed ${JSON.stringify(replayed)}`);

// ---- 3: token refresh on expiry -------------------------------------------------------------
const refreshUser = `pkg-${which}-refresh`;
const calls = [];
const closes = [];
const events = [];
let refreshWelcomes = 0;
const refreshed = new AgentcastClient({
  url: wsUrl,
  transport,
  ...constructors,
  getToken: async (info) => {
    calls.push(info);
    return mint(refreshUser, calls.length === 1 ? 2 : 3600);
  },
  onStatus(status, detail) {
    if (status === 'reconnecting' && detail.code != null) closes.push(detail.code);
  },
  onWelcome() {
    refreshWelcomes += 1;
    if (refreshWelcomes === 2) publish(refreshUser, 'tool_executing', { n: 2 }).catch((e) => fail(e.message));
  },
  onAny(ev) {
    events.push(ev.data.n);
  },
});
refreshed.connect();
await until('the first welcome of the refresh client', () => refreshWelcomes === 1);
await publish(refreshUser, 'tool_executing', { n: 1 });
await until('the event published after the token refresh', () => events.includes(2), 15000);
refreshed.close();
if (closes[0] !== TOKEN_EXPIRED) fail(`the first close was ${closes[0]}, not ${TOKEN_EXPIRED}`);
if (calls.length !== 2 || calls[0].expired !== false || calls[1].expired !== true) {
  fail(`getToken calls ${JSON.stringify(calls)}`);
}
if (JSON.stringify(events) !== '[1,2]') fail(`refresh events ${JSON.stringify(events)}`);

console.log(JSON.stringify({
  ok: true, transport, delivered: delivered.length, replayedAgain: replayedAgain.length, acks: acks.length, closes,
}));
process.exit(0);
