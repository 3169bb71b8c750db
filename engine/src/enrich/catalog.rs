//! The value types of enrichment's configuration, below [`config`](crate::config): tool
//! catalog entries, error categories and their severities, and urgency (the test clock
//! [`ManualClock`](crate::clock::ManualClock) is in [`clock`](crate::clock)). See
//! the [`enrich`](crate::enrich) docs.

use std::fmt;

/// How bad an `agent_error` is, from the user's point of view. Ordered: `Low < … < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The request was wrong; the user can fix it.
    Low,
    /// A transient or partial failure; trying again usually works.
    Medium,
    /// The run cannot continue without the user doing something.
    High,
    /// The service itself failed.
    Critical,
}

impl Severity {
    /// The wire name (`low`, `medium`, `high`, `critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How pressing an `agent_thinking` update is (see the [module docs](crate::enrich) for the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Urgency {
    /// Well within the run's expected duration.
    Low,
    /// Past [`EnrichmentConfig::urgency_normal_at`](crate::EnrichmentConfig::urgency_normal_at) of it.
    Normal,
    /// Past [`EnrichmentConfig::urgency_high_at`](crate::EnrichmentConfig::urgency_high_at) of it (by default: overdue).
    High,
}

impl Urgency {
    /// The wire name (`low`, `normal`, `high`).
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::High => "high",
        }
    }
}

/// A tool catalog entry.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolInfo {
    /// What kind of tool it is (`search`, `code`, …), delivered as `meta.category`.
    pub category: String,
    /// What the user is told it does ("Searching the web"), delivered as `meta.purpose`.
    pub purpose: String,
    /// Prior duration estimate, used until (and as the start of) learning. Default: none.
    pub estimated_ms: Option<u64>,
}

impl ToolInfo {
    /// An entry with no prior estimate.
    pub fn new(category: &str, purpose: &str) -> ToolInfo {
        ToolInfo {
            category: category.to_owned(),
            purpose: purpose.to_owned(),
            estimated_ms: None,
        }
    }

    /// The same entry with a prior duration estimate.
    pub fn with_estimate(mut self, ms: u64) -> ToolInfo {
        self.estimated_ms = Some(ms);
        self
    }
}

/// An error category: what an `agent_error` of it means to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorCategory {
    /// Its severity.
    pub severity: Severity,
    /// The user-facing explanation, delivered as `meta.message` (the publisher's own
    /// `data.message` is left as is).
    pub message: String,
    /// What the user can do, delivered as `meta.recovery_suggestions`.
    pub recovery_suggestions: Vec<String>,
}

impl ErrorCategory {
    /// A category with its severity, message and suggestions.
    pub fn new<'a>(
        severity: Severity,
        message: &str,
        recovery_suggestions: impl IntoIterator<Item = &'a str>,
    ) -> ErrorCategory {
        ErrorCategory {
            severity,
            message: message.to_owned(),
            recovery_suggestions: recovery_suggestions
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }
    }
}
