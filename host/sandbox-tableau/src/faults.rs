//! Fault switches: what a test (or `--fault` flags) can make the sandbox do
//! wrong on purpose, the way a real Tableau site sometimes does.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The switches. Every setter takes effect for the next matching request.
#[derive(Debug, Default)]
pub struct Faults {
    epoch: AtomicU64,
    state: Mutex<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    chunk_failures: VecDeque<u16>,
    job_failures: VecDeque<String>,
    rate_limited: u32,
    retry_after_secs: u64,
    slow_jobs: Duration,
    lose_webhooks: u32,
    duplicate_webhooks: bool,
    sign_in_redirects: u32,
}

impl Faults {
    fn state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ends every session signed in so far (their tokens get `401002`), as
    /// if they had all reached their lifetime. Upload sessions survive.
    pub fn expire_sessions_now(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The next file-upload `PUT` answers `status` (e.g. 500 or 503) with
    /// an error body and does not append the chunk. Calls queue up.
    pub fn fail_next_chunk(&self, status: u16) {
        self.state().chunk_failures.push_back(status);
    }

    /// The next job (update, publish as job, refresh) fails with these
    /// notes and changes nothing. Calls queue up.
    pub fn fail_next_job(&self, notes: impl Into<String>) {
        self.state().job_failures.push_back(notes.into());
    }

    /// Forgets the job failures still queued by [`Self::fail_next_job`].
    pub fn clear_job_failures(&self) {
        self.state().job_failures.clear();
    }

    /// The next `count` REST calls answer `429` with `Retry-After`.
    pub fn rate_limit_next(&self, count: u32, retry_after_secs: u64) {
        let mut state = self.state();
        state.rate_limited = count;
        state.retry_after_secs = retry_after_secs;
    }

    /// Every job stays running (progress 0) this long before it works.
    pub fn slow_jobs(&self, delay: Duration) {
        self.state().slow_jobs = delay;
    }

    /// The next `count` webhook events are never sent.
    pub fn lose_webhooks(&self, count: u32) {
        self.state().lose_webhooks = count;
    }

    /// Whether every webhook event is delivered twice.
    pub fn duplicate_webhooks(&self, on: bool) {
        self.state().duplicate_webhooks = on;
    }

    /// The next `count` sign-ins answer `301 Moved Permanently` with a
    /// `Location` naming the same sign-in URL (a Cloud pod redirect); the
    /// client must POST its credentials again there.
    pub fn redirect_sign_in(&self, count: u32) {
        self.state().sign_in_redirects = count;
    }

    /// The current session epoch (sessions from an older one are expired).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub(crate) fn take_chunk_failure(&self) -> Option<u16> {
        self.state().chunk_failures.pop_front()
    }

    pub(crate) fn take_job_failure(&self) -> Option<String> {
        self.state().job_failures.pop_front()
    }

    pub(crate) fn take_rate_limit(&self) -> Option<u64> {
        let mut state = self.state();
        if state.rate_limited > 0 {
            state.rate_limited -= 1;
            Some(state.retry_after_secs)
        } else {
            None
        }
    }

    pub(crate) fn take_sign_in_redirect(&self) -> bool {
        let mut state = self.state();
        if state.sign_in_redirects > 0 {
            state.sign_in_redirects -= 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn job_delay(&self) -> Duration {
        self.state().slow_jobs
    }

    pub(crate) fn take_lost_webhook(&self) -> bool {
        let mut state = self.state();
        if state.lose_webhooks > 0 {
            state.lose_webhooks -= 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn webhook_copies(&self) -> u32 {
        if self.state().duplicate_webhooks {
            2
        } else {
            1
        }
    }
}
