// The example page: a user's runs, live, with the streamed answer assembled as it arrives.
// `/client.js` is the agentcast-client package (sdk/js/src/client.js) as agentcast serves it.
import { AgentcastClient } from '/client.js';

const params = new URLSearchParams(location.search);
const user = params.get('user') || 'example-user';
document.getElementById('user').textContent = user;

/**
 * A client token. In production your backend mints a JWT for the signed-in user (see
 * docs/protocol.md); this example asks a dev-mode agentcast for one (`agentcast --dev`), or
 * takes `?token=` from the address.
 */
async function getToken() {
  if (params.get('token')) return params.get('token');
  const r = await fetch(`/api/v1/dev/token?user=${encodeURIComponent(user)}`);
  if (!r.ok) throw new Error(`GET /api/v1/dev/token answered ${r.status}: start agentcast with --dev or pass ?token=`);
  return (await r.json()).token;
}

const runs = document.getElementById('runs');

/** The card of a run (created on its first event). */
function runCard(runId) {
  const id = runId || '(no run)';
  let card = runs.querySelector(`.run[data-run="${CSS.escape(id)}"]`);
  if (!card) {
    card = document.createElement('section');
    card.className = 'run';
    card.dataset.run = id;
    card.innerHTML = '<h2></h2><ol></ol>';
    card.querySelector('h2').textContent = `Run ${id}`;
    runs.append(card);
  }
  return card;
}

/** One line of what an event says. */
function summary(ev) {
  const d = ev.data || {};
  switch (ev.type) {
    case 'agent_started': return `started: ${d.goal ?? d.agent ?? ''}`;
    case 'agent_thinking': return `thinking: ${d.message ?? ''}`;
    case 'tool_executing': return `running ${d.tool} (${ev.meta?.purpose ?? 'tool'})`;
    case 'tool_completed': return `${d.tool} done${ev.meta?.duration_ms != null ? ` in ${ev.meta.duration_ms} ms` : ''}`;
    case 'agent_completed': return `completed: ${d.summary ?? ''}`;
    case 'agent_error': return `error: ${ev.meta?.message ?? d.message ?? d.code}`;
    default: return ev.type;
  }
}

const client = new AgentcastClient({
  url: '/ws',
  getToken,
  onAny(ev) {
    // Message events are shown as one assembled message (onMessage), not one row each.
    if (ev.type.startsWith('message_')) return;
    const li = document.createElement('li');
    li.className = 'event';
    li.dataset.seq = String(ev.seq);
    li.dataset.type = ev.type;
    li.innerHTML = '<span class="seq"></span><span class="what"></span>';
    li.querySelector('.seq').textContent = `#${ev.seq}`;
    li.querySelector('.what').textContent = summary(ev);
    // Events may arrive out of seq order (a resume replays critical events first): keep the
    // list in seq order.
    const list = runCard(ev.run_id).querySelector('ol');
    const after = [...list.children].find((x) => Number(x.dataset.seq) > ev.seq);
    list.insertBefore(li, after || null);
  },
  onMessage(m) {
    const card = runCard(m.run_id);
    let el = card.querySelector(`.message[data-message-id="${CSS.escape(m.message_id)}"]`);
    if (!el) {
      el = document.createElement('div');
      el.className = 'message';
      el.dataset.messageId = m.message_id;
      card.append(el);
    }
    el.textContent = m.text;
    el.dataset.role = m.role || '';
    el.dataset.done = String(m.done);
  },
  onStatus(status) {
    const s = document.getElementById('status');
    s.dataset.status = status;
    s.textContent = status;
  },
  onError(e) {
    console.warn(`agentcast: ${e.code}: ${e.message}`);
  },
});
client.connect();
