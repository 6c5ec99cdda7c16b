//! What the scheduler knows about each tenant and pipeline right now, for
//! the admin API, `/status.json` and the page: where each pipeline's
//! schedule stands, how its last cycle ended, and the last day of rows and
//! freshness samples.
//!
//! The durable facts (batches, cursors, errors of failed batches, a day of
//! freshness samples) live in the tenant stores; this is the in-memory view
//! a restart rebuilds from them and as the pipelines run again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};

/// Where a tenant stands in the process.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum TenantState {
    /// Being built (clients, secrets, mappings).
    Starting,
    /// Its pipelines are scheduled.
    Running,
    /// It could not be built; tried again at `retry_at`.
    Failed {
        /// Why, as the composition root said it.
        error: String,
        /// The next attempt (Unix seconds).
        retry_at: u64,
    },
}

/// Where a pipeline's schedule stands.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum RunState {
    /// Waiting for its next run.
    Scheduled {
        /// Unix seconds.
        next_run: u64,
    },
    /// Waiting for a free slot of its tenant or of the process.
    Queued,
    /// A cycle is running.
    Running {
        /// Unix seconds.
        since: u64,
    },
    /// Paused by an operator.
    Paused,
}

/// How a pipeline's last cycle ended.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum LastCycle {
    /// Confirmed.
    Ok {
        /// Unix seconds.
        at: u64,
        /// The batch.
        batch: String,
        /// Records new to the store.
        records: u64,
        /// Rows sent.
        rows: u64,
        /// What Tableau got.
        action: String,
        /// True when Tableau's job was seen finished right after a webhook
        /// said so (checked over REST); false: found by polling.
        after_webhook: bool,
        /// Seconds the cycle took.
        seconds: f64,
    },
    /// Failed; the batch resumes at the next run.
    Failed {
        /// Unix seconds.
        at: u64,
        /// The error chain.
        error: String,
        /// Consecutive failures so far.
        failures: u32,
        /// Seconds the cycle took.
        seconds: f64,
    },
}

/// A mapping script or plugin the process refused, the previous version
/// still serving.
#[derive(Clone, Debug, Serialize)]
pub struct Refused {
    /// The pipeline whose mapping it was.
    pub pipeline: String,
    /// The file.
    pub file: String,
    /// Why (file, line and column included).
    pub reason: String,
    /// Unix seconds.
    pub at: u64,
}

#[derive(Debug)]
struct PipelineStatus {
    run: RunState,
    every: Duration,
    last: Option<LastCycle>,
    /// When a cycle last confirmed (Unix seconds): lag = now − this.
    last_success: Option<u64>,
    /// (Unix seconds, rows sent) of each cycle that sent rows, last day.
    rows: VecDeque<(u64, u64)>,
    /// (Unix seconds of the confirmation, seconds from the newest record's
    /// LastUpdateDate to it), last day.
    freshness: VecDeque<(u64, f64)>,
}

#[derive(Debug)]
struct TenantStatus {
    state: TenantState,
    pipelines: BTreeMap<String, PipelineStatus>,
    refused: Vec<Refused>,
}

/// Webhook deliveries by outcome name.
pub type WebhookCounts = BTreeMap<&'static str, u64>;

/// The shared view.
#[derive(Debug)]
pub struct Status {
    started: SystemTime,
    max_samples: usize,
    tenants: Mutex<BTreeMap<String, TenantStatus>>,
    webhooks: Mutex<WebhookCounts>,
}

/// The window of the rows and freshness history: a day, in seconds.
pub const DAY: u64 = 24 * 3600;

/// Unix seconds of `t`.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now() -> u64 {
    unix(SystemTime::now())
}

impl Status {
    /// An empty view keeping at most `max_samples` samples per pipeline.
    pub fn new(max_samples: usize) -> Self {
        Self {
            started: SystemTime::now(),
            max_samples,
            tenants: Mutex::new(BTreeMap::new()),
            webhooks: Mutex::new(WebhookCounts::default()),
        }
    }

    fn tenants(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TenantStatus>> {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a tenant's state (creating its entry).
    pub fn tenant_state(&self, tenant: &str, state: TenantState) {
        let mut t = self.tenants();
        let entry = t.entry(tenant.to_owned()).or_insert_with(|| TenantStatus {
            state: TenantState::Starting,
            pipelines: BTreeMap::new(),
            refused: Vec::new(),
        });
        entry.state = state;
    }

    /// Forgets a removed tenant.
    pub fn remove_tenant(&self, tenant: &str) {
        self.tenants().remove(tenant);
    }

    /// Sets the pipelines a tenant runs now (dropping others, keeping the
    /// history of those that stay).
    pub fn set_pipelines(&self, tenant: &str, pipelines: &[(String, Duration)]) {
        let mut t = self.tenants();
        let Some(entry) = t.get_mut(tenant) else {
            return;
        };
        entry
            .pipelines
            .retain(|name, _| pipelines.iter().any(|(p, _)| p == name));
        for (name, every) in pipelines {
            let p = entry
                .pipelines
                .entry(name.clone())
                .or_insert_with(|| PipelineStatus {
                    run: RunState::Queued,
                    every: *every,
                    last: None,
                    last_success: None,
                    rows: VecDeque::new(),
                    freshness: VecDeque::new(),
                });
            p.every = *every;
        }
    }

    fn with_pipeline(&self, tenant: &str, pipeline: &str, f: impl FnOnce(&mut PipelineStatus)) {
        if let Some(p) = self
            .tenants()
            .get_mut(tenant)
            .and_then(|t| t.pipelines.get_mut(pipeline))
        {
            f(p);
        }
    }

    /// Restores a pipeline's freshness samples from its store (at start;
    /// samples already in memory are kept).
    pub fn restore_freshness(&self, tenant: &str, pipeline: &str, samples: Vec<(u64, f64)>) {
        let max = self.max_samples;
        self.with_pipeline(tenant, pipeline, |p| {
            if p.freshness.is_empty() {
                let skip = samples.len().saturating_sub(max);
                p.freshness = samples.into_iter().skip(skip).collect();
            }
        });
    }

    /// Restores when a pipeline last confirmed a batch (at start, from its
    /// store), so its lag is known before its first cycle here.
    pub fn restore_last_success(&self, tenant: &str, pipeline: &str, at: u64) {
        self.with_pipeline(tenant, pipeline, |p| {
            if p.last_success.is_none() {
                p.last_success = Some(at);
            }
        });
    }

    /// Sets a pipeline's schedule state.
    pub fn run_state(&self, tenant: &str, pipeline: &str, run: RunState) {
        self.with_pipeline(tenant, pipeline, |p| p.run = run);
    }

    /// Records a cycle's end; `freshness` in seconds when it confirmed
    /// records with a LastUpdateDate.
    pub fn cycle_ended(
        &self,
        tenant: &str,
        pipeline: &str,
        last: LastCycle,
        freshness: Option<f64>,
    ) {
        let max = self.max_samples;
        self.with_pipeline(tenant, pipeline, |p| {
            let at = now();
            if let LastCycle::Ok { rows, .. } = &last {
                p.last_success = Some(at);
                if *rows > 0 {
                    p.rows.push_back((at, *rows));
                }
            }
            if let Some(f) = freshness {
                p.freshness.push_back((at, f));
            }
            for q in [&mut p.rows] {
                while q.front().is_some_and(|(t, _)| at - t > DAY) || q.len() > max {
                    q.pop_front();
                }
            }
            while p.freshness.front().is_some_and(|(t, _)| at - t > DAY) || p.freshness.len() > max
            {
                p.freshness.pop_front();
            }
            p.last = Some(last);
        });
    }

    /// True while a cycle of the pipeline runs.
    pub fn is_running(&self, tenant: &str, pipeline: &str) -> bool {
        let mut running = false;
        self.with_pipeline(tenant, pipeline, |p| {
            running = matches!(p.run, RunState::Running { .. } | RunState::Queued);
        });
        running
    }

    /// Consecutive failures of a pipeline's last cycles (0 after a success).
    pub fn failures(&self, tenant: &str, pipeline: &str) -> u32 {
        let mut n = 0;
        self.with_pipeline(tenant, pipeline, |p| {
            if let Some(LastCycle::Failed { failures, .. }) = &p.last {
                n = *failures;
            }
        });
        n
    }

    /// Records a refused mapping (the last 20 per tenant are kept).
    pub fn refused(&self, tenant: &str, refused: Refused) {
        if let Some(t) = self.tenants().get_mut(tenant) {
            t.refused.retain(|r| r.pipeline != refused.pipeline);
            t.refused.push(refused);
            if t.refused.len() > 20 {
                t.refused.remove(0);
            }
        }
    }

    /// Clears a pipeline's refusal once a version of its mapping loads.
    pub fn accepted(&self, tenant: &str, pipeline: &str) {
        if let Some(t) = self.tenants().get_mut(tenant) {
            t.refused.retain(|r| r.pipeline != pipeline);
        }
    }

    /// Counts a webhook delivery by its outcome's name.
    pub fn webhook(&self, outcome: &'static str) {
        let mut w = self.webhooks.lock().unwrap_or_else(|p| p.into_inner());
        *w.entry(outcome).or_default() += 1;
    }

    /// Freshness p50 and p95 of a pipeline's last day, seconds.
    pub fn freshness(&self, tenant: &str, pipeline: &str) -> Option<(f64, f64)> {
        let mut out = None;
        self.with_pipeline(tenant, pipeline, |p| {
            out = percentiles(p.freshness.iter().map(|(_, f)| *f).collect());
        });
        out
    }

    /// The whole view as JSON, `extra(tenant, pipeline)` adding what the
    /// stores say (rows, lag, the open batch).
    pub fn to_json(&self, extra: &dyn Fn(&str, &str) -> Value) -> Value {
        let tenants = self.tenants();
        let webhooks = self
            .webhooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        json!({
            "started_at": unix(self.started),
            "now": now(),
            "webhooks": webhooks,
            "tenants": tenants.iter().map(|(id, t)| json!({
                "tenant": id,
                "status": t.state,
                "refused": t.refused,
                "pipelines": t.pipelines.iter().map(|(name, p)| {
                    let f = percentiles(p.freshness.iter().map(|(_, f)| *f).collect());
                    json!({
                        "pipeline": name,
                        "every_secs": p.every.as_secs(),
                        "schedule": p.run,
                        "last_cycle": p.last,
                        "last_success_at": p.last_success,
                        "freshness": f.map(|(p50, p95)| json!({"p50_secs": p50, "p95_secs": p95,
                            "samples": p.freshness.len()})),
                        "history": {
                            "rows": p.rows,
                            "freshness": p.freshness,
                        },
                        "store": extra(id, name),
                    })
                }).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = cause.source();
    }
    text
}

/// p50 and p95 (nearest rank) of `samples`.
pub fn percentiles(mut samples: Vec<f64>) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i]
    };
    Some((rank(0.50), rank(0.95)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(percentiles(vec![]), None);
        assert_eq!(percentiles(vec![3.0]), Some((3.0, 3.0)));
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentiles(v), Some((50.0, 95.0)));
    }

    #[test]
    fn a_cycle_end_is_kept_with_its_samples() {
        let s = Status::new(3);
        s.tenant_state("acme", TenantState::Running);
        s.set_pipelines("acme", &[("invoices".into(), Duration::from_secs(60))]);
        for i in 0..5 {
            s.cycle_ended(
                "acme",
                "invoices",
                LastCycle::Ok {
                    at: 0,
                    batch: format!("b{i}"),
                    records: 1,
                    rows: 1,
                    action: "upserted".into(),
                    after_webhook: false,
                    seconds: 0.1,
                },
                Some(f64::from(i)),
            );
        }
        // At most 3 samples: the oldest two went.
        assert_eq!(s.freshness("acme", "invoices"), Some((3.0, 4.0)));
        s.cycle_ended(
            "acme",
            "invoices",
            LastCycle::Failed {
                at: 0,
                error: "boom".into(),
                failures: 1,
                seconds: 0.1,
            },
            None,
        );
        assert_eq!(s.failures("acme", "invoices"), 1);
        let doc = s.to_json(&|_, _| Value::Null);
        assert_eq!(
            doc["tenants"][0]["pipelines"][0]["last_cycle"]["outcome"],
            "failed"
        );
    }
}
