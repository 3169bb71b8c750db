// AG-UI in and out against a real agentcast server, in Node.js (>= 20), checked with the
// official packages `@ag-ui/core` (EventSchemas) and `@ag-ui/client` (verifyEvents), from
// tests/browser's node_modules (`npm ci --prefix tests/browser`).
//
// One user watches over WebSocket (`/ws?protocol=ag-ui`) and over SSE (`/sse?protocol=ag-ui`,
// read with fetch so the test controls `Last-Event-ID`). The test publishes a realistic
// AG-UI run with the three publish endpoints:
//
//   A (single publishes, watched live): RUN_STARTED, STEP_STARTED, TEXT_MESSAGE_START,
//      TEXT_MESSAGE_CONTENT ×3, a native `tool_executing` (comes out as a CUSTOM event),
//      STATE_SNAPSHOT;
//   -- both transports disconnect in the middle of the message --
//   B (one batch, while nobody is connected): TEXT_MESSAGE_CONTENT ×3 (merged in history),
//      TEXT_MESSAGE_END, two tool calls (START, ARGS ×3 / ×2 streamed JSON, END,
//      TOOL_CALL_RESULT), STATE_DELTA, STEP_FINISHED, RUN_FINISHED;
//   -- WebSocket resumes with ?last_seq=, SSE with Last-Event-ID --
//   -- between A and B the first tab acknowledges A and a second tab joins without a seq:
//      its stream must begin with the join prelude (the run from its RUN_STARTED on) --
//   C (the NDJSON streaming publish, watched live): a second run, RUN_STARTED,
//      TEXT_MESSAGE_START, TEXT_MESSAGE_CONTENT, RUN_ERROR.
//
// It fails unless, on each transport: every frame / `data:` parses with `EventSchemas`
// (agentcast's own messages included: they are CUSTOM `agentcast.*`); every non-agentcast
// event has a `seq`, seqs increase, the SSE `id:` equals the `seq`; at least one merged
// TEXT_MESSAGE_CONTENT carries `seq_from` < `seq`; the stream without `agentcast.*` events,
// before and after the resume joined, passes `verifyEvents`; the text and both tool calls'
// arguments equal what was published; every non-streamed event equals the published object
// plus `seq`; WebSocket and SSE delivered the same events; and the second tab's stream,
// on its own, passes the same checks.
// Exits 0 printing {"ok":true,...} on success, 1 with a reason otherwise.
//
//   node ag_ui_stream.mjs <http://host:port> <hs256 secret> <api key>
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { isDeepStrictEqual } from 'node:util';

const [base, secret, apiKey] = process.argv.slice(2);
const b64 = (s) => Buffer.from(s).toString('base64url');
const user = 'node-ag-ui';

function fail(why) {
  console.error(`FAIL: ${why}`);
  process.exit(1);
}

let EventSchemas, verifyEvents, from, lastValueFrom, toArray;
try {
  const req = createRequire(new URL('../browser/package.json', import.meta.url));
  ({ EventSchemas } = req('@ag-ui/core/schemas'));
  ({ verifyEvents } = req('@ag-ui/client'));
  ({ from, lastValueFrom } = req('rxjs'));
  ({ toArray } = req('rxjs/operators'));
} catch (e) {
  fail(`this test needs @ag-ui/core and @ag-ui/client: run \`npm ci --prefix tests/browser\` (${e.message})`);
}

function mint(sub) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64(JSON.stringify({ sub, iat: now, exp: now + 3600 }));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}
const token = mint(user);
const auth = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
const deadline = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref());

// ---- the run, as an agent framework emits it ----
const argsA = '{"city": "Z\\u00fcrich", "units": "metric"}';
const argsB = '{"query": "weather \\"today\\""}';
const split = (s, n) => Array.from({ length: n }, (_, i) => s.slice((i * s.length) / n | 0, ((i + 1) * s.length) / n | 0));
const text = ['Hel', 'lo, ', 'wörld ', '— it is ', 'sunny', ' "today"'];
const partA = [
  { type: 'RUN_STARTED', threadId: 't1', runId: 'r1' },
  { type: 'STEP_STARTED', stepName: 'answer' },
  { type: 'TEXT_MESSAGE_START', messageId: 'm1', role: 'assistant' },
  ...text.slice(0, 3).map((delta) => ({ type: 'TEXT_MESSAGE_CONTENT', messageId: 'm1', delta })),
];
const nativeTool = { user_id: user, type: 'tool_executing', run_id: 'r1', data: { tool: 'search' } };
const snapshot = { type: 'STATE_SNAPSHOT', snapshot: { step: 1, notes: ['a'] } };
const tool = (id, name, args, n) => [
  { type: 'TOOL_CALL_START', toolCallId: id, toolCallName: name, parentMessageId: 'm1' },
  ...split(args, n).map((delta) => ({ type: 'TOOL_CALL_ARGS', toolCallId: id, delta })),
  { type: 'TOOL_CALL_END', toolCallId: id },
  { type: 'TOOL_CALL_RESULT', messageId: `res-${id}`, toolCallId: id, content: `{"ok":"${name}"}`, role: 'tool' },
];
const partB = [
  ...text.slice(3).map((delta) => ({ type: 'TEXT_MESSAGE_CONTENT', messageId: 'm1', delta })),
  { type: 'TEXT_MESSAGE_END', messageId: 'm1' },
  ...tool('c1', 'weather', argsA, 3),
  ...tool('c2', 'search', argsB, 2),
  { type: 'STATE_DELTA', delta: [{ op: 'replace', path: '/step', value: 2 }, { op: 'add', path: '/notes/-', value: 'b' }] },
  { type: 'STEP_FINISHED', stepName: 'answer' },
  { type: 'RUN_FINISHED', threadId: 't1', runId: 'r1', result: { answer: 'sunny' } },
];
const partC = [
  { type: 'RUN_STARTED', threadId: 't1', runId: 'r2' },
  { type: 'TEXT_MESSAGE_START', messageId: 'm2', role: 'assistant' },
  { type: 'TEXT_MESSAGE_CONTENT', messageId: 'm2', delta: 'Trying again' },
  { type: 'RUN_ERROR', message: 'model overloaded', code: 'overloaded' },
];
const envelope = (ag_ui) => ({ user_id: user, ag_ui });

async function publish(body) {
  const r = await fetch(`${base}/api/v1/publish`, { method: 'POST', headers: auth, body: JSON.stringify(body) });
  const v = await r.json();
  if (r.status !== 200) fail(`publish ${JSON.stringify(body)}: ${r.status} ${JSON.stringify(v)}`);
  return v.seq;
}

// ---- receivers ----
/** Every AG-UI event received on one transport, in order, across its connections. */
class Received {
  constructor(name) {
    this.name = name;
    this.events = [];
    this.waiters = [];
  }
  push(ev, sseId) {
    const parsed = EventSchemas.safeParse(ev);
    if (!parsed.success) fail(`${this.name}: not a valid AG-UI event: ${JSON.stringify(ev)}\n${parsed.error}`);
    const own = ev.type === 'CUSTOM' && String(ev.name).startsWith('agentcast.');
    if (!own && typeof ev.seq !== 'number') fail(`${this.name}: event without seq: ${JSON.stringify(ev)}`);
    if (sseId !== undefined && sseId !== (ev.seq === undefined ? null : String(ev.seq))) {
      fail(`${this.name}: id: ${sseId} but seq ${ev.seq}`);
    }
    this.events.push(ev);
    for (const w of this.waiters.splice(0)) w();
  }
  async until(pred, what) {
    const t = deadline(10000, `${this.name}: ${what}`);
    while (!this.events.some(pred)) await Promise.race([new Promise((r) => this.waiters.push(r)), t]);
  }
  lastSeq() {
    return this.events.filter((e) => typeof e.seq === 'number').at(-1).seq;
  }
}

function openWs(rx, query) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/ws?protocol=ag-ui&token=${token}${query}`);
    ws.onmessage = (m) => rx.push(JSON.parse(m.data));
    ws.onerror = () => reject(new Error('websocket error'));
    ws.onopen = () => resolve(ws);
  });
}

/** An SSE stream read with fetch: parses `id:` / `data:` into events; `close()` aborts it. */
async function openSse(rx, lastEventId) {
  const ctl = new AbortController();
  const headers = { authorization: `Bearer ${token}` };
  if (lastEventId !== undefined) headers['Last-Event-ID'] = String(lastEventId);
  const r = await fetch(`${base}/sse?protocol=ag-ui`, { headers, signal: ctl.signal });
  if (r.status !== 200) fail(`sse: ${r.status} ${await r.text()}`);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  (async () => {
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let id = null;
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) id = line.slice(4);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
            else if (line.startsWith('event:')) fail(`sse: AG-UI mode wrote an event: line: ${line}`);
          }
          if (data.length) rx.push(JSON.parse(data.join('\n')), id);
        }
      }
    } catch (e) {
      if (e.name !== 'AbortError') fail(`sse read: ${e.message}`);
    }
  })();
  return { close: () => ctl.abort() };
}

// ---- the run ----
const wsRx = new Received('ws');
const sseRx = new Received('sse');
let ws = await openWs(wsRx, '');
let sse = await openSse(sseRx);
await wsRx.until((e) => e.name === 'agentcast.welcome', 'welcome');
await sseRx.until((e) => e.name === 'agentcast.welcome', 'welcome');

for (const ev of partA) await publish(envelope(ev));
await publish(nativeTool);
const lastA = await publish(envelope(snapshot));
for (const rx of [wsRx, sseRx]) await rx.until((e) => e.seq === lastA, 'part A');

// The first tab acknowledges part A (a pong proves the ack was handled); a second tab then
// joins without a seq, in the middle of the run and of message m1: the join prelude must
// make its stream verifiable on its own (it starts at the run's RUN_STARTED).
ws.send(JSON.stringify({ type: 'ack', seq: lastA }));
ws.send(JSON.stringify({ type: 'ping' }));
await wsRx.until((e) => e.name === 'agentcast.pong', 'pong after the ack');
const tabRx = new Received('second tab');
const tab = await openWs(tabRx, '');
await tabRx.until((e) => e.seq === lastA, 'the join prelude');

// Disconnect mid-message (m1 is open), publish part B to nobody, resume.
ws.close();
sse.close();
await new Promise((r) => setTimeout(r, 200));
const batch = await fetch(`${base}/api/v1/publish/batch`, {
  method: 'POST',
  headers: auth,
  body: JSON.stringify(partB.map(envelope)),
});
const receipts = await batch.json();
if (batch.status !== 200 || receipts.some((x) => typeof x.seq !== 'number')) {
  fail(`batch: ${batch.status} ${JSON.stringify(receipts)}`);
}
const lastB = receipts.at(-1).seq;
ws = await openWs(wsRx, `&last_seq=${wsRx.lastSeq()}`);
sse = await openSse(sseRx, sseRx.lastSeq());
for (const rx of [wsRx, sseRx, tabRx]) await rx.until((e) => e.seq === lastB, 'part B after the resume');

// Part C through the streaming publish connection.
const ndjson = partC.map((ev) => JSON.stringify(envelope(ev))).join('\n') + '\n';
const stream = await fetch(`${base}/api/v1/publish/stream`, {
  method: 'POST',
  headers: { ...auth, 'content-type': 'application/x-ndjson' },
  body: ndjson,
});
const lines = (await stream.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
const seqsC = lines.filter((l) => typeof l.seq === 'number');
if (stream.status !== 200 || seqsC.length !== partC.length) fail(`stream publish: ${stream.status} ${JSON.stringify(lines)}`);
const lastC = seqsC.at(-1).seq;
for (const rx of [wsRx, sseRx, tabRx]) await rx.until((e) => e.seq === lastC, 'part C');
ws.close();
sse.close();
tab.close();

// ---- checks ----
const published = [...partA, snapshot, ...partB, ...partC];
const strip = ({ seq, seq_from, ...rest }) => rest;
for (const rx of [wsRx, sseRx, tabRx]) {
  const agui = rx.events.filter((e) => !(e.type === 'CUSTOM' && String(e.name).startsWith('agentcast.')));
  const seqs = agui.map((e) => e.seq);
  if (seqs.some((s, i) => i > 0 && s <= seqs[i - 1])) fail(`${rx.name}: seqs do not increase: ${seqs}`);
  const merged = agui.filter((e) => e.type === 'TEXT_MESSAGE_CONTENT' && e.seq_from !== undefined);
  if (!merged.some((e) => e.seq_from < e.seq)) fail(`${rx.name}: no merged TEXT_MESSAGE_CONTENT with seq_from`);
  try {
    await lastValueFrom(from(agui.map(strip)).pipe(verifyEvents(), toArray()));
  } catch (e) {
    fail(`${rx.name}: verifyEvents refused the stream: ${e.message}\n${JSON.stringify(agui)}`);
  }
  const joined = (pred, key) => agui.filter(pred).map((e) => e.delta).join('');
  const m1 = joined((e) => e.type === 'TEXT_MESSAGE_CONTENT' && e.messageId === 'm1');
  if (m1 !== text.join('')) fail(`${rx.name}: text ${JSON.stringify(m1)} != ${JSON.stringify(text.join(''))}`);
  for (const [id, args] of [['c1', argsA], ['c2', argsB]]) {
    const got = joined((e) => e.type === 'TOOL_CALL_ARGS' && e.toolCallId === id);
    if (got !== args) fail(`${rx.name}: ${id} args ${JSON.stringify(got)} != ${JSON.stringify(args)}`);
  }
  const streamed = (e) => e.type === 'TEXT_MESSAGE_CONTENT' || e.type === 'TOOL_CALL_ARGS';
  const want = published.filter((e) => !streamed(e));
  const got = agui.filter((e) => !streamed(e) && e.type !== 'CUSTOM').map(strip);
  if (!isDeepStrictEqual(got, want)) {
    fail(`${rx.name}: events differ from those published:\n got ${JSON.stringify(got)}\nwant ${JSON.stringify(want)}`);
  }
  const custom = agui.filter((e) => e.type === 'CUSTOM');
  if (custom.length !== 1 || custom[0].name !== 'tool_executing' || custom[0].value.data.tool !== 'search') {
    fail(`${rx.name}: the native tool_executing should arrive as one CUSTOM event: ${JSON.stringify(custom)}`);
  }
}
const ownless = (rx) => rx.events.filter((e) => typeof e.seq === 'number');
if (!isDeepStrictEqual(ownless(wsRx), ownless(sseRx))) {
  fail(`WebSocket and SSE delivered different events:\n ws ${JSON.stringify(ownless(wsRx))}\nsse ${JSON.stringify(ownless(sseRx))}`);
}
console.log(JSON.stringify({ ok: true, ws: wsRx.events.length, sse: sseRx.events.length }));
process.exit(0);
