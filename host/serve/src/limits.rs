//! Every limit and interval of `serve`, in one place, with its default.
//!
//! [`ServeLimits`] bounds the scheduler (how many cycles run at once, how a
//! failing pipeline backs off, how schedules are spread) and the HTTP side
//! (body, header and time caps). [`Clock`] turns schedule durations into waits; a
//! test or a demo may speed it up (`--time-scale`), production runs at 1.

use std::time::Duration;

/// What the scheduler and the HTTP server may use.
#[derive(Clone, Debug, PartialEq)]
pub struct ServeLimits {
    /// Cycles of one tenant running at once (default 2): a tenant with many
    /// pipelines cannot take every slot.
    pub per_tenant: usize,
    /// Cycles running at once in the process (default 8).
    pub global: usize,
    /// The first retry of a failed batch waits this long (default 15 s);
    /// each further failure doubles it.
    pub backoff_base: Duration,
    /// The longest wait between retries of a failed batch (default 30 min).
    pub backoff_cap: Duration,
    /// A pipeline's first run after start waits a random part of this much,
    /// at most its `every` (default 30 s), and each next run moves by up to
    /// [`Self::jitter_fraction`] of `every`: pipelines do not fire together.
    pub start_spread: Duration,
    /// Fraction of `every` by which each run is moved at random (default 0.05).
    pub jitter_fraction: f64,
    /// How often tenant definitions and mapping scripts are checked for
    /// changes (default 2 s; not scaled by the clock).
    pub reload_every: Duration,
    /// A tenant that could not be built is tried again after this long
    /// (default 30 s, scaled by the clock).
    pub tenant_retry: Duration,
    /// Largest webhook body (default 64 KiB; Tableau's events are a few
    /// hundred bytes).
    pub webhook_body: usize,
    /// Largest admin API body (default 1 MiB: a tenant definition).
    pub api_body: usize,
    /// Longest time a request may take, reading included (default 30 s).
    pub request_timeout: Duration,
    /// Longest time a client may take to send a request's headers (default
    /// 10 s): a slow client holding a connection open without finishing its
    /// headers is cut off.
    pub header_timeout: Duration,
    /// Largest request head, request line and headers together (default
    /// 64 KiB; at least 8 KiB); larger is answered 431.
    pub header_bytes: usize,
    /// Most headers in one request (default 64); more is answered 431.
    pub max_headers: usize,
    /// How long SIGTERM waits for running cycles before stopping them
    /// (default 30 s); an interrupted cycle resumes from its journal at the
    /// next start.
    pub grace: Duration,
    /// Webhook events remembered for deduplication, per tenant (default 1,000).
    pub webhook_memory: usize,
    /// Freshness samples kept per pipeline: those of the last day, at most
    /// this many (default 10,000).
    pub freshness_samples: usize,
    /// Raw record versions of confirmed batches are kept this long (default
    /// 30 days; a record's latest version is always kept).
    pub raw_retention: Duration,
    /// How often a pipeline applies the retention, after a confirmed cycle
    /// (default 1 h, not scaled by the clock).
    pub retention_every: Duration,
    /// Webhook deliveries a minute from one source address (default 600,
    /// bursting to a sixth of that).
    pub webhook_per_source: u32,
    /// Genuine webhook deliveries a minute for one tenant (default 600).
    pub webhook_per_tenant: u32,
    /// Admin API requests a minute from one source address, counted before
    /// the token is checked (default 1,200).
    pub api_per_source: u32,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            per_tenant: 2,
            global: 8,
            backoff_base: Duration::from_secs(15),
            backoff_cap: Duration::from_secs(30 * 60),
            start_spread: Duration::from_secs(30),
            jitter_fraction: 0.05,
            reload_every: Duration::from_secs(2),
            tenant_retry: Duration::from_secs(30),
            webhook_body: 64 << 10,
            api_body: 1 << 20,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            header_bytes: 64 << 10,
            max_headers: 64,
            grace: Duration::from_secs(30),
            webhook_memory: 1_000,
            freshness_samples: 10_000,
            raw_retention: Duration::from_secs(30 * 24 * 3600),
            retention_every: Duration::from_secs(3600),
            webhook_per_source: 600,
            webhook_per_tenant: 600,
            api_per_source: 1_200,
        }
    }
}

impl ServeLimits {
    /// The wait before retrying after `failures` consecutive failures (1 or more).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.backoff_base
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_cap)
    }
}

/// Turns schedule durations into waits. `scale` > 1 runs schedules faster
/// (a test at 30 runs a 1-minute pipeline every 2 s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clock {
    scale: f64,
}

impl Clock {
    /// A clock running `scale` times faster than the wall (1 in production).
    pub fn new(scale: f64) -> Self {
        Self {
            scale: if scale.is_finite() && scale >= 1.0 {
                scale
            } else {
                1.0
            },
        }
    }

    /// The real wait for a schedule duration.
    pub fn wait(&self, d: Duration) -> Duration {
        d.div_f64(self.scale)
    }

    /// The speed-up.
    pub fn scale(&self) -> f64 {
        self.scale
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stops_at_the_cap() {
        let l = ServeLimits::default();
        assert_eq!(l.backoff(1), Duration::from_secs(15));
        assert_eq!(l.backoff(2), Duration::from_secs(30));
        assert_eq!(l.backoff(4), Duration::from_secs(120));
        assert_eq!(l.backoff(8), Duration::from_secs(30 * 60));
        assert_eq!(l.backoff(u32::MAX), Duration::from_secs(30 * 60));
    }

    #[test]
    fn the_clock_scales_waits_and_refuses_to_slow_down() {
        assert_eq!(
            Clock::new(30.0).wait(Duration::from_secs(60)),
            Duration::from_secs(2)
        );
        assert_eq!(Clock::new(0.5).scale(), 1.0);
        assert_eq!(Clock::new(f64::NAN).scale(), 1.0);
    }
}
