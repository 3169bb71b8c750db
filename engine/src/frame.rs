//! Frames: complete server → client WebSocket text frames, encoded once per event.
//!
//! # Memory layout
//!
//! A [`Frame`] is a `Bytes` holding the RFC 6455 frame exactly as it goes on the wire: the
//! header (`FIN | text` opcode, unmasked, 7/16/64-bit length) followed by the UTF-8 JSON
//! payload. The header is written last, right-aligned in 10 reserved bytes, so encoding is one
//! allocation and one pass over the payload.
//!
//! # Sharing
//!
//! Cloning a frame increments a reference count; a broadcast to 100,000 connections holds one
//! copy of the bytes. A transport writes `frame.as_bytes()` to the socket as is, with no
//! per-recipient framing.
//!
//! # Wire shape of an event
//!
//! ```json
//! {"type":"agent_started","seq":1732460000000001,"run_id":"r1","ts":"2026-11-24T16:32:00.123Z","priority":"critical","data":{...}}
//! ```
//! User events carry `seq`; channel events carry `"channel":"<name>"` and broadcast events
//! `"channel":"*"` instead. `data` is the publisher's bytes, untouched.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::event::{EventKind, Priority};

/// The most bytes a server frame header takes (2 + 8 for a 64-bit length).
const MAX_HEADER: usize = 10;

/// Room an event frame reserves for its fixed members, beyond `type`, `run_id`, `data` and
/// enrichment (see [`payload_hint`]).
const FRAME_HINT: usize = 160;

/// The payload capacity an event frame is encoded into: its variable members plus
/// [`FRAME_HINT`]. The fixed members take up to 121 bytes (`{"type":""`, `,"seq":` and 20
/// digits, `,"run_id":""`, the 24-byte timestamp, `"priority":"critical"`, `"data":`,
/// separators); 160 leaves room for a few escapes, so the buffer is never grown (a realloc
/// measured 14% of a shard's time on per-user publishes when this was too small).
pub(crate) fn payload_hint(kind: &str, run_id: Option<&str>, data: &[u8], extra: usize) -> usize {
    FRAME_HINT + kind.len() + run_id.map_or(0, str::len) + data.len() + extra
}

/// A WebSocket opcode the server sends (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// "%x1 denotes a text frame".
    Text = 0x1,
    /// "%x8 denotes a connection close".
    Close = 0x8,
    /// "%x9 denotes a ping".
    Ping = 0x9,
    /// "%xA denotes a pong".
    Pong = 0xA,
}

/// One complete server → client WebSocket frame. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// Wraps `payload` in a final, unmasked frame of `opcode`. One allocation, O(n).
    pub fn new(opcode: Opcode, payload: &[u8]) -> Frame {
        let mut buf = FrameBuf::new(payload.len());
        buf.payload().put_slice(payload);
        buf.finish(opcode)
    }

    /// A text frame holding `json`.
    pub fn text(json: &[u8]) -> Frame {
        Frame::new(Opcode::Text, json)
    }

    /// A close frame with `code` and a reason (cut to fit the 123 bytes a control frame
    /// allows, on a character boundary).
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = Vec::with_capacity(2 + end);
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        Frame::new(Opcode::Close, &payload)
    }

    /// The whole frame, header included, as it goes on the wire. O(1).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Consumes the frame into its wire bytes. O(1).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The payload (the JSON text of a text frame). O(1).
    pub fn payload(&self) -> &[u8] {
        &self.0[header_len(&self.0)..]
    }

    /// The frame's length on the wire.
    pub fn wire_len(&self) -> usize {
        self.0.len()
    }
}

/// The payload of a complete server frame given as wire bytes (as drained from a
/// [`Connection`](crate::Connection)). O(1).
pub fn payload_of(wire: &[u8]) -> &[u8] {
    wire.get(header_len(wire)..).unwrap_or_default()
}

fn header_len(frame: &[u8]) -> usize {
    match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    }
}

/// A frame under construction: payload bytes are appended after room for the header.
struct FrameBuf(BytesMut);

impl FrameBuf {
    fn new(payload_hint: usize) -> FrameBuf {
        FrameBuf::in_buf(BytesMut::with_capacity(MAX_HEADER + payload_hint))
    }

    /// Starts a frame in `b`, which must be empty.
    fn in_buf(mut b: BytesMut) -> FrameBuf {
        debug_assert!(b.is_empty());
        b.put_bytes(0, MAX_HEADER);
        FrameBuf(b)
    }

    fn payload(&mut self) -> &mut BytesMut {
        &mut self.0
    }

    fn finish(self, opcode: Opcode) -> Frame {
        let mut b = self.0;
        let len = b.len() - MAX_HEADER;
        let mut header = [0u8; MAX_HEADER];
        header[0] = 0x80 | opcode as u8;
        let hlen = if len < 126 {
            header[1] = len as u8;
            2
        } else if len <= u16::MAX as usize {
            header[1] = 126;
            header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        } else {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        let start = MAX_HEADER - hlen;
        b[start..MAX_HEADER].copy_from_slice(&header[..hlen]);
        let mut bytes = b.freeze();
        bytes.advance(start);
        Frame(bytes)
    }
}

/// Where an event frame says it came from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A user event with its per-user seq.
    User {
        /// The seq.
        seq: u64,
    },
    /// A channel event.
    Channel(&'a str),
    /// A broadcast event (`"channel":"*"`).
    Broadcast,
}

/// The fields of an event frame.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    /// The type.
    pub kind: &'a EventKind,
    /// Seq or channel.
    pub origin: Origin<'a>,
    /// The run, if any.
    pub run_id: Option<&'a str>,
    /// Milliseconds since the Unix epoch, rendered as RFC 3339 UTC.
    pub ts_ms: u64,
    /// The priority.
    pub priority: Priority,
    /// The publisher's JSON data, spliced in as is.
    pub data: &'a [u8],
    /// Extra members (`"key":value,...` without braces) spliced in before `data`, if any.
    pub extra: Option<&'a [u8]>,
}

/// Buffers of frames a shard no longer holds, reused for its next frames.
///
/// A user's history evicts its oldest frame as it records a new one. Without reuse, every
/// per-user publish allocates a frame buffer and frees one allocated long before, in FIFO
/// order: the allocator sees whole pages go empty, returns them to the kernel and faults
/// fresh zeroed pages back in for the next frames, which measured 15–35% of a shard's time
/// in steady per-user load. A frame evicted from the history is usually unique by then (its
/// connections wrote it long ago), so its buffer comes back without a copy
/// ([`Bytes::try_into_mut`]) and the next frame is written into it.
///
/// Bounded: at most [`FramePool::MAX`] buffers of at most [`FramePool::MAX_BYTES`] each.
#[derive(Debug, Default)]
pub struct FramePool {
    bufs: Vec<BytesMut>,
}

impl FramePool {
    /// Most buffers kept.
    pub const MAX: usize = 32;
    /// Largest buffer kept (bigger frames are freed as usual).
    pub const MAX_BYTES: usize = 4096;

    /// Keeps `frame`'s buffer if nothing else refers to it and there is room.
    pub fn recycle(&mut self, frame: Bytes) {
        if self.bufs.len() >= Self::MAX || frame.len() > Self::MAX_BYTES {
            return;
        }
        if let Ok(mut b) = frame.try_into_mut() {
            b.clear();
            if b.capacity() <= Self::MAX_BYTES {
                self.bufs.push(b);
            }
        }
    }

    /// Hints the CPU to fetch, for writing, the lines the next encode of a frame with a
    /// `payload_hint`-byte payload writes, if it takes the buffer on top of the pool. Kept
    /// buffers belonged to frames evicted from a history, usually long unused and out of
    /// cache: without the hint, the encode stalls on each line it writes. (A recycle between
    /// this call and the encode puts another buffer on top; the hint is then wasted, nothing
    /// more.)
    pub(crate) fn prefetch_next(&self, payload_hint: usize) {
        if let Some(b) = self.bufs.last() {
            // The kept buffer starts up to `MAX_HEADER` bytes before `as_ptr()` (the frame
            // header's unused bytes), and `take` moves writing back to that start.
            let start = (b.as_ptr() as usize).saturating_sub(MAX_HEADER);
            let end = b.as_ptr() as usize + payload_hint.min(b.capacity());
            let mut line = start & !63;
            while line < end {
                crate::prefetch::prefetch_write(line as *const u8);
                line += 64;
            }
        }
    }

    /// Buffers held.
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    /// Whether no buffer is held.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// An empty buffer of at least `capacity` bytes: a kept one when there is one.
    fn take(&mut self, capacity: usize) -> BytesMut {
        match self.bufs.pop() {
            Some(mut b) => {
                // Reclaims the front of the buffer (the frame header's unused bytes) and
                // grows it only if this frame is bigger than the one it held.
                b.reserve(capacity);
                b
            }
            None => BytesMut::with_capacity(capacity),
        }
    }
}

/// Encodes an event frame: one allocation, one pass. See the [module docs](self) for the shape.
pub fn encode_event(f: &EventFields<'_>) -> Frame {
    encode_event_in(None, f)
}

/// [`encode_event`] into a buffer from `pool` when it has one (see [`FramePool`]).
pub fn encode_event_pooled(f: &EventFields<'_>, pool: &mut FramePool) -> Frame {
    encode_event_in(Some(pool), f)
}

fn encode_event_in(pool: Option<&mut FramePool>, f: &EventFields<'_>) -> Frame {
    let hint = payload_hint(
        f.kind.as_str(),
        f.run_id,
        f.data,
        f.extra.map_or(0, <[u8]>::len),
    );
    let mut buf = match pool {
        Some(pool) => FrameBuf::in_buf(pool.take(MAX_HEADER + hint)),
        None => FrameBuf::new(hint),
    };
    let b = buf.payload();
    b.put_slice(b"{\"type\":");
    write_str(b, f.kind.as_str());
    match f.origin {
        Origin::User { seq } => {
            b.put_slice(b",\"seq\":");
            write_u64(b, seq);
        }
        Origin::Channel(c) => {
            b.put_slice(b",\"channel\":");
            write_str(b, c);
        }
        Origin::Broadcast => b.put_slice(b",\"channel\":\"*\""),
    }
    if let Some(run) = f.run_id {
        b.put_slice(b",\"run_id\":");
        write_str(b, run);
    }
    b.put_slice(b",\"ts\":\"");
    write_rfc3339_ms(b, f.ts_ms);
    b.put_slice(b"\",\"priority\":\"");
    b.put_slice(f.priority.as_str().as_bytes());
    b.put_slice(b"\",");
    if let Some(extra) = f.extra {
        b.put_slice(extra);
        b.put_u8(b',');
    }
    b.put_slice(b"\"data\":");
    b.put_slice(f.data);
    b.put_u8(b'}');
    buf.finish(Opcode::Text)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    crate::clock::system_now_ms()
}

/// Appends `s` as a JSON string (quotes, escapes for `"`, `\` and control characters).
pub fn write_str(b: &mut BytesMut, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    b.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        b.put_slice(&bytes[start..i]);
        if esc.is_empty() {
            b.put_slice(b"\\u00");
            b.put_u8(HEX[(c >> 4) as usize]);
            b.put_u8(HEX[(c & 0xf) as usize]);
        } else {
            b.put_slice(esc);
        }
        start = i + 1;
    }
    b.put_slice(&bytes[start..]);
    b.put_u8(b'"');
}

/// Appends the decimal digits of `n`.
pub fn write_u64(b: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    b.put_slice(&digits[i..]);
}

/// Appends `YYYY-MM-DDTHH:MM:SS.mmmZ` for `ms` since the Unix epoch (UTC; years 1970–9999).
pub fn write_rfc3339_ms(b: &mut BytesMut, ms: u64) {
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, v: u64, width: usize| {
        let mut v = v;
        for k in (0..width).rev() {
            out[at + k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y as u64, 4);
    put(5, mo as u64, 2);
    put(8, d as u64, 2);
    put(11, sod / 3600, 2);
    put(14, sod / 60 % 60, 2);
    put(17, sod % 60, 2);
    put(20, ms % 1000, 3);
    b.put_slice(&out);
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(data: &[u8]) -> EventFields<'_> {
        EventFields {
            kind: &crate::event::EventKind::ToolExecuting,
            origin: Origin::User {
                seq: 1_764_000_000_000_001,
            },
            run_id: Some("run-1"),
            ts_ms: 1_764_000_000_000,
            priority: Priority::Normal,
            data,
            extra: None,
        }
    }

    #[test]
    fn pooled_frames_reuse_evicted_buffers_and_match_fresh_ones() {
        let data = br#"{"note":"0123456789012345678901234567890123456789"}"#;
        let mut pool = FramePool::default();
        let first = encode_event_pooled(&fields(data), &mut pool).into_bytes();
        assert_eq!(first, encode_event(&fields(data)).into_bytes());
        let addr = first.as_ptr() as usize;

        // Still shared (a connection holds it): not reused.
        let held = first.clone();
        pool.recycle(first);
        assert!(pool.is_empty());

        // Unique: its buffer serves the next frame, with identical bytes.
        pool.recycle(held);
        assert_eq!(pool.len(), 1);
        let second = encode_event_pooled(&fields(data), &mut pool).into_bytes();
        assert!(pool.is_empty());
        assert_eq!(second, encode_event(&fields(data)).into_bytes());
        let base = second.as_ptr() as usize;
        assert!(
            base.abs_diff(addr) <= MAX_HEADER,
            "the recycled allocation holds the new frame"
        );

        // A bigger frame grows the recycled buffer; frames over the size limit are not kept.
        pool.recycle(second);
        let big = vec![b'7'; 3000];
        let grown = encode_event_pooled(&fields(&big), &mut pool).into_bytes();
        assert_eq!(grown, encode_event(&fields(&big)).into_bytes());
        let huge = vec![b'8'; FramePool::MAX_BYTES + 1];
        pool.recycle(encode_event(&fields(&huge)).into_bytes());
        assert!(pool.is_empty());

        // Bounded count.
        for _ in 0..FramePool::MAX + 10 {
            pool.recycle(encode_event(&fields(data)).into_bytes());
        }
        assert_eq!(pool.len(), FramePool::MAX);
    }

    fn ts(ms: u64) -> String {
        let mut b = BytesMut::new();
        write_rfc3339_ms(&mut b, ms);
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn timestamps_are_rfc3339_utc_ms() {
        assert_eq!(ts(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(ts(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(ts(1_795_000_000_999), "2026-11-18T11:06:40.999Z");
    }

    #[test]
    fn header_lengths_follow_rfc6455() {
        for (len, hlen) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let f = Frame::text(&vec![b'a'; len]);
            assert_eq!(f.wire_len(), len + hlen, "len {len}");
            assert_eq!(f.as_bytes()[0], 0x81);
            assert_eq!(f.payload().len(), len);
        }
    }

    #[test]
    fn event_frame_is_valid_json_with_escaped_strings() {
        let kind = EventKind::parse("my.type").unwrap();
        let f = encode_event(&EventFields {
            kind: &kind,
            origin: Origin::Channel("job:1"),
            run_id: Some("r\"1\n\u{1}é"),
            ts_ms: 0,
            priority: Priority::Normal,
            data: br#"{"x":[1,2]}"#,
            extra: None,
        });
        let text = std::str::from_utf8(f.payload()).unwrap();
        assert_eq!(
            text,
            r#"{"type":"my.type","channel":"job:1","run_id":"r\"1\n\u0001é","ts":"1970-01-01T00:00:00.000Z","priority":"normal","data":{"x":[1,2]}}"#
        );
        crate::json::validate(f.payload()).unwrap();
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let f = Frame::close(1013, &"é".repeat(100));
        assert!(f.payload().len() <= 125);
        assert_eq!(&f.payload()[..2], &1013u16.to_be_bytes());
        std::str::from_utf8(&f.payload()[2..]).unwrap();
    }
}
