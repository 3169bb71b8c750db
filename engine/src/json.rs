//! Sans-IO reading of untrusted JSON: validation by simd-json, then a flat scan of the top
//! level that hands out each member's raw bytes.
//!
//! Why not a DOM: a DOM re-encodes the publisher's `data` (losing number spellings, key order
//! and escapes) and frees nested values recursively, so 100,000 nested brackets would overflow
//! the stack on drop. Here the whole input is first checked for depth by a byte loop (no
//! recursion, refused beyond [`MAX_DEPTH`]), then validated by simd-json's tape (flat), then
//! scanned once at the top level. Values stay as spans of the input: `data` is copied into
//! frames exactly as given.
//!
//! Every function here takes any bytes and returns an error rather than panicking; memory used
//! is at most a copy of the input plus one entry per top-level member.

use std::borrow::Cow;

use crate::error::ParseError;

/// The deepest nesting of arrays and objects accepted (as serde_json's default).
pub const MAX_DEPTH: usize = 128;

/// A validated JSON document and its top-level members.
#[derive(Debug)]
pub(crate) struct Members<'a> {
    input: &'a [u8],
    members: Vec<(Cow<'a, str>, Span)>,
}

/// The byte range of one value in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Checks nesting depth without recursion. Strings are skipped so brackets inside them do not
/// count. Runs before simd-json so that no later stage sees a deep document.
pub(crate) fn check_depth(input: &[u8]) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in input {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ParseError::TooDeep { max: MAX_DEPTH });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Validates `input` as one JSON value (depth first, then simd-json). O(n); copies the input
/// once because simd-json parses in place.
pub(crate) fn validate(input: &[u8]) -> Result<(), ParseError> {
    check_depth(input)?;
    let mut scratch = input.to_vec();
    simd_json::to_tape(&mut scratch).map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(())
}

fn skip_ws(input: &[u8], mut i: usize) -> usize {
    while i < input.len() && matches!(input[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Index just past the string starting with the quote at `i`.
///
/// Jumps from quote or backslash to the next with `memchr2` (SIMD): enrichment skips every
/// top-level value of each publish's `data`, and long text values dominate.
fn skip_string(input: &[u8], mut i: usize) -> Result<usize, ParseError> {
    i += 1;
    while i < input.len() {
        match memchr::memchr2(b'"', b'\\', &input[i..]) {
            Some(k) if input[i + k] == b'"' => return Ok(i + k + 1),
            Some(k) => i += k + 2,
            None => break,
        }
    }
    Err(ParseError::Json("unterminated string".into()))
}

/// Index just past the value starting at `i` (the input is already validated).
fn skip_value(input: &[u8], i: usize) -> Result<usize, ParseError> {
    match input.get(i) {
        Some(b'"') => skip_string(input, i),
        Some(b'{') | Some(b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < input.len() {
                match input[j] {
                    b'"' => {
                        j = skip_string(input, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err(ParseError::Json("unterminated container".into()))
        }
        Some(_) => {
            let mut j = i;
            while j < input.len()
                && !matches!(input[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            Ok(j)
        }
        None => Err(ParseError::Json("unexpected end of input".into())),
    }
}

/// Decodes the JSON string token `raw` (with its quotes) into text.
pub(crate) fn decode_string(raw: &[u8]) -> Result<Cow<'_, str>, ParseError> {
    let inner = &raw[1..raw.len() - 1];
    if !inner.contains(&b'\\') {
        // simd-json validated the document, so the bytes are UTF-8.
        return std::str::from_utf8(inner)
            .map(Cow::Borrowed)
            .map_err(|e| ParseError::Json(e.to_string()));
    }
    let mut scratch = raw.to_vec();
    let value =
        simd_json::to_borrowed_value(&mut scratch).map_err(|e| ParseError::Json(e.to_string()))?;
    match value {
        simd_json::BorrowedValue::String(s) => Ok(Cow::Owned(s.into_owned())),
        _ => Err(ParseError::Json("expected a string".into())),
    }
}

impl<'a> Members<'a> {
    /// Validates `input` and lists the members of its top-level object. A duplicate key is
    /// refused: two `data` or two `user_id` fields would otherwise be ambiguous.
    pub(crate) fn parse(input: &'a [u8]) -> Result<Members<'a>, ParseError> {
        validate(input)?;
        Self::scan_validated(input)
    }

    /// Scans the top-level object of already validated input.
    pub(crate) fn scan_validated(input: &'a [u8]) -> Result<Members<'a>, ParseError> {
        let mut i = skip_ws(input, 0);
        if input.get(i) != Some(&b'{') {
            return Err(ParseError::TopLevel { expected: "object" });
        }
        i = skip_ws(input, i + 1);
        let mut members: Vec<(Cow<'a, str>, Span)> = Vec::new();
        if input.get(i) == Some(&b'}') {
            return Ok(Members { input, members });
        }
        loop {
            let key_end = skip_string(input, i)?;
            let key = decode_string(&input[i..key_end])?;
            i = skip_ws(input, key_end);
            // ':' (validated)
            i = skip_ws(input, i + 1);
            let end = skip_value(input, i)?;
            if members.iter().any(|(k, _)| *k == key) {
                return Err(ParseError::Duplicate(key.into_owned()));
            }
            members.push((key, Span { start: i, end }));
            i = skip_ws(input, end);
            match input.get(i) {
                Some(b',') => i = skip_ws(input, i + 1),
                _ => break,
            }
        }
        Ok(Members { input, members })
    }

    /// The raw bytes of member `key`, if present.
    pub(crate) fn raw(&self, key: &str) -> Option<&'a [u8]> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| &self.input[s.start..s.end])
    }

    /// The member names, in input order.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(k, _)| k.as_ref())
    }

    /// Member `key` as a string; `None` when absent, an error when not a string.
    pub(crate) fn str(&self, key: &'static str) -> Result<Option<Cow<'a, str>>, ParseError> {
        match self.raw(key) {
            None => Ok(None),
            Some(raw) if raw.first() == Some(&b'"') => decode_string(raw).map(Some),
            Some(_) => Err(ParseError::WrongType {
                field: key,
                expected: "a string",
            }),
        }
    }

    /// Member `key` as a non-negative integer; `None` when absent.
    pub(crate) fn u64(&self, key: &'static str) -> Result<Option<u64>, ParseError> {
        match self.raw(key) {
            None => Ok(None),
            Some(raw) => std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .map(Some)
                .ok_or(ParseError::WrongType {
                    field: key,
                    expected: "a non-negative integer below 2^64",
                }),
        }
    }

    /// Member `key` as a boolean; `None` when absent.
    pub(crate) fn bool(&self, key: &'static str) -> Result<Option<bool>, ParseError> {
        match self.raw(key) {
            None => Ok(None),
            Some(b"true") => Ok(Some(true)),
            Some(b"false") => Ok(Some(false)),
            Some(_) => Err(ParseError::WrongType {
                field: key,
                expected: "a boolean",
            }),
        }
    }
}

/// The top-level members of an already validated object, lazily and without allocating:
/// `(raw key token, raw value)`, the key still quoted and escaped as given. Yields nothing for
/// a non-object and stops at anything unexpected (it never panics).
pub(crate) fn members_lazy(input: &[u8]) -> MembersLazy<'_> {
    let i = skip_ws(input, 0);
    let pos = if input.get(i) == Some(&b'{') {
        Some(skip_ws(input, i + 1))
    } else {
        None
    };
    MembersLazy { input, pos }
}

/// See [`members_lazy`].
#[derive(Debug)]
pub(crate) struct MembersLazy<'a> {
    input: &'a [u8],
    /// Where the next key starts; `None` once done.
    pos: Option<usize>,
}

impl<'a> Iterator for MembersLazy<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let input = self.input;
        let i = self.pos.take()?;
        if input.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(input, i).ok()?;
        let v = skip_ws(input, skip_ws(input, key_end) + 1);
        let end = skip_value(input, v).ok()?;
        let next = skip_ws(input, end);
        if input.get(next) == Some(&b',') {
            self.pos = Some(skip_ws(input, next + 1));
        }
        Some((&input[i..key_end], input.get(v..end)?))
    }
}

/// Splits a validated top-level array into the spans of its elements.
pub(crate) fn array_items(input: &[u8]) -> Result<Vec<Span>, ParseError> {
    let mut i = skip_ws(input, 0);
    if input.get(i) != Some(&b'[') {
        return Err(ParseError::TopLevel { expected: "array" });
    }
    i = skip_ws(input, i + 1);
    let mut items = Vec::new();
    if input.get(i) == Some(&b']') {
        return Ok(items);
    }
    loop {
        let end = skip_value(input, i)?;
        items.push(Span { start: i, end });
        i = skip_ws(input, end);
        match input.get(i) {
            Some(b',') => i = skip_ws(input, i + 1),
            _ => break,
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_raw_bytes_of_nested_values() {
        let input = br#" { "a" : {"x": [1, 2.50, "\u00e9"]}, "b":"s" , "c":true}"#;
        let m = Members::parse(input).unwrap();
        assert_eq!(m.raw("a").unwrap(), br#"{"x": [1, 2.50, "\u00e9"]}"#);
        assert_eq!(m.str("b").unwrap().unwrap(), "s");
        assert_eq!(m.bool("c").unwrap(), Some(true));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn escaped_keys_are_decoded_and_duplicates_refused() {
        let input = br#"{"d\u0061ta": 1, "data": 2}"#;
        assert_eq!(
            Members::parse(input).unwrap_err(),
            ParseError::Duplicate("data".into())
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let mut deep = vec![b'['; 100_000];
        deep.extend(vec![b']'; 100_000]);
        assert_eq!(
            validate(&deep).unwrap_err(),
            ParseError::TooDeep { max: MAX_DEPTH }
        );
        let mut ok = vec![b'['; MAX_DEPTH];
        ok.extend(vec![b']'; MAX_DEPTH]);
        validate(&ok).unwrap();
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_depth() {
        let s = format!("[\"{}\"]", "[".repeat(1000));
        validate(s.as_bytes()).unwrap();
    }

    #[test]
    fn numbers_are_typed() {
        let m = Members::parse(br#"{"seq": 18446744073709551615, "f": 1.5, "n": -1}"#).unwrap();
        assert_eq!(m.u64("seq").unwrap(), Some(u64::MAX));
        assert!(m.u64("f").is_err());
        assert!(m.u64("n").is_err());
    }

    #[test]
    fn lazy_members_match_the_eager_scan() {
        let input = br#" { "a" : {"x": [1, "}"]}, "b\"":"s" , "c":true} "#;
        validate(input).unwrap();
        let lazy: Vec<_> = members_lazy(input).collect();
        assert_eq!(
            lazy,
            [
                (&br#""a""#[..], &br#"{"x": [1, "}"]}"#[..]),
                (&br#""b\"""#[..], &b"\"s\""[..]),
                (&b"\"c\""[..], &b"true"[..]),
            ]
        );
        assert_eq!(members_lazy(b"[1]").count(), 0);
        assert_eq!(members_lazy(b"{}").count(), 0);
        assert_eq!(members_lazy(br#"{"a""#).count(), 0);
    }

    #[test]
    fn array_items_split_top_level() {
        let input = br#"[ {"a":[1,2]} , "x", 3 ]"#;
        validate(input).unwrap();
        let items = array_items(input).unwrap();
        let texts: Vec<&[u8]> = items.iter().map(|s| &input[s.start..s.end]).collect();
        assert_eq!(texts, [&br#"{"a":[1,2]}"#[..], b"\"x\"", b"3"]);
    }
}
