//! What every HTTP handler shares: the scheduler (tenants, stores,
//! status), the admin token, the metrics renderer and the limits.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use mlc_common::Secret;

use crate::limits::ServeLimits;
use crate::ratelimit::RateLimits;
use crate::scheduler::Scheduler;

/// What every handler shares.
pub struct App {
    /// The scheduler (tenants, stores, status).
    pub scheduler: Arc<Scheduler>,
    /// The admin API's bearer token.
    pub admin_token: Secret,
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// Limits.
    pub limits: ServeLimits,
    /// Rate limits of webhooks and the API.
    pub rates: RateLimits,
}
