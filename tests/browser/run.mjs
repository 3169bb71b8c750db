// Browser tests of agentcast's web pages in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core). Run by tests/tests/browser.rs against a real server in dev
// mode; can also be run by hand against `agentcast` started without secrets:
//
//   node tests/browser/run.mjs <case> --base http://127.0.0.1:8080 --api-key KEY [--artifacts DIR]
//       [--docs-img DIR]
//
// With --docs-img, the demo-run and dashboard cases also write the README's pictures there
// (demo.png, dashboard.png), taken from the live pages once their data has arrived, so the
// pictures in docs/img/ are rewritten by every run of the browser tests and cannot go stale.
//
// Cases: demo-run, demo-resume, demo-ag-ui, dashboard, sse-eventsource, sse-fallback, example. Exit status 0 = pass; anything else = fail, with
// the reason on stderr. Every wait is bounded. Any console error or uncaught exception in a
// page (a CSP violation included) fails the case.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const caseName = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const BASE = opt('base', process.env.AGENTCAST_BASE);
const API_KEY = opt('api-key', process.env.AGENTCAST_API_KEY);
const ARTIFACTS = opt('artifacts', 'tests/artifacts');
const DOCS_IMG = opt('docs-img', null);
const CHROMIUM = process.env.AGENTCAST_CHROMIUM || '/usr/bin/chromium';
const WAIT = 10_000;

function fail(msg) {
  throw new Error(msg);
}

function check(cond, msg) {
  if (!cond) fail(msg);
}

function step(msg) {
  console.log(`[${caseName}] ${msg}`);
}

async function publish(body) {
  const r = await fetch(`${BASE}/api/v1/publish`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await r.json();
  check(r.status === 200, `publish answered ${r.status}: ${JSON.stringify(json)}`);
  return json;
}

async function post(path, body) {
  const r = await fetch(`${BASE}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await r.json();
  check(r.ok, `${path} answered ${r.status}: ${JSON.stringify(json)}`);
  return json;
}

async function stats() {
  const r = await fetch(`${BASE}/api/v1/stats`);
  return r.json();
}

/** Polls `fn` until it returns a truthy value; fails with `what` after WAIT. */
async function until(what, fn, timeout = WAIT) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  fail(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/** Critical events (started, completed) are marked acknowledged on the page, and the
 * server's unacked-critical gauge returns to 0. */
async function criticalAcked(page) {
  await until('critical events marked acknowledged', async () => {
    const ev = await shownEvents(page);
    return ev.filter((e) => e.type === 'agent_started' || e.type === 'agent_completed').every((e) => e.acked);
  });
  await until('the server to count no unacked critical event', async () => {
    const s = await stats();
    return s.engine.unacked_critical === 0 && s.engine.acks >= 2;
  });
}

/** The events the demo page shows, in DOM order. */
function shownEvents(page) {
  return page.$$eval('li.event', (lis) => lis.map((li) => ({
    seq: li.dataset.seq === undefined ? null : Number(li.dataset.seq),
    type: li.dataset.type,
    time: li.querySelector('.meta time')?.textContent || '',
    acked: li.dataset.acked === 'true',
    run: li.closest('.run')?.dataset.run,
  })));
}

const statusOf = (page) => page.$eval('#status', (e) => e.dataset.status);

const pages = [];

/** Opens `path`. A console error matching `expected` (a RegExp) is collected into
 * `expected.seen` instead of failing the case. */
async function openPage(browser, path, errors, expected = null, base = BASE) {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 }, deviceScaleFactor: 1 });
  pages.push(page);
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (expected && expected.test(m.text())) (expected.seen ||= []).push(m.text());
    else errors.push(`console error on ${path}: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`uncaught exception on ${path}: ${e.message}`));
  const resp = await page.goto(`${base}${path}`, { waitUntil: 'load', timeout: WAIT });
  check(resp && resp.status() === 200, `GET ${path} answered ${resp && resp.status()}`);
  return page;
}

async function waitOpen(page) {
  await until('the demo page to connect', async () => (await statusOf(page)) === 'open');
}

async function screenshot(page, name, dir = ARTIFACTS) {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  await page.screenshot({ path: file, fullPage: true });
  step(`screenshot ${file}`);
}

/** Writes the README's picture `name` into --docs-img, when given. */
async function docsPicture(page, name) {
  if (DOCS_IMG) await screenshot(page, name, DOCS_IMG);
}

/** Opaque pixels on `canvas` within 30 of one of the `colors` (#rrggbb). */
function colouredPixels(page, canvas, colors) {
  return page.$eval(canvas, (c, colors) => {
    const rgb = colors.map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] > 200 && rgb.some(([r, g, b]) => Math.abs(d[i] - r) < 30 && Math.abs(d[i + 1] - g) < 30 && Math.abs(d[i + 2] - b) < 30)) n++;
    }
    return n;
  }, colors);
}

const RUN = [
  ['agent_started', { agent: 'planner', goal: 'Plan a three-day trip to Lisbon' }],
  ['agent_thinking', { step: 1, of: 2, progress: 0.3, text: 'Comparing neighbourhoods' }],
  ['tool_executing', { tool: 'search_flights', args: { from: 'BER', to: 'LIS' } }],
  ['tool_completed', { tool: 'search_flights', result: { options: 4 }, duration_ms: 412 }],
  ['agent_completed', { summary: 'Three-day plan ready: Alfama, Belém, Sintra.' }],
];

// ---- cases --------------------------------------------------------------------------------

/** A run published through the HTTP API while the page is open shows in order, with seqs
 * and times; critical events are acknowledged; a simulated run (dev button) follows. */
async function demoRun(browser, errors) {
  const user = 'browser-run';
  const page = await openPage(browser, `/?user=${user}`, errors);
  await waitOpen(page);
  step('connected');
  const seqs = [];
  for (const [type, data] of RUN) {
    const r = await publish({ user_id: user, type, run_id: 'trip-42', data });
    check(typeof r.seq === 'number', `publish gave no seq: ${JSON.stringify(r)}`);
    check(r.connections === 1, `expected the page's 1 connection, publish reached ${r.connections}`);
    seqs.push(r.seq);
  }
  step(`published seqs ${seqs.join(',')}`);
  await until('5 events on the page', async () => (await shownEvents(page)).length === 5);
  const shown = await shownEvents(page);
  check(JSON.stringify(shown.map((e) => e.seq)) === JSON.stringify(seqs),
    `page shows seqs ${shown.map((e) => e.seq)} but ${seqs} were published`);
  check(JSON.stringify(shown.map((e) => e.type)) === JSON.stringify(RUN.map((r) => r[0])),
    `page shows types ${shown.map((e) => e.type)} out of order`);
  for (const e of shown) {
    check(/^\d\d:\d\d:\d\d\.\d{3}$/.test(e.time), `event ${e.seq} shows no timestamp: "${e.time}"`);
    check(e.run === 'trip-42', `event ${e.seq} is not in the run's card`);
  }
  const texts = await page.$$eval('li.event', (lis) => lis.map((li) => li.textContent));
  check(texts.some((t) => t.includes('#' + seqs[0])), 'the seq is not visible on the page');
  check(await page.$eval('.run[data-run="trip-42"] .badge', (b) => b.textContent) === 'completed',
    'the run card does not say completed');
  // Critical events (started, completed) are acknowledged: marked on the page and the
  // server's unacked-critical gauge returns to 0.
  await criticalAcked(page);
  step('in order, timestamped, critical events acked');

  // The dev-mode button starts a simulated run through the engine.
  await page.click('#simulate');
  // Six events, the answer streamed token by token into one row, then agent_completed.
  await until('the simulated run (8 more rows)', async () => (await shownEvents(page)).length === 13, 15_000);
  const sim = (await shownEvents(page)).slice(5);
  const expected = ['agent_started', 'agent_thinking', 'agent_thinking', 'tool_executing',
    'tool_completed', 'agent_thinking', 'message', 'agent_completed'];
  check(JSON.stringify(sim.map((e) => e.type)) === JSON.stringify(expected),
    `simulated run shows ${sim.map((e) => e.type)}`);
  sim.slice(0, 6).forEach((e, i) => check(e.seq === seqs[4] + 1 + i, `simulated event ${i} has seq ${e.seq}`));
  check(sim.every((e) => e.run && e.run.startsWith('sim-')), 'simulated events are not in a sim- run');
  const answer = await page.$eval('li.event.message', (li) => ({ text: li.querySelector('.text').textContent, done: li.dataset.done }));
  check(answer.text === '12 open tickets: 7 billing, 3 login, 2 export. Billing spike since Tuesday.' && answer.done === 'true',
    `the streamed answer reads ${JSON.stringify(answer)}`);
  // message_started, one delta per word and message_completed come between the last thought
  // and the end.
  const words = answer.text.split(' ').length;
  check(sim[7].seq === seqs[4] + 1 + 6 + words + 2, `agent_completed has seq ${sim[7].seq}`);
  await page.waitForTimeout(1400); // let the highlight fade for the screenshot
  await screenshot(page, 'demo-run.png');
  await docsPicture(page, 'demo.png');
}

/** The server closes the page's connection (1012); events published while it is down are
 * shown after it reconnects and resumes, with no seq missing or repeated. */
async function demoResume(browser, errors) {
  const user = 'browser-resume';
  const page = await openPage(browser, `/?user=${user}`, errors);
  await waitOpen(page);
  const seqs = [];
  for (const [type, data] of RUN.slice(0, 2)) {
    seqs.push((await publish({ user_id: user, type, run_id: 'trip-7', data })).seq);
  }
  await until('2 events before the drop', async () => (await shownEvents(page)).length === 2);
  step('2 events shown; asking the server to drop the connection');
  const kick = await post('/api/v1/dev/disconnect', { user_id: user });
  check(kick.connections === 1, `disconnect saw ${kick.connections} connections`);
  await until('the page to notice the drop', async () => (await statusOf(page)) === 'reconnecting');
  for (const [type, data] of RUN.slice(2)) {
    seqs.push((await publish({ user_id: user, type, run_id: 'trip-7', data })).seq);
  }
  // Still down after the publishes: they happened while the page had no connection.
  check((await statusOf(page)) === 'reconnecting', 'the page reconnected before the events were published; the case proves nothing');
  check((await shownEvents(page)).length === 2, 'events arrived while the page was disconnected');
  step(`published ${seqs.slice(2).join(',')} while disconnected`);
  await waitOpen(page);
  await until('all 5 events after the resume', async () => (await shownEvents(page)).length >= 5);
  await page.waitForTimeout(300); // a duplicate would arrive now
  const shown = await shownEvents(page);
  check(JSON.stringify(shown.map((e) => e.seq)) === JSON.stringify(seqs),
    `after resume the page shows seqs ${shown.map((e) => e.seq)}; expected ${seqs}`);
  for (let i = 1; i < shown.length; i++) {
    check(shown[i].seq === shown[i - 1].seq + 1, `seq gap between ${shown[i - 1].seq} and ${shown[i].seq}`);
  }
  check(await page.$eval('#kv-reconnects', (e) => e.textContent) === '1', 'reconnect count is not 1');
  const log = await page.$eval('#log', (e) => e.textContent);
  check(log.includes('closed 1012'), `log does not show the 1012 close: ${log}`);
  check(log.includes(`resumed after seq ${seqs[1]}`), `log does not show the resume after seq ${seqs[1]}: ${log}`);
  step('resumed with every event, none missing or repeated');
  await page.waitForTimeout(1400);
  await screenshot(page, 'demo-resume.png');
}

/** The dashboard shows live numbers: a connection while a client is connected, counters and
 * charts that move as events are published, and component health. */
async function dashboard(browser, errors) {
  const user = 'browser-dash';
  const demo = await openPage(browser, `/?user=${user}`, errors);
  await waitOpen(demo);
  const page = await openPage(browser, '/dashboard', errors);
  await until('the stats stream to be live', async () => (await page.$eval('#stream', (e) => e.dataset.status)) === 'open');
  const connections = await until('connections > 0', async () => {
    const n = Number((await page.$eval('#m-connections', (e) => e.textContent)).replace(/,/g, ''));
    return n > 0 ? n : 0;
  });
  step(`dashboard shows ${connections} connection(s)`);
  const snapshots = async () => Number(await page.$eval('body', (b) => b.dataset.snapshots || 0));
  const publishedShown = async () => Number((await page.$eval('#m-published', (e) => e.textContent)).replace(/,/g, '')) || 0;
  const before = { snaps: await snapshots(), published: await publishedShown() };
  // Publish for a few seconds, at a rising rate, so the throughput chart has a line.
  let sent = 0;
  for (let second = 1; second <= 4; second++) {
    const started = Date.now();
    for (let i = 0; i < second * 5; i++) {
      const [type, data] = RUN[sent % RUN.length];
      await publish({ user_id: user, type, run_id: `load-${Math.floor(sent / 5)}`, data });
      sent += 1;
    }
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - started))));
  }
  await until('the published counter to move', async () => (await publishedShown()) >= before.published + sent);
  await until('two more snapshots', async () => (await snapshots()) >= before.snaps + 2);
  const eps = await until('events/s > 0 at some point', async () => {
    const t = await page.$eval('#legend-throughput', (e) => e.textContent);
    return /published \/ s/.test(t) ? t : null;
  });
  step(`legend: ${eps}`);
  // The throughput lines are drawn: count opaque pixels of the two series colours
  // (#4f46e5 published, #0ea5e9 delivered).
  const linePixels = await colouredPixels(page, '#chart-throughput', ['#4f46e5', '#0ea5e9']);
  check(linePixels > 50, `the throughput chart shows no line (${linePixels} pixels)`);
  // Latency percentiles are charted (series colours #f59e0b, #ef4444, #10b981, #a855f7).
  const latencyPixels = await until('a latency line', async () => {
    const n = await colouredPixels(page, '#chart-latency', ['#f59e0b', '#ef4444', '#10b981', '#a855f7']);
    return n > 50 ? n : 0;
  });
  step(`latency chart: ${latencyPixels} line pixels`);
  // One health row per component the server reports on /readyz.
  const ready = await (await fetch(`${BASE}/readyz`)).json();
  const components = Object.keys(ready.components || {}).length;
  check(components >= 1, `/readyz reports no components: ${JSON.stringify(ready)}`);
  const health = await until(`${components} component health rows`, async () => {
    const rows = await page.$$eval('#components tbody tr', (trs) => trs.map((tr) => tr.textContent));
    return rows.length === components ? rows : null;
  });
  step(`health rows: ${health.join(' | ')}`);
  const pill = await page.$eval('#health', (e) => e.textContent);
  check(/health: /.test(pill) && !/unreachable/.test(pill), `health pill says ${pill}`);
  const delivered = await page.$eval('#m-delivered', (e) => e.textContent);
  check(/^[\d,.k]+ delivered/.test(delivered) && !delivered.startsWith('0 '), `delivered shows ${delivered}`);
  // The load was `sent / 5` whole runs (started, thinking, tool executing and completed,
  // completed): the runs panel counts them as /api/v1/stats does.
  const runs = sent / 5;
  const cell = (key) => page.$eval(`#runs tr[data-key="${key}"] td.num`, (e) => e.textContent).catch(() => null);
  const stats = async () => (await (await fetch(`${BASE}/api/v1/stats`)).json()).engine;
  const shown = await until(`the runs panel to show ${runs} finished runs`, async () => {
    const [started, finished, tools] = [await cell('runs_started'), await cell('runs_finished'), await cell('tool_calls')];
    return Number(finished) >= runs ? { started, finished, tools, mean: await cell('run_duration_mean') } : null;
  });
  const e = await stats();
  check(Number(shown.started) === e.runs_started && Number(shown.finished) === e.runs_finished,
    `runs panel ${JSON.stringify(shown)} differs from /api/v1/stats ${e.runs_started} started, ${e.runs_finished} finished`);
  check(shown.tools === `${e.tool_calls} / ${e.tool_calls_completed}` && e.tool_calls_completed >= runs,
    `tool calls shown ${shown.tools}, stats ${e.tool_calls} / ${e.tool_calls_completed}`);
  check(/^[\d,.]+ (ms|s|min)$/.test(shown.mean), `mean run duration shows ${shown.mean}`);
  check(await cell('lifecycle_violations') === '0', 'lifecycle violations are not 0');
  step(`runs panel: ${shown.started} started, ${shown.finished} finished, tools ${shown.tools}, mean ${shown.mean}`);
  await screenshot(page, 'dashboard.png');
  await docsPicture(page, 'dashboard.png');
}

/** The browser's own EventSource on GET /sse: a streamed message arrives as `message_*`
 * events with `id:` = seq; the server drops the stream mid-message (dev disconnect, 1012);
 * EventSource reconnects by itself with Last-Event-ID, and what was published meanwhile
 * follows exactly (one merged delta, or live deltas): the reassembled text equals the text
 * published, nothing duplicated or missing. */
async function sseEventSource(browser, errors) {
  const user = 'browser-sse';
  const page = await openPage(browser, '/dashboard', errors);
  const r = await fetch(`${BASE}/api/v1/dev/token?user=${user}`);
  const { token } = await r.json();
  await page.evaluate((token) => {
    const sse = { events: [], opens: 0, welcomes: 0, closes: [] };
    window.sse = sse;
    const es = new EventSource(`/sse?token=${encodeURIComponent(token)}`);
    es.onopen = () => { sse.opens += 1; };
    es.addEventListener('welcome', () => { sse.welcomes += 1; });
    es.addEventListener('close', (e) => { sse.closes.push(JSON.parse(e.data)); });
    for (const t of ['message_started', 'message_delta', 'message_completed']) {
      es.addEventListener(t, (e) => sse.events.push({ id: e.lastEventId, type: t, data: JSON.parse(e.data) }));
    }
  }, token);
  await until('the EventSource welcome', () => page.evaluate(() => window.sse.welcomes === 1));
  const ev = (type, data) => ({ user_id: user, type, run_id: 'r1', data: { message_id: 'm1', ...data } });
  const tok = (i) => `w${i} "ü" `;
  await publish(ev('message_started', { role: 'assistant' }));
  for (let i = 0; i < 20; i++) await publish(ev('message_delta', { delta: tok(i) }));
  await until('20 deltas over SSE', () => page.evaluate(() => window.sse.events.length === 21));
  const before = await page.evaluate(() => window.sse.events.at(-1));
  check(before.id === String(before.data.seq), `id: is the seq (${before.id} vs ${before.data.seq})`);
  step('streamed over EventSource, id = seq');

  await post('/api/v1/dev/disconnect', { user_id: user });
  for (let i = 20; i < 60; i++) await publish(ev('message_delta', { delta: tok(i) }));
  await publish(ev('message_completed', {}));
  await until('the completion after the reconnect', () => page.evaluate(() => window.sse.events.some((e) => e.type === 'message_completed')), 15_000);
  const got = await page.evaluate(() => window.sse);
  check(got.welcomes === 2 && got.opens === 2, `one automatic reconnect (${got.opens} opens, ${got.welcomes} welcomes)`);
  check(got.closes.length === 1 && got.closes[0].code === 1012, `the stream was closed with 1012: ${JSON.stringify(got.closes)}`);
  const after = got.events[21];
  const from = after.data.seq_from ?? after.data.seq;
  check(from === before.data.seq + 1, `the resume continues after Last-Event-ID ${before.id}: ${JSON.stringify(after)}`);
  const text = got.events.filter((e) => e.type === 'message_delta').map((e) => e.data.data.delta).join('');
  const want = Array.from({ length: 60 }, (_, i) => tok(i)).join('');
  check(text === want, `reassembled text ${JSON.stringify(text)}`);
  const merged = got.events.filter((e) => e.data.seq_from !== undefined).length;
  step(`resumed with Last-Event-ID: exact text (${merged} merged deltas)`);
}

/** The WebSocket upgrade fails (the page's `?ws=` points the client at `/api/v1/stats`, a
 * plain JSON route that answers the upgrade request with 200, as a proxy that strips
 * `Upgrade` would): the client's default transport "auto" falls back to SSE, the page says
 * so, a published run shows in order with its critical events acknowledged over
 * `POST /api/v1/ack`, the simulated run's streamed answer renders exactly, and after the
 * server drops the stream the page resumes over SSE with the event published meanwhile. */
async function sseFallback(browser, errors) {
  const user = 'browser-fallback';
  const wsFailed = /WebSocket connection to 'ws:\/\/[^']*\/api\/v1\/stats[^']*' failed/;
  const page = await openPage(browser, `/?user=${user}&ws=/api/v1/stats`, errors, wsFailed);
  await waitOpen(page);
  const transport = await page.$eval('#kv-transport', (e) => ({ t: e.dataset.transport, text: e.textContent }));
  check(transport.t === 'sse' && transport.text === 'SSE (auto)', `the page shows transport ${JSON.stringify(transport)}`);
  check((wsFailed.seen || []).length >= 1, 'no failed WebSocket upgrade was seen: the case proves nothing');
  const log = await page.$eval('#log', (e) => e.textContent);
  check(log.includes('switched to SSE') && log.includes('connected over SSE'), `the log does not show the fallback: ${log}`);
  step(`WebSocket upgrade failed ${wsFailed.seen.length} time(s); connected over SSE`);

  const seqs = [];
  for (const [type, data] of RUN) {
    const r = await publish({ user_id: user, type, run_id: 'trip-9', data });
    check(r.connections === 1, `expected the page's 1 connection, publish reached ${r.connections}`);
    seqs.push(r.seq);
  }
  await until('5 events on the page', async () => (await shownEvents(page)).length === 5);
  const shown = await shownEvents(page);
  check(JSON.stringify(shown.map((e) => e.seq)) === JSON.stringify(seqs), `page shows seqs ${shown.map((e) => e.seq)}; published ${seqs}`);
  await criticalAcked(page);
  step('run shown in order over SSE; critical events acked through POST /api/v1/ack');

  await page.click('#simulate');
  await until('the simulated answer to complete', async () => page.$eval('li.event.message', (li) => li.dataset.done === 'true').catch(() => false), 15_000);
  const answer = await page.$eval('li.event.message .text', (t) => t.textContent);
  check(answer === '12 open tickets: 7 billing, 3 login, 2 export. Billing spike since Tuesday.', `the streamed answer reads ${JSON.stringify(answer)}`);
  await until('agent_completed of the simulated run', async () => (await shownEvents(page)).length === 13, 15_000);
  step('the streamed answer renders exactly over SSE');

  const kick = await post('/api/v1/dev/disconnect', { user_id: user });
  check(kick.connections === 1, `disconnect saw ${kick.connections} connections`);
  await until('the page to notice the drop', async () => (await statusOf(page)) === 'reconnecting');
  const late = await publish({ user_id: user, type: 'agent_started', run_id: 'trip-10', data: { goal: 'published while away' } });
  await waitOpen(page);
  await until('the event published while away', async () => (await shownEvents(page)).some((e) => e.seq === late.seq));
  const all = await shownEvents(page);
  check(new Set(all.map((e) => e.seq)).size === all.length, 'an event is shown twice after the resume');
  const after = await page.$eval('#log', (e) => e.textContent);
  check(after.includes('closed 1012') && after.includes('connected over SSE (conn'), `the log does not show the SSE resume: ${after}`);
  check(await page.$eval('#kv-transport', (e) => e.dataset.transport) === 'sse', 'the page left SSE');
  step('resumed over SSE after the server dropped the stream');
  await page.waitForTimeout(1400);
  await screenshot(page, 'sse-fallback.png');
}

/** The demo page's AG-UI toggle: a second connection of the user with `?protocol=ag-ui` lists
 * the same run as AG-UI events, with the native view's seqs in the same order; the streamed
 * answer's TEXT_MESSAGE_CONTENT deltas make its text; after the server drops the user's
 * connections, that view resumes with `last_seq`: the next event once, nothing repeated. */
async function demoAgUi(browser, errors) {
  const user = 'browser-ag-ui';
  const page = await openPage(browser, `/?user=${user}`, errors);
  await waitOpen(page);
  check(await page.$eval('#agui-panel', (p) => p.hidden), 'the AG-UI panel shows before the toggle');
  await page.click('#agui-toggle');
  const aguiStatus = () => page.$eval('#agui-status', (e) => e.dataset.status);
  await until('the AG-UI stream to be live', async () => (await aguiStatus()) === 'open');
  step('AG-UI toggle on, its connection live');
  const answer = ['Three ', 'days: ', 'Alfama, ', 'Belém, ', 'Sintra.'];
  const events = [
    ...RUN.slice(0, 4),
    ['message_started', { message_id: 'm1', role: 'assistant' }],
    ...answer.map((delta) => ['message_delta', { message_id: 'm1', delta }]),
    ['message_completed', { message_id: 'm1' }],
    RUN[4],
  ];
  const seqs = [];
  for (const [type, data] of events) {
    seqs.push((await publish({ user_id: user, type, run_id: 'trip-ag', data })).seq);
  }
  const rows = () => page.$$eval('#agui-log li', (lis) => lis.map((li) => ({
    type: li.dataset.type,
    seq: li.dataset.seq === undefined ? null : Number(li.dataset.seq),
    delta: li.dataset.delta,
    text: li.textContent,
  })));
  // Merged deltas (a full queue) would make fewer rows; the text and the seqs still hold.
  const got = await until('the run in the AG-UI view', async () => {
    const r = await rows();
    return r.length > 0 && r[r.length - 1].type === 'RUN_FINISHED' ? r : null;
  });
  check(got[0].type === 'RUN_STARTED' && got[0].seq === seqs[0], `the AG-UI view starts with ${JSON.stringify(got[0])}`);
  check(got[got.length - 1].seq === seqs[seqs.length - 1], 'RUN_FINISHED does not have the last seq');
  const native = (await shownEvents(page)).map((e) => e.seq).filter((q) => q !== null);
  const aguiSeqs = got.map((r) => r.seq);
  check(aguiSeqs.every((q, i) => i === 0 || q > aguiSeqs[i - 1]), `AG-UI seqs out of order: ${aguiSeqs}`);
  check(native.every((q) => aguiSeqs.includes(q)), `native seqs ${native} are not all in the AG-UI view ${aguiSeqs}`);
  const types = got.map((r) => r.type);
  for (const t of ['CUSTOM', 'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END']) {
    check(types.includes(t), `no ${t} in the AG-UI view: ${types}`);
  }
  check(got.some((r) => r.type === 'CUSTOM' && r.text.includes('tool_executing')), 'the tool call is not a CUSTOM tool_executing');
  const text = got.filter((r) => r.type === 'TEXT_MESSAGE_CONTENT').map((r) => r.delta).join('');
  check(text === answer.join(''), `the AG-UI deltas read ${JSON.stringify(text)}`);
  step(`AG-UI view: ${types.join(' ')}`);
  // The server drops both connections of the user; the AG-UI view resumes with last_seq.
  const kick = await post('/api/v1/dev/disconnect', { user_id: user });
  check(kick.connections === 2, `disconnect saw ${kick.connections} connections, not the page's 2`);
  await until('the AG-UI view to reconnect', async () => (await aguiStatus()) === 'reconnecting');
  await until('the AG-UI view to be live again', async () => (await aguiStatus()) === 'open');
  const next = await publish({ user_id: user, type: 'agent_started', run_id: 'trip-ag-2', data: { goal: 'again' } });
  await until('the next run in the AG-UI view', async () => (await rows()).some((r) => r.seq === next.seq));
  await page.waitForTimeout(300);
  const after = (await rows()).map((r) => r.seq).filter((q) => q !== null);
  check(new Set(after).size === after.length, `the AG-UI view repeats a seq after the resume: ${after}`);
  check(after.length === aguiSeqs.length + 1, `after the resume the AG-UI view has ${after.length} rows, not ${aguiSeqs.length + 1}`);
  step('resumed: the next event once, nothing repeated');
  await screenshot(page, 'demo-ag-ui.png');
}

/** The package's example page (examples/browser), served by its own same-origin server
 * (examples/browser/serve.mjs, in this process) in front of the real server: a run with a
 * streamed answer published through the HTTP API shows its events in seq order in the run's
 * card, and the answer assembled from its deltas, exactly. */
async function example(browser, errors) {
  const { startServer } = await import('../../examples/browser/serve.mjs');
  const server = await startServer({ upstream: BASE, port: 0 });
  try {
    const origin = `http://127.0.0.1:${server.address().port}`;
    const user = 'browser-example';
    const page = await openPage(browser, `/?user=${user}`, errors, null, origin);
    await waitOpen(page);
    step(`connected through ${origin}`);
    const run = 'ex-1';
    const shownSeqs = [];
    const pub = async (type, data) => {
      const r = await publish({ user_id: user, type, run_id: run, data });
      check(r.connections === 1, `expected the page's 1 connection, publish reached ${r.connections}`);
      if (!type.startsWith('message_')) shownSeqs.push(r.seq);
    };
    await pub('agent_started', { goal: 'Plan three days in Lisbon' });
    await pub('tool_executing', { tool: 'web_search' });
    await pub('tool_completed', { tool: 'web_search', result: { hits: 12 } });
    await pub('message_started', { message_id: 'answer-1', role: 'assistant' });
    const words = 'Day 1: Alfama and the castle.\nDay 2: Belém — pastéis de nata.\nDay 3: "Sintra".'.split(/(?<= )/);
    for (const delta of words) await pub('message_delta', { message_id: 'answer-1', delta });
    await pub('message_completed', { message_id: 'answer-1' });
    await pub('agent_completed', { summary: 'Three-day plan ready' });
    step(`published ${shownSeqs.length} events and ${words.length} deltas`);
    const card = `.run[data-run="${run}"]`;
    await until('the 4 events of the run', async () => (await page.$$(`${card} li.event`)).length === 4);
    const rows = await page.$$eval(`${card} li.event`, (lis) => lis.map((li) => ({
      seq: Number(li.dataset.seq), type: li.dataset.type, text: li.textContent,
    })));
    check(JSON.stringify(rows.map((r) => r.seq)) === JSON.stringify(shownSeqs),
      `the page shows seqs ${rows.map((r) => r.seq)}; published ${shownSeqs}`);
    check(JSON.stringify(rows.map((r) => r.type)) === JSON.stringify(['agent_started', 'tool_executing', 'tool_completed', 'agent_completed']),
      `the page shows types ${rows.map((r) => r.type)}`);
    check(rows[0].text.includes('Plan three days in Lisbon') && rows[0].text.includes(`#${shownSeqs[0]}`),
      `the first row reads ${JSON.stringify(rows[0].text)}`);
    const answer = await until('the completed answer', async () => page.$eval(`${card} .message[data-message-id="answer-1"]`,
      (el) => (el.dataset.done === 'true' ? { text: el.textContent, role: el.dataset.role } : null)).catch(() => null));
    check(answer.text === words.join(''), `the assembled answer reads ${JSON.stringify(answer.text)}`);
    check(answer.role === 'assistant', `the answer's role is ${answer.role}`);
    step('events in seq order and the streamed answer assembled exactly');
    await screenshot(page, 'example.png');
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

const CASES = {
  'demo-run': demoRun, 'demo-resume': demoResume, 'demo-ag-ui': demoAgUi, dashboard,
  'sse-eventsource': sseEventSource, 'sse-fallback': sseFallback, example,
};

async function main() {
  check(CASES[caseName], `unknown case "${caseName}"; use one of ${Object.keys(CASES).join(', ')}`);
  check(BASE, 'give --base http://host:port');
  check(API_KEY, 'give --api-key KEY');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
    timeout: 30_000,
  });
  const errors = [];
  try {
    await CASES[caseName](browser, errors);
    check(errors.length === 0, `page errors:\n  ${errors.join('\n  ')}`);
  } catch (e) {
    // Keep what the pages showed when the case failed.
    for (const [i, page] of pages.entries()) {
      await screenshot(page, `${caseName}-failure-${i}.png`).catch(() => {});
      const log = await page.$eval('#log', (l) => l.innerText).catch(() => null);
      if (log) console.error(`[${caseName}] page ${i} log:\n${log}`);
    }
    throw e;
  } finally {
    await browser.close();
  }
  step('PASS');
}

main().catch((e) => {
  console.error(`[${caseName}] FAIL: ${e && e.stack || e}`);
  process.exit(1);
});
