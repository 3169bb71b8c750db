// sdk/js/src/client.js with `transport: "sse"` against a real agentcast server, in Node.js (>= 20).
// Node has no EventSource: the test installs the `eventsource` package (tests/browser's
// node_modules, `npm ci --prefix tests/browser`) as `globalThis.EventSource`, wrapped so the
// test sees every stream the client opens (URL and Last-Event-ID). `WebSocket` is replaced by
// a class that fails the test: nothing may go over WebSocket.
//
// 1. A streamed message is assembled from its deltas (text with quotes, non-ASCII, line
//    breaks and an `event:`-like line, byte-exact); the server closes the stream mid-message
//    (dev disconnect, `event: close` 1012); the client opens a fresh stream itself with
//    `?last_seq=` its resume point, the rest arrives (one merged delta), and the text equals
//    the text published. The client acknowledges through `POST /api/v1/ack` (onAck after a 200).
// 2. The ack reached the server: a second client of the same user, connecting without
//    `last_seq` (so from the user's ack cursor), gets no replay, and its first event is the
//    one published next, at the seq after the acknowledged one.
// 3. `subscribe()` over SSE reconnects with `?channels=` and `?last_seq=`; a channel event
//    published after that arrives.
// 4. A stream lost without `event: close` (the test ends the response body) while the client
//    has no hole: the EventSource reconnects by itself with `Last-Event-ID` (the client
//    reports `reconnecting` with `auto`), and an event published meanwhile arrives once.
// Exits 0 printing {"ok":true,...} on success, 1 with a reason otherwise.
//
//   node client_sse.mjs <http://host:port> <hs256 secret> <api key>
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { AgentcastClient } from '../../sdk/js/src/client.js';

const [base, secret, apiKey] = process.argv.slice(2);
const b64 = (s) => Buffer.from(s).toString('base64url');
const user = 'node-sse';

function fail(why) {
  console.error(`FAIL: ${why}`);
  process.exit(1);
}

let EventSource;
try {
  ({ EventSource } = createRequire(new URL('../browser/package.json', import.meta.url))('eventsource'));
} catch (e) {
  fail(`this test needs the eventsource package: run \`npm ci --prefix tests/browser\` (${e.message})`);
}

/** Every stream opened: {url, lastEventId, cut()}; `cut()` ends the response body as a
 * dropped connection would (the EventSource sees the stream end, the socket is closed). */
const opened = [];
globalThis.EventSource = class RecordingEventSource extends EventSource {
  constructor(url, init) {
    super(url, {
      ...init,
      fetch: async (u, o) => {
        const rec = { url: new URL(String(u)), lastEventId: o.headers['Last-Event-ID'] ?? null, cut: null };
        opened.push(rec);
        const r = await fetch(u, o);
        if (!r.body) return r;
        const reader = r.body.getReader();
        let ctl;
        let cut = false;
        const body = new ReadableStream({
          start(c) {
            ctl = c;
          },
          async pull(c) {
            let next;
            try {
              next = await reader.read();
            } catch (e) {
              if (!cut) c.error(e);
              return;
            }
            if (cut) return;
            if (next.done) c.close();
            else c.enqueue(next.value);
          },
          cancel: (why) => reader.cancel(why),
        });
        rec.cut = () => {
          cut = true;
          ctl.close();
          reader.cancel().catch(() => {});
        };
        return new Response(body, { status: r.status, headers: r.headers });
      },
    });
  }
};
globalThis.WebSocket = class {
  constructor(url) {
    fail(`transport "sse" opened a WebSocket to ${url}`);
  }
};

function mint(sub) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64(JSON.stringify({ sub, iat: now, exp: now + 3600, channels: ['job:*'] }));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

async function post(path, body) {
  const r = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (r.status >= 300) throw new Error(`${path} answered ${r.status}: ${await r.text()}`);
  return r.json();
}

function until(what, cond, ms = 15000) {
  return new Promise((resolve) => {
    const end = Date.now() + ms;
    const t = setInterval(() => {
      const v = cond();
      if (v) {
        clearInterval(t);
        resolve(v);
      } else if (Date.now() > end) {
        fail(`timed out waiting for ${what}`);
      }
    }, 20);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ev = (type, data) => ({ user_id: user, type, run_id: 'r1', data: { message_id: 'm1', ...data } });
const token = (i) => (i % 10 === 7 ? `line ${i}\nevent: close\r\ndata: {"x":1}\n\n` : `tok${i} "é" 🦀 `);
const expected = Array.from({ length: 150 }, (_, i) => token(i)).join('');
const firstPart = Array.from({ length: 50 }, (_, i) => token(i)).join('');
const tok = mint(user);

// ---- 1: stream, server close mid-message, the client's own resume, acks ----------------
let welcomes = 0;
let merged = 0;
let disconnected = false;
let dropAt = null;
let completedSeq = null;
const closes = [];
const acks = [];
const a = new AgentcastClient({
  url: `${base.replace(/^http/, 'ws')}/ws`,
  transport: 'sse',
  token: tok,
  serverCloseDelayMs: 300,
  ackDelayMs: 50,
  on: {
    message_delta(e) {
      if (typeof e.seq_from === 'number' && e.seq_from < e.seq) merged += 1;
    },
    message_completed(e) {
      completedSeq = e.seq;
    },
  },
  onStatus(status, detail) {
    if (status === 'reconnecting' && detail.code != null) closes.push(detail.code);
  },
  onAck(seq) {
    acks.push(seq);
  },
  onWelcome() {
    welcomes += 1;
    if (welcomes === 1) {
      const items = [ev('message_started', { role: 'assistant' })];
      for (let i = 0; i < 50; i++) items.push(ev('message_delta', { delta: token(i) }));
      post('/api/v1/publish/batch', items).catch((e) => fail(e.message));
    }
  },
  onMessage(m) {
    if (!disconnected && m.text === firstPart) {
      disconnected = true;
      dropAt = a.lastSeq;
      post('/api/v1/dev/disconnect', { user_id: user })
        .then(() => {
          const items = [];
          for (let i = 50; i < 150; i++) items.push(ev('message_delta', { delta: token(i) }));
          items.push(ev('message_completed', { length: expected.length }));
          return post('/api/v1/publish/batch', items);
        })
        .catch((e) => fail(e.message));
    }
  },
  onError(e) {
    console.error('client A error', JSON.stringify(e));
  },
});
a.connect();
if (a.transport !== 'sse') fail(`client.transport is ${a.transport}`);
const m = await until('the message to complete', () => {
  const m = a.messages.get('m1');
  return m && m.done ? m : null;
});
await until('the ack of the completed message', () => acks.includes(completedSeq));
a.close();
if (welcomes !== 2) fail(`expected one reconnect, saw ${welcomes} welcome(s)`);
if (closes[0] !== 1012) fail(`the stream was not closed with 1012: ${closes}`);
if (m.text !== expected) fail(`text differs:\n got ${JSON.stringify(m.text)}\nwant ${JSON.stringify(expected)}`);
if (m.role !== 'assistant') fail(`role ${m.role}`);
if (merged < 1) fail('the resume did not deliver a merged delta');
if (opened.length !== 2) fail(`expected 2 streams, saw ${opened.length}`);
const [first, second] = opened;
if (first.url.pathname !== '/sse' || first.url.searchParams.get('token') !== tok) fail(`first stream ${first.url}`);
if (first.url.searchParams.has('last_seq')) fail(`first stream resumed: ${first.url}`);
const resumedAt = Number(second.url.searchParams.get('last_seq'));
if (!(resumedAt >= dropAt) || second.lastEventId !== null) {
  fail(`the reconnect was not the client's own with last_seq >= ${dropAt}: ${second.url}, Last-Event-ID ${second.lastEventId}`);
}
if (a.ackedSeq !== completedSeq) fail(`ackedSeq ${a.ackedSeq}, completed at ${completedSeq}`);

// ---- 2: the ack reached the server: a connect from the ack cursor replays nothing -------
const seen = [];
const bStatus = [];
let bWelcomes = 0;
let channelEvent = null;
const b = new AgentcastClient({
  url: `${base}/ws`,
  transport: 'sse',
  token: tok,
  eventTypes: ['custom.progress'],
  onWelcome() {
    bWelcomes += 1;
  },
  onStatus(status, detail) {
    bStatus.push({ status, ...detail });
  },
  onAny(e) {
    if (e.channel) channelEvent = e;
    else seen.push(e.seq);
  },
  onError(e) {
    console.error('client B error', JSON.stringify(e));
  },
});
b.connect();
await until('client B welcome', () => bWelcomes === 1);
await sleep(500); // a replay would arrive now
if (seen.length) fail(`a connect after the ack replayed ${seen.length} events: ${seen.slice(0, 5)}`);
if (opened[2].url.searchParams.has('last_seq')) fail(`client B resumed: ${opened[2].url}`);
const next = await post('/api/v1/publish', { user_id: user, type: 'tool_executing', run_id: 'r2', data: { tool: 't' } });
await until('the next event on client B', () => seen.length === 1);
if (seen[0] !== completedSeq + 1 || next.seq !== seen[0]) fail(`client B saw ${seen}, published ${next.seq}`);

// ---- 3: subscribe over SSE = reconnect with channels and last_seq -----------------------
b.subscribe('job:7');
await until('the resubscribe reconnect', () => bWelcomes === 2);
const third = opened[3];
if (!third || third.url.searchParams.get('channels') !== 'job:7' || third.url.searchParams.get('last_seq') !== String(next.seq)) {
  fail(`subscribe did not reconnect with channels and last_seq: ${third && third.url}`);
}
await post('/api/v1/publish', { channel: 'job:7', type: 'custom.progress', run_id: 'r3', data: { pct: 50 } });
await until('the channel event', () => channelEvent);
if (channelEvent.data.pct !== 50 || channelEvent.channel !== 'job:7') fail(`channel event ${JSON.stringify(channelEvent)}`);
if (seen.length !== 1) fail(`the resubscribe replayed events: ${seen}`);

// ---- 4: a lost stream: the EventSource's own reconnect with Last-Event-ID ---------------
// A user event on this stream first, so its EventSource has a last event id (the channel
// event has none).
const mid = await post('/api/v1/publish', { user_id: user, type: 'tool_executing', run_id: 'r2', data: { tool: 'u' } });
await until('the event before the loss', () => seen.length === 2);
third.cut();
await until('the client to see the stream lost', () => bStatus.some((s) => s.status === 'reconnecting' && s.auto));
const away = await post('/api/v1/publish', { user_id: user, type: 'tool_completed', run_id: 'r2', data: { tool: 't' } });
await until('the event published while the stream was lost', () => seen.length === 3, 10000);
await sleep(300); // a duplicate would arrive now
const fourth = opened[4];
if (opened.length !== 5 || fourth.lastEventId !== String(mid.seq) || fourth.url.toString() !== third.url.toString()) {
  fail(`not the EventSource's own reconnect: ${opened.length} streams, Last-Event-ID ${fourth && fourth.lastEventId}`);
}
if (seen[2] !== away.seq || seen.length !== 3 || bWelcomes !== 3) fail(`after the lost stream: seen ${seen}, welcomes ${bWelcomes}`);
b.close();
console.log(JSON.stringify({ ok: true, welcomes, merged, chars: m.text.length, resumedAt, completedSeq, streams: opened.length }));
process.exit(0);
