//! Enrichment: what the engine adds to an agent event, once per publish, under `"meta"`.
//!
//! The publisher's `data` is never touched: the engine splices one extra member,
//! `"meta":{...}`, before `data` in the frame it encodes once (see
//! [`EventFields::extra`](crate::frame::EventFields)). Every recipient shares that frame, so
//! enrichment costs once per publish, never per recipient.
//!
//! # What is added
//!
//! | event | members of `meta` |
//! |---|---|
//! | every event of a tracked run | `elapsed_ms` since its `agent_started` |
//! | any event breaking the lifecycle | `lifecycle`: `unstarted_run`, `after_end`, `already_started` or `tool_not_executing` |
//! | `agent_thinking` | `progress` (`percent`, `step`, `total` as given) and `urgency` (`low`/`normal`/`high`, tracked runs only) |
//! | `tool_executing` | `category` and `purpose` from the tool catalog, `estimated_ms` (learned or catalog prior) |
//! | `tool_completed` | `duration_ms` since the matching `tool_executing` |
//! | `agent_error` | `severity`, `category`, user-facing `message`, `recovery_suggestions`, `fatal` |
//!
//! An event with nothing to add (a custom event outside any tracked run) gets no `meta` at
//! all. `docs/events.md` shows a delivered example of each type.
//!
//! # What the engine reads from `data`
//!
//! Only top-level members, all optional; a member of the wrong type is ignored (the event is
//! still delivered, unenriched in that respect):
//!
//! - `agent_started`: `expected_ms` (integer) — the run's expected duration, for `urgency`;
//! - `agent_thinking`: `progress` (number, percent 0–100), or `step` and `total_steps`
//!   (integers);
//! - `tool_executing` / `tool_completed`: `tool` (string), `call_id` (string; pairs
//!   concurrent calls of the same tool);
//! - `agent_error`: `code` (string or number), `category` (string), `fatal` (boolean).
//!
//! [`UserEmitter`](crate::UserEmitter)'s typed methods write exactly these members.
//!
//! # Rules
//!
//! - `urgency`: `r = elapsed_ms / expected_ms` (expected: the run's `expected_ms`, else
//!   [`EnrichmentConfig::expected_run`](crate::EnrichmentConfig::expected_run)); `low` below
//!   [`urgency_normal_at`](crate::EnrichmentConfig::urgency_normal_at), `high` from
//!   [`urgency_high_at`](crate::EnrichmentConfig::urgency_high_at), `normal` in between.
//! - `progress.percent`: the publisher's `progress` clamped to 0–100 and rounded; else
//!   `100 × min(step, total) / total` rounded down.
//! - `estimated_ms`: an exponentially weighted moving average of the `duration_ms` observed
//!   for the tool on this shard: `v ← v + w × (d − v)` with
//!   [`estimate_weight`](crate::EnrichmentConfig::estimate_weight) `w`, starting from the catalog's
//!   prior or else the first observation. **Each shard learns independently** (no lock, no
//!   shared cache line on the publish path); with many users every shard converges on the
//!   same figures.
//! - `severity` and `category` of an error: the category named by the data's `category` if
//!   configured, else the first [`error_patterns`](crate::EnrichmentConfig::error_patterns) entry
//!   found (case-insensitively) in `code`, then in `category`, else `unknown`.
//!
//! Channel and broadcast events carry no per-user run state (their recipients span users and
//! shards): they get the stateless members only (`progress`, `category`, `purpose`, catalog
//! `estimated_ms`, the error classification), computed on the publisher's thread.

pub(crate) mod catalog;
pub(crate) mod rules;

pub use crate::clock::ManualClock;
pub use crate::runs::enricher::Enricher;
pub use catalog::{ErrorCategory, Severity, ToolInfo, Urgency};
