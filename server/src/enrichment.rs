//! `[enrichment]`: the server's TOML view of the engine's run tracking and enrichment rules
//! (see `docs/events.md`). Every key is optional; tools and error categories are merged into
//! the built-in tables (same name: replaced), error patterns are tried before the built-in
//! ones.
//!
//! ```toml
//! [enrichment]
//! enabled = true
//! expected_run_ms = 60000
//! urgency_normal_at = 0.5
//! urgency_high_at = 1.0
//! error_patterns = [["quota", "rate_limit"]]     # [substring of code/category, category]
//!
//! [enrichment.tools.vector_search]
//! category = "search"
//! purpose = "Searching the knowledge base"
//! estimated_ms = 800
//!
//! [enrichment.error_categories.rate_limit]
//! severity = "medium"                            # low, medium, high, critical
//! message = "The AI provider is busy."
//! recovery_suggestions = ["Wait a minute and retry"]
//! ```

use std::collections::HashMap;
use std::time::Duration;

use agentcast_engine::config::EnrichmentConfig;
use agentcast_engine::enrich::{ErrorCategory, Severity, ToolInfo};
use serde::Deserialize;

/// `[enrichment]` as written. See the [module docs](self).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EnrichmentSettings {
    /// Track runs and add `meta`. Default: true.
    pub enabled: Option<bool>,
    /// Expected run duration when `agent_started` gives none. Default: 60,000 ms.
    pub expected_run_ms: Option<u64>,
    /// Urgency `normal` from this elapsed/expected ratio. Default: 0.5.
    pub urgency_normal_at: Option<f64>,
    /// Urgency `high` from this ratio. Default: 1.0.
    pub urgency_high_at: Option<f64>,
    /// Extra tool catalog entries.
    pub tools: HashMap<String, ToolSetting>,
    /// Extra `[pattern, category]` pairs, tried first.
    pub error_patterns: Vec<(String, String)>,
    /// Extra or replaced error categories.
    pub error_categories: HashMap<String, ErrorCategorySetting>,
    /// An error of this severity or worse closes its run. Default: high.
    pub closing_severity: Option<String>,
}

/// `[enrichment.tools.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSetting {
    /// The tool's category.
    pub category: String,
    /// What it does, for users.
    pub purpose: String,
    /// A prior duration estimate, ms.
    pub estimated_ms: Option<u64>,
}

/// `[enrichment.error_categories.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorCategorySetting {
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// The user-facing message.
    pub message: String,
    /// What the user can do.
    #[serde(default)]
    pub recovery_suggestions: Vec<String>,
}

fn severity(s: &str, key: &str) -> Result<Severity, String> {
    Severity::parse(s)
        .ok_or_else(|| format!("{key}: unknown severity `{s}` (use low, medium, high or critical)"))
}

impl EnrichmentSettings {
    /// The engine's configuration: the defaults with these settings applied.
    pub fn to_engine(&self) -> Result<EnrichmentConfig, String> {
        let mut c = EnrichmentConfig::default();
        if let Some(v) = self.enabled {
            c.enabled = v;
        }
        if let Some(ms) = self.expected_run_ms {
            c.expected_run = Duration::from_millis(ms.max(1));
        }
        if let Some(v) = self.urgency_normal_at {
            c.urgency_normal_at = v;
        }
        if let Some(v) = self.urgency_high_at {
            c.urgency_high_at = v;
        }
        if !(c.urgency_normal_at > 0.0 && c.urgency_normal_at <= c.urgency_high_at) {
            return Err("urgency_normal_at must be > 0 and <= urgency_high_at".into());
        }
        for (name, t) in &self.tools {
            let mut info = ToolInfo::new(&t.category, &t.purpose);
            info.estimated_ms = t.estimated_ms;
            c.tools.insert(name.clone(), info);
        }
        let mut patterns = self.error_patterns.clone();
        patterns.append(&mut c.error_patterns);
        c.error_patterns = patterns;
        for (name, e) in &self.error_categories {
            let sev = severity(&e.severity, &format!("error_categories.{name}.severity"))?;
            c.error_categories.insert(
                name.clone(),
                ErrorCategory::new(
                    sev,
                    &e.message,
                    e.recovery_suggestions.iter().map(String::as_str),
                ),
            );
        }
        for (pattern, category) in &self.error_patterns {
            if !c.error_categories.contains_key(category) {
                return Err(format!(
                    "error_patterns: `{pattern}` maps to category `{category}`, which is not defined"
                ));
            }
        }
        if let Some(s) = &self.closing_severity {
            c.closing_severity = severity(s, "closing_severity")?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn toml_extends_the_built_in_tables() {
        let cfg = Config::from_toml(
            r#"
[enrichment]
expected_run_ms = 5000
error_patterns = [["quota", "rate_limit"]]
[enrichment.tools.vector_search]
category = "search"
purpose = "Searching the knowledge base"
estimated_ms = 800
[enrichment.error_categories.rate_limit]
severity = "medium"
message = "The AI provider is busy."
recovery_suggestions = ["Wait a minute and retry"]
"#,
            Path::new("x.toml"),
        )
        .unwrap();
        let e = cfg.enrichment.to_engine().unwrap();
        assert_eq!(e.expected_run, Duration::from_secs(5));
        assert_eq!(e.tools["vector_search"].category, "search");
        assert_eq!(e.tools["vector_search"].estimated_ms, Some(800));
        assert_eq!(e.error_patterns[0], ("quota".into(), "rate_limit".into()));
        assert!(e.error_patterns.len() > 1, "built-in patterns kept");
        assert_eq!(e.error_categories["rate_limit"].severity, Severity::Medium);
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let bad = |toml: &str| {
            Config::from_toml(toml, Path::new("x.toml"))
                .unwrap()
                .enrichment
                .to_engine()
                .unwrap_err()
        };
        assert!(
            bad("[enrichment.error_categories.x]\nseverity = \"huge\"\nmessage = \"m\"\n")
                .contains("huge")
        );
        assert!(bad("[enrichment]\nerror_patterns = [[\"a\", \"nope\"]]\n").contains("nope"));
        assert!(bad("[enrichment]\nurgency_normal_at = 2.0\n").contains("urgency"));
    }
}
