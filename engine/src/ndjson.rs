//! Sans-IO splitting of an NDJSON byte stream into lines, in bounded memory: the framing of
//! the streaming publish connection (`POST /api/v1/publish/stream`).
//!
//! Bytes go in with [`LineSplitter::push`] in whatever chunks the transport delivers; lines
//! come out of [`LineSplitter::next_line`] one at a time, so the caller decides when it has
//! room for the next one (the streaming publish reads a line only when its window of
//! in-flight publishes has room).
//!
//! # Framing
//!
//! - A line ends at `\n`; one `\r` before it is dropped (CRLF senders work). The line's
//!   bytes never include the terminator.
//! - Lines are numbered from 1 in the order they arrive, empty lines included, so a number
//!   names the same line as the sender's editor would. A line of only spaces, tabs or `\r`
//!   counts as empty: it is skipped, never returned.
//! - At the end of the input ([`LineSplitter::finish`]) an unterminated last line is a line
//!   like the others.
//!
//! # Overflow
//!
//! A line longer than `max_line_bytes` is reported as [`Line::Oversize`] as soon as it is
//! known to be too long, before its newline arrives; its bytes are dropped as they come
//! and the splitter resumes after the next `\n`. Memory held is at most `max_line_bytes` + 1
//! (the start of a line that spans chunks, with a possible `\r`) plus the chunks pushed and not yet consumed: a
//! line inside one chunk is returned as a zero-copy slice of it.
//!
//! ```
//! use agentcast_engine::ndjson::{Line, LineSplitter};
//! use bytes::Bytes;
//!
//! let mut s = LineSplitter::new(8);
//! s.push(Bytes::from_static(b"{\"a\":1}\n\n{\"b\""));
//! assert_eq!(s.next_line(), Some(Line::Complete { number: 1, bytes: Bytes::from_static(b"{\"a\":1}") }));
//! assert_eq!(s.next_line(), None); // line 2 is empty; line 3 is not complete yet
//! s.push(Bytes::from_static(b":2}\r\nthis line is too long\n"));
//! assert_eq!(s.next_line(), Some(Line::Complete { number: 3, bytes: Bytes::from_static(b"{\"b\":2}") }));
//! assert_eq!(s.next_line(), Some(Line::Oversize { number: 4 }));
//! assert_eq!(s.next_line(), None);
//! assert_eq!(s.finish(), None);
//! ```

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// What the splitter found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete, non-empty line of at most `max_line_bytes` bytes, without its terminator.
    Complete {
        /// 1-based line number.
        number: u64,
        /// The line's bytes (not checked: UTF-8 and JSON are the caller's business).
        bytes: Bytes,
    },
    /// Line `number` is longer than `max_line_bytes`: its bytes were discarded, up to and
    /// including its `\n`.
    Oversize {
        /// 1-based line number.
        number: u64,
    },
}

/// An NDJSON line splitter. See the [module docs](self).
#[derive(Debug)]
pub struct LineSplitter {
    /// The longest line returned, bytes (terminator excluded).
    max: usize,
    /// Chunks pushed and not yet scanned, oldest first; the front may be partly consumed.
    input: VecDeque<Bytes>,
    /// The start of the current line when it spans chunks (never more than `max` bytes).
    carry: BytesMut,
    /// The current line was reported oversize: drop bytes up to the next `\n`.
    skipping: bool,
    /// Number of the current (not yet finished) line.
    number: u64,
    /// Total bytes held in `input` (for [`LineSplitter::buffered`]).
    queued: usize,
}

impl LineSplitter {
    /// A splitter that returns lines of at most `max_line_bytes` bytes.
    pub fn new(max_line_bytes: usize) -> LineSplitter {
        LineSplitter {
            max: max_line_bytes,
            input: VecDeque::new(),
            carry: BytesMut::new(),
            skipping: false,
            number: 1,
            queued: 0,
        }
    }

    /// Adds `chunk` to the input. O(1): the chunk is scanned by [`LineSplitter::next_line`].
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.queued += chunk.len();
            self.input.push_back(chunk);
        }
    }

    /// Bytes held: chunks not yet scanned plus the carried start of a line.
    pub fn buffered(&self) -> usize {
        self.queued + self.carry.len()
    }

    /// The next line, or `None` when the input pushed so far holds no further complete line
    /// (push more, or [`finish`](LineSplitter::finish) at the end). Cost: linear in the
    /// bytes scanned; a line that spans chunks is copied once.
    pub fn next_line(&mut self) -> Option<Line> {
        while let Some(chunk) = self.input.front_mut() {
            let newline = memchr(chunk);
            let (taken, ends) = match newline {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            let part = chunk.split_to(taken);
            if ends {
                // The `\n` itself.
                let _ = chunk.split_to(1);
            }
            self.queued -= taken + usize::from(ends);
            if chunk.is_empty() {
                self.input.pop_front();
            }
            if let Some(line) = self.take(part, ends) {
                return Some(line);
            }
        }
        None
    }

    /// Ends the input: the unterminated last line, if any, as a line. Call after
    /// [`next_line`](LineSplitter::next_line) returned `None`; the splitter is then empty.
    pub fn finish(&mut self) -> Option<Line> {
        if let Some(line) = self.next_line() {
            return Some(line);
        }
        let skipping = std::mem::take(&mut self.skipping);
        if skipping || self.carry.is_empty() {
            self.carry.clear();
            return None;
        }
        let bytes = self.carry.split().freeze();
        self.complete(bytes)
    }

    /// Adds `part` (bytes of the current line) and, when `ends`, closes the line.
    fn take(&mut self, part: Bytes, ends: bool) -> Option<Line> {
        let number = self.number;
        if ends {
            self.number += 1;
        }
        if self.skipping {
            self.skipping = !ends;
            return None;
        }
        // A last `\r` may be the CR of a CRLF, which does not count against the limit.
        let last = part.last().or(self.carry.last()).copied();
        let allowance = usize::from(last == Some(b'\r'));
        if self.carry.len() + part.len() > self.max + allowance {
            // Too long: report it now, drop what was carried and skip to the newline.
            self.carry.clear();
            self.skipping = !ends;
            return Some(Line::Oversize { number });
        }
        if !ends {
            self.carry.extend_from_slice(&part);
            return None;
        }
        let line = if self.carry.is_empty() {
            part
        } else {
            self.carry.extend_from_slice(&part);
            self.carry.split().freeze()
        };
        self.complete_numbered(line, number)
    }

    /// The line just ended at end of input (number not yet advanced).
    fn complete(&mut self, bytes: Bytes) -> Option<Line> {
        let number = self.number;
        self.number += 1;
        self.complete_numbered(bytes, number)
    }

    fn complete_numbered(&self, mut bytes: Bytes, number: u64) -> Option<Line> {
        if bytes.last() == Some(&b'\r') {
            bytes.truncate(bytes.len() - 1);
        }
        if bytes.len() > self.max {
            return Some(Line::Oversize { number });
        }
        if bytes.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
            return None;
        }
        Some(Line::Complete { number, bytes })
    }
}

/// Index of the first `\n`.
fn memchr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max: usize, chunks: &[&[u8]]) -> Vec<Line> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(Bytes::copy_from_slice(c));
            while let Some(l) = s.next_line() {
                out.push(l);
            }
            assert!(s.carry.len() <= max + 1, "carry bounded");
        }
        out.extend(s.finish());
        assert_eq!(s.buffered(), 0);
        out
    }

    fn ok(number: u64, s: &str) -> Line {
        Line::Complete {
            number,
            bytes: Bytes::copy_from_slice(s.as_bytes()),
        }
    }

    #[test]
    fn lines_in_one_chunk_are_numbered_and_empty_ones_skipped() {
        assert_eq!(
            lines(100, &[b"a\n\n  \nb\r\nc"]),
            vec![ok(1, "a"), ok(4, "b"), ok(5, "c")]
        );
    }

    #[test]
    fn a_line_split_across_chunks_is_joined() {
        assert_eq!(
            lines(100, &[b"{\"a\"", b":", b"1}\n{", b"}\n"]),
            vec![ok(1, "{\"a\":1}"), ok(2, "{}")]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_lines() {
        let input: &[u8] = b"one\r\n\ntwo\nthree-too-long\nfour\n";
        let whole = lines(6, &[input]);
        assert_eq!(
            whole,
            vec![
                ok(1, "one"),
                ok(3, "two"),
                Line::Oversize { number: 4 },
                ok(5, "four")
            ]
        );
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let got = lines(6, &[&input[..i], &input[i..j], &input[j..]]);
                assert_eq!(got, whole, "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn an_oversize_line_is_reported_before_its_newline() {
        let mut s = LineSplitter::new(4);
        s.push(Bytes::from_static(b"abcdefgh"));
        assert_eq!(s.next_line(), Some(Line::Oversize { number: 1 }));
        s.push(Bytes::from(vec![b'x'; 10_000]));
        assert_eq!(s.next_line(), None);
        assert_eq!(s.buffered(), 0, "skipped bytes are not kept");
        s.push(Bytes::from_static(b"zz\nok\n"));
        assert_eq!(s.next_line(), Some(ok(2, "ok")));
    }

    #[test]
    fn limit_is_exact_and_excludes_the_terminator() {
        assert_eq!(lines(3, &[b"abc\r\n"]), vec![ok(1, "abc")]);
        assert_eq!(lines(3, &[b"ab", b"c\r", b"\n"]), vec![ok(1, "abc")]);
        assert_eq!(lines(3, &[b"abcd\n"]), vec![Line::Oversize { number: 1 }]);
        assert_eq!(lines(3, &[b"abcd"]), vec![Line::Oversize { number: 1 }]);
        assert_eq!(lines(3, &[b"abc"]), vec![ok(1, "abc")]);
    }

    #[test]
    fn a_line_in_one_chunk_is_not_copied() {
        let chunk = Bytes::from_static(b"hello\n");
        let mut s = LineSplitter::new(10);
        s.push(chunk.clone());
        let Some(Line::Complete { bytes, .. }) = s.next_line() else {
            panic!("a line")
        };
        assert_eq!(bytes.as_ptr(), chunk.as_ptr());
    }
}
