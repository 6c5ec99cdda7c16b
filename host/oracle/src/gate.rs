//! The request gate of one [`crate::OracleClient`]: every resource request
//! of every pull of the client passes it, so the tenant's limits hold
//! however many pulls, slices and retries run at once.
//!
//! - **Concurrency cap**: a semaphore of [`OracleConfig::max_concurrency`]
//!   permits; a request holds one from just before it is sent until its
//!   answer is read, never while it sleeps between attempts.
//! - **Adaptive limit**: each 429 lowers the limit by one (down to 1): the
//!   permit of the refused request is retired when it is released. After
//!   [`GROW_AFTER`] answers in a row without a 429 the limit rises by one
//!   again, never above the configured cap. Oracle throttles by requests in
//!   flight, so a pod that allows fewer than the cap settles the client just
//!   under what it allows instead of refusing a request in every round.
//! - **Shared backoff**: a 429 or 503 pauses the whole client until the
//!   failed request's own retry time (its `Retry-After`, or the computed
//!   backoff); every request that wants to start meanwhile waits for the
//!   pause to end, plus its own jitter (up to a tenth of the remaining pause,
//!   at most a second) so that they do not all return in the same instant.
//!   Other failures (500, 502, 504, timeouts) are about one request and
//!   delay only it.
//! - **Request budget** ([`OracleConfig::requests_per_minute`], optional):
//!   admissions are spaced evenly, one every 60.5 s / budget, which keeps
//!   any 60-second window (Oracle's unit) at or under the budget with half a
//!   second of slack for network jitter. A hand-written limiter rather than
//!   the `governor` crate: it is a dozen lines, its exact spacing is what
//!   the sliding-window argument needs, and it runs on tokio's clock, so its
//!   tests run in paused time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng as _;
use serde::Serialize;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::config::OracleConfig;

/// Answers in a row without a 429 before the adaptive limit rises by one.
pub const GROW_AFTER: u32 = 32;

/// Largest jitter added to the end of a shared pause.
const MAX_RESUME_JITTER: Duration = Duration::from_secs(1);

/// What the gate did since the client was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestStats {
    /// Resource requests admitted (sent), retries included.
    pub sent: u64,
    /// 429 answers seen.
    pub throttled: u64,
    /// 503 answers seen.
    pub unavailable: u64,
    /// Shared pauses started or lengthened (by a 429 or 503).
    pub pauses: u64,
    /// The most requests in flight at once.
    pub max_in_flight: usize,
    /// The adaptive concurrency limit now (at most `max_concurrency`).
    pub concurrency_limit: usize,
}

#[derive(Debug)]
struct Adaptive {
    /// The limit now.
    limit: usize,
    /// Permits still to retire as they are released.
    debt: usize,
    /// Answers since the last 429.
    successes: u32,
}

/// Evenly spaced admissions.
#[derive(Debug)]
struct Spacing {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Spacing {
    fn per_minute(n: u32) -> Self {
        Self {
            interval: Duration::from_secs_f64(60.5 / f64::from(n.max(1))),
            next: Mutex::new(None),
        }
    }

    /// Reserves the next slot and sleeps until it.
    async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.interval);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// The gate of one client.
#[derive(Debug)]
pub(crate) struct Gate {
    max: usize,
    permits: Semaphore,
    adaptive: Mutex<Adaptive>,
    paused_until: Mutex<Option<Instant>>,
    spacing: Option<Spacing>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    sent: AtomicU64,
    throttled: AtomicU64,
    unavailable: AtomicU64,
    pauses: AtomicU64,
}

/// One admitted request; dropping it ends the request and frees its permit
/// (or retires it, when the adaptive limit went down).
#[derive(Debug)]
pub(crate) struct Admitted<'a> {
    gate: &'a Gate,
    permit: Option<SemaphorePermit<'a>>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::SeqCst);
        let retire = {
            let mut a = self.gate.adaptive();
            let retire = a.debt > 0;
            if retire {
                a.debt -= 1;
            }
            retire
        };
        if let Some(permit) = self.permit.take()
            && retire
        {
            permit.forget();
        }
    }
}

impl Gate {
    /// The gate for `config`'s limits.
    pub(crate) fn new(config: &OracleConfig) -> Self {
        let max = config.max_concurrency.max(1);
        Self {
            max,
            permits: Semaphore::new(max),
            adaptive: Mutex::new(Adaptive {
                limit: max,
                debt: 0,
                successes: 0,
            }),
            paused_until: Mutex::new(None),
            spacing: config.requests_per_minute.map(Spacing::per_minute),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
        }
    }

    fn adaptive(&self) -> std::sync::MutexGuard<'_, Adaptive> {
        self.adaptive.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the shared pause ends, if one is on.
    fn paused(&self) -> Option<Instant> {
        let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        until.filter(|t| *t > Instant::now())
    }

    /// Waits out any shared pause, a permit and a budget slot; the request
    /// may be sent when this returns.
    pub(crate) async fn admit(&self) -> Admitted<'_> {
        loop {
            while let Some(until) = self.paused() {
                let left = until.saturating_duration_since(Instant::now());
                let cap = (left / 10).min(MAX_RESUME_JITTER);
                let jitter = Duration::from_micros(
                    rand::rng().random_range(0..=u64::try_from(cap.as_micros()).unwrap_or(0)),
                );
                tokio::time::sleep_until(until + jitter).await;
            }
            // The semaphore is never closed, so acquiring only fails in
            // theory; then the request goes without a permit.
            let permit = self.permits.acquire().await.ok();
            if self.paused().is_some() {
                continue;
            }
            if let Some(spacing) = &self.spacing {
                spacing.wait().await;
                if self.paused().is_some() {
                    // The slot is given up: the budget is only undershot.
                    continue;
                }
            }
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            self.sent.fetch_add(1, Ordering::Relaxed);
            return Admitted { gate: self, permit };
        }
    }

    /// A request was answered with anything but a 429.
    pub(crate) fn answered(&self) {
        let mut a = self.adaptive();
        a.successes = a.successes.saturating_add(1);
        if a.successes >= GROW_AFTER && a.limit < self.max {
            a.successes = 0;
            a.limit += 1;
            if a.debt > 0 {
                a.debt -= 1;
            } else {
                self.permits.add_permits(1);
            }
        }
    }

    /// A request was answered `status` (429 or 503) and retries in `wait`:
    /// the whole client pauses until then; a 429 also lowers the limit.
    pub(crate) fn pushed_back(&self, status: u16, wait: Duration) {
        let until = Instant::now() + wait;
        {
            let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            if p.is_none_or(|t| t < until) {
                *p = Some(until);
            }
        }
        self.pauses.fetch_add(1, Ordering::Relaxed);
        if status == 429 {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            let mut a = self.adaptive();
            a.successes = 0;
            if a.limit > 1 {
                a.limit -= 1;
                a.debt += 1;
            }
        } else {
            self.unavailable.fetch_add(1, Ordering::Relaxed);
            self.answered();
        }
    }

    /// The counters.
    pub(crate) fn stats(&self) -> RequestStats {
        RequestStats {
            sent: self.sent.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
            pauses: self.pauses.load(Ordering::Relaxed),
            max_in_flight: self.max_in_flight.load(Ordering::SeqCst),
            concurrency_limit: self.adaptive().limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mlc_common::Secret;

    use super::*;

    fn gate(max: usize, per_minute: Option<u32>) -> Arc<Gate> {
        let mut cfg = OracleConfig::new("http://a", "http://b", "c", Secret::new("s"), "x");
        cfg.max_concurrency = max;
        cfg.requests_per_minute = per_minute;
        Arc::new(Gate::new(&cfg))
    }

    /// `tasks` tasks each send `each` requests of `hold` through `g`;
    /// returns the admission times.
    async fn run(g: &Arc<Gate>, tasks: usize, each: usize, hold: Duration) -> Vec<Instant> {
        let times = Arc::new(Mutex::new(Vec::new()));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let (g, times) = (g.clone(), times.clone());
            set.spawn(async move {
                for _ in 0..each {
                    let a = g.admit().await;
                    times.lock().unwrap().push(Instant::now());
                    tokio::time::sleep(hold).await;
                    g.answered();
                    drop(a);
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        let mut t = times.lock().unwrap().clone();
        t.sort();
        t
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_in_flight_than_the_cap() {
        let g = gate(3, None);
        let t = run(&g, 10, 5, Duration::from_millis(100)).await;
        assert_eq!(t.len(), 50);
        let s = g.stats();
        assert_eq!((s.sent, s.max_in_flight, s.concurrency_limit), (50, 3, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_holds_in_every_minute() {
        let per_minute = 30;
        let g = gate(8, Some(per_minute));
        let started = Instant::now();
        let t = run(&g, 8, 10, Duration::from_millis(10)).await;
        assert_eq!(t.len(), 80);
        for (i, a) in t.iter().enumerate() {
            let in_window = t[i..]
                .iter()
                .take_while(|b| b.duration_since(*a) < Duration::from_secs(60))
                .count();
            assert!(in_window <= per_minute as usize, "{in_window} in a minute");
        }
        // Not slower than the budget needs either: 80 at 2.02 s apart.
        let took = started.elapsed();
        assert!(took < Duration::from_secs(162), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_everyone_and_lowers_the_limit() {
        let g = gate(4, None);
        let a = g.admit().await;
        g.pushed_back(429, Duration::from_secs(2));
        drop(a);
        let s = g.stats();
        assert_eq!((s.throttled, s.pauses, s.concurrency_limit), (1, 1, 3));
        // Anyone who starts now waits for the pause (plus at most 200 ms).
        let before = Instant::now();
        let b = g.admit().await;
        let waited = before.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited <= Duration::from_millis(2200),
            "{waited:?}"
        );
        drop(b);
        // Only 3 permits are left.
        let held: Vec<_> = futures_join(&g, 3).await;
        assert!(
            tokio::time::timeout(Duration::from_secs(5), g.admit())
                .await
                .is_err(),
            "a fourth request got in at limit 3"
        );
        drop(held);
        // Successes raise it again, up to the cap and no further.
        for _ in 0..(GROW_AFTER * 3) {
            g.answered();
        }
        assert_eq!(g.stats().concurrency_limit, 4);
        let held = futures_join(&g, 4).await;
        assert_eq!(held.len(), 4);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), g.admit())
                .await
                .is_err()
        );
        // A 503 pauses but keeps the limit.
        drop(held);
        g.pushed_back(503, Duration::from_secs(1));
        let s = g.stats();
        assert_eq!((s.unavailable, s.pauses, s.concurrency_limit), (1, 2, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_never_drops_below_one() {
        let g = gate(2, None);
        for _ in 0..5 {
            let a = g.admit().await;
            g.pushed_back(429, Duration::from_millis(10));
            drop(a);
        }
        assert_eq!(g.stats().concurrency_limit, 1);
        let a = g.admit().await;
        drop(a);
        assert_eq!(g.stats().sent, 6);
    }

    async fn futures_join(g: &Gate, n: usize) -> Vec<Admitted<'_>> {
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(g.admit().await);
        }
        held
    }
}
