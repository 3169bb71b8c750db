//! The engine's modules form a layered order, with no import circle (docs/cluster.md §2.1).
//!
//! A line scanner reads every module file under `engine/src` (comments, and items under
//! `#[cfg(test)]`, left out), collects its `crate::` and `super::` paths (including `use`
//! groups over several lines) and resolves each to the longest module it names. Each file
//! belongs to the longest entry of [`ORDER`] that prefixes its module path (`shard/users.rs`
//! is `shard`). A file may reference only its own entry and entries earlier in [`ORDER`].
//!
//! Facades (`broker`, `conn`, `enrich`, `health`: each a `mod.rs` that holds the public docs and the
//! `pub use` of public paths) come after what they re-export, so code inside the crate names
//! the defining module (`crate::health::state::Fault`, not `crate::health::Fault`), and never
//! a root re-export (`crate::Hub`): those would hide the real edge.

use std::collections::BTreeMap;
use std::path::Path;

/// The order: each entry may reference only entries before it (and itself). A new module
/// file must fall under an entry (add it where it belongs).
const ORDER: &[&str] = &[
    // Leaves and value types.
    "clock",
    "error",
    "json",
    "event",
    "prefetch",
    "handoff",
    "sink",
    "slots",
    "frame",
    "delta",
    "ring",
    "history",
    "stats",
    "escalation",
    "ag_ui",
    "publish",
    "ndjson",
    "client_msg",
    "health::state",
    "broker::seed",
    "enrich::catalog",
    "conn::shared",
    "reply",
    "idempotency",
    "broker::api",
    // Configuration, enrichment, runs.
    "config",
    "enrich::rules",
    "runs",
    "enrich",
    // The shard and what drives it.
    "command",
    "shard",
    "worker",
    "conn::handle",
    "conn",
    // Health drives the hub through `Probe`, which the hub implements.
    "health::probe",
    "health::canary",
    "health::monitor",
    "health",
    // The public face, and `impl Hub` blocks of their own.
    "hub",
    "emitter",
    "sequenced",
    "broker::in_process",
    "broker",
];

/// `path` (relative to `src`, `/`-separated) as a module path; `None` for the crate root.
fn module_of(path: &str) -> Option<String> {
    let p = path.strip_suffix(".rs")?;
    let p = p.strip_suffix("/mod").unwrap_or(p);
    (p != "lib").then(|| p.replace('/', "::"))
}

/// The text of a file without comments, string literals' contents and `#[cfg(test)]` items.
fn code_of(text: &str) -> String {
    // 1. Comments and string contents out (a simple lexer: enough for this crate's style).
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut block = 0usize;
    while i < b.len() {
        if block > 0 {
            if b[i..].starts_with(b"*/") {
                block -= 1;
                i += 2;
            } else if b[i..].starts_with(b"/*") {
                block += 1;
                i += 2;
            } else {
                if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            continue;
        }
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if b[i..].starts_with(b"/*") {
            block += 1;
            i += 2;
            continue;
        }
        if b[i] == b'"' {
            // A raw string (`r"…"`, `r#"…"#`) ends at its own terminator; a plain one at an
            // unescaped quote.
            let mut hashes = 0;
            let mut j = out.len();
            let ob = out.as_bytes();
            while j > 0 && ob[j - 1] == b'#' {
                hashes += 1;
                j -= 1;
            }
            let raw = j > 0 && ob[j - 1] == b'r';
            out.push('"');
            i += 1;
            while i < b.len() {
                if raw {
                    if b[i] == b'"' && b[i + 1..].iter().take(hashes).all(|&c| c == b'#') {
                        i += 1 + hashes;
                        break;
                    }
                } else if b[i] == b'\\' {
                    i += 2;
                    continue;
                } else if b[i] == b'"' {
                    i += 1;
                    break;
                }
                if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            out.push('"');
            for _ in 0..hashes {
                out.push('#');
            }
            continue;
        }
        if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal such as '{' or '\''.
            let end = if b[i + 1] == b'\\' {
                // '\'' or '\n' or '\u{…}': the closing quote after the escaped character.
                b[i + 3..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map_or(b.len(), |p| i + 4 + p)
            } else {
                i + 3
            };
            out.push_str("' '");
            i = end;
            continue;
        }
        let ch = text[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    // 2. Items under `#[cfg(test)]` out: from the attribute to the end of the item (its
    // closing brace, or its `;` when it has no body).
    let mut kept = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        kept.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (k, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    kept.push_str(rest);
    kept
}

/// Every path the code names through `crate::` or `super::`, as a module path from the
/// crate root (`crate::a::{b::C, d}` gives `a::b::C` and `a::d`).
fn paths_in(code: &str, module: &str) -> Vec<String> {
    let mut found = Vec::new();
    let b = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(p) = code[from..].find(start) {
            let at = from + p;
            from = at + start.len();
            let before = at.checked_sub(1).map(|k| b[k]);
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$') {
                continue;
            }
            let mut base: Vec<String> = if start == "crate::" {
                Vec::new()
            } else {
                let mut m: Vec<String> = module.split("::").map(str::to_owned).collect();
                m.pop();
                m
            };
            let mut rest = &code[from..];
            // `super::super::…`
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            tree(rest, &base, &mut found);
        }
    }
    found
}

/// Parses one path tree at the start of `s` (segments, then possibly a `{…}` group) under
/// `base`, pushing each full path.
fn tree(s: &str, base: &[String], found: &mut Vec<String>) -> usize {
    let mut path = base.to_vec();
    let mut i = 0;
    let b = s.as_bytes();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            i += 1;
            loop {
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return i + 1;
                }
                let used = tree(&s[i..], &path, found);
                i += used.max(1);
            }
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let seg = &s[start..i];
        if !seg.is_empty() && seg != "self" {
            path.push(seg.to_owned());
        }
        if s[i..].starts_with("::") {
            i += 2;
            continue;
        }
        // End of this path: skip an `as name`, stop at a separator of the enclosing group.
        while i < b.len() && !matches!(b[i], b',' | b'}' | b';' | b'\n') {
            if !s[i..].starts_with(" as ") {
                break;
            }
            i += 4;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
        }
        if !path.is_empty() {
            found.push(path.join("::"));
        }
        return i;
    }
}

/// The entry of [`ORDER`] a module belongs to: the longest one that prefixes it.
fn entry_of(module: &str) -> Option<usize> {
    ORDER
        .iter()
        .enumerate()
        .filter(|(_, e)| module == **e || module.starts_with(&format!("{e}::")))
        .max_by_key(|(_, e)| e.len())
        .map(|(i, _)| i)
}

/// The violations of [`ORDER`] in `files` (module path → source text).
fn violations(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut bad = Vec::new();
    for (module, text) in files {
        let Some(own) = entry_of(module) else {
            bad.push(format!("{module}: not under any entry of ORDER (add it)"));
            continue;
        };
        let code = code_of(text);
        let mut seen = std::collections::BTreeSet::new();
        for path in paths_in(&code, module) {
            let segs: Vec<&str> = path.split("::").collect();
            // The longest module file the path names.
            let target = (1..=segs.len())
                .rev()
                .map(|n| segs[..n].join("::"))
                .find(|m| files.contains_key(m));
            let Some(target) = target else {
                if segs[0].starts_with(|c: char| c.is_ascii_uppercase()) {
                    bad.push(format!(
                        "{module} -> crate::{path}: a root re-export hides the edge; name the defining module"
                    ));
                }
                continue;
            };
            let Some(to) = entry_of(&target) else {
                continue; // reported as a file above
            };
            if to > own && seen.insert(target.clone()) {
                bad.push(format!(
                    "{module} -> {target} (crate::{path}): `{}` comes after `{}` in ORDER",
                    ORDER[to], ORDER[own]
                ));
            }
        }
    }
    bad
}

fn read_tree(dir: &Path, root: &Path, files: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable src dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_tree(&p, root, files);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).expect("under src");
            let rel = rel.to_string_lossy().replace('\\', "/");
            if let Some(m) = module_of(&rel) {
                files.insert(m, std::fs::read_to_string(&p).expect("readable source"));
            }
        }
    }
}

#[test]
fn every_module_references_only_modules_before_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_tree(&src, &src, &mut files);
    assert!(files.contains_key("hub") && files.contains_key("shard::users"));
    let bad = violations(&files);
    assert!(
        bad.is_empty(),
        "module order violated (see ORDER in engine/tests/layout.rs):\n  {}",
        bad.join("\n  ")
    );
}

#[test]
fn every_entry_of_the_order_is_a_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_tree(&src, &src, &mut files);
    for e in ORDER {
        assert!(
            files.contains_key(*e),
            "ORDER names `{e}`, which has no file"
        );
    }
}

/// The scanner itself: a back edge is found in every form the crate writes paths.
#[test]
fn a_back_edge_is_refused_in_each_form() {
    let base: BTreeMap<String, String> = [
        "error",
        "event",
        "shard",
        "shard::users",
        "hub",
        "health",
        "health::state",
        "health::monitor",
    ]
    .iter()
    .map(|m| (m.to_string(), String::new()))
    .collect();
    let bad = |module: &str, text: &str| {
        let mut files = base.clone();
        files.insert(module.to_owned(), text.to_owned());
        violations(&files)
    };
    // Allowed: earlier entries, the own entry, comments, tests, strings.
    assert_eq!(
        bad(
            "shard",
            "use crate::event::UserId;\nuse crate::{error::E, health::state::{self as h, X}};\n\
             // use crate::hub::Hub;\n/// [`Hub`](crate::hub::Hub)\nlet s = \"crate::hub\";\n\
             mod users;\n#[cfg(test)]\nmod tests {\n    use crate::hub::Hub;\n}\n"
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        bad("shard::users", "use super::Shard;"),
        Vec::<String>::new()
    );
    // Refused: a plain use, a group, a multi-line group, an inline path, `super::`, a facade,
    // a root re-export.
    for (module, text) in [
        ("shard", "use crate::hub::Hub;"),
        ("shard", "use crate::{event::UserId, hub::Hub};"),
        (
            "shard",
            "use crate::{\n    event::UserId,\n    hub::{self, Hub},\n};",
        ),
        ("shard", "fn f(h: &crate::hub::Hub) {}"),
        ("health::state", "use super::monitor::Monitor;"),
        ("shard", "use crate::health::Fault;"),
        ("shard", "use crate::Hub;"),
    ] {
        assert_eq!(bad(module, text).len(), 1, "{module}: {text}");
    }
}
