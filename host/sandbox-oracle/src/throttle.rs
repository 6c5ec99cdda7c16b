//! Oracle-style throttling of resource requests per OAuth client, the
//! latency model, and the counters a test reads to check a client's
//! behaviour ([`crate::OracleSandbox::stats`]).
//!
//! A Fusion pod answers slowly (a base delay per request, more per row
//! returned) and throttles each client: too many requests at once, or more
//! than a budget per minute, get `429 Too Many Requests` with
//! `Retry-After` (seconds) and the ADF error body. The reference gives no
//! figures for either (UNCONFIRMED): both are switches, off by default.
//!
//! A request counts for the client its bearer token was issued to, from
//! its arrival until its answer is ready (latency included). The
//! per-minute budget is a sliding window of the last 60 seconds of
//! admitted requests; throttled requests do not use it up. Requests
//! without a valid token belong to no client: never throttled, counted as
//! served. The token endpoint is neither throttled nor counted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The per-minute budget's window.
const WINDOW: Duration = Duration::from_secs(60);

/// How long a resource answer takes: `base + per_record × records +
/// per_child × expanded child rows`, counted from the request's arrival.
/// Zero everywhere (the default) answers at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Delay of every resource request (default 0).
    pub base: Duration,
    /// More per record returned: the items of a collection page, or 1 for
    /// a single item (default 0).
    pub per_record: Duration,
    /// More per child row inlined by `expand` or `fields`, at any depth
    /// (default 0).
    pub per_child: Duration,
}

impl Latency {
    /// The delay of an answer with `records` records and `children`
    /// expanded child rows (saturating).
    pub fn delay(&self, records: u64, children: u64) -> Duration {
        let times = |d: Duration, n: u64| d.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
        self.base
            .saturating_add(times(self.per_record, records))
            .saturating_add(times(self.per_child, children))
    }
}

/// Throttling limits per OAuth client; 0 turns a limit off (the default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttling {
    /// Requests in flight at once per client; one more is a 429
    /// (default 0: no limit).
    pub max_in_flight: u32,
    /// Requests admitted per client in any 60 seconds; one more is a 429
    /// whose `Retry-After` says when the oldest leaves the window
    /// (default 0: no limit).
    pub per_minute: u32,
    /// `Retry-After` seconds of a 429 for too many requests in flight
    /// (default 1).
    pub retry_after_secs: u64,
}

impl Default for Throttling {
    fn default() -> Self {
        Self {
            max_in_flight: 0,
            per_minute: 0,
            retry_after_secs: 1,
        }
    }
}

/// What one OAuth client did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Resource requests admitted (answered with anything but a throttling
    /// 429).
    pub served: u64,
    /// Resource requests answered 429 by throttling (injected 429 faults
    /// are not counted here).
    pub throttled: u64,
    /// Requests in flight now.
    pub in_flight: u32,
    /// The most requests in flight at once, each arrival counted before
    /// it is admitted or throttled: with throttling off, the client's own
    /// concurrency.
    pub max_in_flight: u32,
}

/// Counters since start or [`crate::OracleSandbox::reset_stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxStats {
    /// Resource requests admitted, of every client and of none.
    pub served: u64,
    /// Resource requests answered 429 by throttling.
    pub throttled: u64,
    /// The largest [`ClientStats::max_in_flight`] of any client.
    pub max_in_flight: u32,
    /// Per OAuth client id.
    pub clients: BTreeMap<String, ClientStats>,
}

/// Why a request was refused with a 429.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// More requests in flight than allowed.
    InFlight,
    /// The per-minute budget is spent.
    PerMinute,
}

/// A throttling verdict.
#[derive(Debug)]
pub(crate) enum Admission<'a> {
    /// Serve it; dropping the ticket ends the request.
    Admitted(Ticket<'a>),
    /// Answer 429 with this `Retry-After`.
    Throttled {
        /// Seconds.
        retry_after_secs: u64,
        /// Which limit.
        why: Refusal,
    },
}

#[derive(Debug, Default)]
struct Client {
    stats: ClientStats,
    /// Arrivals of admitted requests within the last minute (only kept
    /// while a per-minute budget is set).
    window: VecDeque<Instant>,
}

#[derive(Debug, Default)]
struct State {
    limits: Throttling,
    served: u64,
    throttled: u64,
    clients: HashMap<Arc<str>, Client>,
}

/// The throttle: limits and counters of every client.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    state: Mutex<State>,
}

/// An admitted request of a client; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct Ticket<'a> {
    gate: &'a Gate,
    client: Option<Arc<str>>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(client) = &self.client
            && let Some(c) = self.gate.lock().clients.get_mut(client)
        {
            c.stats.in_flight = c.stats.in_flight.saturating_sub(1);
        }
    }
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the limits (counters kept).
    pub(crate) fn set_limits(&self, limits: Throttling) {
        let mut s = self.lock();
        s.limits = limits;
        if limits.per_minute == 0 {
            for c in s.clients.values_mut() {
                c.window.clear();
            }
        }
    }

    /// The limits.
    pub(crate) fn limits(&self) -> Throttling {
        self.lock().limits
    }

    /// Admits or throttles one request arriving at `now` from `client`
    /// (`None`: no valid token, always admitted).
    pub(crate) fn enter(&self, client: Option<Arc<str>>, now: Instant) -> Admission<'_> {
        let mut guard = self.lock();
        let s = &mut *guard;
        let Some(id) = client else {
            s.served += 1;
            return Admission::Admitted(Ticket {
                gate: self,
                client: None,
            });
        };
        let limits = s.limits;
        let c = s.clients.entry(Arc::clone(&id)).or_default();
        c.stats.in_flight += 1;
        c.stats.max_in_flight = c.stats.max_in_flight.max(c.stats.in_flight);
        let verdict = if limits.max_in_flight > 0 && c.stats.in_flight > limits.max_in_flight {
            Some((limits.retry_after_secs, Refusal::InFlight))
        } else if limits.per_minute > 0 {
            while c
                .window
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
            {
                c.window.pop_front();
            }
            match c.window.front() {
                Some(oldest) if c.window.len() >= limits.per_minute as usize => {
                    let wait = (*oldest + WINDOW).saturating_duration_since(now);
                    Some((
                        wait.as_secs_f64().ceil().max(1.0) as u64,
                        Refusal::PerMinute,
                    ))
                }
                _ => {
                    c.window.push_back(now);
                    None
                }
            }
        } else {
            None
        };
        match verdict {
            Some((retry_after_secs, why)) => {
                c.stats.in_flight -= 1;
                c.stats.throttled += 1;
                s.throttled += 1;
                Admission::Throttled {
                    retry_after_secs,
                    why,
                }
            }
            None => {
                c.stats.served += 1;
                s.served += 1;
                Admission::Admitted(Ticket {
                    gate: self,
                    client: Some(id),
                })
            }
        }
    }

    /// The counters.
    pub(crate) fn stats(&self) -> SandboxStats {
        let s = self.lock();
        SandboxStats {
            served: s.served,
            throttled: s.throttled,
            max_in_flight: s
                .clients
                .values()
                .map(|c| c.stats.max_in_flight)
                .max()
                .unwrap_or(0),
            clients: s
                .clients
                .iter()
                .map(|(id, c)| (id.to_string(), c.stats))
                .collect(),
        }
    }

    /// Zeroes the counters; requests in flight stay counted as in flight
    /// (and so as the new maximum), the per-minute windows are kept.
    pub(crate) fn reset_stats(&self) {
        let mut s = self.lock();
        s.served = 0;
        s.throttled = 0;
        for c in s.clients.values_mut() {
            c.stats = ClientStats {
                in_flight: c.stats.in_flight,
                max_in_flight: c.stats.in_flight,
                ..ClientStats::default()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Option<Arc<str>> {
        Some(Arc::from(s))
    }

    #[test]
    fn latency_adds_per_record_and_per_child_costs() {
        let l = Latency {
            base: Duration::from_millis(100),
            per_record: Duration::from_millis(2),
            per_child: Duration::from_micros(500),
        };
        assert_eq!(l.delay(0, 0), Duration::from_millis(100));
        assert_eq!(l.delay(10, 4), Duration::from_millis(122));
        assert_eq!(Latency::default().delay(499, 2000), Duration::ZERO);
        let huge = Latency {
            per_record: Duration::MAX,
            ..l
        };
        assert_eq!(huge.delay(2, 0), Duration::MAX, "saturates");
    }

    #[test]
    fn too_many_in_flight_per_client_are_refused_and_counted() {
        let g = Gate::default();
        g.set_limits(Throttling {
            max_in_flight: 2,
            retry_after_secs: 3,
            ..Throttling::default()
        });
        let now = Instant::now();
        let a = g.enter(id("a"), now);
        let b = g.enter(id("a"), now);
        assert!(matches!(a, Admission::Admitted(_)));
        assert!(matches!(b, Admission::Admitted(_)));
        assert!(matches!(
            g.enter(id("a"), now),
            Admission::Throttled {
                retry_after_secs: 3,
                why: Refusal::InFlight
            }
        ));
        assert!(
            matches!(g.enter(id("other"), now), Admission::Admitted(_)),
            "limits are per client"
        );
        drop(a);
        assert!(matches!(g.enter(id("a"), now), Admission::Admitted(_)));
        assert!(matches!(g.enter(None, now), Admission::Admitted(_)));
        let s = g.stats();
        assert_eq!((s.served, s.throttled, s.max_in_flight), (5, 1, 3));
        let a = s.clients["a"];
        assert_eq!(
            (a.served, a.throttled, a.in_flight, a.max_in_flight),
            (3, 1, 1, 3)
        );
        drop(b);
        assert_eq!(g.stats().clients["a"].in_flight, 0);
        g.reset_stats();
        assert_eq!(g.stats().served, 0);
        assert_eq!(g.stats().clients["a"], ClientStats::default());
    }

    #[test]
    fn the_per_minute_budget_is_a_sliding_window() {
        let g = Gate::default();
        g.set_limits(Throttling {
            per_minute: 2,
            ..Throttling::default()
        });
        let t0 = Instant::now();
        assert!(matches!(g.enter(id("a"), t0), Admission::Admitted(_)));
        let t1 = t0 + Duration::from_secs(20);
        assert!(matches!(g.enter(id("a"), t1), Admission::Admitted(_)));
        match g.enter(id("a"), t0 + Duration::from_millis(30_500)) {
            Admission::Throttled {
                retry_after_secs,
                why,
            } => {
                assert_eq!(why, Refusal::PerMinute);
                assert_eq!(retry_after_secs, 30, "until the oldest leaves the window");
            }
            Admission::Admitted(_) => panic!("budget spent"),
        }
        assert!(
            matches!(g.enter(id("a"), t0 + WINDOW), Admission::Admitted(_)),
            "the first request left the window"
        );
        assert!(matches!(
            g.enter(id("a"), t0 + WINDOW),
            Admission::Throttled { .. }
        ));
        g.set_limits(Throttling::default());
        assert!(matches!(g.enter(id("a"), t1), Admission::Admitted(_)));
        assert_eq!(g.stats().throttled, 2);
    }
}
