//! Rate limits of the HTTP side (GCRA, `governor`): webhook deliveries per
//! source address and, once their token is checked, per tenant; admin API
//! requests per source address, counted before the token check so that
//! guessing tokens is slow. A request over its limit is answered 429 with
//! `Retry-After` and changes nothing.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::limits::ServeLimits;

/// The limiters of one server.
pub struct RateLimits {
    webhook_source: DefaultKeyedRateLimiter<IpAddr>,
    webhook_tenant: DefaultKeyedRateLimiter<String>,
    api_source: DefaultKeyedRateLimiter<IpAddr>,
}

/// A quota of `per_minute` requests, bursting to a sixth of a minute's.
fn quota(per_minute: u32) -> Quota {
    let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new((per_minute.get() / 6).max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per_minute).allow_burst(burst)
}

impl RateLimits {
    /// The limiters `limits` asks for.
    pub fn new(limits: &ServeLimits) -> Self {
        Self {
            webhook_source: RateLimiter::keyed(quota(limits.webhook_per_source)),
            webhook_tenant: RateLimiter::keyed(quota(limits.webhook_per_tenant)),
            api_source: RateLimiter::keyed(quota(limits.api_per_source)),
        }
    }

    /// A webhook delivery from `source`: `Err(wait)` when over the limit.
    pub fn webhook_source(&self, source: IpAddr) -> Result<(), Duration> {
        check(&self.webhook_source, &source)
    }

    /// A genuine webhook delivery for `tenant`.
    pub fn webhook_tenant(&self, tenant: &str) -> Result<(), Duration> {
        check(&self.webhook_tenant, &tenant.to_owned())
    }

    /// An admin API request from `source`.
    pub fn api_source(&self, source: IpAddr) -> Result<(), Duration> {
        check(&self.api_source, &source)
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), Duration> {
    limiter
        .check_key(key)
        .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_over_its_limit_waits_and_others_do_not() {
        let limits = ServeLimits {
            webhook_per_source: 12,
            ..ServeLimits::default()
        };
        let r = RateLimits::new(&limits);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        // The burst is a sixth of a minute's: 2.
        assert!(r.webhook_source(a).is_ok());
        assert!(r.webhook_source(a).is_ok());
        let wait = r.webhook_source(a).expect_err("over the burst");
        assert!(wait <= Duration::from_secs(5), "{wait:?}");
        assert!(
            r.webhook_source(b).is_ok(),
            "another source has its own budget"
        );
        assert!(r.webhook_tenant("acme").is_ok());
    }
}
