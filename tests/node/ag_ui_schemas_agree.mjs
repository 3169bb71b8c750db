// agentcast's AG-UI validation agrees with the official `@ag-ui/core` schemas: for each
// candidate event below (valid ones of every type, and near misses: a missing member, a
// wrong JSON type, a null optional, a wrong literal, an unknown or pre-1.0 type), a publish
// of `{"broadcast": true, "ag_ui": <event>}` is accepted (200) exactly when
// `EventSchemas.safeParse(<event>)` succeeds. Ids stay within agentcast's own limits (1 to
// 240 bytes, no `ag_ui.` prefix), where it is stricter on purpose.
// Exits 0 printing {"ok":true,...} on success, 1 with every disagreement otherwise.
//
//   node ag_ui_schemas_agree.mjs <http://host:port> <hs256 secret> <api key>
import { createRequire } from 'node:module';

const [base, , apiKey] = process.argv.slice(2);
let EventSchemas;
try {
  ({ EventSchemas } = createRequire(new URL('../browser/package.json', import.meta.url))('@ag-ui/core/schemas'));
} catch (e) {
  console.error(`FAIL: this test needs @ag-ui/core: run \`npm ci --prefix tests/browser\` (${e.message})`);
  process.exit(1);
}

const valid = [
  { type: 'TEXT_MESSAGE_START', messageId: 'm', role: 'assistant', name: 'bot' },
  { type: 'TEXT_MESSAGE_START', messageId: 'm' },
  { type: 'TEXT_MESSAGE_CONTENT', messageId: 'm', delta: '' },
  { type: 'TEXT_MESSAGE_END', messageId: 'm', timestamp: 1700000000000 },
  { type: 'TEXT_MESSAGE_CHUNK' },
  { type: 'TEXT_MESSAGE_CHUNK', messageId: 'm', role: 'user', delta: 'x' },
  { type: 'TOOL_CALL_START', toolCallId: 't', toolCallName: 'n', parentMessageId: 'm' },
  { type: 'TOOL_CALL_ARGS', toolCallId: 't', delta: '{' },
  { type: 'TOOL_CALL_END', toolCallId: 't', subagentRunId: 's' },
  { type: 'TOOL_CALL_CHUNK', delta: 'x' },
  { type: 'TOOL_CALL_RESULT', messageId: 'r', toolCallId: 't', content: 'ok', role: 'tool' },
  { type: 'TOOL_CALL_RESULT', messageId: 'r', toolCallId: 't', content: [{ type: 'text', text: 'ok' }] },
  { type: 'STATE_SNAPSHOT', snapshot: null },
  { type: 'STATE_SNAPSHOT', snapshot: { a: [1] } },
  { type: 'STATE_DELTA', delta: [] },
  { type: 'MESSAGES_SNAPSHOT', messages: [] },
  { type: 'ACTIVITY_SNAPSHOT', messageId: 'm', activityType: 'plan', content: {}, replace: false },
  { type: 'ACTIVITY_DELTA', messageId: 'm', activityType: 'plan', patch: [] },
  { type: 'RAW', event: { any: 1 }, source: 'x' },
  { type: 'RAW', event: null },
  { type: 'CUSTOM', name: 'n', value: [1, 2] },
  { type: 'CUSTOM', name: 'n', value: null },
  { type: 'RUN_STARTED', threadId: 't', runId: 'r', parentRunId: 'p', protocolVersion: '1.0' },
  { type: 'RUN_FINISHED', threadId: 't', runId: 'r', result: { a: 1 }, outcome: { type: 'success' } },
  { type: 'RUN_FINISHED', threadId: 't', runId: 'r', usage: [{ inputTokens: 3 }] },
  { type: 'RUN_ERROR', message: 'm', code: 'c' },
  { type: 'STEP_STARTED', stepName: 's' },
  { type: 'STEP_FINISHED', stepName: 's' },
  { type: 'REASONING_START', messageId: 'm' },
  { type: 'REASONING_MESSAGE_START', messageId: 'm', role: 'reasoning' },
  { type: 'REASONING_MESSAGE_CONTENT', messageId: 'm', delta: 'hm' },
  { type: 'REASONING_MESSAGE_END', messageId: 'm' },
  { type: 'REASONING_MESSAGE_CHUNK' },
  { type: 'REASONING_END', messageId: 'm' },
  { type: 'REASONING_ENCRYPTED_VALUE', subtype: 'message', entityId: 'e', encryptedValue: 'v' },
  { type: 'SUBAGENT_STARTED', subagentRunId: 's', name: 'n', parentToolCallId: 't' },
  { type: 'SUBAGENT_FINISHED', subagentRunId: 's', result: 1 },
  { type: 'SUBAGENT_ERROR', subagentRunId: 's', message: 'm', code: 'c' },
  { type: 'RUN_ERROR', message: 'm', publisherOwn: { kept: true }, rawEvent: { x: 1 }, metadata: { k: null } },
];
const invalid = [
  { type: 'TEXT_MESSAGE_START', messageId: 'm', role: 'tool' },
  { type: 'TEXT_MESSAGE_START', messageId: 'm', name: null },
  { type: 'TEXT_MESSAGE_CONTENT', messageId: 'm' },
  { type: 'TEXT_MESSAGE_CONTENT', messageId: 5, delta: 'x' },
  { type: 'TEXT_MESSAGE_END' },
  { type: 'TOOL_CALL_START', toolCallId: 't' },
  { type: 'TOOL_CALL_START', toolCallId: 't', toolCallName: 'n', parentMessageId: null },
  { type: 'TOOL_CALL_ARGS', toolCallId: 't', delta: 1 },
  { type: 'TOOL_CALL_RESULT', messageId: 'r', toolCallId: 't', content: {} },
  { type: 'TOOL_CALL_RESULT', messageId: 'r', toolCallId: 't', content: 'x', role: 'assistant' },
  { type: 'STATE_SNAPSHOT' },
  { type: 'STATE_DELTA', delta: {} },
  { type: 'MESSAGES_SNAPSHOT' },
  { type: 'ACTIVITY_SNAPSHOT', messageId: 'm', activityType: 'plan', content: [] },
  { type: 'ACTIVITY_DELTA', messageId: 'm', activityType: 'plan' },
  { type: 'RAW' },
  { type: 'CUSTOM', name: 'n' },
  { type: 'CUSTOM', value: 1 },
  { type: 'RUN_STARTED', runId: 'r' },
  { type: 'RUN_STARTED', threadId: 't', runId: 'r', input: null },
  { type: 'RUN_FINISHED', threadId: 't', runId: 'r', result: null },
  { type: 'RUN_FINISHED', threadId: 't', runId: 'r', outcome: null },
  { type: 'RUN_ERROR' },
  { type: 'RUN_ERROR', message: 'm', code: null },
  { type: 'RUN_ERROR', message: 'm', timestamp: 1.5 },
  { type: 'RUN_ERROR', message: 'm', timestamp: '1' },
  { type: 'RUN_ERROR', message: 'm', rawEvent: null },
  { type: 'RUN_ERROR', message: 'm', metadata: null },
  { type: 'STEP_STARTED' },
  { type: 'REASONING_MESSAGE_START', messageId: 'm', role: 'assistant' },
  { type: 'REASONING_ENCRYPTED_VALUE', subtype: 'other', entityId: 'e', encryptedValue: 'v' },
  { type: 'SUBAGENT_STARTED', subagentRunId: 's' },
  { type: 'SUBAGENT_ERROR', message: 'm' },
  { type: 'TEXT_MESSAGE_END', messageId: 'm', subagentRunId: 5 },
  { type: 'THINKING_START' },
  { type: 'THINKING_TEXT_MESSAGE_CONTENT', delta: 'x' },
  { type: 'TEXT_MESSAGE_BEGIN', messageId: 'm' },
  { messageId: 'm' },
];

const disagreements = [];
for (const ev of [...valid, ...invalid]) {
  const official = EventSchemas.safeParse(ev).success;
  const r = await fetch(`${base}/api/v1/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ broadcast: true, ag_ui: ev }),
  });
  const body = await r.text();
  if ((r.status === 200) !== official) {
    disagreements.push(`${JSON.stringify(ev)}: EventSchemas ${official ? 'accepts' : 'refuses'}, agentcast answered ${r.status} ${body}`);
  }
  if (valid.includes(ev) && !official) disagreements.push(`test list: ${JSON.stringify(ev)} is not valid`);
  if (invalid.includes(ev) && official) disagreements.push(`test list: ${JSON.stringify(ev)} is valid`);
}
if (disagreements.length) {
  console.error(`FAIL:\n${disagreements.join('\n')}`);
  process.exit(1);
}
console.log(JSON.stringify({ ok: true, checked: valid.length + invalid.length }));
