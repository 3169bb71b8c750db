//! Per-connection abuse guards, sans-IO (the caller passes `now`): a token bucket limiting
//! inbound messages, and a fixed window counting error replies.
//!
//! A message that finds the bucket empty is not processed: the client gets an `error`
//! (`rate_limited`). Every error reply is a strike; `max` strikes within one window close the
//! connection with 1008 (policy violation). So a client that misbehaves now and then keeps its
//! connection, and one that floods loses it after a bounded amount of work.

use std::time::{Duration, Instant};

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f32,
    rate: f32,
    burst: f32,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: burst as f32,
            rate: rate as f32,
            burst: burst as f32,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f32();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Strikes counted in fixed windows.
#[derive(Debug, Clone)]
pub struct StrikeWindow {
    start: Instant,
    count: u32,
    max: u32,
    window: Duration,
}

impl StrikeWindow {
    /// A window of `window` allowing fewer than `max` strikes.
    pub fn new(max: u32, window: Duration, now: Instant) -> StrikeWindow {
        StrikeWindow {
            start: now,
            count: 0,
            max,
            window,
        }
    }

    /// Records a strike; `true` when this one reaches the limit (close the connection).
    pub fn strike(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.start) >= self.window {
            self.start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count >= self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        assert!((0..3).all(|_| b.allow(t0)));
        assert!(!b.allow(t0));
        assert!(b.allow(t0 + Duration::from_millis(100)));
        assert!(!b.allow(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn strikes_reset_with_the_window() {
        let t0 = Instant::now();
        let mut w = StrikeWindow::new(3, Duration::from_secs(1), t0);
        assert!(!w.strike(t0));
        assert!(!w.strike(t0));
        assert!(!w.strike(t0 + Duration::from_secs(2)));
        assert!(!w.strike(t0 + Duration::from_secs(2)));
        assert!(w.strike(t0 + Duration::from_secs(2)));
    }
}
