//! Message deltas: merging consecutive `message_delta` frames of one message into one frame.
//!
//! An answer streamed token by token arrives as `message_delta` events, one per token. They
//! are never dropped (see [`crate::ring`]): when a connection's ring is full, and when a
//! user's [history](crate::history) records them, consecutive deltas of the same message are
//! concatenated into one [`DeltaRun`], delivered as one frame:
//!
//! ```json
//! {"type":"message_delta","seq":17,"run_id":"r1","ts":"…","priority":"normal","seq_from":12,"data":{"message_id":"m1","delta":"Hello, wor"}}
//! ```
//!
//! `seq` is the last seq the frame covers and `seq_from` the first (present only when the
//! frame covers more than one); `data` holds exactly `message_id` and `delta` (other members a
//! publisher put in a delta's `data` are not kept by a merge); `ts` and `priority` are the
//! last piece's. Channel and broadcast deltas merge the same way (they have no seqs).
//!
//! # Why frames are read back rather than carried
//!
//! The fan-out path carries only the frame bytes. Merging is the slow path (a full ring, or
//! a history append), so the parts are read back from the frame there ([`DeltaRun::from_frame`]:
//! one scan of a frame this engine encoded), instead of widening every queued frame and
//! every history entry with a parsed copy. Whether a frame is a delta at all is a prefix
//! compare ([`is_delta`]), which is what the hot path pays.
//!
//! # Cost
//!
//! A run keeps the concatenated text in one growable buffer and is encoded into a frame only
//! when it is written (a ring pop) or replayed: appending a piece is amortized O(its length),
//! never a re-encode of everything merged so far. A run is bounded by [`MAX_MERGED_BYTES`];
//! a delta that would take it past the bound starts a new run.
//!
//! # Cutting a run for a resume
//!
//! A history run remembers where each piece starts (`cuts`, 16 bytes per piece instead of a
//! whole entry), so a client resuming from a seq inside the run gets exactly the text after
//! it, as one frame with `seq_from` = the first seq it lacks ([`DeltaRun::cut_after`]). The
//! text is kept as the escaped contents of the JSON strings the publisher sent: pieces
//! concatenate without decoding, and a cut at a piece boundary is always valid JSON.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::{self, Frame};
use crate::json::Members;

/// The most bytes of (escaped) text one merged delta holds.
pub const MAX_MERGED_BYTES: usize = 64 * 1024;

const DELTA_PREFIX: &[u8] = b"{\"type\":\"message_delta\"";
const MESSAGE_PREFIX: &[u8] = b"{\"type\":\"message_";

/// Whether `wire` (a complete server frame) is a `message_delta` event. O(1).
#[inline]
pub fn is_delta(wire: &[u8]) -> bool {
    frame::payload_of(wire).starts_with(DELTA_PREFIX)
}

/// Whether `wire` is one of the message events (`message_started`, `message_delta`,
/// `message_completed`), which the ring never drops. O(1).
#[inline]
pub fn is_message(wire: &[u8]) -> bool {
    frame::payload_of(wire).starts_with(MESSAGE_PREFIX)
}

/// Consecutive deltas of one message, merged. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaRun {
    /// The raw JSON of `"channel"` (quoted), or `None` for a user event (which has seqs).
    channel: Option<Box<[u8]>>,
    /// The raw JSON of `run_id` (quoted), if any.
    run_id: Option<Box<[u8]>>,
    /// The raw JSON of `data.message_id`.
    message_id: Box<[u8]>,
    /// The raw JSON of the last piece's `ts` and `priority`.
    ts: Box<[u8]>,
    priority: Box<[u8]>,
    /// The seqs covered (0 for channel events).
    seq_from: u64,
    seq: u64,
    /// The escaped contents of the pieces' `delta` strings, concatenated.
    text: Vec<u8>,
    /// `(seq, offset)` of every piece after the first (user events, when kept).
    cuts: Vec<(u64, u32)>,
    /// Pieces merged.
    pieces: u32,
}

impl DeltaRun {
    /// Reads a `message_delta` frame (complete wire bytes, as this engine encodes them) back
    /// into a one-piece run. `None` if it is not a delta with a string `message_id` and
    /// `delta` (it then merges with nothing).
    pub fn from_frame(wire: &[u8]) -> Option<DeltaRun> {
        let payload = frame::payload_of(wire);
        if !payload.starts_with(DELTA_PREFIX) {
            return None;
        }
        let m = Members::scan_validated(payload).ok()?;
        let data = Members::scan_validated(m.raw("data")?).ok()?;
        let message_id = data
            .raw("message_id")
            .filter(|r| r.first() == Some(&b'"'))?;
        let delta = data.raw("delta").filter(|r| r.first() == Some(&b'"'))?;
        let seq = m.u64("seq").ok().flatten();
        let channel = m.raw("channel");
        if seq.is_some() == channel.is_some() {
            return None;
        }
        let seq = seq.unwrap_or(0);
        let seq_from = m.u64("seq_from").ok().flatten().unwrap_or(seq).min(seq);
        Some(DeltaRun {
            channel: channel.map(Box::from),
            run_id: m.raw("run_id").map(Box::from),
            message_id: Box::from(message_id),
            ts: Box::from(m.raw("ts")?),
            priority: Box::from(m.raw("priority")?),
            seq_from,
            seq,
            text: delta[1..delta.len() - 1].to_vec(),
            cuts: Vec::new(),
            pieces: 1,
        })
    }

    /// Rebuilds a run a broker stored in pieces (the cluster's merged Stream entries, see
    /// `docs/cluster.md` §3.2): `last` is the newest piece's frame (complete wire bytes,
    /// giving `ts`, `priority`, `run_id` and `message_id`), `earlier` the escaped text of the
    /// pieces before it, concatenated, and `lens` their lengths, oldest first; the pieces'
    /// seqs are `seq_from`, `seq_from + 1`, … up to the last piece's. The cuts are kept, so
    /// [`cut_after`](Self::cut_after) is exact at every piece. O(text).
    ///
    /// `None` when the parts do not fit together (the lengths do not add up, the seqs do not
    /// end at the last piece's, or a piece is not the escaped content of a JSON string):
    /// stored bytes are not trusted to make valid JSON.
    pub fn from_stored(
        last: &[u8],
        seq_from: u64,
        earlier: &[u8],
        lens: &[u32],
    ) -> Option<DeltaRun> {
        let last = DeltaRun::from_frame(last)?;
        if last.channel.is_some()
            || last.seq_from != last.seq
            || seq_from.checked_add(lens.len() as u64)? != last.seq
            || lens.iter().map(|&l| l as usize).sum::<usize>() != earlier.len()
            || earlier.len() + last.text.len() > MAX_MERGED_BYTES
        {
            return None;
        }
        let mut text = Vec::with_capacity(earlier.len() + last.text.len());
        let mut cuts = Vec::with_capacity(lens.len());
        let mut at = 0usize;
        for (i, &len) in lens.iter().enumerate() {
            let piece = &earlier[at..at + len as usize];
            if !is_string_content(piece) {
                return None;
            }
            if i > 0 {
                cuts.push((seq_from + i as u64, at as u32));
            }
            text.extend_from_slice(piece);
            at += len as usize;
        }
        if !lens.is_empty() {
            cuts.push((last.seq, at as u32));
        }
        text.extend_from_slice(&last.text);
        Some(DeltaRun {
            seq_from,
            text,
            cuts,
            pieces: lens.len() as u32 + 1,
            ..last
        })
    }

    /// The last seq covered (0 for a channel event).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The first seq covered.
    pub fn seq_from(&self) -> u64 {
        self.seq_from
    }

    /// How many published deltas this run holds.
    pub fn pieces(&self) -> u32 {
        self.pieces
    }

    /// The escaped text (the contents of the merged `delta` string).
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Whether `next` continues this run: the same message of the same run to the same
    /// target, and the two fit in [`MAX_MERGED_BYTES`].
    pub fn can_absorb(&self, next: &DeltaRun) -> bool {
        self.message_id == next.message_id
            && self.run_id == next.run_id
            && self.channel == next.channel
            && self.text.len() + next.text.len() <= MAX_MERGED_BYTES
            && (self.channel.is_some() || next.seq_from > self.seq)
    }

    /// Appends `next` (see [`can_absorb`](Self::can_absorb)); `keep_cuts` remembers where it
    /// starts, for [`cut_after`](Self::cut_after).
    pub fn absorb(&mut self, next: DeltaRun, keep_cuts: bool) {
        if keep_cuts && self.channel.is_none() {
            let at = self.text.len() as u32;
            self.cuts.push((next.seq_from, at));
            self.cuts
                .extend(next.cuts.iter().map(|&(s, off)| (s, off + at)));
        }
        self.text.extend_from_slice(&next.text);
        self.seq = next.seq;
        self.ts = next.ts;
        self.priority = next.priority;
        self.pieces += next.pieces;
    }

    /// The part of this run a client that holds every seq up to `after` lacks: all of it when
    /// `after` is before the run, `None` when it is at or past its end. Exact at piece
    /// boundaries (the pieces' seqs) when the run kept its cuts.
    pub fn cut_after(&self, after: u64) -> Option<DeltaRun> {
        if after >= self.seq {
            return None;
        }
        if after < self.seq_from {
            return Some(self.clone());
        }
        let i = self.cuts.partition_point(|&(s, _)| s <= after);
        let &(seq_from, off) = self.cuts.get(i)?;
        let off = off as usize;
        Some(DeltaRun {
            text: self.text[off..].to_vec(),
            cuts: self.cuts[i + 1..]
                .iter()
                .map(|&(s, o)| (s, o - off as u32))
                .collect(),
            seq_from,
            pieces: (self.cuts.len() - i) as u32,
            ..self.without_text()
        })
    }

    fn without_text(&self) -> DeltaRun {
        DeltaRun {
            channel: self.channel.clone(),
            run_id: self.run_id.clone(),
            message_id: self.message_id.clone(),
            ts: self.ts.clone(),
            priority: self.priority.clone(),
            seq_from: self.seq_from,
            seq: self.seq,
            text: Vec::new(),
            cuts: Vec::new(),
            pieces: 0,
        }
    }

    /// Heap bytes held (for history byte bounds).
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + self.cuts.capacity() * size_of::<(u64, u32)>()
            + self.message_id.len()
            + self.ts.len()
            + self.priority.len()
            + self.run_id.as_ref().map_or(0, |r| r.len())
            + self.channel.as_ref().map_or(0, |c| c.len())
    }

    /// The run as one complete WebSocket text frame (see the [module docs](self)). O(n).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(
            self.text.len()
                + self.message_id.len()
                + self.run_id.as_ref().map_or(0, |r| r.len())
                + self.channel.as_ref().map_or(0, |c| c.len())
                + 160,
        );
        b.put_slice(DELTA_PREFIX);
        match &self.channel {
            None => {
                b.put_slice(b",\"seq\":");
                frame::write_u64(&mut b, self.seq);
            }
            Some(c) => {
                b.put_slice(b",\"channel\":");
                b.put_slice(c);
            }
        }
        if let Some(r) = &self.run_id {
            b.put_slice(b",\"run_id\":");
            b.put_slice(r);
        }
        b.put_slice(b",\"ts\":");
        b.put_slice(&self.ts);
        b.put_slice(b",\"priority\":");
        b.put_slice(&self.priority);
        if self.channel.is_none() && self.seq_from < self.seq {
            b.put_slice(b",\"seq_from\":");
            frame::write_u64(&mut b, self.seq_from);
        }
        b.put_slice(b",\"data\":{\"message_id\":");
        b.put_slice(&self.message_id);
        b.put_slice(b",\"delta\":\"");
        b.put_slice(&self.text);
        b.put_slice(b"\"}}");
        Frame::text(&b).into_bytes()
    }
}

/// The raw JSON of `message_id` (quoted) and the escaped contents of `delta` (without its
/// quotes) of a `message_delta` event's `data`, as [`DeltaRun::from_frame`] reads them from
/// its frame: what a broker needs to merge a delta without parsing JSON itself. `None` when
/// either is not a string (such a delta merges with nothing). O(data).
pub fn merge_parts(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let data = Members::scan_validated(data).ok()?;
    let message_id = data
        .raw("message_id")
        .filter(|r| r.first() == Some(&b'"'))?;
    let delta = data.raw("delta").filter(|r| r.first() == Some(&b'"'))?;
    Some((message_id, &delta[1..delta.len() - 1]))
}

/// Whether `b` is the escaped content of a JSON string: UTF-8, no control character, no
/// bare quote, and every backslash starts a whole escape. O(n).
fn is_string_content(b: &[u8]) -> bool {
    if std::str::from_utf8(b).is_err() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | 0..=0x1f => return false,
            b'\\' => match b.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => {
                    let hex = b.get(i + 2..i + 6);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return false;
                    }
                    i += 6;
                }
                _ => return false,
            },
            _ => i += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Priority};
    use crate::frame::{EventFields, Origin, encode_event};

    fn delta(seq: u64, msg: &str, text: &str) -> Bytes {
        let data = format!(r#"{{"message_id":"{msg}","delta":"{text}","extra":1}}"#);
        encode_event(&EventFields {
            kind: &EventKind::parse("message_delta").unwrap(),
            origin: Origin::User { seq },
            run_id: Some("r1"),
            ts_ms: 1_000 + seq,
            priority: Priority::Normal,
            data: data.as_bytes(),
            extra: None,
        })
        .into_bytes()
    }

    fn json(wire: &[u8]) -> serde_json::Value {
        serde_json::from_slice(frame::payload_of(wire)).unwrap()
    }

    #[test]
    fn merges_and_encodes_the_seq_range() {
        let mut run = DeltaRun::from_frame(&delta(5, "m1", "Hel")).unwrap();
        assert_eq!(run.encode(), {
            // A one-piece run encodes without `seq_from` and with only the two data members.
            let v = json(&delta(5, "m1", "Hel"));
            let got = json(&run.encode());
            assert_eq!(got["seq"], v["seq"]);
            assert_eq!(
                got["data"],
                serde_json::json!({"message_id": "m1", "delta": "Hel"})
            );
            assert!(got.get("seq_from").is_none());
            run.encode()
        });
        let next = DeltaRun::from_frame(&delta(6, "m1", "lo \\\"w\\\"")).unwrap();
        assert!(run.can_absorb(&next));
        run.absorb(next, true);
        run.absorb(
            DeltaRun::from_frame(&delta(7, "m1", "\\u00e9")).unwrap(),
            true,
        );
        let v = json(&run.encode());
        assert_eq!(v["seq"], 7);
        assert_eq!(v["seq_from"], 5);
        assert_eq!(v["data"]["delta"], "Hello \"w\"é");
        assert_eq!(v["type"], "message_delta");
        assert_eq!(v["run_id"], "r1");
        assert_eq!(run.pieces(), 3);
    }

    #[test]
    fn other_messages_do_not_merge() {
        let run = DeltaRun::from_frame(&delta(5, "m1", "a")).unwrap();
        assert!(!run.can_absorb(&DeltaRun::from_frame(&delta(6, "m2", "b")).unwrap()));
        assert!(!run.can_absorb(&DeltaRun::from_frame(&delta(5, "m1", "b")).unwrap()));
    }

    #[test]
    fn cut_after_gives_exactly_the_missing_text() {
        let mut run = DeltaRun::from_frame(&delta(10, "m", "ab")).unwrap();
        for (s, t) in [(11, "cd"), (12, "e"), (13, "fgh")] {
            run.absorb(DeltaRun::from_frame(&delta(s, "m", t)).unwrap(), true);
        }
        let text = |r: &DeltaRun| String::from_utf8(r.text().to_vec()).unwrap();
        assert_eq!(text(&run.cut_after(9).unwrap()), "abcdefgh");
        let c = run.cut_after(11).unwrap();
        assert_eq!((text(&c), c.seq_from(), c.seq()), ("efgh".into(), 12, 13));
        assert_eq!(text(&c.cut_after(12).unwrap()), "fgh");
        assert!(run.cut_after(13).is_none());
        assert_eq!(json(&c.encode())["seq_from"], 12);
    }

    #[test]
    fn a_stored_run_rebuilds_with_every_cut() {
        let mut whole = DeltaRun::from_frame(&delta(10, "m", "ab")).unwrap();
        for (s, t) in [(11, "c\\\"d"), (12, "e"), (13, "fgh")] {
            whole.absorb(DeltaRun::from_frame(&delta(s, "m", t)).unwrap(), true);
        }
        let stored =
            DeltaRun::from_stored(&delta(13, "m", "fgh"), 10, b"abc\\\"de", &[2, 4, 1]).unwrap();
        assert_eq!(stored.encode(), whole.encode());
        for after in 9..=13 {
            assert_eq!(
                stored.cut_after(after).map(|r| r.encode()),
                whole.cut_after(after).map(|r| r.encode()),
                "after {after}"
            );
        }
        // One piece: no earlier text.
        let one = DeltaRun::from_stored(&delta(5, "m", "x"), 5, b"", &[]).unwrap();
        assert_eq!(one, DeltaRun::from_frame(&delta(5, "m", "x")).unwrap());
    }

    #[test]
    fn stored_parts_that_do_not_fit_are_refused() {
        let last = delta(13, "m", "z");
        for (from, earlier, lens) in [
            (10, &b"abc"[..], &[1u32, 1, 2][..]), // lengths do not add up
            (9, b"abc", &[1, 1, 1]),              // seqs do not end at the last piece's
            (11, b"a\\", &[1, 1]),                // a cut inside an escape
            (11, b"a\"", &[1, 1]),                // a bare quote
            (11, b"a\n", &[1, 1]),                // a control character
            (12, b"\\u12", &[4]),                 // a short \u escape
            (12, b"\xff", &[1]),                  // not UTF-8
        ] {
            assert!(
                DeltaRun::from_stored(&last, from, earlier, lens).is_none(),
                "{from} {earlier:?} {lens:?}"
            );
        }
        assert!(DeltaRun::from_stored(b"nope", 1, b"", &[]).is_none());
    }

    #[test]
    fn merge_parts_reads_what_from_frame_reads() {
        let data = br#"{"message_id":"m1","delta":"a\"b","extra":1}"#;
        assert_eq!(merge_parts(data), Some((&b"\"m1\""[..], &br#"a\"b"#[..])));
        assert_eq!(merge_parts(br#"{"message_id":1,"delta":"x"}"#), None);
        assert_eq!(merge_parts(br#"{"message_id":"m","delta":2}"#), None);
        assert_eq!(merge_parts(b"not json"), None);
    }

    #[test]
    fn non_delta_frames_are_not_runs() {
        let f = Frame::text(br#"{"type":"message_started","seq":1}"#).into_bytes();
        assert!(DeltaRun::from_frame(&f).is_none());
        assert!(is_message(&f) && !is_delta(&f));
        assert!(is_delta(&delta(1, "m", "x")));
    }
}
