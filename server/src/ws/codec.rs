//! Sans-IO decoder of client → server WebSocket frames (RFC 6455 §5).
//!
//! The [`Decoder`] is fed raw bytes as they arrive ([`Decoder::feed`]) and yields whole
//! [`Message`]s ([`Decoder::next_message`]). It does no I/O and holds no timer, so it is
//! deterministic, unit-tested here and fuzzable.
//!
//! # What it enforces
//!
//! - Every client frame is masked (§5.1: "a server MUST close the connection upon receiving a
//!   frame that is not masked"); the payload is unmasked in place.
//! - RSV1–3 must be clear (no extension is ever negotiated) and the opcode must be one of the
//!   six defined ones.
//! - Control frames (close, ping, pong) are final and carry at most 125 bytes; they may arrive
//!   between the fragments of a data message.
//! - Fragmented data messages are reassembled; a stray continuation, or a new data frame
//!   before the previous message's final fragment, is a protocol error.
//! - Text messages are valid UTF-8 (checked once the message is complete); close reasons too.
//!
//! # Oversize messages
//!
//! The message size limit is checked against each frame's *declared* length before its payload
//! is buffered, so a 16 MiB length header costs no memory. A data message modestly over the
//! limit is reported once as [`Message::Oversize`] and its payload (and any continuation
//! frames of it) is then discarded as it streams in, so the connection stays usable: the
//! caller answers with an application `error` message rather than a close.
//!
//! A message whose declared length (fragments so far included) exceeds
//! [`CLOSE_CEILING_FACTOR`] × the limit is [`ProtocolError::TooLarge`] at once, before any of
//! its payload is read: the caller closes with 1009. Otherwise a client could announce 2^63 − 1
//! bytes and keep the connection (and the server's attention) forever by trickling payload.
//!
//! # Memory
//!
//! The decoder buffers at most one incomplete frame (a frame header, a ≤ 125-byte control
//! payload, or a data payload within the size limit) plus the fragments of one message. When
//! it runs empty it releases any buffer grown past [`RETAINED_CAPACITY`], so an idle
//! connection holds at most that much here, whatever it received before.
//!
//! ```
//! use agentcast_server::ws::codec::{Decoder, Message};
//!
//! let mut dec = Decoder::new(1024);
//! // A masked text frame "hi" with mask key 0,0,0,0.
//! dec.feed(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
//! assert_eq!(dec.next_message().unwrap(), Some(Message::Text("hi".into())));
//! assert_eq!(dec.next_message().unwrap(), None);
//! ```

use thiserror::Error;

/// Buffer capacity a decoder keeps once it has no pending bytes; larger buffers are freed.
pub const RETAINED_CAPACITY: usize = 1024;

/// A data message declaring more than this many times the message limit closes the
/// connection with 1009 instead of being skipped (see the [module docs](self)).
pub const CLOSE_CEILING_FACTOR: u64 = 64;

/// The longest payload a control frame may carry (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// One complete message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// "%x1 denotes a text frame": a whole text message, valid UTF-8.
    Text(String),
    /// "%x2 denotes a binary frame": a whole binary message.
    Binary(Vec<u8>),
    /// "%x9 denotes a ping": answer with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// "%xA denotes a pong": proof of life.
    Pong(Vec<u8>),
    /// "%x8 denotes a connection close": echo a close and stop reading.
    Close(Option<CloseFrame>),
    /// A data message whose length exceeds the limit; its bytes are being discarded.
    Oversize {
        /// The message length declared so far (fragments already received plus this frame).
        len: u64,
    },
}

/// The payload of a close frame (RFC 6455 §5.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: u16,
    /// The UTF-8 reason.
    pub reason: String,
}

/// A violation of RFC 6455 by the client: the connection must be closed with
/// [`ProtocolError::close_code`]. Nothing more should be read from it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// §5.1: "The server MUST close the connection upon receiving a frame that is not masked."
    #[error("client frame is not masked")]
    Unmasked,
    /// §5.2: "RSV1, RSV2, RSV3 … MUST be 0 unless an extension is negotiated".
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// §5.2: opcodes 0x3–0x7 and 0xB–0xF are reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// §5.5: "All control frames … MUST NOT be fragmented."
    #[error("fragmented control frame")]
    FragmentedControl,
    /// §5.5: "All control frames MUST have a payload length of 125 bytes or less".
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// A continuation frame with no message to continue.
    #[error("continuation frame without a fragmented message")]
    UnexpectedContinuation,
    /// A new data frame before the final fragment of the previous message.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// §5.2: "the most significant bit MUST be 0" in a 64-bit length.
    #[error("64-bit payload length with the most significant bit set")]
    BadLength,
    /// §8.1: a text message (or close reason) that is not valid UTF-8.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    /// §5.5.1 / §7.4: a 1-byte close payload or a code a peer may not send.
    #[error("invalid close frame")]
    BadClose,
    /// §7.4.1 1009: "a message that is too big for it to process": the declared length is
    /// over [`CLOSE_CEILING_FACTOR`] × the limit.
    #[error("message length far over the limit")]
    TooLarge,
}

impl ProtocolError {
    /// The close code to send: 1007 for invalid UTF-8, 1009 (message too big) for
    /// [`ProtocolError::TooLarge`], 1002 (protocol error) otherwise.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 => 1007,
            ProtocolError::TooLarge => 1009,
            _ => 1002,
        }
    }
}

/// A fragmented data message being reassembled.
#[derive(Debug)]
struct Partial {
    text: bool,
    data: Vec<u8>,
}

/// Incremental decoder of client frames. See the [module docs](self).
#[derive(Debug)]
pub struct Decoder {
    /// Bytes received and not yet consumed, from `pos`.
    buf: Vec<u8>,
    /// Offset of the first unconsumed byte in `buf`.
    pos: usize,
    /// The largest data message accepted, in bytes.
    max_message: usize,
    /// The fragments of an unfinished data message.
    partial: Option<Partial>,
    /// Payload bytes of the current (oversize) frame still to discard.
    discard_frame: u64,
    /// Whether continuation frames belong to an oversize message being discarded.
    discarding_message: bool,
    /// Declared length of the oversize message being discarded, fragments so far included.
    discarded_len: u64,
    /// Declared message length beyond which the connection is closed (1009).
    ceiling: u64,
    /// Set once a close frame was decoded: nothing after it is read.
    closed: bool,
}

/// A parsed frame header.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    len: u64,
    header_len: usize,
}

impl Decoder {
    /// A decoder that accepts data messages of at most `max_message` bytes, skips those up to
    /// [`CLOSE_CEILING_FACTOR`] × `max_message`, and refuses longer ones. Allocates nothing
    /// until bytes are fed.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            pos: 0,
            max_message,
            partial: None,
            discard_frame: 0,
            discarding_message: false,
            discarded_len: 0,
            ceiling: (max_message as u64).saturating_mul(CLOSE_CEILING_FACTOR),
            closed: false,
        }
    }

    /// Appends received bytes. Bytes of an oversize payload being discarded are dropped here
    /// without being buffered. O(n).
    pub fn feed(&mut self, mut data: &[u8]) {
        if self.closed {
            return;
        }
        if self.discard_frame > 0 && self.pos == self.buf.len() {
            let n = (data.len() as u64).min(self.discard_frame);
            self.discard_frame -= n;
            data = &data[n as usize..];
        }
        if data.is_empty() {
            return;
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet decoded (for memory accounting and tests).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos + self.partial.as_ref().map_or(0, |p| p.data.len())
    }

    /// Heap capacity held by the decoder's buffers.
    pub fn capacity(&self) -> usize {
        self.buf.capacity() + self.partial.as_ref().map_or(0, |p| p.data.capacity())
    }

    /// Decodes the next complete message, or `Ok(None)` when more bytes are needed.
    ///
    /// After an error, or after a [`Message::Close`], it returns `Ok(None)` forever: the
    /// caller closes the connection.
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        let out = self.decode();
        if out.is_err() {
            self.closed = true;
            self.buf = Vec::new();
            self.pos = 0;
            self.partial = None;
        }
        if matches!(out, Ok(None)) {
            self.compact();
        }
        out
    }

    fn decode(&mut self) -> Result<Option<Message>, ProtocolError> {
        loop {
            if self.closed {
                return Ok(None);
            }
            if self.discard_frame > 0 {
                let avail = (self.buf.len() - self.pos) as u64;
                let n = avail.min(self.discard_frame);
                self.pos += n as usize;
                self.discard_frame -= n;
                if self.discard_frame > 0 {
                    return Ok(None);
                }
            }
            let Some(h) = self.header()? else {
                return Ok(None);
            };
            let control = h.opcode & 0x8 != 0;
            if control {
                if !h.fin {
                    return Err(ProtocolError::FragmentedControl);
                }
                if h.len > MAX_CONTROL_PAYLOAD {
                    return Err(ProtocolError::ControlTooLong);
                }
            } else {
                match (h.opcode, &self.partial, self.discarding_message) {
                    (0, _, true) => {
                        // A continuation of an oversize message: drop it as it streams in,
                        // unless the message as declared so far passes the ceiling.
                        self.discarded_len = self.discarded_len.saturating_add(h.len);
                        if self.discarded_len > self.ceiling {
                            return Err(ProtocolError::TooLarge);
                        }
                        self.pos += h.header_len;
                        self.discard_frame = h.len;
                        self.discarding_message = !h.fin;
                        continue;
                    }
                    (0, None, false) => return Err(ProtocolError::UnexpectedContinuation),
                    (1 | 2, Some(_), _) | (1 | 2, None, true) => {
                        return Err(ProtocolError::ExpectedContinuation);
                    }
                    _ => {}
                }
                let held = self.partial.as_ref().map_or(0, |p| p.data.len() as u64);
                let total = held.saturating_add(h.len);
                if total > self.ceiling {
                    return Err(ProtocolError::TooLarge);
                }
                if total > self.max_message as u64 {
                    self.discarded_len = total;
                    self.pos += h.header_len;
                    self.discard_frame = h.len;
                    self.discarding_message = !h.fin;
                    self.partial = None;
                    return Ok(Some(Message::Oversize { len: total }));
                }
            }
            // The length is now bounded (≤ 125 or ≤ max_message), so buffering it is safe.
            let len = h.len as usize;
            let start = self.pos + h.header_len;
            if self.buf.len() - start < len {
                return Ok(None);
            }
            let payload = &mut self.buf[start..start + len];
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= h.mask[i & 3];
            }
            self.pos = start + len;
            let payload = &self.buf[start..start + len];
            let msg = match h.opcode {
                0x8 => {
                    self.closed = true;
                    Message::Close(parse_close(payload)?)
                }
                0x9 => Message::Ping(payload.to_vec()),
                0xA => Message::Pong(payload.to_vec()),
                op => {
                    let partial = match self.partial.take() {
                        Some(mut p) => {
                            p.data.extend_from_slice(payload);
                            p
                        }
                        None if h.fin => {
                            return finish(op == 0x1, payload.to_vec()).map(Some);
                        }
                        None => Partial {
                            text: op == 0x1,
                            data: payload.to_vec(),
                        },
                    };
                    if !h.fin {
                        self.partial = Some(partial);
                        continue;
                    }
                    finish(partial.text, partial.data)?
                }
            };
            return Ok(Some(msg));
        }
    }

    /// Parses the header at `pos`, if all of it has arrived.
    fn header(&self) -> Result<Option<Header>, ProtocolError> {
        let b = &self.buf[self.pos..];
        if b.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (b[0], b[1]);
        if b0 & 0x70 != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        let opcode = b0 & 0x0f;
        if !matches!(opcode, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xA) {
            return Err(ProtocolError::ReservedOpcode(opcode));
        }
        if b1 & 0x80 == 0 {
            return Err(ProtocolError::Unmasked);
        }
        let (ext, len7) = match b1 & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        let header_len = 2 + ext + 4;
        if b.len() < header_len {
            return Ok(None);
        }
        let len = match len7 {
            Some(n) => n,
            None if ext == 2 => u64::from(u16::from_be_bytes([b[2], b[3]])),
            None => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[2..10]);
                let n = u64::from_be_bytes(a);
                if n >> 63 != 0 {
                    return Err(ProtocolError::BadLength);
                }
                n
            }
        };
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&b[2 + ext..header_len]);
        Ok(Some(Header {
            fin: b0 & 0x80 != 0,
            opcode,
            mask,
            len,
            header_len,
        }))
    }

    /// Drops consumed bytes; frees a buffer grown past [`RETAINED_CAPACITY`] once empty.
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.pos = 0;
            if self.buf.capacity() > RETAINED_CAPACITY {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
        }
    }
}

fn finish(text: bool, data: Vec<u8>) -> Result<Message, ProtocolError> {
    if text {
        String::from_utf8(data)
            .map(Message::Text)
            .map_err(|_| ProtocolError::InvalidUtf8)
    } else {
        Ok(Message::Binary(data))
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::BadClose),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            // §7.4: 1004–1006 and 1015 are reserved; below 1000 and 1016–2999 are unassigned.
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !allowed {
                return Err(ProtocolError::BadClose);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

/// Builds a masked client frame (for tests and fuzz seeds): `fin`, `opcode`, `payload`, `mask`.
pub fn encode_client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0f));
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

#[cfg(test)]
mod tests;
