//! The probe every bench event carries in its `data`, and the cheap parse of a received frame.
//!
//! # Wire shape
//!
//! The publisher's `data` object is, byte for byte (the server keeps `data` untouched):
//!
//! ```json
//! {"ab":"1a2b3c4d","t":1764000000123456789,"u":42,"q":7,"m":1,"pad":"xxxxxxxx"}
//! ```
//!
//! - `ab`: the run id (8 hex digits), so events of an earlier run (replayed from a user's
//!   history) are told apart and ignored;
//! - `t`: the send time, nanoseconds since the Unix epoch (`CLOCK_REALTIME`, the same clock
//!   for every process on one machine);
//! - `u`: the target user's index, or [`BROADCAST_USER`] for a broadcast;
//! - `q`: the publisher's sequence number per target (1, 2, ...);
//! - `m`: 1 when sent inside the measurement window, 0 during warm-up;
//! - `pad`: `x` characters so the whole object is exactly `payload_bytes` long.
//!
//! # Parsing
//!
//! [`parse_event`] does not parse JSON: it finds `"data":{"ab":"` (the server writes `data`
//! last) and reads the fixed fields that follow, and takes the server's `"seq":N` from the
//! part before `data`. Anything else (the `welcome`, a foreign event) yields `None`. It never
//! panics and never allocates, whatever the bytes.

use std::io::Write as _;

/// The `u` of a broadcast event.
pub const BROADCAST_USER: u32 = u32::MAX;

/// The smallest `--payload-bytes`: the probe fields at their longest fit below it.
pub const MIN_PAYLOAD_BYTES: usize = 128;

/// What a bench event carries. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The run id.
    pub run: u32,
    /// Send time, ns since the Unix epoch.
    pub sent_ns: u64,
    /// Target user index, or [`BROADCAST_USER`].
    pub user: u32,
    /// Per-target sequence number of the publisher.
    pub seq: u64,
    /// Sent inside the measurement window.
    pub measured: bool,
}

/// Appends the `data` object of `p` to `out`, padded to `payload_bytes` when that is longer
/// than the fields alone. O(payload_bytes), no allocation beyond `out`'s growth.
pub fn write_data(out: &mut Vec<u8>, p: &Probe, payload_bytes: usize) {
    let start = out.len();
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        r#"{{"ab":"{:08x}","t":{},"u":{},"q":{},"m":{},"pad":""#,
        p.run,
        p.sent_ns,
        p.user,
        p.seq,
        u8::from(p.measured)
    );
    let closing = 2; // `"}`
    let used = out.len() - start + closing;
    out.resize(out.len() + payload_bytes.saturating_sub(used), b'x');
    out.extend_from_slice(b"\"}");
}

/// The server's `seq` (absent for broadcasts) and the probe of one received text frame's
/// payload, or `None` when it is not a bench event. See the [module docs](self).
pub fn parse_event(payload: &[u8]) -> Option<(Option<u64>, Probe)> {
    const MARK: &[u8] = br#""data":{"ab":""#;
    let at = find(payload, MARK)?;
    let head = &payload[..at];
    let server_seq = find(head, br#""seq":"#).and_then(|i| digits(&head[i + 6..]).map(|d| d.0));
    let mut r = Reader(&payload[at + MARK.len()..]);
    let run = r.hex8()?;
    r.lit(br#"","t":"#)?;
    let sent_ns = r.num()?;
    r.lit(br#","u":"#)?;
    let user = u32::try_from(r.num()?).ok()?;
    r.lit(br#","q":"#)?;
    let seq = r.num()?;
    r.lit(br#","m":"#)?;
    let measured = match r.byte()? {
        b'0' => false,
        b'1' => true,
        _ => return None,
    };
    Some((
        server_seq,
        Probe {
            run,
            sent_ns,
            user,
            seq,
            measured,
        },
    ))
}

/// The first index of `needle` in `hay`. Naive, which is fast for the short needles and
/// ~300-byte payloads this sees.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The decimal number at the start of `s` and its length; `None` if there is none or it
/// overflows a `u64`.
fn digits(s: &[u8]) -> Option<(u64, usize)> {
    let mut n: u64 = 0;
    let mut len = 0;
    for &b in s.iter().take(20) {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        len += 1;
    }
    (len > 0).then_some((n, len))
}

/// A cursor over the probe's fixed layout.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn lit(&mut self, l: &[u8]) -> Option<()> {
        self.0 = self.0.strip_prefix(l)?;
        Some(())
    }

    fn num(&mut self) -> Option<u64> {
        let (n, len) = digits(self.0)?;
        self.0 = &self.0[len..];
        Some(n)
    }

    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn hex8(&mut self) -> Option<u32> {
        let h = self.0.get(..8)?;
        let s = std::str::from_utf8(h).ok()?;
        let v = u32::from_str_radix(s, 16).ok()?;
        self.0 = &self.0[8..];
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Probe {
        Probe {
            run: 0xdead_beef,
            sent_ns: 1_764_000_000_123_456_789,
            user: 4241,
            seq: 77,
            measured: true,
        }
    }

    #[test]
    fn data_is_padded_to_the_payload_size_and_is_json() {
        for size in [MIN_PAYLOAD_BYTES, 256, 1000] {
            let mut out = Vec::new();
            write_data(&mut out, &probe(), size);
            assert_eq!(out.len(), size);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["u"], 4241);
        }
        let longest = Probe {
            run: u32::MAX,
            sent_ns: u64::MAX,
            user: BROADCAST_USER,
            seq: u64::MAX,
            measured: true,
        };
        let mut out = Vec::new();
        write_data(&mut out, &longest, MIN_PAYLOAD_BYTES);
        assert!(out.len() <= MIN_PAYLOAD_BYTES, "{}", out.len());
    }

    #[test]
    fn a_server_frame_round_trips() {
        let mut frame = br#"{"type":"tool_executing","seq":12,"run_id":"bench","ts":"2026-11-24T16:32:00.123Z","priority":"normal","data":"#.to_vec();
        write_data(&mut frame, &probe(), 256);
        frame.push(b'}');
        assert_eq!(parse_event(&frame), Some((Some(12), probe())));
    }

    #[test]
    fn a_broadcast_has_no_server_seq() {
        let p = Probe {
            user: BROADCAST_USER,
            measured: false,
            ..probe()
        };
        let mut frame = br#"{"type":"tool_executing","channel":"*","run_id":"bench","ts":"x","priority":"normal","data":"#.to_vec();
        write_data(&mut frame, &p, 200);
        frame.push(b'}');
        assert_eq!(parse_event(&frame), Some((None, p)));
    }

    #[test]
    fn other_frames_and_garbage_are_not_probes() {
        assert_eq!(parse_event(br#"{"type":"welcome","conn_id":1}"#), None);
        assert_eq!(parse_event(br#""data":{"ab":"zzzzzzzz","t":1"#), None);
        assert_eq!(
            parse_event(
                br#""data":{"ab":"00000001","t":99999999999999999999999,"u":1,"q":1,"m":1"#
            ),
            None
        );
        assert_eq!(
            parse_event(br#""data":{"ab":"00000001","t":1,"u":1,"q":1,"m":7"#),
            None
        );
        assert_eq!(parse_event(br#""data":{"ab":"0000"#), None);
        assert_eq!(parse_event(b""), None);
    }
}
