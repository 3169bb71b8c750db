// sdk/js/src/client.js against a real agentcast server, in Node.js (>= 20, run with
// --experimental-websocket): a streamed message is assembled from its deltas; the server drops
// the connection in the middle of the message (dev disconnect, 1012), more deltas are
// published while the client is away, and the client resumes with `last_seq`: it receives the
// rest as one merged delta (`seq_from`..`seq`) and the text it assembled equals the text
// published, neither duplicated nor missing. Exits 0 on success, 1 with a reason otherwise.
//
//   node --experimental-websocket client_message_stream.mjs <http://host:port> <hs256 secret> <api key>
import { createHmac } from 'node:crypto';
import { AgentcastClient } from '../../sdk/js/src/client.js';

const [base, secret, apiKey] = process.argv.slice(2);
const b64 = (s) => Buffer.from(s).toString('base64url');
const user = 'node-stream';

function mint(sub) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64(JSON.stringify({ sub, iat: now, exp: now + 3600 }));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

function fail(why) {
  console.error(`FAIL: ${why}`);
  process.exit(1);
}

async function post(path, body, auth = apiKey) {
  const r = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (r.status >= 300) throw new Error(`${path} answered ${r.status}: ${await r.text()}`);
  return r.json();
}

const ev = (type, data) => ({ user_id: user, type, run_id: 'r1', data: { message_id: 'm1', ...data } });
const token = (i) => `tok${i} "é" `;
const expected = Array.from({ length: 150 }, (_, i) => token(i)).join('');
const firstPart = Array.from({ length: 50 }, (_, i) => token(i)).join('');

let welcomes = 0;
let merged = 0;
let disconnected = false;
const done = new Promise((resolve) => {
  const client = new AgentcastClient({
    url: `${base.replace(/^http/, 'ws')}/ws`,
    token: mint(user),
    serverCloseDelayMs: 300,
    on: {
      message_delta(e) {
        if (typeof e.seq_from === 'number' && e.seq_from < e.seq) merged += 1;
      },
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
        // Drop the connection mid-message, then publish the rest while the client is away.
        post('/api/v1/dev/disconnect', { user_id: user })
          .then(() => {
            const items = [];
            for (let i = 50; i < 150; i++) items.push(ev('message_delta', { delta: token(i) }));
            items.push(ev('message_completed', { length: expected.length }));
            return post('/api/v1/publish/batch', items);
          })
          .catch((e) => fail(e.message));
      }
      if (m.done) {
        client.close();
        resolve(m);
      }
    },
    onError(e) {
      console.error('client error', JSON.stringify(e));
    },
  });
  client.connect();
});

const timer = setTimeout(() => fail(`timed out (welcomes ${welcomes}, merged ${merged})`), 30000);
const m = await done;
clearTimeout(timer);
if (welcomes < 2) fail(`expected a reconnect, saw ${welcomes} welcome(s)`);
if (m.text !== expected) fail(`text differs:\n got ${JSON.stringify(m.text)}\nwant ${JSON.stringify(expected)}`);
if (m.role !== 'assistant') fail(`role ${m.role}`);
if (merged < 1) fail('the resume did not deliver a merged delta');
console.log(JSON.stringify({ ok: true, welcomes, merged, chars: m.text.length }));
process.exit(0);
