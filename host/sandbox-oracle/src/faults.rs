//! Live behaviour switches: injected failures, slowness, the latency
//! model, throttling limits, dropped connections, and the rates of
//! background changes. Every switch can be set at start (CLI flags) and
//! changed while the sandbox runs (tests).
//!
//! Faults apply to resource requests under `/fscmRestApi`, not to the
//! token endpoint, so a test can make data requests fail while tokens keep
//! working.

use std::sync::Mutex;
use std::time::Duration;

use crate::throttle::{Gate, Latency, Throttling};

/// What to do to one incoming resource request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Serve it normally.
    None,
    /// Answer with this status (500, 503, 504, …).
    Status(u16),
    /// Answer 429 with `Retry-After` seconds.
    RateLimit(u64),
    /// Start the response, then close the connection mid-body.
    Drop,
    /// A complete 200 whose body is not valid JSON.
    Malformed,
    /// A complete 200 with valid JSON but no `items` array in the envelope.
    WrongEnvelope,
}

#[derive(Debug, Default)]
struct State {
    fail_next: Vec<(u16, u32)>,
    rate_limit_next: u32,
    retry_after: u64,
    drop_next: u32,
    malformed_next: u32,
    wrong_envelope_next: u32,
    slow: Duration,
    latency: Latency,
    mutate_between_pages: u32,
    fail_every: Option<(u64, u16)>,
    rate_limit_every: Option<(u64, u64)>,
    drop_every: Option<u64>,
    seen: u64,
    updates_per_sec: f64,
    inserts_per_sec: f64,
    deletes_per_sec: f64,
    late_commit_secs: u64,
}

/// The run-time switches of one sandbox (see [`crate::OracleSandbox::faults`]).
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<State>,
    gate: Gate,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `count` resource requests answer `status` (e.g. 503, 504,
    /// 500) with an error body.
    pub fn fail_next(&self, status: u16, count: u32) {
        if count > 0 {
            self.lock().fail_next.push((status, count));
        }
    }

    /// The next `count` resource requests answer 429 with
    /// `Retry-After: retry_after_secs`.
    pub fn rate_limit_next(&self, count: u32, retry_after_secs: u64) {
        let mut s = self.lock();
        s.rate_limit_next = count;
        s.retry_after = retry_after_secs;
    }

    /// Delays every resource response by `delay` (zero turns it off).
    pub fn slow(&self, delay: Duration) {
        self.lock().slow = delay;
    }

    /// The latency model of resource answers from now on
    /// (`Latency::default()` turns it off). Each request sleeps on the
    /// runtime's timer, never holding a thread, so slow answers do not
    /// delay each other.
    pub fn set_latency(&self, latency: Latency) {
        self.lock().latency = latency;
    }

    /// The latency model in force.
    pub fn latency(&self) -> Latency {
        self.lock().latency
    }

    /// Throttling limits per OAuth client from now on
    /// (`Throttling::default()` turns throttling off); the counters of
    /// [`crate::OracleSandbox::stats`] are kept.
    pub fn set_throttling(&self, limits: Throttling) {
        self.gate.set_limits(limits);
    }

    /// The throttling limits in force.
    pub fn throttling(&self) -> Throttling {
        self.gate.limits()
    }

    /// The next `count` resource requests get a 200 whose body stops
    /// halfway and whose connection is then closed.
    pub fn drop_connections_next(&self, count: u32) {
        self.lock().drop_next = count;
    }

    /// The next `count` resource requests get a complete 200 whose body is
    /// cut in half (not valid JSON).
    pub fn malformed_json_next(&self, count: u32) {
        self.lock().malformed_next = count;
    }

    /// The next `count` resource requests get a complete 200 whose JSON
    /// lacks the `items` array (a wrong envelope).
    pub fn wrong_envelope_next(&self, count: u32) {
        self.lock().wrong_envelope_next = count;
    }

    /// After every page of a top-level collection served, update `k`
    /// random records of that resource (0 turns it off): rows move while a
    /// client pages.
    pub fn mutate_between_pages(&self, k: u32) {
        self.lock().mutate_between_pages = k;
    }

    /// Every `n`th resource request answers `status` (0 turns it off).
    pub fn fail_every(&self, n: u64, status: u16) {
        self.lock().fail_every = (n > 0).then_some((n, status));
    }

    /// Every `n`th resource request answers 429 with `Retry-After`
    /// (0 turns it off).
    pub fn rate_limit_every(&self, n: u64, retry_after_secs: u64) {
        self.lock().rate_limit_every = (n > 0).then_some((n, retry_after_secs));
    }

    /// Every `n`th resource request has its connection dropped mid-body
    /// (0 turns it off).
    pub fn drop_every(&self, n: u64) {
        self.lock().drop_every = (n > 0).then_some(n);
    }

    /// Background change rates, per second, spread over the timestamped
    /// resources in proportion to their size.
    pub fn set_mutation_rate(&self, updates_per_sec: f64, inserts_per_sec: f64) {
        let mut s = self.lock();
        s.updates_per_sec = updates_per_sec.max(0.0);
        s.inserts_per_sec = inserts_per_sec.max(0.0);
    }

    /// Background deletes per second.
    pub fn set_delete_rate(&self, deletes_per_sec: f64) {
        self.lock().deletes_per_sec = deletes_per_sec.max(0.0);
    }

    /// Background changes are stamped up to `secs` seconds in the past
    /// (late commits; 0 stamps them now).
    pub fn set_late_commit_secs(&self, secs: u64) {
        self.lock().late_commit_secs = secs;
    }

    /// Turns every switch off (latency and throttling too; the counters
    /// of [`crate::OracleSandbox::stats`] are kept).
    pub fn clear(&self) {
        *self.lock() = State::default();
        self.gate.set_limits(Throttling::default());
    }

    /// The throttle and its counters.
    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Decides the fate of one incoming resource request.
    pub(crate) fn next_fault(&self) -> Fault {
        let mut s = self.lock();
        s.seen += 1;
        let seen = s.seen;
        if s.rate_limit_next > 0 {
            s.rate_limit_next -= 1;
            return Fault::RateLimit(s.retry_after);
        }
        if let Some(first) = s.fail_next.first_mut() {
            let status = first.0;
            first.1 -= 1;
            if first.1 == 0 {
                s.fail_next.remove(0);
            }
            return Fault::Status(status);
        }
        if s.drop_next > 0 {
            s.drop_next -= 1;
            return Fault::Drop;
        }
        if s.malformed_next > 0 {
            s.malformed_next -= 1;
            return Fault::Malformed;
        }
        if s.wrong_envelope_next > 0 {
            s.wrong_envelope_next -= 1;
            return Fault::WrongEnvelope;
        }
        if let Some((n, secs)) = s.rate_limit_every
            && seen.is_multiple_of(n)
        {
            return Fault::RateLimit(secs);
        }
        if let Some((n, status)) = s.fail_every
            && seen.is_multiple_of(n)
        {
            return Fault::Status(status);
        }
        if let Some(n) = s.drop_every
            && seen.is_multiple_of(n)
        {
            return Fault::Drop;
        }
        Fault::None
    }

    /// The configured response delay.
    pub(crate) fn delay(&self) -> Duration {
        self.lock().slow
    }

    /// Records to update after each page.
    pub(crate) fn between_pages(&self) -> u32 {
        self.lock().mutate_between_pages
    }

    /// `(updates, inserts, deletes)` per second and the late-commit window.
    pub(crate) fn rates(&self) -> (f64, f64, f64, u64) {
        let s = self.lock();
        (
            s.updates_per_sec,
            s.inserts_per_sec,
            s.deletes_per_sec,
            s.late_commit_secs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_faults_run_out_in_order() {
        let f = Faults::default();
        f.rate_limit_next(1, 7);
        f.fail_next(503, 2);
        f.fail_next(504, 1);
        f.drop_connections_next(1);
        f.malformed_json_next(1);
        f.wrong_envelope_next(1);
        assert_eq!(f.next_fault(), Fault::RateLimit(7));
        assert_eq!(f.next_fault(), Fault::Status(503));
        assert_eq!(f.next_fault(), Fault::Status(503));
        assert_eq!(f.next_fault(), Fault::Status(504));
        assert_eq!(f.next_fault(), Fault::Drop);
        assert_eq!(f.next_fault(), Fault::Malformed);
        assert_eq!(f.next_fault(), Fault::WrongEnvelope);
        assert_eq!(f.next_fault(), Fault::None);
    }

    #[test]
    fn periodic_faults() {
        let f = Faults::default();
        f.fail_every(3, 503);
        let got: Vec<_> = (0..6).map(|_| f.next_fault()).collect();
        assert_eq!(got[2], Fault::Status(503));
        assert_eq!(got[5], Fault::Status(503));
        assert_eq!(got.iter().filter(|x| **x == Fault::None).count(), 4);
        f.clear();
        assert_eq!(f.next_fault(), Fault::None);
    }
}
