// Hand-written declarations of client.js (the `agentcast-client` package). The events are
// those of docs/events.md and docs/protocol.md ("Server → client"); the options, callbacks and
// semantics are those of the module comment of client.js. Checked by sdk/js/test/consumer.ts
// (tsc --strict) and its negative twin sdk/js/test/negative.ts (tests/tests/js_package.rs).

/** An event's priority on the wire. */
export type Priority = 'critical' | 'normal' | 'low';

/** agentcast's enrichment of an agent event (docs/events.md, "The fields of `meta`"). */
export interface EventMeta {
  elapsed_ms?: number;
  lifecycle?: 'unstarted_run' | 'after_end' | 'already_started' | 'tool_not_executing';
  progress?: { percent?: number; step?: number; total?: number };
  urgency?: 'low' | 'normal' | 'high';
  /** The tool's category (`tool_executing`) or the error's category (`agent_error`). */
  category?: string;
  purpose?: string;
  estimated_ms?: number;
  duration_ms?: number;
  severity?: 'critical' | 'high' | 'medium' | 'low';
  message?: string;
  recovery_suggestions?: string[];
  fatal?: boolean;
}

/** What every delivered event carries; `D` is the publisher's `data`, byte for byte. */
export interface EventBase<T extends string, D> {
  type: T;
  /** Per-user sequence number; absent on channel and broadcast events. */
  seq?: number;
  /** A merged `message_delta` covers every seq from `seq_from` to `seq`. */
  seq_from?: number;
  /** The channel's name, or `"*"` for a broadcast; absent on a user's own events. */
  channel?: string;
  run_id?: string | null;
  /** RFC 3339, UTC, milliseconds. */
  ts: string;
  priority: Priority;
  meta?: EventMeta;
  data: D;
}

/** `data` members the engine reads (docs/events.md); anything else is the publisher's. */
export interface AgentStartedData { expected_ms?: number; [key: string]: unknown }
export interface AgentThinkingData {
  progress?: number;
  step?: number;
  total_steps?: number;
  message?: string;
  [key: string]: unknown;
}
export interface ToolData { tool?: string; call_id?: string; [key: string]: unknown }
export interface AgentCompletedData { [key: string]: unknown }
export interface AgentErrorData {
  code?: string | number;
  category?: string;
  fatal?: boolean;
  message?: string;
  [key: string]: unknown;
}
export interface MessageStartedData { message_id: string; role?: string; [key: string]: unknown }
export interface MessageDeltaData { message_id: string; delta: string }
export interface MessageCompletedData { message_id: string; [key: string]: unknown }

export type AgentStartedEvent = EventBase<'agent_started', AgentStartedData>;
export type AgentThinkingEvent = EventBase<'agent_thinking', AgentThinkingData>;
export type ToolExecutingEvent = EventBase<'tool_executing', ToolData>;
export type ToolCompletedEvent = EventBase<'tool_completed', ToolData>;
export type AgentCompletedEvent = EventBase<'agent_completed', AgentCompletedData>;
export type AgentErrorEvent = EventBase<'agent_error', AgentErrorData>;
export type MessageStartedEvent = EventBase<'message_started', MessageStartedData>;
export type MessageDeltaEvent = EventBase<'message_delta', MessageDeltaData>;
export type MessageCompletedEvent = EventBase<'message_completed', MessageCompletedData>;

/** Every event type of docs/events.md, discriminated by `type`. */
export type KnownEvent =
  | AgentStartedEvent
  | AgentThinkingEvent
  | ToolExecutingEvent
  | ToolCompletedEvent
  | AgentCompletedEvent
  | AgentErrorEvent
  | MessageStartedEvent
  | MessageDeltaEvent
  | MessageCompletedEvent;

export type KnownEventType = KnownEvent['type'];

/**
 * A publisher's own event type, declared by the application as the client's type parameter:
 * `new AgentcastClient<{ type: 'invoice_ready'; data: { id: string } }>(...)`.
 */
export interface CustomEventShape { type: string; data?: unknown }

/** A declared custom event as delivered (`C` one member of the type parameter). */
export type CustomEvent<C extends CustomEventShape> = C extends CustomEventShape
  ? EventBase<C['type'], C extends { data: infer D } ? D : unknown>
  : never;

/**
 * What `onAny` and the `on` callbacks receive: the known events and the declared custom
 * ones. An event of a type that was not declared still reaches `onAny` at run time; declare
 * every custom type your publishers send.
 */
export type AgentcastEvent<C extends CustomEventShape = never> = KnownEvent | CustomEvent<C>;

/** The event of type `K`. */
export type EventOf<K extends string, C extends CustomEventShape = never> =
  Extract<AgentcastEvent<C>, { type: K }>;

/** The `welcome` message that opens every connection. */
export interface Welcome {
  type: 'welcome';
  conn_id: number;
  user_id: string;
  tier: string;
  /** The user's latest seq. */
  last_seq: number | null;
  heartbeat_ms: number;
}

/** A resume asked for events no longer held: `from`..`to`. */
export interface Gap { type: 'gap'; from: number; to: number }

/**
 * A server `error` (`invalid_field`, `forbidden`, …) or a local one: `connect`,
 * `connect_failed`, `token`, `bad_frame`, `ack_failed`, `callback`.
 */
export interface ClientError { code: string; message: string; type?: 'error' }

/** A streamed message assembled from `message_started`, `message_delta`, `message_completed`. */
export interface StreamedMessage {
  message_id: string;
  run_id: string | null;
  role: string | null;
  /** The text so far. */
  text: string;
  done: boolean;
}

export type Status = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** The second argument of `onStatus`; which members are set depends on the status. */
export interface StatusDetail {
  /** Retries so far (connecting, reconnecting). */
  attempt?: number;
  /** The close code that caused a reconnect (null when none, e.g. a refused connection). */
  code?: number | null;
  reason?: string;
  /** How long the client waits before the next attempt. */
  delayMs?: number;
  /** `open`: the welcome, and the resume point the connection resumed from. */
  welcome?: Welcome;
  resumedFrom?: number | null;
  /** SSE: the `EventSource` reconnects by itself with `Last-Event-ID`. */
  auto?: boolean;
}

export type Transport = 'websocket' | 'sse';

/** What the client needs of a WebSocket: the browser's, or e.g. the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** What the client needs of an EventSource: the browser's, or e.g. the `eventsource` package's. */
export interface EventSourceLike {
  readonly readyState: number;
  close(): void;
  addEventListener(type: string, listener: (event: any) => void): void;
}
export type EventSourceConstructor = new (url: string) => EventSourceLike;

/** A token: a string, or a (possibly async) function called before each connection. */
export type TokenSource = string | null | (() => string | Promise<string>);

/** The `on` map: one callback per event type, `this` being the client. */
export type EventHandlers<C extends CustomEventShape = never> = {
  [K in AgentcastEvent<C>['type']]?: (this: AgentcastClient<C>, ev: EventOf<K, C>) => void;
};

/** The constructor's options; every one has a default (`DEFAULTS`). */
export interface AgentcastClientOptions<C extends CustomEventShape = never> {
  /** The WebSocket endpoint, resolved against the page (default `/ws`). */
  url?: string;
  /** `auto` (default): WebSocket, falling back to SSE when the upgrade keeps failing. */
  transport?: 'websocket' | 'sse' | 'auto';
  /** `GET /sse` (default: `sse` beside `url`). */
  sseUrl?: string | null;
  /** `POST /api/v1/ack` for SSE (default: `api/v1/ack` beside `sseUrl`). */
  ackUrl?: string | null;
  /** WebSocket attempts ending before a welcome after which `auto` moves to SSE (2). */
  fallbackAfter?: number;
  /** Custom event types an SSE stream should listen for besides the `on` keys. */
  eventTypes?: string[];
  token?: TokenSource;
  /** A fresh token before every connection attempt; `expired` after a 4001 close. */
  getToken?: ((info: { expired: boolean; attempt: number }) => string | Promise<string>) | null;
  /** Resume point to start from (e.g. kept across page loads). */
  lastSeq?: number | null;
  /** Channels to subscribe to, now and after every reconnect. */
  channels?: string[];
  initialDelayMs?: number;
  connectTimeoutMs?: number;
  maxDelayMs?: number;
  serverCloseDelayMs?: number;
  ackDelayMs?: number;
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
  holeTimeoutMs?: number;
  /** The WebSocket constructor (default: the global; Node.js 20 has none: use `ws`). */
  WebSocket?: WebSocketConstructor | null;
  /** The EventSource constructor (default: the global; in Node.js use `eventsource`). */
  EventSource?: EventSourceConstructor | null;
  on?: EventHandlers<C>;
  /** Every event, after its typed callback. */
  onAny?: (this: AgentcastClient<C>, ev: AgentcastEvent<C>) => void;
  /** A streamed message changed. */
  onMessage?: (this: AgentcastClient<C>, message: StreamedMessage) => void;
  onGap?: (this: AgentcastClient<C>, gap: Gap) => void;
  onError?: (this: AgentcastClient<C>, error: ClientError) => void;
  onStatus?: (this: AgentcastClient<C>, status: Status, detail: StatusDetail) => void;
  /** `auto` switched to SSE. */
  onTransport?: (this: AgentcastClient<C>, transport: 'sse', detail: { reason: string }) => void;
  onWelcome?: (this: AgentcastClient<C>, welcome: Welcome) => void;
  /** Every event up to `seq` was acknowledged to the server. */
  onAck?: (this: AgentcastClient<C>, seq: number) => void;
}

/** The server's close code for a session whose token expired. */
export const TOKEN_EXPIRED: 4001;

/** The default options. */
export const DEFAULTS: Readonly<Required<Omit<AgentcastClientOptions,
  'on' | 'onAny' | 'onMessage' | 'onGap' | 'onError' | 'onStatus' | 'onTransport' | 'onWelcome'
  | 'onAck'>>>;

export class AgentcastClient<C extends CustomEventShape = never> {
  constructor(options?: AgentcastClientOptions<C>);
  readonly options: Readonly<AgentcastClientOptions<C>>;
  /** The transport in use (`auto` starts on WebSocket). */
  readonly transport: Transport;
  readonly status: Status;
  /** Resume point: every seq up to it was handed out (null before the first event). */
  readonly lastSeq: number | null;
  /** Highest seq handed to a callback. */
  readonly maxSeq: number | null;
  /** Highest seq acknowledged to the server. */
  readonly ackedSeq: number | null;
  /** Streamed messages by `message_id` (the 256 newest completed ones are kept). */
  readonly messages: Map<string, StreamedMessage>;
  /** The last welcome. */
  readonly welcome: Welcome | null;
  /** Completed reconnects (welcomes after the first). */
  readonly reconnects: number;
  readonly channels: ReadonlySet<string>;
  /** Opens the connection and keeps it open until `close()`. */
  connect(): this;
  /** Closes for good (no reconnect); pending acks are sent first. */
  close(): void;
  /** Subscribes to a channel now and after every reconnect (over SSE: by reconnecting). */
  subscribe(channel: string): void;
  unsubscribe(channel: string): void;
}
