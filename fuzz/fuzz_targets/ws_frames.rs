//! Client WebSocket frames through the server's sans-IO decoder: any bytes, fed whole or split
//! at arbitrary points, give the same messages and the same error; never a panic; never more
//! buffered than one message plus one frame header (plus one interleaved control frame).
//!
//! Input: byte 0 picks the message limit, byte 1 seeds the split points; with bit 0 of byte 0
//! set, the rest describes frames (flags, opcode, mask, payload) that are encoded as masked
//! client frames, so the decoder's deep paths are reached without guessing masks and lengths.
#![no_main]
use agentcast_server::ws::codec::{
    Decoder, Message, ProtocolError, RETAINED_CAPACITY, encode_client_frame,
};
use libfuzzer_sys::arbitrary::Unstructured;

/// A frame header (14 bytes at most) plus one control frame (6 + 125) besides the message.
const SLACK: usize = 14 + 131;

fn decode(max: usize, chunks: &[&[u8]]) -> (Vec<Message>, Option<ProtocolError>) {
    let mut dec = Decoder::new(max);
    let mut out = Vec::new();
    for chunk in chunks {
        dec.feed(chunk);
        loop {
            match dec.next_message() {
                Ok(Some(m)) => {
                    match &m {
                        Message::Text(t) => assert!(t.len() <= max),
                        Message::Binary(b) => assert!(b.len() <= max),
                        Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
                        Message::Oversize { len } => assert!(*len > max as u64),
                        Message::Close(_) => {}
                    }
                    let closed = matches!(m, Message::Close(_));
                    out.push(m);
                    if closed {
                        // Nothing after a close is decoded.
                        dec.feed(&encode_client_frame(true, 1, b"x", [1, 2, 3, 4]));
                        assert_eq!(dec.next_message(), Ok(None));
                        return (out, None);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
                    assert_eq!(dec.next_message(), Ok(None));
                    return (out, Some(e));
                }
            }
        }
        assert!(
            dec.buffered() <= max + SLACK,
            "buffered {} > {max} + {SLACK}",
            dec.buffered()
        );
        if dec.buffered() == 0 {
            assert!(dec.capacity() <= RETAINED_CAPACITY, "{}", dec.capacity());
        }
    }
    (out, None)
}

/// Encodes frames described by the fuzzer's bytes.
fn structured(u: &mut Unstructured<'_>) -> Vec<u8> {
    let mut wire = Vec::new();
    while !u.is_empty() {
        let flags: u8 = u.arbitrary().unwrap_or(0);
        let opcode = match flags & 0x7 {
            0 => 0x0,
            1 | 2 => 0x1,
            3 => 0x2,
            4 => 0x8,
            5 => 0x9,
            6 => 0xA,
            _ => u.int_in_range(0..=15).unwrap_or(3),
        };
        let fin = flags & 0x8 == 0;
        let mask: [u8; 4] = u.arbitrary().unwrap_or([0; 4]);
        let len = u.int_in_range(0..=300u16).unwrap_or(0) as usize;
        let payload = u.bytes(len.min(u.len())).unwrap_or_default();
        let mut f = encode_client_frame(fin, opcode, payload, mask);
        if flags & 0x10 != 0 {
            f[0] |= 0x40; // RSV1
        }
        if flags & 0x20 != 0 {
            f[1] &= 0x7f; // unmasked
        }
        wire.extend_from_slice(&f);
    }
    wire
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [cfg, split, rest @ ..] = data else {
        return;
    };
    let max = 64 + usize::from(cfg >> 1) * 16;
    let owned;
    let wire: &[u8] = if cfg & 1 == 1 {
        owned = structured(&mut Unstructured::new(rest));
        &owned
    } else {
        rest
    };
    let whole = decode(max, &[wire]);
    // Split points from a small xorshift seeded by `split`: 1-byte to ~64-byte pieces.
    let mut pieces = Vec::new();
    let (mut x, mut at) = (u32::from(*split) | 0x100, 0usize);
    while at < wire.len() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = 1 + (x as usize % if split & 1 == 0 { 64 } else { 3 });
        let end = (at + n).min(wire.len());
        pieces.push(&wire[at..end]);
        at = end;
    }
    let pieced = decode(max, &pieces);
    assert_eq!(whole, pieced, "whole vs pieces differ");
});
