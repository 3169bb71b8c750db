// The demo page (/): a chat-like view of one user's agent runs, live, through /client.js.
// Every string from the server is inserted with textContent (publisher data is untrusted).
import { AgentcastClient } from '/client.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const devUser = params.get('user') || 'demo-user';
// ?transport=websocket|sse|auto (default auto); ?ws=/path points the WebSocket elsewhere, e.g.
// at a path that does not upgrade, to watch "auto" fall back to SSE.
const transport = ['websocket', 'sse', 'auto'].includes(params.get('transport')) ? params.get('transport') : 'auto';
const wsUrl = params.get('ws') || '/ws';
const TRANSPORT_NAMES = { websocket: 'WebSocket', sse: 'SSE' };

const LABELS = {
  agent_started: 'Agent started',
  agent_thinking: 'Thinking',
  tool_executing: 'Running tool',
  tool_completed: 'Tool finished',
  agent_completed: 'Completed',
  agent_error: 'Error',
  message: 'Answer',
};

let client = null;
let shown = 0;
let gaps = 0;
let devMode = false;
const runs = new Map(); // run_id -> {el, list, badge, bar, title}
const critical = new Map(); // seq -> ack mark element, until acknowledged

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function clock(date) {
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}.${p(date.getMilliseconds(), 3)}`;
}

function log(text, kind = '') {
  const li = el('li', kind);
  li.append(el('time', null, clock(new Date())), el('span', null, text));
  $('log').prepend(li);
  while ($('log').children.length > 200) $('log').lastChild.remove();
}

function setStatus(status, label) {
  const s = $('status');
  s.className = `pill ${status}`;
  s.dataset.status = status;
  s.textContent = label || status;
}

function compact(v) {
  if (v === undefined) return '';
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > 160 ? `${s.slice(0, 157)}…` : s;
}

/** The line of text shown for an event, as DOM nodes. */
function describe(ev) {
  const d = ev.data && typeof ev.data === 'object' ? ev.data : {};
  const frag = document.createDocumentFragment();
  const code = (t) => frag.append(el('code', null, t));
  const text = (t) => frag.append(document.createTextNode(t));
  switch (ev.type) {
    case 'agent_started':
      text(d.goal ? String(d.goal) : compact(ev.data));
      break;
    case 'agent_thinking':
      text(d.text ? String(d.text) : compact(ev.data));
      if (d.step !== undefined && d.of !== undefined) text(`  · step ${d.step} of ${d.of}`);
      break;
    case 'tool_executing':
      if (d.tool) { code(String(d.tool)); text(d.args !== undefined ? ` with ${compact(d.args)}` : ''); }
      else text(compact(ev.data));
      break;
    case 'tool_completed':
      if (d.tool) {
        code(String(d.tool));
        text(d.result !== undefined ? ` returned ${compact(d.result)}` : ' finished');
        if (d.duration_ms !== undefined) text(` in ${d.duration_ms} ms`);
      } else text(compact(ev.data));
      break;
    case 'agent_completed':
      text(d.summary ? String(d.summary) : compact(ev.data));
      break;
    case 'agent_error':
      text(d.message || d.error ? String(d.message || d.error) : compact(ev.data));
      break;
    default:
      text(compact(ev.data));
  }
  return frag;
}

function runFor(ev) {
  const id = ev.run_id || '(no run)';
  let run = runs.get(id);
  if (run) return run;
  $('empty')?.remove();
  const root = el('article', 'run');
  root.dataset.run = id;
  const head = el('div', 'run-head');
  const avatar = el('div', 'avatar', 'AI');
  const title = el('div', 'run-title');
  const name = el('b', null, 'Agent run');
  title.append(name, el('span', null, id));
  const badge = el('span', 'badge', 'running');
  head.append(avatar, title, badge);
  const progress = el('div', 'progress');
  const bar = el('div');
  progress.append(bar);
  const list = el('ol', 'events');
  root.append(head, progress, list);
  $('conversation').append(root);
  run = { root, list, badge, bar, progress, name, avatar };
  runs.set(id, run);
  return run;
}

function updateRun(run, ev) {
  const d = ev.data && typeof ev.data === 'object' ? ev.data : {};
  if (ev.type === 'agent_started') {
    if (d.goal) run.name.textContent = String(d.goal);
    if (d.agent) run.avatar.textContent = String(d.agent).slice(0, 2).toUpperCase();
  }
  if (typeof d.progress === 'number') run.bar.style.width = `${Math.max(0, Math.min(1, d.progress)) * 100}%`;
  if (ev.type === 'agent_completed') {
    run.badge.textContent = 'completed';
    run.badge.className = 'badge completed';
    run.bar.style.width = '100%';
    run.progress.classList.add('done');
  } else if (ev.type === 'agent_error') {
    run.badge.textContent = 'error';
    run.badge.className = 'badge error';
  }
}

/** One row per streamed message, its text growing as deltas arrive (see client.onMessage). */
function showMessage(m) {
  const run = runFor({ run_id: m.run_id });
  let li = run.list.querySelector(`li[data-message="${CSS.escape(m.message_id)}"]`);
  if (!li) {
    li = el('li', 'event message fresh');
    li.dataset.message = m.message_id;
    li.dataset.type = 'message';
    li.append(el('span', 'dot'), el('span', 'type', LABELS.message), el('span', 'text'), el('span', 'meta'));
    run.list.append(li);
    setTimeout(() => li.classList.remove('fresh'), 1300);
  }
  li.querySelector('.text').textContent = m.text;
  li.querySelector('.meta').textContent = m.done ? `${m.text.length} chars` : 'writing…';
  li.dataset.done = String(m.done);
  li.scrollIntoView({ block: 'nearest' });
}

function show(ev) {
  if (typeof ev.type === 'string' && ev.type.startsWith('message_')) {
    // Rendered as one growing row by showMessage.
    shown += 1;
    $('kv-count').textContent = String(shown);
    return;
  }
  const run = runFor(ev);
  const li = el('li', `event ${ev.type} fresh`);
  if (typeof ev.seq === 'number') li.dataset.seq = String(ev.seq);
  li.dataset.type = ev.type;
  li.append(el('span', 'dot'), el('span', 'type', LABELS[ev.type] || ev.type));
  const text = el('span', 'text');
  text.append(describe(ev));
  const meta = el('span', 'meta');
  if (typeof ev.seq === 'number') meta.append(el('span', 'seq', `#${ev.seq}`));
  const ts = ev.ts ? new Date(ev.ts) : new Date();
  const time = el('time', null, clock(ts));
  time.dateTime = ev.ts || ts.toISOString();
  time.title = ev.ts || '';
  meta.append(time);
  if (ev.priority === 'critical' && typeof ev.seq === 'number') {
    const mark = el('span', 'acked', '');
    mark.title = 'acknowledged to the server';
    meta.append(mark);
    critical.set(ev.seq, mark);
  }
  li.append(text, meta);
  // Events of different priorities may overtake each other (a resume replays critical ones
  // first): keep each run's list in seq order.
  const after = typeof ev.seq === 'number'
    ? [...run.list.children].find((x) => x.dataset.seq !== undefined && Number(x.dataset.seq) > ev.seq)
    : undefined;
  run.list.insertBefore(li, after || null);
  setTimeout(() => li.classList.remove('fresh'), 1300);
  updateRun(run, ev);
  shown += 1;
  $('kv-count').textContent = String(shown);
  if (client && client.maxSeq !== null) $('kv-seq').textContent = String(Math.max(client.maxSeq, ev.seq || 0));
  li.scrollIntoView({ block: 'nearest' });
}

function onAck(seq) {
  $('kv-acked').textContent = String(seq);
  for (const [s, mark] of critical) {
    if (s <= seq) {
      mark.textContent = '✓ acked';
      mark.parentElement.parentElement.dataset.acked = 'true';
      critical.delete(s);
    }
  }
}

function connect() {
  const token = $('token').value.trim();
  if (!token) {
    log('paste a token first', 'warn');
    return;
  }
  if (client) client.close();
  client = new AgentcastClient({
    url: wsUrl,
    sseUrl: '/sse',
    transport,
    token,
    onAny: show,
    onMessage: showMessage,
    onAck,
    onGap(g) {
      gaps += 1;
      $('kv-gaps').textContent = String(gaps);
      log(`gap: events ${g.from}–${g.to} are no longer held`, 'bad');
    },
    onError(e) {
      log(`error ${e.code}: ${e.message}`, 'bad');
    },
    onTransport(t, detail) {
      showTransport(t);
      log(`switched to ${TRANSPORT_NAMES[t]}: ${detail.reason}`, 'warn');
    },
    onStatus(status, detail) {
      if (status === 'open') {
        const w = detail.welcome;
        setStatus('open', 'connected');
        $('kv-user').textContent = w.user_id;
        $('kv-conn').textContent = String(w.conn_id);
        $('kv-reconnects').textContent = String(client.reconnects);
        const resumed = detail.resumedFrom !== null && detail.resumedFrom !== undefined;
        const over = TRANSPORT_NAMES[client.transport];
        log(resumed ? `connected over ${over} (conn ${w.conn_id}), resumed after seq ${detail.resumedFrom}` : `connected over ${over} as ${w.user_id} (conn ${w.conn_id})`, 'ok');
        setButtons(true);
      } else if (status === 'reconnecting') {
        setStatus('reconnecting', 'reconnecting…');
        if (detail.delayMs !== undefined) {
          const why = detail.code ? `closed ${detail.code}${detail.reason ? ` (${detail.reason})` : ''}` : 'connection lost';
          log(`${why}; retrying in ${detail.delayMs} ms`, 'warn');
        }
        setButtons(true);
      } else if (status === 'connecting') {
        setStatus('connecting', 'connecting…');
      } else if (status === 'closed') {
        setStatus('closed', 'disconnected');
        log('disconnected');
        setButtons(false);
      }
    },
  });
  showTransport(client.transport);
  client.connect();
  if ($('agui-toggle').checked) {
    aguiStop();
    aguiStart();
  }
}

// ---- the AG-UI view ---------------------------------------------------------------------
//
// With the "AG-UI" toggle on (or `?ag_ui=1`), the page opens a second WebSocket of the same
// user with `?protocol=ag-ui` and lists every AG-UI event it receives, next to the native
// view of the same run. That connection does not ack (the native client acks for the user).
// It reconnects after 1 s with `last_seq` = the highest seq it received: an AG-UI replay is
// in seq order, and seqs already listed are dropped. Opened mid-run without a seq, it gets
// the run's join prelude (RUN_STARTED, the text so far merged, open tool calls).

const AGUI_MAX_ROWS = 300;
let agui = null; // {ws, seen: Set<seq>, lastSeq, timer}

function aguiStatus(status, label) {
  const s = $('agui-status');
  s.className = `pill ${status}`;
  s.dataset.status = status;
  s.textContent = label;
}

/** One row per AG-UI event: its type, then its other members (untrusted: textContent). */
function aguiRow(ev) {
  const li = el('li');
  li.dataset.type = String(ev.type);
  if (typeof ev.seq === 'number') li.dataset.seq = String(ev.seq);
  if (typeof ev.delta === 'string') li.dataset.delta = ev.delta;
  if (typeof ev.messageId === 'string') li.dataset.message = ev.messageId;
  const rest = { ...ev };
  delete rest.type;
  delete rest.seq;
  li.append(el('code', null, String(ev.type)), el('span', 'detail', compact(rest)));
  if (typeof ev.seq === 'number') li.append(el('time', null, `#${ev.seq}`));
  const list = $('agui-log');
  list.append(li);
  while (list.children.length > AGUI_MAX_ROWS) list.firstChild.remove();
  li.scrollIntoView({ block: 'nearest' });
}

function aguiOpen() {
  const token = $('token').value.trim();
  if (!token || !agui) return;
  const url = new URL(wsUrl, location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('protocol', 'ag-ui');
  url.searchParams.set('token', token);
  if (agui.lastSeq !== null) url.searchParams.set('last_seq', String(agui.lastSeq));
  aguiStatus('connecting', 'connecting…');
  const ws = new WebSocket(url);
  agui.ws = ws;
  ws.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch { return; }
    if (!ev || typeof ev !== 'object') return;
    if (ev.type === 'CUSTOM' && ev.name === 'agentcast.welcome') {
      aguiStatus('open', 'live');
      return;
    }
    if (typeof ev.seq === 'number') {
      if (agui.seen.has(ev.seq)) return;
      agui.seen.add(ev.seq);
      agui.lastSeq = Math.max(agui.lastSeq ?? 0, ev.seq);
    }
    aguiRow(ev);
  };
  ws.onclose = () => {
    if (!agui || agui.ws !== ws) return;
    aguiStatus('reconnecting', 'reconnecting…');
    agui.timer = setTimeout(aguiOpen, 1000);
  };
}

function aguiStart() {
  if (agui) return;
  agui = { ws: null, seen: new Set(), lastSeq: null, timer: null };
  $('agui-panel').hidden = false;
  aguiOpen();
}

function aguiStop() {
  if (!agui) return;
  const { ws, timer } = agui;
  agui = null;
  clearTimeout(timer);
  if (ws) ws.close(1000);
  $('agui-panel').hidden = true;
  $('agui-log').replaceChildren();
}

function showTransport(t) {
  const name = TRANSPORT_NAMES[t] || t;
  $('kv-transport').textContent = transport === 'auto' ? `${name} (auto)` : name;
  $('kv-transport').dataset.transport = t;
}

function setButtons(connected) {
  $('connect').disabled = connected;
  $('disconnect').disabled = !connected;
  $('simulate').disabled = !connected || !devMode;
  $('kick').disabled = !connected || !devMode;
}

async function devPost(path) {
  const token = $('token').value.trim();
  const r = await fetch(path, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

async function simulate() {
  const bubble = el('div', 'bubble', 'Summarize this week\u2019s open support tickets');
  $('empty')?.remove();
  $('conversation').append(bubble);
  try {
    const r = await devPost('/api/v1/dev/simulate');
    log(`simulated run ${r.run_id} started (${r.events} events)`);
  } catch (e) {
    log(`simulate failed: ${e.message}`, 'bad');
  }
}

async function kick() {
  try {
    const r = await devPost('/api/v1/dev/disconnect');
    log(`server asked to drop ${r.connections} connection(s) of ${r.user_id}`, 'warn');
  } catch (e) {
    log(`disconnect failed: ${e.message}`, 'bad');
  }
}

async function init() {
  $('connect').addEventListener('click', connect);
  $('disconnect').addEventListener('click', () => {
    if (client) client.close();
    aguiStop();
    $('agui-toggle').checked = false;
  });
  $('simulate').addEventListener('click', simulate);
  $('kick').addEventListener('click', kick);
  $('agui-toggle').checked = params.get('ag_ui') === '1';
  $('agui-toggle').addEventListener('change', (e) => (e.target.checked ? aguiStart() : aguiStop()));
  try {
    const r = await fetch(`/api/v1/dev/token?user=${encodeURIComponent(devUser)}`);
    if (r.ok) {
      const t = await r.json();
      devMode = true;
      $('dev-panel').hidden = false;
      $('token').value = t.token;
      $('token-hint').textContent = `Dev mode: a demo token for “${t.user_id}” was filled in.`;
      log(`dev mode: token for ${t.user_id}`);
      connect();
      return;
    }
  } catch {
    /* not in dev mode */
  }
  $('token-hint').textContent = 'Paste a token minted with `agentcast token --user U`.';
}

init();
