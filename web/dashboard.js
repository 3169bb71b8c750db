// The operator dashboard (/dashboard): live statistics from the server-sent events of
// /api/v1/stats/stream (one snapshot per second) and component health polled from /readyz.
// Charts are drawn on <canvas> here; nothing is loaded from elsewhere. Every field is
// optional: a server that does not report something shows "–" or "no data", never breaks.

const $ = (id) => document.getElementById(id);
const WINDOW = 120; // points kept per chart (one per second)
const READYZ_EVERY_MS = 2000;

const samples = []; // {t, published, delivered, latency: {p50: ms, ...} | null}
let prev = null;

// ---- helpers ----------------------------------------------------------------------------

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const get = (obj, path) => path.split('.').reduce((o, k) => (o && typeof o === 'object' ? o[k] : undefined), obj);
const sum = (v) => {
  if (num(v) !== null) return v;
  if (v && typeof v === 'object') return Object.values(v).reduce((a, x) => a + (num(x) ?? 0), 0);
  return null;
};

function fmt(v, digits = 0) {
  if (v === null || v === undefined) return '–';
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (Math.abs(v) >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function setText(id, text) {
  $(id).textContent = text;
}

/** Published events in a snapshot (user + channel + broadcast). */
function published(s) {
  const e = s.engine || {};
  const parts = ['published_user', 'published_channel', 'published_broadcast'].map((k) => num(e[k]));
  if (parts.every((p) => p === null)) return num(get(s, 'server.publish_accepted'));
  return parts.reduce((a, p) => a + (p ?? 0), 0);
}

/**
 * Latency percentiles in milliseconds, wherever the server puts them: the first object under
 * a key containing "latency" whose keys look like p50 / p99 / p999 (with an optional unit
 * suffix: _ns, _us, _ms, _s or _seconds). Null when absent.
 */
function findLatency(obj, depth = 0, underLatency = false) {
  if (!obj || typeof obj !== 'object' || depth > 5) return null;
  if (underLatency) {
    const out = {};
    let unit = typeof obj.unit === 'string' ? obj.unit : 'ms';
    for (const [k, v] of Object.entries(obj)) {
      const m = /^p(\d+)(?:_(ns|us|ms|s|seconds))?$/.exec(k);
      if (!m || num(v) === null) continue;
      const u = m[2] || unit;
      const scale = { ns: 1e-6, us: 1e-3, ms: 1, s: 1e3, seconds: 1e3 }[u] ?? 1;
      out[`p${m[1]}`] = v * scale;
    }
    if (Object.keys(out).length) return out;
  }
  for (const [k, v] of Object.entries(obj)) {
    if (v && typeof v === 'object') {
      const found = findLatency(v, depth + 1, underLatency || /latency/i.test(k));
      if (found) return found;
    }
  }
  return null;
}

// ---- charts -----------------------------------------------------------------------------

const COLORS = ['#4f46e5', '#0ea5e9', '#f59e0b', '#ef4444', '#10b981', '#a855f7'];

/** The top of the y axis: 4 gridline steps, each a round number, covering `v`. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const raw = v / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (raw <= m * p) return 4 * m * p;
  return 40 * p;
}

/** Draws `series` ([{name, color, values: [number|null]}]) over `times` on a canvas. */
function drawChart(canvas, times, series, emptyText) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const left = 46, right = 10, top = 10, bottom = 24;
  const pw = w - left - right, ph = h - top - bottom;
  let max = 0;
  for (const s of series) for (const v of s.values) if (num(v) !== null) max = Math.max(max, v);
  const hasData = series.some((s) => s.values.some((v) => num(v) !== null));
  max = niceMax(max * 1.1);
  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  // grid and y labels
  for (let i = 0; i <= 4; i++) {
    const y = top + ph - (ph * i) / 4;
    ctx.strokeStyle = i === 0 ? '#cbd5e1' : '#eef1f6';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(left, Math.round(y) + 0.5);
    ctx.lineTo(left + pw, Math.round(y) + 0.5);
    ctx.stroke();
    ctx.fillStyle = '#65708a';
    ctx.textAlign = 'right';
    ctx.fillText(fmt((max * i) / 4, 2), left - 8, y);
  }
  // x axis: seconds ago, over the data's span (at least 30 s, at most WINDOW)
  const span = times.length > 1 ? (times[times.length - 1] - times[0]) / 1000 : 0;
  const win = Math.min(WINDOW, Math.max(30, Math.ceil(span / 10) * 10));
  const stepS = win <= 30 ? 5 : win <= 60 ? 10 : 30;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (let s = 0; s <= win; s += stepS) {
    const x = left + pw - (pw * s) / win;
    ctx.fillStyle = '#65708a';
    ctx.fillText(s === 0 ? 'now' : `-${s}s`, x, top + ph + 6);
  }
  if (!hasData) {
    ctx.fillStyle = '#94a3b8';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.font = '13px system-ui, sans-serif';
    ctx.fillText(emptyText, left + pw / 2, top + ph / 2);
    return;
  }
  const now = times[times.length - 1];
  const xy = (v, i) => [left + pw - (pw * (now - times[i])) / 1000 / win, top + ph - (ph * v) / max];
  // Later series are drawn first so the first one stays on top; each with a light area.
  for (const s of [...series].reverse()) {
    const pts = [];
    s.values.forEach((v, i) => { if (num(v) !== null) pts.push(xy(v, i)); });
    if (!pts.length) continue;
    ctx.beginPath();
    ctx.moveTo(pts[0][0], top + ph);
    for (const [x, y] of pts) ctx.lineTo(x, y);
    ctx.lineTo(pts[pts.length - 1][0], top + ph);
    ctx.closePath();
    ctx.globalAlpha = 0.08;
    ctx.fillStyle = s.color;
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.lineJoin = 'round';
    ctx.beginPath();
    let pen = false;
    s.values.forEach((v, i) => {
      if (num(v) === null) { pen = false; return; }
      const [x, y] = xy(v, i);
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true;
    });
    ctx.stroke();
  }
}

function legend(id, series) {
  const box = $(id);
  box.replaceChildren(...series.map((s) => {
    const span = document.createElement('span');
    span.style.setProperty('--c', s.color);
    const last = [...s.values].reverse().find((v) => num(v) !== null);
    span.textContent = `${s.name}${last !== undefined ? `  ${fmt(last, last < 10 ? 2 : 0)}` : ''}`;
    return span;
  }));
}

function redraw() {
  const times = samples.map((s) => s.t);
  const throughput = [
    { name: 'published / s', color: COLORS[0], values: samples.map((s) => s.eps) },
    { name: 'delivered / s', color: COLORS[1], values: samples.map((s) => s.dps) },
  ];
  drawChart($('chart-throughput'), times, throughput, 'waiting for data…');
  legend('legend-throughput', throughput);
  const keys = [...new Set(samples.flatMap((s) => (s.latency ? Object.keys(s.latency) : [])))]
    .sort((a, b) => Number(a.slice(1).padEnd(4, '0')) - Number(b.slice(1).padEnd(4, '0')));
  const latency = keys.map((k, i) => ({
    name: k, color: COLORS[(i + 2) % COLORS.length], values: samples.map((s) => (s.latency ? num(s.latency[k]) : null)),
  }));
  drawChart($('chart-latency'), times, latency, 'no latency data reported by this server');
  legend('legend-latency', latency);
}

// ---- stats ------------------------------------------------------------------------------

function onStats(s) {
  const t = num(s.ts_ms) ?? Date.now();
  const e = s.engine || {};
  const srv = s.server || {};
  const pub = published(s);
  const del = num(e.delivered);
  let eps = null;
  let dps = null;
  if (prev) {
    const dt = (t - prev.t) / 1000;
    if (dt > 0) {
      if (pub !== null && prev.pub !== null) eps = Math.max(0, (pub - prev.pub) / dt);
      if (del !== null && prev.del !== null) dps = Math.max(0, (del - prev.del) / dt);
    }
  }
  prev = { t, pub, del };
  samples.push({ t, eps, dps, latency: findLatency(s) });
  while (samples.length > WINDOW) samples.shift();

  const conns = num(srv.ws_open) ?? num(e.connections);
  setText('m-connections', fmt(conns));
  const plural = (n, w) => `${fmt(n)} ${w}${n === 1 ? '' : 's'}`;
  setText('m-users', num(e.users) !== null ? `${plural(e.users, 'user')} · ${plural(num(e.channels) ?? 0, 'channel')}` : '–');
  setText('m-eps', eps === null ? '–' : fmt(eps, eps < 10 ? 1 : 0));
  setText('m-dps', dps === null ? '–' : `${fmt(dps, dps < 10 ? 1 : 0)} delivered / s`);
  setText('m-published', fmt(pub));
  setText('m-delivered', `${fmt(del)} delivered · ${fmt(num(e.replayed))} replayed`);
  setText('m-unacked', fmt(num(e.unacked_critical)));
  setText('m-acks', `${fmt(num(e.acks))} acks · ${fmt(num(e.escalated))} escalated`);
  setText('m-dropped', fmt(sum(e.dropped)));
  setText('m-coalesced', `${fmt(sum(e.coalesced))} coalesced`);
  setText('m-forced', fmt(sum(e.forced_closes)));
  const other = ['abuse_closes', 'idle_timeouts', 'write_timeouts'].map((k) => num(srv[k]) ?? 0).reduce((a, b) => a + b, 0);
  setText('m-other-closes', `${fmt(other)} abuse, idle or timeout`);

  const rows = [
    ['Connections opened', srv.ws_accepted],
    ['Upgrades refused', ['ws_rejected_auth', 'ws_rejected_handshake', 'ws_rejected_capacity', 'ws_rejected_user_limit'].reduce((a, k) => a + (num(srv[k]) ?? 0), 0)],
    ['Published (user / channel / broadcast)', [e.published_user, e.published_channel, e.published_broadcast].map((v) => fmt(num(v))).join(' / ')],
    ['Delivered to connections', e.delivered],
    ['Replayed on resume', e.replayed],
    ['Gaps reported', e.gaps],
    ['Acks received', e.acks],
    ['Dropped (low / normal / critical)', ['low', 'normal', 'critical'].map((p) => fmt(num(get(e, `dropped.${p}`)))).join(' / ')],
    ['Coalesced (low / normal / critical)', ['low', 'normal', 'critical'].map((p) => fmt(num(get(e, `coalesced.${p}`)))).join(' / ')],
    ['Queue depth', e.queue_depth],
    ['Frames written', srv.frames_written],
    ['Publish refused', srv.publish_rejected],
    ['Shards', s.shards],
  ];
  fillTable('delivery', rows);
  fillTable('runs', runRows(e));

  $('updated').textContent = `updated ${new Date(t).toLocaleTimeString()}`;
  document.body.dataset.snapshots = String((Number(document.body.dataset.snapshots) || 0) + 1);
  redraw();
}

/** Fills a two-column table's body from [label, value, key] rows: a string value is shown
 * as it is, a number formatted; `key` (the stats field) goes to the row's `data-key`. */
function fillTable(id, rows) {
  $(id).tBodies[0].replaceChildren(...rows.map(([name, v, key]) => {
    const tr = document.createElement('tr');
    if (key) tr.dataset.key = key;
    const a = document.createElement('td');
    a.textContent = name;
    const b = document.createElement('td');
    b.className = 'num';
    b.textContent = typeof v === 'string' ? v : fmt(num(v));
    tr.append(a, b);
    return tr;
  }));
}

/** Duration in ms, readable: "850 ms", "12.4 s", "3.2 min". */
function duration(ms) {
  if (ms === null) return '–';
  if (ms < 1000) return `${fmt(ms)} ms`;
  if (ms < 60_000) return `${fmt(ms / 1000, 1)} s`;
  return `${fmt(ms / 60_000, 1)} min`;
}

/** The run-tracking rows (engine stats: `runs*`, `tool_calls*`, `lifecycle_violations`). An
 * AG-UI run is a native run (RUN_STARTED opens one), so both kinds are counted here. */
function runRows(e) {
  const finished = num(e.runs_finished);
  const total = num(e.run_duration_ms_total);
  const mean = finished && total !== null ? total / finished : null;
  return [
    ['Tracked now (live and recently finished)', e.runs, 'runs'],
    ['Started', e.runs_started, 'runs_started'],
    ['Finished', e.runs_finished, 'runs_finished'],
    ['Of which errored', e.runs_errored, 'runs_errored'],
    ['Mean duration of finished runs', duration(mean), 'run_duration_mean'],
    ['Tool calls started / completed', [e.tool_calls, e.tool_calls_completed].map((v) => fmt(num(v))).join(' / '), 'tool_calls'],
    ['Lifecycle violations', e.lifecycle_violations, 'lifecycle_violations'],
    ['Evicted from tracking', e.runs_evicted, 'runs_evicted'],
  ];
}

function connectStream() {
  const es = new EventSource('/api/v1/stats/stream');
  const pill = $('stream');
  es.onopen = () => {
    pill.className = 'pill open';
    pill.dataset.status = 'open';
    pill.textContent = 'live';
  };
  es.onmessage = (m) => {
    try {
      onStats(JSON.parse(m.data));
    } catch (err) {
      console.error('bad stats snapshot', err);
    }
  };
  es.onerror = () => {
    pill.className = 'pill reconnecting';
    pill.dataset.status = 'reconnecting';
    pill.textContent = 'reconnecting';
  };
}

// ---- health -----------------------------------------------------------------------------

function stateOf(v) {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object') return String(v.state ?? v.status ?? v.health ?? 'unknown');
  return 'unknown';
}

function detailOf(v) {
  if (!v || typeof v !== 'object') return '';
  const rest = Object.entries(v).filter(([k]) => !['state', 'status', 'health'].includes(k));
  return rest.map(([k, x]) => `${k}: ${typeof x === 'object' ? JSON.stringify(x) : x}`).join(' · ');
}

async function pollReadyz() {
  let body = null;
  let code = 0;
  try {
    const r = await fetch('/readyz', { cache: 'no-store' });
    code = r.status;
    body = await r.json().catch(() => null);
  } catch {
    code = 0;
  }
  const overall = body ? stateOf(body) : code ? `HTTP ${code}` : 'unreachable';
  const pill = $('health');
  const cls = /healthy|ready|ok/.test(overall) ? 'healthy' : /degraded/.test(overall) ? 'degraded' : 'failed';
  pill.className = `pill ${cls}`;
  pill.dataset.status = overall;
  pill.textContent = `health: ${overall}`;
  const comps = body && body.components && typeof body.components === 'object' ? Object.entries(body.components) : [['node', body || { status: overall }]];
  const tbody = $('components').tBodies[0];
  tbody.replaceChildren(...comps.map(([name, v]) => {
    const tr = document.createElement('tr');
    tr.dataset.component = name;
    const a = document.createElement('td');
    a.textContent = name;
    const b = document.createElement('td');
    const st = stateOf(v);
    const p = document.createElement('span');
    p.className = `pill ${/healthy|ready|ok/.test(st) ? 'healthy' : /degraded/.test(st) ? 'degraded' : 'failed'}`;
    p.textContent = st;
    b.append(p);
    const c = document.createElement('td');
    c.className = 'detail';
    c.textContent = detailOf(v);
    tr.append(a, b, c);
    return tr;
  }));
}

connectStream();
pollReadyz();
setInterval(pollReadyz, READYZ_EVERY_MS);
window.addEventListener('resize', redraw);
redraw();
