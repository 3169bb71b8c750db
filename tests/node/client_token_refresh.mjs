// sdk/js/src/client.js against a real agentcast server, in Node.js (>= 20, run with
// --experimental-websocket): a session whose 2-second token expires is closed with 4001; the
// client then calls `getToken({expired: true})`, reconnects with the fresh token, resumes, and
// receives an event published after the expiry. Exits 0 on success, 1 with a reason otherwise.
// With a fourth argument `sse`, the client runs with `transport: "sse"` (the `eventsource`
// package of tests/browser as its EventSource): the server ends the stream with `event: close`
// 4001, and the client opens a fresh stream with the new token.
//
//   node --experimental-websocket client_token_refresh.mjs <http://host:port> <hs256 secret> <api key> [sse]
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { AgentcastClient, TOKEN_EXPIRED } from '../../sdk/js/src/client.js';

const [base, secret, apiKey, transport = 'websocket'] = process.argv.slice(2);
const streams = [];
if (transport === 'sse') {
  const { EventSource } = createRequire(new URL('../browser/package.json', import.meta.url))('eventsource');
  globalThis.EventSource = class extends EventSource {
    constructor(url, init) {
      streams.push(new URL(url).searchParams.get('token'));
      super(url, init);
    }
  };
  globalThis.WebSocket = undefined;
}
const b64 = (s) => Buffer.from(s).toString('base64url');

function mint(user, ttlSecs) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64(JSON.stringify({ sub: user, iat: now, exp: now + ttlSecs }));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

async function publish(user, data) {
  const r = await fetch(`${base}/api/v1/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: user, type: 'tool_executing', run_id: 'r', data }),
  });
  if (r.status !== 200) throw new Error(`publish answered ${r.status}`);
  return (await r.json()).seq;
}

function fail(why) {
  console.error(`FAIL: ${why}`);
  process.exit(1);
}

const user = 'node-refresh';
const calls = [];
const closes = [];
const events = [];
let welcomes = 0;
const done = new Promise((resolve) => {
  const client = new AgentcastClient({
    url: `${base.replace(/^http/, 'ws')}/ws`,
    transport,
    // The first token lives 2 s; every later one an hour.
    getToken: async (info) => {
      calls.push(info);
      return mint(user, calls.length === 1 ? 2 : 3600);
    },
    onStatus(status, detail) {
      if (status === 'reconnecting' && detail.code != null) closes.push(detail.code);
    },
    onWelcome() {
      welcomes += 1;
      if (welcomes === 1) publish(user, { n: 1 }).catch((e) => fail(e.message));
      if (welcomes === 2) publish(user, { n: 2 }).catch((e) => fail(e.message));
    },
    onAny(ev) {
      events.push(ev.data.n);
      if (ev.data.n === 2) {
        client.close();
        resolve();
      }
    },
    onError(e) {
      if (e.code !== 'callback') console.error('client error', e.code, e.message);
    },
  });
  client.connect();
});

const timer = setTimeout(() => fail(`timed out: calls ${JSON.stringify(calls)}, closes ${closes}, events ${events}`), 20000);
await done;
clearTimeout(timer);
if (closes[0] !== TOKEN_EXPIRED) fail(`first close was ${closes[0]}, not ${TOKEN_EXPIRED}`);
if (calls.length !== 2) fail(`getToken called ${calls.length} times: ${JSON.stringify(calls)}`);
if (calls[0].expired !== false || calls[1].expired !== true) {
  fail(`getToken not told about the expiry: ${JSON.stringify(calls)}`);
}
if (JSON.stringify(events) !== '[1,2]') fail(`events ${JSON.stringify(events)}`);
if (transport === 'sse' && (streams.length !== 2 || streams[0] === streams[1])) {
  fail(`expected two event streams with different tokens, saw ${streams.length}`);
}
console.log(JSON.stringify({ ok: true, transport, calls, closes, events, streams: streams.length }));
process.exit(0);
