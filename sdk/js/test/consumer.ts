// A strict TypeScript consumer of the package's public API, by its package name (the
// package's own `exports` map resolves it): every option, typed callbacks narrowing on
// `ev.type`, the client's state. Never run, only checked: `tsc -p sdk/js` (see
// tests/tests/js_package.rs). Its twin negative.ts holds the mistakes tsc must reject.
import {
  AgentcastClient,
  DEFAULTS,
  TOKEN_EXPIRED,
  type AgentcastClientOptions,
  type AgentcastEvent,
  type ClientError,
  type EventOf,
  type Gap,
  type StatusDetail,
  type StreamedMessage,
  type Welcome,
} from 'agentcast-client';
// Node.js: the packages the README names, as the `WebSocket` and `EventSource` options.
import { WebSocket as NodeWebSocket } from 'ws';
import { EventSource as NodeEventSource } from 'eventsource';

type Invoice = { type: 'invoice_ready'; data: { invoice_id: string; cents: number } };

const shown: string[] = [];

const options: AgentcastClientOptions<Invoice> = {
  url: 'wss://events.example.com/ws',
  transport: 'auto',
  sseUrl: 'https://events.example.com/sse',
  ackUrl: 'https://events.example.com/api/v1/ack',
  fallbackAfter: 2,
  eventTypes: ['invoice_ready'],
  token: async () => 'jwt',
  getToken: async ({ expired, attempt }) => (expired ? `fresh-${attempt}` : 'jwt'),
  lastSeq: null,
  channels: ['job:42'],
  initialDelayMs: 250,
  connectTimeoutMs: 10_000,
  maxDelayMs: 15_000,
  serverCloseDelayMs: 1_000,
  ackDelayMs: 200,
  pingIntervalMs: 15_000,
  pongTimeoutMs: 10_000,
  holeTimeoutMs: 3_000,
  WebSocket: globalThis.WebSocket,
  EventSource: globalThis.EventSource,
  on: {
    agent_started(ev) {
      const expected: number | undefined = ev.data.expected_ms;
      shown.push(`${ev.run_id} started, ${expected ?? '?'} ms expected, seq ${ev.seq}`);
      // `this` is the client.
      const resumePoint: number | null = this.lastSeq;
      void resumePoint;
    },
    agent_thinking(ev) {
      const percent: number | undefined = ev.meta?.progress?.percent;
      shown.push(`thinking ${percent ?? ev.data.step}`);
    },
    tool_executing(ev) {
      shown.push(`${ev.data.tool} (${ev.meta?.purpose})`);
    },
    tool_completed(ev) {
      shown.push(`${ev.data.tool} took ${ev.meta?.duration_ms}`);
    },
    agent_error(ev) {
      const suggestions: string[] = ev.meta?.recovery_suggestions ?? [];
      shown.push(`${ev.meta?.severity}: ${ev.meta?.message} ${suggestions.join(' · ')}`);
    },
    agent_completed(ev) {
      shown.push(`done at ${ev.ts}`);
    },
    message_delta(ev) {
      const delta: string = ev.data.delta;
      const from: number | undefined = ev.seq_from;
      shown.push(`${ev.data.message_id} +${delta.length} (from ${from})`);
    },
    invoice_ready(ev) {
      const cents: number = ev.data.cents;
      shown.push(`${ev.data.invoice_id}: ${cents}`);
    },
  },
  onAny(ev: AgentcastEvent<Invoice>) {
    switch (ev.type) {
      case 'message_started':
        shown.push(`${ev.data.message_id} by ${ev.data.role ?? 'someone'}`);
        break;
      case 'message_delta':
        shown.push(ev.data.delta);
        break;
      case 'agent_error': {
        const code: string | number | undefined = ev.data.code;
        shown.push(String(code));
        break;
      }
      case 'invoice_ready':
        shown.push(ev.data.invoice_id);
        break;
      default:
        shown.push(`${ev.type} ${ev.priority} ${ev.channel ?? 'own'}`);
    }
  },
  onMessage(m: StreamedMessage) {
    shown.push(`${m.message_id} ${m.role} ${m.run_id}: ${m.text}${m.done ? '' : '…'}`);
  },
  onGap(gap: Gap) {
    shown.push(`lost ${gap.from}..${gap.to}`);
  },
  onError(e: ClientError) {
    shown.push(`${e.code}: ${e.message}`);
  },
  onStatus(status, detail: StatusDetail) {
    if (status === 'reconnecting' && detail.code === TOKEN_EXPIRED) shown.push('token expired');
    if (status === 'open') shown.push(`resumed from ${detail.resumedFrom} as ${detail.welcome?.conn_id}`);
    if (detail.delayMs !== undefined) shown.push(`retry in ${detail.delayMs} ms (${detail.attempt})`);
  },
  onTransport(transport, detail) {
    const t: 'sse' = transport;
    shown.push(`${t}: ${detail.reason}`);
  },
  onWelcome(w: Welcome) {
    shown.push(`${w.user_id} ${w.tier} ${w.heartbeat_ms} ${w.last_seq}`);
  },
  onAck(seq: number) {
    shown.push(`acked ${seq}`);
  },
};

const client = new AgentcastClient<Invoice>(options).connect();
client.subscribe('job:43');
client.unsubscribe('job:42');
const state: [string, string, number | null, number | null, number | null, number] = [
  client.status,
  client.transport,
  client.lastSeq,
  client.maxSeq,
  client.ackedSeq,
  client.reconnects,
];
const text: string | undefined = client.messages.get('m1')?.text;
const connId: number | undefined = client.welcome?.conn_id;
const subscribed: boolean = client.channels.has('job:43');
client.close();

// Without a type parameter: the known events only; a plain browser page.
const plain = new AgentcastClient({
  token: 'jwt',
  on: { message_completed: (ev) => shown.push(ev.data.message_id) },
});
plain.connect();

// A handler typed by the event it takes.
const onDelta = (ev: EventOf<'message_delta'>): string => ev.data.delta;
const defaults: number = DEFAULTS.maxDelayMs + DEFAULTS.initialDelayMs;

// A WebSocket of one's own (what the `ws` package's constructor looks like to the client).
class MyWebSocket {
  readyState = 0;
  constructor(readonly url: string) {}
  send(_data: string): void {}
  close(_code?: number, _reason?: string): void {}
}
new AgentcastClient({ url: 'ws://127.0.0.1:8080/ws', transport: 'websocket', WebSocket: MyWebSocket });
new AgentcastClient({
  url: 'ws://127.0.0.1:8080/ws',
  token: 'jwt',
  WebSocket: NodeWebSocket,
  EventSource: NodeEventSource,
}).connect();

export { state, text, connId, subscribed, onDelta, defaults };
