//! NDJSON streaming publish framing: any bytes, cut into any chunks, give the same lines as
//! the whole input at once; no line is over the limit or holds a `\n`; numbers increase;
//! memory stays bounded. The first two bytes choose the limit and the chunk size.
#![no_main]
use agentcast_engine::ndjson::{Line, LineSplitter};
use bytes::Bytes;

fn split(max: usize, chunks: impl Iterator<Item = Bytes>) -> Vec<Line> {
    let mut s = LineSplitter::new(max);
    let mut out = Vec::new();
    for c in chunks {
        s.push(c);
        while let Some(l) = s.next_line() {
            out.push(l);
        }
        assert!(s.buffered() <= max + 1, "bounded memory");
    }
    out.extend(s.finish());
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [max, step, rest @ ..] = data else { return };
    let (max, step) = (usize::from(*max % 64), usize::from(*step % 16) + 1);
    let whole = split(max, std::iter::once(Bytes::copy_from_slice(rest)));
    let cut = split(max, rest.chunks(step).map(Bytes::copy_from_slice));
    assert_eq!(whole, cut);
    let mut last = 0;
    for l in &whole {
        let n = match l {
            Line::Complete { number, bytes } => {
                assert!(bytes.len() <= max && !bytes.contains(&b'\n'));
                *number
            }
            Line::Oversize { number } => *number,
        };
        assert!(n > last);
        last = n;
    }
});
