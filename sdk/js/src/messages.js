// agentcast client, streamed-message assembly: `message_started`, `message_delta` and
// `message_completed` of one `data.message_id` become one {message_id, run_id, role, text,
// done}, used by client.js (sdk/js/src/client.js) for `client.messages` and `onMessage`.
// Served by the agentcast binary at /messages.js (this file, sdk/js/src/messages.js).
// See docs/web.md.
//
// A merged delta (`seq_from`..`seq`) brings the text of every seq of its range. Each delta's
// seq is marked with the text length after it, so a delta overlapping text already held (a
// resume after a hole replays from below a seq already seen) is cut to its new part, and a
// delta already held entirely is not new: the text is never duplicated nor missing.

/** Completed messages beyond this many are dropped, oldest first. */
export const MAX_HELD_MESSAGES = 256;

/**
 * Applies a message event to `messages` (a Map by message_id). Returns null for other events,
 * else {ev, m, fresh}: `ev` cut to its new text (a delta overlapping what is held), `fresh`
 * false when it brought nothing new.
 * @param {Map<string, object>} messages
 * @param {object} ev
 */
export function applyMessage(messages, ev) {
  if (!ev.type || !ev.type.startsWith('message_')) return null;
  const d = ev.data && typeof ev.data === 'object' ? ev.data : {};
  if (typeof d.message_id !== 'string') return null;
  let m = messages.get(d.message_id);
  if (!m) {
    m = { message_id: d.message_id, run_id: ev.run_id ?? null, role: null, text: '', done: false };
    Object.defineProperty(m, 'marks', { value: [], writable: true });
    messages.set(d.message_id, m);
    // Bounded: the oldest completed messages go first.
    for (const [id, old] of messages) {
      if (messages.size <= MAX_HELD_MESSAGES) break;
      if (old.done) messages.delete(id);
    }
  }
  if (ev.type === 'message_started') {
    if (typeof d.role === 'string') m.role = d.role;
  } else if (ev.type === 'message_completed') {
    m.done = true;
    m.marks = [];
  } else if (ev.type === 'message_delta') {
    let delta = typeof d.delta === 'string' ? d.delta : '';
    const last = m.marks.length ? m.marks[m.marks.length - 1][0] : null;
    if (typeof ev.seq === 'number' && last !== null) {
      if (ev.seq <= last) return { ev, m, fresh: false };
      const from = typeof ev.seq_from === 'number' ? ev.seq_from : ev.seq;
      if (from <= last) {
        // Text of seqs from..last is held already: skip it.
        let before = 0;
        for (const [s, len] of m.marks) {
          if (s >= from) break;
          before = len;
        }
        delta = delta.slice(m.text.length - before);
        ev = { ...ev, seq_from: last + 1, data: { ...d, delta } };
      }
    }
    m.text += delta;
    if (typeof ev.seq === 'number') m.marks.push([ev.seq, m.text.length]);
  }
  return { ev, m, fresh: true };
}
