// agentcast client, server-sent events transport: one `EventSource` on `GET /sse`, used by
// client.js (sdk/js/src/client.js, served at /client.js) when `transport` is "sse", or "auto"
// after the WebSocket upgrade failed. Served by the agentcast binary at /sse.js (this file,
// sdk/js/src/sse.js). The `EventSource` is the client's `EventSource` option, else the
// global one. See docs/web.md.
//
// Semantics:
// - Events: `data:` is the JSON of the WebSocket frame, byte for byte, so every message is
//   handed to the client's dispatch unchanged. An `EventSource` only reports named events it
//   listens for: the stream listens for `welcome`, `gap`, `error`, `close`, the agent and
//   message types of docs/events.md, and every extra type the client names (its `on` keys
//   and `eventTypes`); an event of any other type is not seen (a documented limit).
// - Close: the server ends a stream with `event: close` `{"code","reason"}` (no `type`, no
//   `seq`, no `channel`; a publisher's own `close` event carries those and is an event). The
//   stream then closes its `EventSource` (so the browser does not reconnect by itself) and
//   reports the code, which the client treats as a WebSocket close code.
// - Lost stream: when the connection drops after a `welcome`, the browser's `EventSource`
//   reconnects by itself with `Last-Event-ID` (the last user event it got). That is kept only
//   when `canAutoReconnect()` says so (the client has no hole: every seq up to the last one
//   was seen, so `Last-Event-ID` loses nothing); otherwise, or when that reconnect fails
//   before its `welcome`, or when the server refused the stream (401, 429, 503: an
//   `EventSource` does not retry those), the stream ends and the client reconnects with its
//   own backoff and `?last_seq=`.
// - Liveness: an `EventSource` hides the server's `: ping` comments and has no way to send,
//   so a silently dead connection is noticed only by the browser's network stack.

/** The event types an SSE stream listens for besides the client's own (see docs/events.md). */
export const SSE_EVENT_TYPES = Object.freeze([
  'welcome', 'gap',
  'agent_started', 'agent_thinking', 'tool_executing', 'tool_completed', 'agent_completed',
  'agent_error', 'message_started', 'message_delta', 'message_completed',
]);

/** `readyState` of an `EventSource` that is reconnecting by itself. */
const CONNECTING = 0;

/**
 * The URL of `GET /sse` for a connection: `base` (the `sseUrl`) with the token, the channels
 * to subscribe to at connect, and the resume point.
 * @param {URL} base
 * @param {{token: ?string, channels: Iterable<string>, lastSeq: ?number}} at
 */
export function sseUrl(base, { token, channels, lastSeq }) {
  const url = new URL(base.toString());
  if (token) url.searchParams.set('token', token);
  const list = [...channels];
  if (list.length) url.searchParams.set('channels', list.join(','));
  else url.searchParams.delete('channels');
  if (lastSeq !== null && lastSeq !== undefined) url.searchParams.set('last_seq', String(lastSeq));
  else url.searchParams.delete('last_seq');
  return url;
}

/**
 * Acknowledges every event up to `seq` with `POST <ackUrl>` `{"seq": N}`, authenticated by
 * the client's JWT. `keepalive`, so an ack sent as the page unloads still leaves. Resolves on
 * `200`, rejects with the status otherwise.
 */
export async function postAck(ackUrl, token, seq) {
  const r = await fetch(ackUrl.toString(), {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ seq }),
    keepalive: true,
  });
  if (!r.ok) throw new Error(`POST /api/v1/ack answered ${r.status}`);
}

/** One event stream: an `EventSource` and the rules of the module comment. */
export class SseStream {
  /**
   * @param {URL} url from sseUrl()
   * @param {Iterable<string>} types extra event types to listen for
   * @param {object} hooks
   *   onMessage(msg): a parsed message (welcome, gap, error or an event);
   *   onBadData(): a `data:` that is not JSON;
   *   onAutoReconnect(): the `EventSource` reconnects by itself;
   *   onEnd({code, reason, welcomed}): the stream is over (`code` null when it was lost);
   *   canAutoReconnect(): whether a `Last-Event-ID` reconnect loses nothing.
   * @param {?Function} EventSourceClass the `EventSource` constructor (default: the global)
   * @throws when the environment has no `EventSource`.
   */
  constructor(url, types, hooks, EventSourceClass = null) {
    const ES = EventSourceClass || globalThis.EventSource;
    if (typeof ES !== 'function') throw new Error('this environment has no EventSource: give the `EventSource` option');
    this.hooks = hooks;
    /** Whether a `welcome` arrived since the `EventSource` last (re)connected. */
    this.welcomed = false;
    /** Set once the stream ended or was closed: nothing is reported after. */
    this.done = false;
    this.es = new ES(url.toString());
    const onData = (e) => this._data(e.data);
    const named = new Set([...SSE_EVENT_TYPES, ...types]);
    named.delete('close');
    named.delete('error');
    for (const t of named) this.es.addEventListener(t, onData);
    this.es.onmessage = onData; // an event without `event:` (never sent by the server)
    this.es.addEventListener('close', (e) => this._close(e.data));
    this.es.addEventListener('error', (e) => {
      // A server `event: error` is a message with data; a connection error has none.
      if (typeof e.data === 'string') this._data(e.data);
      else this._lost();
    });
  }

  /** Closes the stream without reporting anything (the client asked for it). */
  close() {
    this.done = true;
    this.es.close();
  }

  _data(data) {
    if (this.done) return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      this.hooks.onBadData();
      return;
    }
    if (msg && msg.type === 'welcome') this.welcomed = true;
    this.hooks.onMessage(msg);
  }

  _close(data) {
    if (this.done) return;
    let msg = null;
    try {
      msg = JSON.parse(data);
    } catch {
      /* a close without JSON: still the end of the stream */
    }
    if (msg && typeof msg === 'object' && 'type' in msg) {
      this._data(data); // a publisher's event named `close`
      return;
    }
    const code = msg && typeof msg.code === 'number' ? msg.code : null;
    const reason = msg && typeof msg.reason === 'string' ? msg.reason : '';
    this._end(code, reason);
  }

  _lost() {
    if (this.done) return;
    if (this.es.readyState === CONNECTING && this.welcomed && this.hooks.canAutoReconnect()) {
      // The EventSource retries after the server's `retry:` with Last-Event-ID.
      this.welcomed = false;
      this.hooks.onAutoReconnect();
      return;
    }
    this._end(null, 'stream lost');
  }

  _end(code, reason) {
    const welcomed = this.welcomed;
    this.close();
    this.hooks.onEnd({ code, reason, welcomed });
  }
}
