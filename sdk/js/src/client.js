// agentcast client: a dependency-free ES module, the `agentcast-client` package (sdk/js, see
// sdk/js/README.md), also served by the agentcast binary at /client.js (this file,
// sdk/js/src/client.js, compiled in). Runs in browsers and in Node.js (>= 20). See docs/web.md.
//
//   import { AgentcastClient } from '/client.js';
//   const client = new AgentcastClient({
//     url: '/ws',
//     transport: 'auto',                    // or 'websocket', 'sse' (GET /sse, see sse.js)
//     token: () => fetchMyToken(),          // a string, or a (possibly async) function
//     getToken: async ({ expired }) => ..., // optional: a fresh token before every connect
//     on: {
//       agent_started(ev) { ... },          // one callback per event type
//       agent_thinking(ev) { ... },
//     },
//     onAny(ev) { ... },                    // every event, after its typed callback
//     onMessage(m) { ... },                 // a streamed message changed: {message_id, run_id,
//                                           //   role, text, done}
//     onGap(gap) { ... },                   // {from, to}: events no longer held
//     onError(err) { ... },                 // {code, message} from the server, or a local error
//     onStatus(status, detail) { ... },     // connecting | open | reconnecting | closed
//     onTransport(transport, detail) { ... }, // "auto" switched to "sse"
//   });
//   client.connect();
//
// Outside a browser (Node.js 20 has no global WebSocket nor EventSource), give the
// constructors as options: `WebSocket` (e.g. the `ws` package's) and `EventSource` (e.g. the
// `eventsource` package's); each defaults to the global of that name, looked up at connect.
// `fetch` (SSE acks) is the global one (Node >= 18 has it).
//
// Semantics:
// - Order: events of different priorities may overtake each other on the wire (the server
//   drains a connection's critical queue first, e.g. when it replays a backlog), so events
//   are handed out as they arrive, which is not always seq order; `ev.seq` tells the order.
// - Resume: the client reconnects with `?last_seq=W`, W being its resume point: the highest
//   seq such that it has seen every seq up to W (see `lastSeq`). The server replays every
//   event after W still in the user's history; any event already handed out is dropped, so a
//   callback never sees the same seq twice. A hole that stays open for `holeTimeoutMs` while
//   connected is an event the server will not send on this connection (a thinking event
//   replaced by a newer one, or dropped from a full queue): W moves past it, and the next
//   resume asks again only for what came after. Before any seq was seen it connects without
//   `last_seq` and gets what the user has not acknowledged.
// - Acks: after an event's callbacks ran, a critical event (priority "critical") is
//   acknowledged at once with {"type":"ack","seq":N}, N the highest seq seen; other events
//   are acknowledged in a batch (one ack, `ackDelayMs` later). An ack confirms every event up
//   to N.
// - Reconnect: after any close not asked for by `close()`, with exponential backoff and
//   jitter: attempt k waits a random time in [d/2, d], d = min(maxDelayMs, initialDelayMs·2^k).
//   A close the server chose (1001 going away, 1012 restart, 1013 try again later) waits
//   `serverCloseDelayMs` to twice that first, so a restarting node is not hit by every client
//   at once. The attempt counter resets on each `welcome`. A WebSocket attempt without a
//   `welcome` within `connectTimeoutMs` is abandoned and retried the same way (a black-holed
//   SYN, a stalled handshake, or a refused connection on runtimes that fire `error` but never
//   `close`, as Node 20's WebSocket does).
// - Token expiry: the server closes a session whose token expired with 4001 `token expired`.
//   The client then reconnects at once (a random delay up to `initialDelayMs`, no backoff)
//   and, before every connection attempt, calls `getToken({ expired, attempt })` when given:
//   `expired` is true when the previous connection ended with 4001, so the page fetches a
//   fresh token from its backend. Without `getToken`, `token` (a function is called each
//   time) is used as before; a fixed string token that expired is then refused with 401.
// - Message streams: `message_started`, `message_delta`, `message_completed` of one
//   `data.message_id` are assembled into `client.messages` (text so far, `done`), and
//   `onMessage(m)` is called after each. A merged delta (the server merges consecutive deltas
//   under backpressure and in history) covers `seq_from`..`seq`; every seq of the range counts
//   as seen. A delta overlapping text already held (a resume after a hole) is cut to its new
//   part before any callback sees it, so the text is never duplicated nor missing
//   (messages.js).
// - Liveness: an application ping ({"type":"ping"}) every `pingIntervalMs`; when nothing at
//   all arrives for `pingIntervalMs + pongTimeoutMs`, the socket is considered dead and the
//   client reconnects. (WebSocket only: see sse.js.)
// - Transport: "websocket", "sse" or "auto" (default): WebSocket, and after `fallbackAfter`
//   (2) WebSocket attempts in a row that end before a `welcome`, in a client never welcomed
//   over WebSocket, SSE for the rest of the session (`onTransport`, `client.transport`).
//   Over SSE (sse.js) all of the above holds, except: `?channels=` at connect, so
//   subscribe/unsubscribe reconnect with `?last_seq=`; acks are `POST /api/v1/ack`; no ping.

import { applyMessage } from './messages.js';
import { SseStream, postAck, sseUrl } from './sse.js';

/** Close codes the server sends on purpose; the first retry then waits longer. */
const SERVER_CLOSES = new Set([1001, 1012, 1013]);

/** The server's close code for a session whose token expired (reason `token expired`). */
export const TOKEN_EXPIRED = 4001;

/** The transports of the `transport` option. */
const TRANSPORTS = new Set(['websocket', 'sse', 'auto']);

/** Default options. Every one can be given to the constructor. */
export const DEFAULTS = Object.freeze({
  url: '/ws',
  transport: 'auto',
  sseUrl: null,
  ackUrl: null,
  fallbackAfter: 2,
  eventTypes: [],
  token: null,
  getToken: null,
  lastSeq: null,
  channels: [],
  initialDelayMs: 250,
  connectTimeoutMs: 10000,
  maxDelayMs: 15000,
  serverCloseDelayMs: 1000,
  ackDelayMs: 200,
  pingIntervalMs: 15000,
  pongTimeoutMs: 10000,
  holeTimeoutMs: 3000,
  WebSocket: null,
  EventSource: null,
});

export class AgentcastClient {
  /**
   * @param {object} options see DEFAULTS and the module comment.
   */
  constructor(options = {}) {
    this.options = { ...DEFAULTS, ...options };
    if (!TRANSPORTS.has(this.options.transport)) {
      throw new TypeError(`transport must be "websocket", "sse" or "auto", not ${JSON.stringify(this.options.transport)}`);
    }
    /** The transport in use: "websocket" or "sse" ("auto" starts on WebSocket). */
    this.transport = this.options.transport === 'sse' ? 'sse' : 'websocket';
    this.handlers = options.on || {};
    this.status = 'idle';
    /** Resume point: every seq up to it was handed out (null before the first event). */
    this.lastSeq = this.options.lastSeq ?? null;
    /** Highest seq handed to a callback (null before the first). */
    this.maxSeq = this.lastSeq;
    /** Seqs handed out above `lastSeq` (or all of them while `lastSeq` is null). */
    this._seen = new Set();
    /** When the hole just above `lastSeq` was first noticed (0: none). */
    this._holeSince = 0;
    /** When the first event was handed out (0: none yet). */
    this._firstSeenAt = 0;
    /** Highest seq acknowledged to the server. */
    this.ackedSeq = null;
    /** Streamed messages by message_id: {message_id, run_id, role, text, done}. */
    this.messages = new Map();
    /** The last welcome message. */
    this.welcome = null;
    /** Completed reconnects (welcomes after the first). */
    this.reconnects = 0;
    this.channels = new Set(this.options.channels);
    this._ws = null;
    /** The SseStream while the transport is SSE (see sse.js). */
    this._sse = null;
    /** The token of the current connection (SSE acks are authenticated with it). */
    this._token = null;
    /** WebSocket attempts in a row that ended before a welcome ("auto" falls back on them). */
    this._wsFailures = 0;
    /** Whether a WebSocket of this client was ever welcomed ("auto" then never falls back). */
    this._wsWelcomed = false;
    this._resubTimer = null;
    this._generation = 0;
    this._attempt = 0;
    this._welcomed = 0;
    this._stopped = true;
    this._retryTimer = null;
    this._ackTimer = null;
    this._pingTimer = null;
    this._holeTimer = null;
    this._lastHeard = 0;
    /** Whether the last connection was closed with TOKEN_EXPIRED (told to getToken). */
    this._tokenExpired = false;
    this._onOnline = () => {
      if (!this._stopped && this.status === 'reconnecting') this._reconnectNow();
    };
  }

  /** Opens the connection (and keeps it open until close()). */
  connect() {
    if (!this._stopped) return this;
    this._stopped = false;
    if (typeof window !== 'undefined') window.addEventListener('online', this._onOnline);
    this._open();
    return this;
  }

  /** Closes the connection for good (no reconnect). Pending acks are sent first. */
  close() {
    this._stopped = true;
    if (typeof window !== 'undefined') window.removeEventListener('online', this._onOnline);
    clearTimeout(this._retryTimer);
    clearTimeout(this._resubTimer);
    this._flushAck();
    this._stopTimers();
    this._dropConnection();
    this._setStatus('closed', {});
  }

  /** Subscribes to a channel now and after every reconnect (over SSE: by reconnecting). */
  subscribe(channel) {
    if (this.channels.has(channel)) return;
    this.channels.add(channel);
    if (this.transport === 'sse') this._resubscribe();
    else this._send({ type: 'subscribe', channel });
  }

  /** Unsubscribes from a channel (over SSE: by reconnecting). */
  unsubscribe(channel) {
    if (!this.channels.delete(channel)) return;
    if (this.transport === 'sse') this._resubscribe();
    else this._send({ type: 'unsubscribe', channel });
  }

  // ---- connection ------------------------------------------------------------------------

  async _open() {
    clearTimeout(this._retryTimer);
    this._dropConnection();
    // Only the latest of overlapping calls (a retry, `online`, a resubscribe) connects.
    const generation = ++this._generation;
    this._setStatus(this._welcomed ? 'reconnecting' : 'connecting', { attempt: this._attempt });
    let token = this.options.token;
    const expired = this._tokenExpired;
    this._tokenExpired = false;
    try {
      if (typeof this.options.getToken === 'function') {
        token = await this.options.getToken({ expired, attempt: this._attempt });
      } else if (typeof token === 'function') {
        token = await token();
      }
    } catch (e) {
      this._error({ code: 'token', message: `could not get a token: ${e && e.message || e}` });
      this._scheduleRetry(null);
      return;
    }
    if (this._stopped || generation !== this._generation) return;
    this._token = token || null;
    this._settleFloor();
    if (this.transport === 'sse') this._openSse(token);
    else this._openWs(token);
  }

  /** The `url` option resolved against the page, with `scheme` (ws or http) kept secure. */
  _url(option, scheme) {
    const url = new URL(option, typeof location !== 'undefined' ? location.href : undefined);
    const secure = url.protocol === 'https:' || url.protocol === 'wss:';
    url.protocol = `${scheme}${secure ? 's' : ''}:`;
    return url;
  }

  _openWs(token) {
    const url = this._url(this.options.url, 'ws');
    if (token) url.searchParams.set('token', token);
    if (this.lastSeq !== null) {
      url.searchParams.set('last_seq', String(this.lastSeq));
    } else {
      url.searchParams.delete('last_seq');
    }
    let ws;
    try {
      const WS = this._webSocketClass();
      if (typeof WS !== 'function') throw new Error('this environment has no WebSocket: give the `WebSocket` option');
      ws = new WS(url.toString());
    } catch (e) {
      this._error({ code: 'connect', message: String(e && e.message || e) });
      this._scheduleRetry(null);
      return;
    }
    this._ws = ws;
    let welcomed = false;
    const connectTimer = setTimeout(() => {
      if (ws !== this._ws || welcomed) return;
      const onclose = ws.onclose;
      try { ws.close(); } catch { /* still connecting: nothing to close */ }
      // A later real close finds `this._ws` changed and is ignored.
      onclose({ code: 1006, reason: 'no welcome within connectTimeoutMs' });
    }, this.options.connectTimeoutMs);
    ws.onmessage = (m) => {
      if (ws !== this._ws) return;
      this._lastHeard = Date.now();
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch {
        this._error({ code: 'bad_frame', message: 'server sent a frame that is not JSON' });
        return;
      }
      if (msg.type === 'welcome') {
        welcomed = true;
        clearTimeout(connectTimer);
        this._wsWelcomed = true;
        this._wsFailures = 0;
      }
      this._dispatch(msg);
    };
    ws.onclose = (e) => {
      clearTimeout(connectTimer);
      if (ws !== this._ws) return;
      this._ws = null;
      if (!welcomed) this._wsFailures += 1;
      const fallback = !welcomed && this.options.transport === 'auto' && !this._wsWelcomed
        && this._wsFailures >= this.options.fallbackAfter && typeof this._eventSourceClass() === 'function';
      if (fallback && !this._stopped) {
        this._stopTimers();
        this._switchToSse(e.code);
        return;
      }
      this._ended(e.code, e.reason, welcomed);
    };
    // `error` is always followed by `close`, which does the work.
    ws.onerror = () => {};
  }

  _openSse(token) {
    const url = sseUrl(this._sseUrls().sse, { token, channels: this.channels, lastSeq: this.lastSeq });
    const types = [...Object.keys(this.handlers), ...this.options.eventTypes];
    let stream;
    const hooks = {
      onMessage: (msg) => {
        if (stream === this._sse) this._dispatch(msg);
      },
      onBadData: () => this._error({ code: 'bad_frame', message: 'server sent an event whose data is not JSON' }),
      onAutoReconnect: () => {
        if (stream !== this._sse) return;
        this._stopTimers();
        this._setStatus('reconnecting', { reason: 'stream lost', auto: true });
      },
      onEnd: ({ code, reason, welcomed }) => {
        if (stream !== this._sse) return;
        this._sse = null;
        this._ended(code, reason, welcomed);
      },
      canAutoReconnect: () => !this._stopped && this._seen.size === 0,
    };
    try {
      stream = new SseStream(url, types, hooks, this._eventSourceClass());
    } catch (e) {
      this._error({ code: 'connect', message: String(e && e.message || e) });
      this._scheduleRetry(null);
      return;
    }
    this._sse = stream;
  }

  /** The `WebSocket` option, else the global `WebSocket` (undefined when there is none). */
  _webSocketClass() {
    return this.options.WebSocket || globalThis.WebSocket;
  }

  /** The `EventSource` option, else the global `EventSource` (undefined when there is none). */
  _eventSourceClass() {
    return this.options.EventSource || globalThis.EventSource;
  }

  /** `sseUrl` (default: `sse` beside `url`) and `ackUrl` (default: `api/v1/ack` beside it). */
  _sseUrls() {
    const o = this.options;
    const sse = o.sseUrl ? this._url(o.sseUrl, 'http') : new URL('sse', this._url(o.url, 'http'));
    return { sse, ack: o.ackUrl ? this._url(o.ackUrl, 'http') : new URL('api/v1/ack', sse) };
  }

  /** "auto": the WebSocket upgrade keeps failing; move to SSE for the rest of the session. */
  _switchToSse(code) {
    this.transport = 'sse';
    this._attempt = 0;
    this._call(this.options.onTransport, 'sse', {
      reason: `${this._wsFailures} WebSocket attempt(s) ended before a welcome (last close ${code})`,
    });
    this._open();
  }

  /** SSE: reconnects (once per tick) so the stream carries the new channel list. */
  _resubscribe() {
    if (this._stopped || !this._sse || this._resubTimer) return;
    this._resubTimer = setTimeout(() => {
      this._resubTimer = null;
      if (!this._stopped && this._sse) this._open();
    }, 0);
  }

  /** Closes the current WebSocket or event stream without reporting it. */
  _dropConnection() {
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      ws.close(1000, 'client closed');
    }
    if (this._sse) {
      this._sse.close();
      this._sse = null;
    }
    this._stopTimers();
  }

  /** A connection ended (a WebSocket close, or an event stream's end). */
  _ended(code, reason, welcomed) {
    this._stopTimers();
    if (this._stopped) return;
    if (code === TOKEN_EXPIRED) this._tokenExpired = true;
    if (!welcomed) {
      this._error({
        code: 'connect_failed',
        message: `connection refused or lost before welcome (close ${code}); check the token`,
      });
    }
    this._scheduleRetry(code, reason);
  }

  _scheduleRetry(code, reason) {
    if (this._stopped) return;
    const o = this.options;
    const d = Math.min(o.maxDelayMs, o.initialDelayMs * 2 ** this._attempt);
    let delay = d / 2 + Math.random() * (d / 2);
    if (code === TOKEN_EXPIRED) {
      // Expected and not the server's distress: reconnect now with a fresh token.
      delay = Math.random() * o.initialDelayMs;
    } else if (SERVER_CLOSES.has(code)) {
      delay = Math.max(delay, o.serverCloseDelayMs * (1 + Math.random()));
    }
    this._attempt += 1;
    this._setStatus('reconnecting', { code, reason, delayMs: Math.round(delay), attempt: this._attempt });
    this._retryTimer = setTimeout(() => this._open(), delay);
  }

  _reconnectNow() {
    clearTimeout(this._retryTimer);
    this._open();
  }

  // ---- messages ----------------------------------------------------------------------------

  _dispatch(msg) {
    switch (msg.type) {
      case 'welcome':
        this.welcome = msg;
        if (this._welcomed > 0) this.reconnects += 1;
        this._welcomed += 1;
        this._attempt = 0;
        // Over SSE the channels were given at connect (`_send` does nothing there).
        for (const channel of this.channels) this._send({ type: 'subscribe', channel });
        this._startTimers(msg.heartbeat_ms);
        this._setStatus('open', { welcome: msg, resumedFrom: this.lastSeq });
        this._call(this.options.onWelcome, msg);
        return;
      case 'pong':
        return;
      case 'gap':
        this._call(this.options.onGap, msg);
        return;
      case 'error':
        this._error(msg);
        return;
      default:
        this._event(msg);
    }
  }

  _event(ev) {
    const hasSeq = typeof ev.seq === 'number';
    if (hasSeq && ((this.lastSeq !== null && ev.seq <= this.lastSeq) || this._seen.has(ev.seq))) {
      return; // already handed out (replayed after a resume)
    }
    const message = applyMessage(this.messages, ev);
    if (message) {
      ev = message.ev;
      if (message.fresh) {
        this._call(this.handlers[ev.type], ev);
        this._call(this.options.onAny, ev);
        this._call(this.options.onMessage, message.m);
      }
    } else {
      this._call(this.handlers[ev.type], ev);
      this._call(this.options.onAny, ev);
    }
    if (!hasSeq) return;
    const from = typeof ev.seq_from === 'number' && ev.seq_from <= ev.seq ? ev.seq_from : ev.seq;
    for (let s = Math.max(from, this.lastSeq === null ? from : this.lastSeq + 1); s <= ev.seq; s++) {
      this._seen.add(s);
    }
    if (this.maxSeq === null || ev.seq > this.maxSeq) this.maxSeq = ev.seq;
    if (!this._firstSeenAt) this._firstSeenAt = Date.now();
    this._advance();
    if (ev.priority === 'critical') {
      this._flushAck();
    } else if (!this._ackTimer) {
      this._ackTimer = setTimeout(() => this._flushAck(), this.options.ackDelayMs);
    }
  }

  /** Moves the resume point over every seq seen contiguously after it. */
  _advance() {
    if (this.lastSeq === null) return;
    while (this._seen.has(this.lastSeq + 1)) {
      this.lastSeq += 1;
      this._seen.delete(this.lastSeq);
    }
    for (const s of this._seen) if (s <= this.lastSeq) this._seen.delete(s);
    this._holeSince = this._seen.size ? this._holeSince || Date.now() : 0;
  }

  /** Fixes the resume point once events were seen (the first connection had none). */
  _settleFloor() {
    if (this.lastSeq === null && this._seen.size) {
      this.lastSeq = Math.min(...this._seen) - 1;
      this._advance();
    }
  }

  /** Skips a hole that stayed open for holeTimeoutMs on a live connection. */
  _checkHole() {
    if (this.lastSeq === null && Date.now() - this._firstSeenAt >= this.options.holeTimeoutMs) {
      this._settleFloor();
    }
    if (!this._seen.size || !this._holeSince) return;
    if (Date.now() - this._holeSince < this.options.holeTimeoutMs) return;
    this.lastSeq = Math.min(...this._seen) - 1;
    this._holeSince = 0;
    this._advance();
  }

  /** Acknowledges everything handed out so far. */
  _flushAck() {
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    const seq = this.maxSeq;
    if (seq === null || (this.ackedSeq !== null && seq <= this.ackedSeq)) return;
    if (this.transport === 'sse') {
      if (this._token && this.welcome) this._ackOverHttp(seq);
      return;
    }
    if (this._send({ type: 'ack', seq })) {
      this.ackedSeq = seq;
      this._call(this.options.onAck, seq);
    }
  }

  /** SSE: `POST /api/v1/ack`; a failed ack is reported and sent again with the next one. */
  _ackOverHttp(seq) {
    const before = this.ackedSeq;
    this.ackedSeq = seq;
    postAck(this._sseUrls().ack, this._token, seq).then(
      () => this._call(this.options.onAck, seq),
      (e) => {
        if (this.ackedSeq === seq) this.ackedSeq = before;
        this._error({ code: 'ack_failed', message: String(e && e.message || e) });
      },
    );
  }

  _send(obj) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1 || !this.welcome) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  // ---- liveness ----------------------------------------------------------------------------

  _startTimers(heartbeatMs) {
    this._stopTimers();
    const every = Math.min(this.options.pingIntervalMs, heartbeatMs || Infinity);
    this._lastHeard = Date.now();
    this._holeSince = this._seen.size ? Date.now() : 0;
    this._holeTimer = setInterval(() => this._checkHole(), 1000);
    if (this.transport === 'sse') return; // no client → server direction: no ping
    this._pingTimer = setInterval(() => {
      if (Date.now() - this._lastHeard > every + this.options.pongTimeoutMs) {
        // Nothing heard, not even the pong of the last ping: the socket is dead.
        const ws = this._ws;
        this._ws = null;
        this._stopTimers();
        if (ws) ws.close(4000, 'no pong');
        this._scheduleRetry(null, 'no pong');
        return;
      }
      this._send({ type: 'ping' });
    }, every);
  }

  _stopTimers() {
    clearInterval(this._pingTimer);
    clearInterval(this._holeTimer);
    this._pingTimer = null;
    this._holeTimer = null;
  }

  // ---- callbacks ---------------------------------------------------------------------------

  _setStatus(status, detail) {
    this.status = status;
    this._call(this.options.onStatus, status, detail);
  }

  _error(err) {
    this._call(this.options.onError, err);
  }

  _call(fn, ...args) {
    if (typeof fn !== 'function') return;
    try {
      fn.apply(this, args);
    } catch (e) {
      if (fn !== this.options.onError && typeof this.options.onError === 'function') {
        try {
          this.options.onError({ code: 'callback', message: String(e && e.stack || e) });
        } catch {
          /* an onError that throws is ignored */
        }
      } else {
        console.error(e);
      }
    }
  }
}
