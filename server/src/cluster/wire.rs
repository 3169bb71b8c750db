//! What travels on the cluster's Redis channels, and how a node reads it back. Sans-IO and
//! deterministic: untrusted bytes (anything on the channel, or in a Stream entry) are parsed
//! here, never panic, and are fuzzed (`fuzz/fuzz_targets/cluster_message.rs`).
//!
//! - A user event, published by the publish script on `<prefix>:{<user>}:e`:
//!   `<priority 0-2> <seq> <publish ms> <kind index> <coalesce length>\n<coalesce run><payload>`,
//!   where the payload is the event's JSON text with its seq.
//! - A channel event on `<prefix>:ch:<name>`, a broadcast on `<prefix>:bc`: `<origin node id>\n<publish request JSON>`;
//!   each node publishes it to its own connections (the origin already has).
//! - The request hash stored with an idempotency key: the same on every node.
//! - A Stream entry (`XRANGE`'s fields), including merged deltas, read back into a
//!   [`HistoryEntry`].

use agentcast_engine::delta::DeltaRun;
use agentcast_engine::{Event, Frame, HistoryEntry, Priority, Target};
use sha2::{Digest, Sha256};

/// A user event as a node receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserMessage<'a> {
    pub(crate) priority: Priority,
    pub(crate) seq: u64,
    pub(crate) at_ms: u64,
    pub(crate) kind: u8,
    pub(crate) coalesce_run: Option<&'a str>,
    pub(crate) payload: &'a [u8],
}

/// The priority's digit in the header.
pub(crate) fn priority_digit(p: Priority) -> &'static str {
    match p {
        Priority::Low => "0",
        Priority::Normal => "1",
        Priority::Critical => "2",
    }
}

fn priority_of(digit: &[u8]) -> Option<Priority> {
    match digit {
        b"0" => Some(Priority::Low),
        b"1" => Some(Priority::Normal),
        b"2" => Some(Priority::Critical),
        _ => None,
    }
}

fn number(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Parses a user event message; `None` for anything malformed.
pub(crate) fn parse_user_message(msg: &[u8]) -> Option<UserMessage<'_>> {
    let nl = msg.iter().position(|&b| b == b'\n')?;
    let (head, rest) = (&msg[..nl], &msg[nl + 1..]);
    let mut f = head.split(|&b| b == b' ');
    let priority = priority_of(f.next()?)?;
    let seq = number(f.next()?)?;
    let at_ms = number(f.next()?)?;
    let kind = u8::try_from(number(f.next()?)?).ok()?;
    let clen = usize::try_from(number(f.next()?)?).ok()?;
    if f.next().is_some() || clen > rest.len() {
        return None;
    }
    let coalesce_run = match clen {
        0 => None,
        n => Some(std::str::from_utf8(&rest[..n]).ok()?),
    };
    let payload = &rest[clen..];
    if payload.is_empty() || seq == 0 {
        return None;
    }
    Some(UserMessage {
        priority,
        seq,
        at_ms,
        kind,
        coalesce_run,
        payload,
    })
}

/// Parses a fan-out message into its origin node and its publish request.
pub(crate) fn parse_fanout_message(msg: &[u8]) -> Option<(&str, &[u8])> {
    let nl = msg.iter().position(|&b| b == b'\n')?;
    let node = std::str::from_utf8(&msg[..nl]).ok()?;
    Some((node, &msg[nl + 1..]))
}

/// The user of a user-event channel `<prefix>:{<user>}:e`.
pub(crate) fn user_of_channel<'a>(prefix: &str, channel: &'a str) -> Option<&'a str> {
    channel
        .strip_prefix(prefix)?
        .strip_prefix(":{")?
        .strip_suffix("}:e")
}

/// Stream entries as `XRANGE` returns them: id and field/value pairs.
pub(crate) type Entries = Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>;

/// A Stream entry's fields as the open and catch-up reads return them.
pub(crate) struct StoredEntry<'a> {
    pub(crate) seq: u64,
    pub(crate) priority: Priority,
    pub(crate) at_ms: u64,
    /// The event's payload; for merged deltas, the newest piece's.
    pub(crate) payload: &'a [u8],
    /// Set when the entry holds merged deltas (fields `sf`, `x`, `l`; see `scripts.rs`).
    pub(crate) merged: Option<StoredMerge<'a>>,
}

/// The pieces of a merged delta entry before its newest (whose frame is the payload).
pub(crate) struct StoredMerge<'a> {
    /// The first seq the entry covers.
    pub(crate) seq_from: u64,
    /// The earlier pieces' escaped text, concatenated.
    pub(crate) earlier: &'a [u8],
    /// Their lengths, comma-separated decimal, oldest first.
    pub(crate) lens: &'a [u8],
}

/// Reads one entry: its id `<seq>-0` and its fields `p`, `t`, `r` (and `sf`, `x`, `l` of
/// merged deltas). `None` if malformed.
pub(crate) fn parse_entry<'a>(
    id: &str,
    fields: &'a [(Vec<u8>, Vec<u8>)],
) -> Option<StoredEntry<'a>> {
    let seq = number(id.strip_suffix("-0")?.as_bytes())?;
    let field = |name: &[u8]| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    };
    let merged = match field(b"sf") {
        None => None,
        Some(sf) => Some(StoredMerge {
            seq_from: number(sf)?,
            earlier: field(b"x")?,
            lens: field(b"l")?,
        }),
    };
    Some(StoredEntry {
        seq,
        priority: priority_of(field(b"r")?)?,
        at_ms: number(field(b"t")?)?,
        payload: field(b"p")?,
        merged,
    })
}

impl StoredEntry<'_> {
    /// The entry as the engine's history holds it: one event's frame, or merged deltas
    /// rebuilt with their cuts (so a resume inside them gets exactly the rest). Merged parts
    /// that do not fit together (a corrupt entry) fall back to the newest piece alone: the
    /// seqs before it are then missing, and a resume over them gets a `gap`.
    pub(crate) fn into_history(self) -> HistoryEntry {
        let frame = Frame::text(self.payload).into_bytes();
        if let Some(m) = &self.merged {
            let lens: Option<Vec<u32>> = m
                .lens
                .split(|&b| b == b',')
                .map(|l| number(l).and_then(|n| u32::try_from(n).ok()))
                .collect();
            let run =
                lens.and_then(|lens| DeltaRun::from_stored(&frame, m.seq_from, m.earlier, &lens));
            match run {
                Some(run) if run.seq() == self.seq => {
                    return HistoryEntry::from_run(run, self.priority, self.at_ms);
                }
                _ => {
                    tracing::warn!(target: "agentcast::cluster", seq = self.seq, "malformed merged delta entry in redis: its newest piece alone is replayed");
                }
            }
        }
        HistoryEntry::new(self.seq, self.priority, self.at_ms, frame)
    }
}

/// The request hash of idempotency keys: the same on every node (SHA-256 over each field,
/// tagged and length-prefixed, as `crate::idempotency` hashes with its per-process key).
pub(crate) fn request_hash(target: &Target, event: &Event) -> String {
    let mut h = Sha256::new();
    agentcast_engine::idempotency::request_fields(target, event, |tag, bytes| {
        h.update([tag]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    });
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A channel or broadcast event as a publish request other nodes parse back (`data` is
/// valid JSON, checked at parse; copied byte for byte).
pub(crate) fn fanout_request(target: &Target, event: &Event) -> Vec<u8> {
    let string = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = format!("{{\"type\":{}", string(event.kind.as_str()));
    match target {
        Target::Channel(c) => out.push_str(&format!(",\"channel\":{}", string(c.as_str()))),
        _ => out.push_str(",\"broadcast\":true"),
    }
    if let Some(r) = &event.run_id {
        out.push_str(&format!(",\"run_id\":{}", string(r)));
    }
    if let Some(p) = event.priority {
        out.push_str(&format!(",\"priority\":{}", string(p.as_str())));
    }
    out.push_str(",\"data\":");
    let mut out = out.into_bytes();
    out.extend_from_slice(event.data.as_bytes());
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_message_round_trips() {
        let m = parse_user_message(b"2 1764000000000001 1764000000000 0 2\nr1{\"seq\":1}").unwrap();
        assert_eq!(m.priority, Priority::Critical);
        assert_eq!(m.seq, 1_764_000_000_000_001);
        assert_eq!(m.kind, 0);
        assert_eq!(m.coalesce_run, Some("r1"));
        assert_eq!(m.payload, b"{\"seq\":1}");
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            &b""[..],
            b"2 1 1 0 0",
            b"3 1 1 0 0\n{}",
            b"2 x 1 0 0\n{}",
            b"2 1 1 0 9\n{}",
            b"2 1 1 300 0\n{}",
            b"2 1 1 0 0 7\n{}",
            b"2 0 1 0 0\n{}",
            b"2 1 1 0 0\n",
            b"2 99999999999999999999999 1 0 0\n{}",
        ] {
            assert!(
                parse_user_message(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    const LAST: &str = r#"{"type":"message_delta","seq":13,"ts":"t","priority":"normal","data":{"message_id":"m","delta":"fgh"}}"#;

    #[test]
    fn a_merged_entry_reads_back_with_its_cuts() {
        let f = fields(&[
            ("p", LAST),
            ("t", "5"),
            ("r", "1"),
            ("sf", "10"),
            ("x", "abcde"),
            ("l", "2,2,1"),
        ]);
        let e = parse_entry("13-0", &f).unwrap().into_history();
        assert_eq!((e.seq_from(), e.seq), (10, 13));
        let cut: serde_json::Value =
            serde_json::from_slice(agentcast_engine::frame::payload_of(&e.replay_frame(11)))
                .unwrap();
        assert_eq!(cut["seq_from"], 12);
        assert_eq!(cut["data"]["delta"], "efgh");
    }

    #[test]
    fn a_corrupt_merged_entry_falls_back_to_its_newest_piece() {
        for (sf, x, l) in [
            ("10", "abcde", "2,2"),
            ("10", "abcde", "2,x,1"),
            ("10", "abcde", ""),
            ("11", "abcde", "2,2,1"),
            ("10", r"ab\de", "2,2,1"),
        ] {
            let f = fields(&[
                ("p", LAST),
                ("t", "5"),
                ("r", "1"),
                ("sf", sf),
                ("x", x),
                ("l", l),
            ]);
            let e = parse_entry("13-0", &f).unwrap().into_history();
            assert_eq!((e.seq_from(), e.seq), (13, 13), "{sf} {x} {l}");
        }
        // A merged entry without its text is malformed altogether.
        let f = fields(&[("p", LAST), ("t", "5"), ("r", "1"), ("sf", "10")]);
        assert!(parse_entry("13-0", &f).is_none());
    }

    #[test]
    fn channel_names_give_their_user() {
        assert_eq!(user_of_channel("ac", "ac:{u:1}:e"), Some("u:1"));
        assert_eq!(user_of_channel("ac", "ac:bc"), None);
        assert_eq!(user_of_channel("ac", "ac:ch:job:1"), None);
        assert_eq!(user_of_channel("ac", "xx:{u}:e"), None);
    }
}
