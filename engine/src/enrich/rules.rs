//! Enrichment without run state: the compiled [`Rules`], what an event's data says
//! ([`Said`]), the `meta` member's writing and the stateless `meta` of channel and broadcast
//! events. Run state is in `crate::runs`. See the [`enrich`](crate::enrich) docs.

use std::borrow::Cow;
use std::collections::HashMap;

use ahash::RandomState;
use bytes::{BufMut, BytesMut};

use crate::clock::ManualClock;
use crate::config::EnrichmentConfig;
use crate::enrich::catalog::{ErrorCategory, Severity, Urgency};
use crate::event::EventKind;
use crate::frame::{write_str, write_u64};
use crate::json::{decode_string, members_lazy};

/// A way an event breaks its run's lifecycle. The event is delivered anyway, flagged with
/// `meta.lifecycle` and counted in [`ShardStats::lifecycle_violations`](crate::ShardStats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// No tracked run with this id (never started, or evicted).
    UnstartedRun,
    /// The run already finished (`agent_completed`, or a closing `agent_error`).
    AfterEnd,
    /// `agent_started` for a run that is already live.
    AlreadyStarted,
    /// `tool_completed` with no matching `tool_executing` running in the run.
    ToolNotExecuting,
}

impl Lifecycle {
    fn as_str(self) -> &'static str {
        match self {
            Lifecycle::UnstartedRun => "unstarted_run",
            Lifecycle::AfterEnd => "after_end",
            Lifecycle::AlreadyStarted => "already_started",
            Lifecycle::ToolNotExecuting => "tool_not_executing",
        }
    }
}

/// Longest `tool`, `call_id`, `code` or `category` value the engine looks at; longer ones are
/// ignored (not tracked, not learned, classified as `unknown`).
pub(crate) const MAX_NAME: usize = 128;

/// What the publisher's `data` says, as far as enrichment cares. See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Said<'a> {
    pub(crate) expected_ms: Option<u64>,
    pub(crate) progress: Option<f64>,
    pub(crate) step: Option<u64>,
    pub(crate) total: Option<u64>,
    pub(crate) tool: Option<Cow<'a, str>>,
    pub(crate) call_id: Option<Cow<'a, str>>,
    pub(crate) code: Option<Cow<'a, str>>,
    pub(crate) category: Option<Cow<'a, str>>,
    pub(crate) fatal: Option<bool>,
}

/// A raw JSON value as a name: a string of at most [`MAX_NAME`] bytes.
fn as_name(raw: &[u8]) -> Option<Cow<'_, str>> {
    if raw.first() != Some(&b'"') || raw.len() > MAX_NAME * 6 + 2 {
        return None;
    }
    decode_string(raw).ok().filter(|s| s.len() <= MAX_NAME)
}

/// A raw JSON value as a non-negative integer.
fn as_u64(raw: &[u8]) -> Option<u64> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

impl<'a> Said<'a> {
    /// Reads the members `kind` uses from `data` (validated JSON, as every [`Data`] is).
    /// Never fails: anything unexpected reads as absent.
    ///
    /// [`Data`]: crate::Data
    pub(crate) fn read(kind: &EventKind, data: &'a [u8]) -> Said<'a> {
        let mut said = Said::default();
        if !kind.is_agent() || matches!(kind, EventKind::AgentCompleted) {
            return said;
        }
        // One lazy pass over the top level, no allocation (unless a key or value is escaped).
        for (raw_key, v) in members_lazy(data) {
            let key = if raw_key.contains(&b'\\') {
                match decode_string(raw_key) {
                    Ok(k) => k,
                    Err(_) => continue,
                }
            } else {
                // Without escapes the key is its bytes between the quotes (valid UTF-8).
                match std::str::from_utf8(&raw_key[1..raw_key.len() - 1]) {
                    Ok(k) => Cow::Borrowed(k),
                    Err(_) => continue,
                }
            };
            match (kind, key.as_ref()) {
                (EventKind::AgentStarted, "expected_ms") => said.expected_ms = as_u64(v),
                (EventKind::AgentThinking, "progress") => {
                    said.progress = std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<f64>().ok())
                        .filter(|p| p.is_finite());
                }
                (EventKind::AgentThinking, "step") => said.step = as_u64(v),
                (EventKind::AgentThinking, "total_steps") => {
                    said.total = as_u64(v).filter(|&t| t > 0);
                }
                (EventKind::ToolExecuting | EventKind::ToolCompleted, "tool") => {
                    said.tool = as_name(v);
                }
                (EventKind::ToolExecuting | EventKind::ToolCompleted, "call_id") => {
                    said.call_id = as_name(v);
                }
                (EventKind::AgentError, "code") => {
                    said.code = match v.first() {
                        // A number: its text as given.
                        Some(b) if b.is_ascii_digit() || *b == b'-' => {
                            std::str::from_utf8(v).ok().map(Cow::Borrowed)
                        }
                        _ => as_name(v),
                    };
                }
                (EventKind::AgentError, "category") => said.category = as_name(v),
                (EventKind::AgentError, "fatal") => {
                    said.fatal = match v {
                        b"true" => Some(true),
                        b"false" => Some(false),
                        _ => None,
                    };
                }
                _ => {}
            }
        }
        said
    }

    /// `(percent, step, total)` of an `agent_thinking`, if it says anything about progress.
    fn progress(&self) -> Option<(Option<u64>, Option<u64>, Option<u64>)> {
        let percent = match (self.progress, self.step, self.total) {
            (Some(p), _, _) => Some(p.clamp(0.0, 100.0).round() as u64),
            (None, Some(s), Some(t)) => Some((s.min(t) as u128 * 100 / t as u128) as u64),
            _ => None,
        };
        if percent.is_none() && self.step.is_none() && self.total.is_none() {
            return None;
        }
        Some((percent, self.step, self.total))
    }
}

/// A catalog entry, pre-encoded.
#[derive(Debug)]
pub(crate) struct CompiledTool {
    /// `"category":"…","purpose":"…"`.
    fragment: Box<[u8]>,
    pub(crate) prior_ms: Option<u64>,
}

/// An error category, pre-encoded.
#[derive(Debug)]
pub(crate) struct CompiledCategory {
    pub(crate) severity: Severity,
    /// `"severity":"…","category":"…","message":"…","recovery_suggestions":[…]`.
    fragment: Box<[u8]>,
}

/// [`EnrichmentConfig`] compiled for the publish path: catalog and error texts pre-encoded
/// as JSON fragments, so enriching is lookups and copies. Immutable once built.
#[derive(Debug)]
pub(crate) struct Rules {
    pub(crate) enabled: bool,
    pub(crate) expected_ms: u64,
    normal_at: f64,
    high_at: f64,
    tools: HashMap<Box<str>, CompiledTool, RandomState>,
    /// `"category":"<unknown_tool_category>"`.
    unknown_tool: Box<[u8]>,
    pub(crate) weight: f64,
    pub(crate) max_learned_tools: usize,
    /// Lower-cased patterns and the index of their category.
    patterns: Vec<(Box<[u8]>, usize)>,
    categories: Vec<CompiledCategory>,
    by_name: HashMap<Box<str>, usize, RandomState>,
    unknown: usize,
    pub(crate) closing: Severity,
    pub(crate) finished_ttl_ms: u64,
    pub(crate) idle_ttl_ms: u64,
    pub(crate) max_runs_per_user: usize,
    pub(crate) max_tools_per_run: usize,
    /// [`EnrichmentConfig::clock`]: overrides the publish timestamp when set.
    pub(crate) clock: Option<ManualClock>,
}

fn encode_category(name: &str, c: &ErrorCategory) -> Box<[u8]> {
    let mut b = BytesMut::new();
    b.put_slice(b"\"severity\":\"");
    b.put_slice(c.severity.as_str().as_bytes());
    b.put_slice(b"\",\"category\":");
    write_str(&mut b, name);
    b.put_slice(b",\"message\":");
    write_str(&mut b, &c.message);
    b.put_slice(b",\"recovery_suggestions\":[");
    for (i, s) in c.recovery_suggestions.iter().enumerate() {
        if i > 0 {
            b.put_u8(b',');
        }
        write_str(&mut b, s);
    }
    b.put_u8(b']');
    b.to_vec().into_boxed_slice()
}

impl Rules {
    /// Compiles `cfg`. Patterns naming a category that is not configured are skipped.
    pub(crate) fn new(cfg: &EnrichmentConfig) -> Rules {
        let mut tools = HashMap::default();
        for (name, info) in &cfg.tools {
            let mut b = BytesMut::new();
            b.put_slice(b"\"category\":");
            write_str(&mut b, &info.category);
            b.put_slice(b",\"purpose\":");
            write_str(&mut b, &info.purpose);
            tools.insert(
                Box::from(name.as_str()),
                CompiledTool {
                    fragment: b.to_vec().into_boxed_slice(),
                    prior_ms: info.estimated_ms,
                },
            );
        }
        let mut unknown_tool = BytesMut::new();
        unknown_tool.put_slice(b"\"category\":");
        write_str(&mut unknown_tool, &cfg.unknown_tool_category);

        let mut names: Vec<&String> = cfg.error_categories.keys().collect();
        names.sort();
        let mut categories = Vec::with_capacity(names.len() + 1);
        let mut by_name = HashMap::default();
        for name in names {
            by_name.insert(Box::from(name.as_str()), categories.len());
            categories.push(CompiledCategory {
                severity: cfg.error_categories[name].severity,
                fragment: encode_category(name, &cfg.error_categories[name]),
            });
        }
        let unknown = match by_name.get("unknown") {
            Some(&i) => i,
            None => {
                let fallback = ErrorCategory::new(
                    Severity::High,
                    "The agent ran into an unexpected problem.",
                    ["Try again"],
                );
                categories.push(CompiledCategory {
                    severity: fallback.severity,
                    fragment: encode_category("unknown", &fallback),
                });
                categories.len() - 1
            }
        };
        let patterns = cfg
            .error_patterns
            .iter()
            .filter(|(p, _)| !p.is_empty())
            .filter_map(|(p, cat)| {
                by_name
                    .get(cat.as_str())
                    .map(|&i| (p.to_ascii_lowercase().into_bytes().into_boxed_slice(), i))
            })
            .collect();
        let weight = if cfg.estimate_weight > 0.0 && cfg.estimate_weight <= 1.0 {
            cfg.estimate_weight
        } else {
            1.0
        };
        Rules {
            enabled: cfg.enabled,
            expected_ms: (cfg.expected_run.as_millis() as u64).max(1),
            normal_at: cfg.urgency_normal_at,
            high_at: cfg.urgency_high_at,
            tools,
            unknown_tool: unknown_tool.to_vec().into_boxed_slice(),
            weight,
            max_learned_tools: cfg.max_learned_tools,
            patterns,
            categories,
            by_name,
            unknown,
            closing: cfg.closing_severity,
            finished_ttl_ms: cfg.finished_run_ttl.as_millis() as u64,
            idle_ttl_ms: cfg.idle_run_ttl.as_millis() as u64,
            max_runs_per_user: cfg.max_runs_per_user.max(1),
            max_tools_per_run: cfg.max_tools_per_run.max(1),
            clock: cfg.clock.clone(),
        }
    }

    /// The urgency of a thinking event `elapsed_ms` into a run expected to take `expected_ms`.
    pub(crate) fn urgency(&self, elapsed_ms: u64, expected_ms: u64) -> Urgency {
        let r = elapsed_ms as f64 / expected_ms.max(1) as f64;
        if r >= self.high_at {
            Urgency::High
        } else if r >= self.normal_at {
            Urgency::Normal
        } else {
            Urgency::Low
        }
    }

    /// The catalog entry of `tool`.
    pub(crate) fn tool(&self, tool: &str) -> Option<&CompiledTool> {
        self.tools.get(tool)
    }

    /// The category of an error (index into the compiled categories).
    pub(crate) fn classify(&self, said: &Said<'_>) -> usize {
        if let Some(&i) = said.category.as_deref().and_then(|c| self.by_name.get(c)) {
            return i;
        }
        for text in [said.code.as_deref(), said.category.as_deref()]
            .into_iter()
            .flatten()
        {
            let mut lower = [0u8; MAX_NAME];
            let n = text.len().min(MAX_NAME);
            for (d, s) in lower.iter_mut().zip(&text.as_bytes()[..n]) {
                *d = s.to_ascii_lowercase();
            }
            let hay = &lower[..n];
            for (p, i) in &self.patterns {
                if hay.windows(p.len()).any(|w| w == &p[..]) {
                    return *i;
                }
            }
        }
        self.unknown
    }

    /// Severity of category `i` (from [`Rules::classify`]).
    pub(crate) fn severity(&self, i: usize) -> Severity {
        self.categories[i].severity
    }
}

/// What run tracking knows about one event, to be written under `meta`.
#[derive(Debug, Default)]
pub(crate) struct RunView {
    pub(crate) lifecycle: Option<Lifecycle>,
    pub(crate) elapsed_ms: Option<u64>,
    /// The run's expected duration (for `urgency`), when tracked.
    pub(crate) expected_ms: Option<u64>,
    pub(crate) duration_ms: Option<u64>,
    pub(crate) estimated_ms: Option<u64>,
    /// For `agent_error`: its category index and whether it closes (or would close) the run.
    pub(crate) error: Option<(usize, bool)>,
}

/// Appends `,` between members.
struct Obj<'b> {
    b: &'b mut BytesMut,
    empty: bool,
}

impl Obj<'_> {
    fn key(&mut self, k: &[u8]) -> &mut BytesMut {
        if !self.empty {
            self.b.put_u8(b',');
        }
        self.empty = false;
        self.b.put_u8(b'"');
        self.b.put_slice(k);
        self.b.put_slice(b"\":");
        self.b
    }

    fn raw(&mut self, fragment: &[u8]) {
        if !self.empty {
            self.b.put_u8(b',');
        }
        self.empty = false;
        self.b.put_slice(fragment);
    }

    fn u64(&mut self, k: &[u8], v: u64) {
        let b = self.key(k);
        write_u64(b, v);
    }
}

/// Writes `"meta":{…}` for `kind` into `out` (cleared first). Returns false (and leaves `out`
/// empty) when there is nothing to add.
pub(crate) fn write_meta(
    rules: &Rules,
    kind: &EventKind,
    said: &Said<'_>,
    view: &RunView,
    out: &mut BytesMut,
) -> bool {
    out.clear();
    out.put_slice(b"\"meta\":{");
    let start = out.len();
    let mut o = Obj {
        b: out,
        empty: true,
    };
    if let Some(l) = view.lifecycle {
        o.key(b"lifecycle").put_u8(b'"');
        o.b.put_slice(l.as_str().as_bytes());
        o.b.put_u8(b'"');
    }
    if let Some(e) = view.elapsed_ms {
        o.u64(b"elapsed_ms", e);
    }
    match kind {
        EventKind::AgentThinking => {
            if let Some((percent, step, total)) = said.progress() {
                o.key(b"progress").put_u8(b'{');
                let mut p = Obj {
                    b: &mut *o.b,
                    empty: true,
                };
                if let Some(v) = percent {
                    p.u64(b"percent", v);
                }
                if let Some(v) = step {
                    p.u64(b"step", v);
                }
                if let Some(v) = total {
                    p.u64(b"total", v);
                }
                o.b.put_u8(b'}');
            }
            if let (Some(e), Some(x)) = (view.elapsed_ms, view.expected_ms) {
                o.key(b"urgency").put_u8(b'"');
                o.b.put_slice(rules.urgency(e, x).as_str().as_bytes());
                o.b.put_u8(b'"');
            }
        }
        EventKind::ToolExecuting => {
            if let Some(tool) = said.tool.as_deref() {
                match rules.tool(tool) {
                    Some(t) => o.raw(&t.fragment),
                    None => {
                        o.raw(&rules.unknown_tool);
                        let b = o.key(b"purpose");
                        write_str(b, &format!("Running {tool}"));
                    }
                }
            }
            if let Some(est) = view.estimated_ms {
                o.u64(b"estimated_ms", est);
            }
        }
        EventKind::ToolCompleted => {
            if let Some(d) = view.duration_ms {
                o.u64(b"duration_ms", d);
            }
        }
        EventKind::AgentError => {
            if let Some((i, fatal)) = view.error {
                o.raw(&rules.categories[i].fragment);
                o.key(b"fatal")
                    .put_slice(if fatal { b"true" } else { b"false" });
            }
        }
        EventKind::AgentStarted
        | EventKind::AgentCompleted
        | EventKind::MessageStarted
        | EventKind::MessageDelta
        | EventKind::MessageCompleted
        | EventKind::Custom(_) => {}
    }
    if out.len() == start {
        out.clear();
        return false;
    }
    out.put_u8(b'}');
    true
}

/// The stateless enrichment of a channel or broadcast event (see the [module docs](self)):
/// `Some("meta":{…})` or `None` when disabled or there is nothing to add.
pub(crate) fn stateless_meta(rules: &Rules, kind: &EventKind, data: &[u8]) -> Option<BytesMut> {
    if !rules.enabled || !kind.is_agent() {
        return None;
    }
    let said = Said::read(kind, data);
    let mut view = RunView::default();
    match kind {
        EventKind::ToolExecuting => {
            view.estimated_ms = said
                .tool
                .as_deref()
                .and_then(|t| rules.tool(t))
                .and_then(|t| t.prior_ms);
        }
        EventKind::AgentError => {
            let i = rules.classify(&said);
            let fatal = said.fatal.unwrap_or(rules.severity(i) >= rules.closing);
            view.error = Some((i, fatal));
        }
        _ => {}
    }
    let mut out = BytesMut::with_capacity(128);
    write_meta(rules, kind, &said, &view, &mut out).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::new(&EnrichmentConfig::default())
    }

    fn meta(kind: EventKind, data: &str, view: RunView) -> String {
        let r = rules();
        let said = Said::read(&kind, data.as_bytes());
        let mut out = BytesMut::new();
        write_meta(&r, &kind, &said, &view, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn meta_is_valid_json_with_escaped_unknown_tool_names() {
        let m = meta(
            EventKind::ToolExecuting,
            r#"{"tool":"my \"odd\"\n tool"}"#,
            RunView::default(),
        );
        let doc = format!("{{{m}}}");
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(v["meta"]["category"], "other");
        assert_eq!(v["meta"]["purpose"], "Running my \"odd\"\n tool");
    }

    #[test]
    fn nothing_to_add_writes_nothing() {
        assert_eq!(
            meta(EventKind::AgentCompleted, "{}", RunView::default()),
            ""
        );
        assert_eq!(
            meta(
                EventKind::Custom("x".into()),
                r#"{"tool":"a"}"#,
                RunView::default()
            ),
            ""
        );
    }

    #[test]
    fn odd_data_reads_as_absent_without_panicking() {
        for data in [
            "[]",
            "3",
            "\"s\"",
            r#"{"progress":"x","step":-1,"total_steps":0}"#,
            r#"{"progress":1e999}"#,
            r#"{"code":{"a":1},"category":7,"fatal":"yes"}"#,
        ] {
            for kind in EventKind::AGENT {
                let said = Said::read(&kind, data.as_bytes());
                assert!(said.progress.is_none_or(f64::is_finite));
                assert!(said.total != Some(0));
            }
        }
    }

    #[test]
    fn classification_prefers_a_named_category_then_code_then_category_text() {
        let r = rules();
        let said = |code: Option<&'static str>, cat: Option<&'static str>| Said {
            code: code.map(Cow::Borrowed),
            category: cat.map(Cow::Borrowed),
            ..Said::default()
        };
        let name = |i: usize| {
            r.by_name
                .iter()
                .find(|&(_, &j)| j == i)
                .map(|(n, _)| n.to_string())
                .unwrap()
        };
        assert_eq!(
            name(r.classify(&said(Some("LLM_TIMEOUT"), Some("auth")))),
            "auth"
        );
        assert_eq!(
            name(r.classify(&said(Some("LLM_TIMEOUT"), None))),
            "timeout"
        );
        assert_eq!(
            name(r.classify(&said(Some("timeout_5000"), None))),
            "timeout"
        );
        assert_eq!(
            name(r.classify(&said(Some("E42"), Some("Quota hit")))),
            "rate_limit"
        );
        assert_eq!(name(r.classify(&said(Some("429"), None))), "rate_limit");
        assert_eq!(name(r.classify(&said(Some("E42"), None))), "unknown");
    }
}
