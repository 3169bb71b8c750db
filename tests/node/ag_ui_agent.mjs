// web/ag-ui-agent.js (AgentcastAgent, an `@ag-ui/client` AbstractAgent) against a real
// agentcast server, in Node.js (>= 20), with `@ag-ui/client` from tests/browser's
// node_modules (`npm ci --prefix tests/browser`; a resolve hook points the module's bare
// imports there, as a bundler would).
//
// `connectAgent()` is started, then a run is published: RUN_STARTED, a streamed message; the
// test drops the agent's socket mid-message; the rest of the message, a tool call with
// streamed arguments, a STATE_SNAPSHOT and RUN_FINISHED are published. It fails unless the
// agent reopened the socket by itself with `?last_seq=`, `connectAgent()` resolved with the
// assistant message holding exactly the text (and the tool call with exactly its arguments),
// the agent's state is the snapshot, the run's result is RUN_FINISHED's, and the run was
// acknowledged (a connection without last_seq gets no replay of it).
// Exits 0 printing {"ok":true,...} on success, 1 with a reason otherwise.
//
//   node ag_ui_agent.mjs <http://host:port> <hs256 secret> <api key>
import { createHmac } from 'node:crypto';
import { register } from 'node:module';
import { isDeepStrictEqual } from 'node:util';

const [base, secret, apiKey] = process.argv.slice(2);
const b64 = (s) => Buffer.from(s).toString('base64url');
const user = 'node-ag-ui-agent';

function fail(why) {
  console.error(`FAIL: ${why}`);
  process.exit(1);
}

const packages = new URL('../browser/package.json', import.meta.url).href;
register(
  'data:text/javascript,' +
    encodeURIComponent(`export async function resolve(s, c, next) {
      if (s === '@ag-ui/client' || s === 'rxjs') return next(s, { ...c, parentURL: ${JSON.stringify(packages)} });
      return next(s, c);
    }`),
);
let AgentcastAgent;
try {
  ({ AgentcastAgent } = await import('../../web/ag-ui-agent.js'));
} catch (e) {
  fail(`cannot load web/ag-ui-agent.js with @ag-ui/client (run \`npm ci --prefix tests/browser\`): ${e.message}`);
}

function mint(sub) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64(JSON.stringify({ sub, iat: now, exp: now + 3600 }));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}
const token = mint(user);
async function publish(ag_ui) {
  const r = await fetch(`${base}/api/v1/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: user, ag_ui }),
  });
  if (r.status !== 200) fail(`publish ${JSON.stringify(ag_ui)}: ${r.status} ${await r.text()}`);
}
const until = async (pred, what) => {
  const end = Date.now() + 10000;
  while (!pred()) {
    if (Date.now() > end) fail(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** Every socket the agent opens. */
const sockets = [];
class RecordingWebSocket extends WebSocket {
  constructor(url) {
    super(url);
    sockets.push({ url: new URL(url), ws: this });
  }
}

const agent = new AgentcastAgent({
  url: base,
  token: async () => token,
  reconnectMs: 100,
  WebSocket: RecordingWebSocket,
  threadId: 't1',
});
const seen = [];
const done = agent.connectAgent({}, { onEvent: ({ event }) => void seen.push(event.type) });
await until(() => sockets.length === 1 && sockets[0].ws.readyState === WebSocket.OPEN, 'the first socket');

const text = ['Hel', 'lo, ', 'wörld', ' "quoted"'];
const args = '{"city": "Z\\u00fcrich"}';
const snapshot = { step: 2, notes: ['a'] };
await publish({ type: 'RUN_STARTED', threadId: 't1', runId: 'r1' });
await publish({ type: 'TEXT_MESSAGE_START', messageId: 'm1', role: 'assistant' });
for (const delta of text.slice(0, 2)) await publish({ type: 'TEXT_MESSAGE_CONTENT', messageId: 'm1', delta });
await until(() => seen.filter((t) => t === 'TEXT_MESSAGE_CONTENT').length === 2, 'two deltas before the drop');
sockets[0].ws.close();
for (const delta of text.slice(2)) await publish({ type: 'TEXT_MESSAGE_CONTENT', messageId: 'm1', delta });
await publish({ type: 'TEXT_MESSAGE_END', messageId: 'm1' });
await publish({ type: 'TOOL_CALL_START', toolCallId: 'c1', toolCallName: 'weather', parentMessageId: 'm1' });
for (const delta of [args.slice(0, 7), args.slice(7)]) await publish({ type: 'TOOL_CALL_ARGS', toolCallId: 'c1', delta });
await publish({ type: 'TOOL_CALL_END', toolCallId: 'c1' });
await publish({ type: 'STATE_SNAPSHOT', snapshot });
await publish({ type: 'RUN_FINISHED', threadId: 't1', runId: 'r1', result: { answer: 'sunny' } });

const { result, newMessages } = await Promise.race([
  done,
  new Promise((_, reject) => setTimeout(() => reject(new Error('connectAgent did not resolve')), 10000)),
]).catch((e) => fail(e.message));

if (sockets.length !== 2) fail(`expected one reconnect, saw ${sockets.length} socket(s)`);
if (!sockets[1].url.searchParams.get('last_seq')) fail(`the reconnect had no last_seq: ${sockets[1].url}`);
if (sockets[1].url.searchParams.get('protocol') !== 'ag-ui') fail(`not an AG-UI socket: ${sockets[1].url}`);
const m1 = newMessages.find((m) => m.id === 'm1');
if (!m1 || m1.content !== text.join('')) fail(`message m1: ${JSON.stringify(m1)}`);
const call = newMessages.flatMap((m) => m.toolCalls ?? []).find((c) => c.id === 'c1');
if (!call || call.function.arguments !== args || call.function.name !== 'weather') {
  fail(`tool call c1: ${JSON.stringify(newMessages)}`);
}
if (!isDeepStrictEqual(agent.state, snapshot)) fail(`state ${JSON.stringify(agent.state)}`);
if (!isDeepStrictEqual(result, { answer: 'sunny' })) fail(`result ${JSON.stringify(result)}`);

// Acknowledged: a connection from the ack cursor replays nothing of the run. The agent sends
// its ack as the run finishes and an ack has no answer, so wait until the engine counted it:
// a connection opened before the ack is applied is replayed the run (at-least-once), which is
// not what this checks.
const acked = async () => (await (await fetch(`${base}/api/v1/stats`)).json()).engine.acks >= 1;
for (const end = Date.now() + 10000; !(await acked()); ) {
  if (Date.now() > end) fail('timed out: the run\'s ack applied');
  await new Promise((r) => setTimeout(r, 10));
}
const ws = new WebSocket(`${base.replace('http', 'ws')}/ws?protocol=ag-ui&token=${token}`);
const frames = [];
ws.onmessage = (m) => frames.push(JSON.parse(m.data));
await until(() => frames.length >= 1, 'the welcome');
await new Promise((r) => setTimeout(r, 300));
if (frames.length !== 1 || frames[0].name !== 'agentcast.welcome') {
  fail(`the acknowledged run was replayed: ${JSON.stringify(frames)}`);
}
ws.close();
console.log(JSON.stringify({ ok: true, events: seen.length, sockets: sockets.length }));
process.exit(0);
