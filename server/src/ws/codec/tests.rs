//! Unit tests of the sans-IO decoder.

use super::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_client_frame(fin, opcode, payload, MASK)
}

fn decode_all(dec: &mut Decoder) -> Result<Vec<Message>, ProtocolError> {
    let mut out = Vec::new();
    while let Some(m) = dec.next_message()? {
        out.push(m);
    }
    Ok(out)
}

#[test]
fn masked_text_is_unmasked() {
    let mut dec = Decoder::new(1024);
    dec.feed(&frame(true, 1, b"Hello"));
    assert_eq!(
        decode_all(&mut dec).unwrap(),
        [Message::Text("Hello".into())]
    );
}

#[test]
fn unmasked_frame_is_a_protocol_error() {
    let mut dec = Decoder::new(1024);
    dec.feed(&[0x81, 0x02, b'h', b'i']);
    assert_eq!(dec.next_message(), Err(ProtocolError::Unmasked));
    assert_eq!(ProtocolError::Unmasked.close_code(), 1002);
    // Nothing is decoded after an error.
    dec.feed(&frame(true, 1, b"x"));
    assert_eq!(dec.next_message(), Ok(None));
}

#[test]
fn bytes_arriving_one_at_a_time_decode_the_same() {
    let mut wire = frame(true, 1, &[b'a'; 300]);
    wire.extend(frame(true, 9, b"p"));
    let mut dec = Decoder::new(1024);
    let mut got = Vec::new();
    for b in wire {
        dec.feed(&[b]);
        got.extend(decode_all(&mut dec).unwrap());
    }
    assert_eq!(
        got,
        [Message::Text("a".repeat(300)), Message::Ping(b"p".to_vec())]
    );
}

#[test]
fn fragments_are_reassembled_around_control_frames() {
    let mut dec = Decoder::new(1024);
    dec.feed(&frame(false, 1, b"{\"type\":"));
    dec.feed(&frame(true, 9, b"ping!"));
    dec.feed(&frame(false, 0, b"\"pi"));
    dec.feed(&frame(true, 0, b"ng\"}"));
    assert_eq!(
        decode_all(&mut dec).unwrap(),
        [
            Message::Ping(b"ping!".to_vec()),
            Message::Text("{\"type\":\"ping\"}".into())
        ]
    );
}

#[test]
fn utf8_split_across_fragments_is_accepted() {
    let e = "é".as_bytes();
    let mut dec = Decoder::new(1024);
    dec.feed(&frame(false, 1, &e[..1]));
    dec.feed(&frame(true, 0, &e[1..]));
    assert_eq!(decode_all(&mut dec).unwrap(), [Message::Text("é".into())]);
}

#[test]
fn stray_or_missing_continuations_are_errors() {
    let mut dec = Decoder::new(1024);
    dec.feed(&frame(true, 0, b"x"));
    assert_eq!(
        dec.next_message(),
        Err(ProtocolError::UnexpectedContinuation)
    );
    let mut dec = Decoder::new(1024);
    dec.feed(&frame(false, 1, b"x"));
    dec.feed(&frame(true, 1, b"y"));
    assert_eq!(dec.next_message(), Err(ProtocolError::ExpectedContinuation));
}

#[test]
fn control_frames_must_be_short_and_final() {
    let mut dec = Decoder::new(1024);
    dec.feed(&frame(false, 9, b"x"));
    assert_eq!(dec.next_message(), Err(ProtocolError::FragmentedControl));
    let mut dec = Decoder::new(1024);
    dec.feed(&frame(true, 9, &[0; 126]));
    assert_eq!(dec.next_message(), Err(ProtocolError::ControlTooLong));
}

#[test]
fn reserved_bits_and_opcodes_are_refused() {
    let mut dec = Decoder::new(1024);
    let mut f = frame(true, 1, b"x");
    f[0] |= 0x40;
    dec.feed(&f);
    assert_eq!(dec.next_message(), Err(ProtocolError::ReservedBits));
    for op in [3, 7, 0xB, 0xF] {
        let mut dec = Decoder::new(1024);
        dec.feed(&frame(true, op, b""));
        assert_eq!(dec.next_message(), Err(ProtocolError::ReservedOpcode(op)));
    }
}

#[test]
fn invalid_utf8_text_closes_with_1007() {
    let mut dec = Decoder::new(1024);
    dec.feed(&frame(true, 1, &[0xff, 0xfe]));
    let err = dec.next_message().unwrap_err();
    assert_eq!(err, ProtocolError::InvalidUtf8);
    assert_eq!(err.close_code(), 1007);
}

#[test]
fn close_frames_are_parsed_and_validated() {
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    let mut dec = Decoder::new(1024);
    dec.feed(&frame(true, 8, &payload));
    dec.feed(&frame(true, 1, b"ignored after close"));
    assert_eq!(
        decode_all(&mut dec).unwrap(),
        [Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "bye".into()
        }))]
    );
    for bad in [
        vec![3],
        1005u16.to_be_bytes().to_vec(),
        vec![0x03, 0xe8, 0xff],
    ] {
        let mut dec = Decoder::new(1024);
        dec.feed(&frame(true, 8, &bad));
        assert!(dec.next_message().is_err(), "{bad:?}");
    }
    let mut dec = Decoder::new(1024);
    dec.feed(&frame(true, 8, b""));
    assert_eq!(dec.next_message(), Ok(Some(Message::Close(None))));
}

#[test]
fn a_length_under_the_ceiling_is_skipped_without_buffering() {
    let mut dec = Decoder::new(4096);
    let len = 4096 * CLOSE_CEILING_FACTOR;
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&MASK);
    dec.feed(&header);
    assert_eq!(dec.next_message(), Ok(Some(Message::Oversize { len })));
    // The payload streams through without being kept.
    let chunk = vec![0u8; 64 * 1024];
    for _ in 0..len / (64 * 1024) {
        dec.feed(&chunk);
        assert_eq!(dec.next_message(), Ok(None));
        assert_eq!(dec.buffered(), 0);
    }
    assert!(dec.capacity() <= RETAINED_CAPACITY);
    // The connection is usable afterwards.
    dec.feed(&frame(true, 1, b"ok"));
    assert_eq!(dec.next_message(), Ok(Some(Message::Text("ok".into()))));
}

#[test]
fn an_oversize_fragmented_message_is_skipped_whole() {
    let mut dec = Decoder::new(8);
    dec.feed(&frame(false, 1, b"12345"));
    dec.feed(&frame(false, 0, b"67890"));
    dec.feed(&frame(true, 9, b""));
    dec.feed(&frame(true, 0, b"more"));
    dec.feed(&frame(true, 1, b"next"));
    assert_eq!(
        decode_all(&mut dec).unwrap(),
        [
            Message::Oversize { len: 10 },
            Message::Ping(Vec::new()),
            Message::Text("next".into())
        ]
    );
}

#[test]
fn length_with_top_bit_set_is_a_protocol_error() {
    let mut dec = Decoder::new(4096);
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&u64::MAX.to_be_bytes());
    header.extend_from_slice(&MASK);
    dec.feed(&header);
    assert_eq!(dec.next_message(), Err(ProtocolError::BadLength));
}

#[test]
fn buffer_is_released_after_a_big_message() {
    let mut dec = Decoder::new(64 * 1024);
    dec.feed(&frame(true, 2, &vec![7u8; 60_000]));
    assert!(matches!(dec.next_message(), Ok(Some(Message::Binary(b))) if b.len() == 60_000));
    assert_eq!(dec.next_message(), Ok(None));
    assert!(dec.capacity() <= RETAINED_CAPACITY, "{}", dec.capacity());
}

#[test]
fn a_length_over_the_ceiling_is_too_large_at_once() {
    for len in [
        (4096 * CLOSE_CEILING_FACTOR) + 1,
        16 << 20,
        (1u64 << 63) - 1,
    ] {
        let mut dec = Decoder::new(4096);
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&len.to_be_bytes());
        header.extend_from_slice(&MASK);
        dec.feed(&header);
        let err = dec.next_message().unwrap_err();
        assert_eq!(err, ProtocolError::TooLarge, "{len}");
        assert_eq!(err.close_code(), 1009);
        assert_eq!(dec.next_message(), Ok(None));
    }
}

#[test]
fn continuations_past_the_ceiling_are_too_large() {
    let mut dec = Decoder::new(64);
    dec.feed(&frame(false, 1, &[b'a'; 100]));
    assert_eq!(dec.next_message(), Ok(Some(Message::Oversize { len: 100 })));
    // 100 + 40 * 100 = 4,100 bytes declared: over 64 x 64 = 4,096.
    for _ in 0..39 {
        dec.feed(&frame(false, 0, &[b'a'; 100]));
        assert_eq!(dec.next_message(), Ok(None));
    }
    dec.feed(&frame(false, 0, &[b'a'; 100]));
    assert_eq!(dec.next_message(), Err(ProtocolError::TooLarge));
}
