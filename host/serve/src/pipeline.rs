//! One task per pull group: the pipelines of a tenant that read the same
//! Oracle resource (most groups hold one pipeline). The task sleeps until a
//! member's next run or a command, takes a slot of its tenant and then one
//! of the process, runs the due cycles together (so they share one pull of
//! the resource), records each outcome (status, metrics, freshness,
//! retention) and plans each member's next run: `every` after a success
//! (with jitter), a growing backoff after a failure. When one member is due
//! on its schedule, every member of the group that is not paused or
//! backing off runs with it: one pull feeds them all, so a group runs at
//! its shortest `every`. Between cycles it takes commands for one member:
//! run now, or open a replay batch and run it; those run that member alone.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mlc_store::{BatchKind, TenantStore};
use mlc_sync::{CycleAction, CycleReport, Host, PipelineSpec, Progress, Quiet, SyncError, Tenant};
use rand::Rng;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::limits::{Clock, ServeLimits};
use crate::metrics;
use crate::status::{LastCycle, RunState, Status, error_chain, unix};

/// What a pipeline can be asked between cycles.
pub enum Command {
    /// Run a cycle now (a webhook hint, the API's run button).
    RunNow,
    /// Open a batch that exports from the store (a replay), then run it;
    /// answers with the batch id, or why not.
    Replay {
        /// What to export.
        kind: BatchKind,
        /// The keys, for a replay of records.
        keys: Vec<String>,
        /// The answer.
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// A command for the named member of a group.
pub(crate) type Addressed = (String, Command);

/// One pipeline of a group, with its schedule.
pub(crate) struct Member {
    pub(crate) spec: PipelineSpec,
    pub(crate) every: Duration,
    /// When it runs next on its schedule.
    next: Instant,
    /// It failed last time and waits out its backoff (it does not join the
    /// group's runs before then).
    backing_off: bool,
    /// When raw-record retention last ran for it.
    pruned: Option<Instant>,
}

impl Member {
    pub(crate) fn new(spec: PipelineSpec, every: Duration) -> Self {
        Self {
            spec,
            every,
            next: Instant::now(),
            backing_off: false,
            pruned: None,
        }
    }
}

pub(crate) struct GroupLoop {
    pub(crate) host: Arc<Host>,
    pub(crate) tenant: Arc<Tenant>,
    pub(crate) members: Vec<Member>,
    pub(crate) status: Arc<Status>,
    pub(crate) limits: ServeLimits,
    pub(crate) clock: Clock,
    pub(crate) per_tenant: Arc<Semaphore>,
    pub(crate) global: Arc<Semaphore>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) commands: mpsc::Receiver<Addressed>,
}

impl GroupLoop {
    fn jitter(&self, d: Duration, fraction: f64) -> Duration {
        let f = rand::rng().random_range(-fraction..=fraction);
        d.mul_f64((1.0 + f).max(0.0))
    }

    fn paused(&self, name: &str) -> bool {
        tokio::task::block_in_place(|| self.tenant.store.pipeline(name))
            .map(|s| s.paused)
            .unwrap_or(false)
    }
}

/// Runs one group until its commands close or the process stops.
pub(crate) async fn group_loop(mut l: GroupLoop) {
    let tenant_id = l.tenant.id().to_owned();
    for i in 0..l.members.len() {
        let spread = l.limits.start_spread.min(l.members[i].every);
        let first = spread.mul_f64(rand::rng().random_range(0.0..=1.0));
        l.members[i].next = Instant::now() + l.clock.wait(first);
    }
    loop {
        let paused: Vec<bool> = l.members.iter().map(|m| l.paused(&m.spec.name)).collect();
        let mut wake = None::<Instant>;
        for (m, &paused) in l.members.iter().zip(&paused) {
            l.status.run_state(
                &tenant_id,
                &m.spec.name,
                if paused {
                    RunState::Paused
                } else {
                    RunState::Scheduled {
                        next_run: unix(
                            SystemTime::now() + m.next.saturating_duration_since(Instant::now()),
                        ),
                    }
                },
            );
            // A paused pipeline looks again every few seconds, so a resume
            // applies quickly.
            let at = if paused {
                Instant::now() + Duration::from_secs(2).min(l.clock.wait(m.every))
            } else {
                m.next
            };
            wake = Some(wake.map_or(at, |w| w.min(at)));
        }
        let Some(wake) = wake else {
            return;
        };
        let mut replay = None;
        // Which members run: every schedulable one when one is due, or the
        // one a command names.
        let due: Vec<usize> = tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if !l.members.iter().zip(&paused).any(|(m, p)| !p && m.next <= now) {
                    continue;
                }
                (0..l.members.len())
                    .filter(|&i| !paused[i] && (!l.members[i].backing_off || l.members[i].next <= now))
                    .collect()
            }
            command = l.commands.recv() => match command {
                None => return,
                Some((name, command)) => {
                    let Some(i) = l.members.iter().position(|m| m.spec.name == name) else {
                        continue;
                    };
                    match command {
                        Command::RunNow if paused[i] => continue,
                        Command::RunNow => vec![i],
                        Command::Replay { kind, keys, reply } => {
                            replay = Some((kind, keys, reply));
                            vec![i]
                        }
                    }
                }
            },
            _ = l.stop.wait_for(|s| *s) => return,
        };
        if let Some((kind, keys, reply)) = replay {
            let name = &l.members[due[0]].spec.name;
            let opened = open_replay(&l.tenant.store, name, kind, &keys);
            let ok = opened.is_ok();
            let _ = reply.send(opened);
            if !ok {
                continue;
            }
        }
        for &i in &due {
            l.status
                .run_state(&tenant_id, &l.members[i].spec.name, RunState::Queued);
        }
        let Ok(_tenant_slot) = l.per_tenant.clone().acquire_owned().await else {
            return;
        };
        let Ok(_global_slot) = l.global.clone().acquire_owned().await else {
            return;
        };
        for &i in &due {
            l.status.run_state(
                &tenant_id,
                &l.members[i].spec.name,
                RunState::Running {
                    since: unix(SystemTime::now()),
                },
            );
        }
        let started = Instant::now();
        let pipelines: Vec<(&PipelineSpec, &dyn Progress)> = due
            .iter()
            .map(|&i| (&l.members[i].spec, &Quiet as &dyn Progress))
            .collect();
        let outcomes = l.tenant.run_together(&pipelines).await;
        let seconds = started.elapsed().as_secs_f64();
        if let Err(e) = l.host.save_refresh_token(&l.tenant) {
            tracing::warn!(tenant = %tenant_id, error = %e, "a rotated refresh token could not be stored");
        }
        for (&i, outcome) in due.iter().zip(outcomes) {
            ended(&mut l, i, outcome, seconds);
        }
    }
}

/// Records one member's cycle outcome and plans its next run.
fn ended(l: &mut GroupLoop, i: usize, outcome: Result<CycleReport, SyncError>, seconds: f64) {
    let tenant_id = l.tenant.id().to_owned();
    let name = l.members[i].spec.name.clone();
    let (next, backing_off) = match outcome {
        Ok(report) => {
            let member = &mut l.members[i];
            if member
                .pruned
                .is_none_or(|t| t.elapsed() >= l.limits.retention_every)
            {
                member.pruned = Some(Instant::now());
                let cutoff = time::OffsetDateTime::now_utc() - l.limits.raw_retention;
                match tokio::task::block_in_place(|| l.tenant.store.prune_raw(&name, cutoff)) {
                    Ok(0) => {}
                    Ok(dropped) => {
                        tracing::info!(tenant = %tenant_id, pipeline = %name, dropped, "raw record versions past retention dropped")
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %tenant_id, pipeline = %name, error = %e, "applying raw-record retention failed")
                    }
                }
            }
            let freshness = freshness(&l.tenant.store, &name, &report);
            if let Some(f) = freshness {
                let now = unix(SystemTime::now());
                let since = now.saturating_sub(crate::status::DAY);
                if let Err(e) = tokio::task::block_in_place(|| {
                    l.tenant.store.record_freshness(&name, now, f, since)
                }) {
                    tracing::warn!(tenant = %tenant_id, pipeline = %name, error = %e, "a freshness sample could not be stored");
                }
            }
            metrics::cycle_ok(&tenant_id, &name, &report, seconds, freshness);
            tracing::info!(tenant = %tenant_id, pipeline = %name, batch = %report.batch_id, records = report.records, rows = report.rows_written, shared_pull_with = ?report.shared_pull_with, seconds, "cycle confirmed");
            l.status.cycle_ended(
                &tenant_id,
                &name,
                LastCycle::Ok {
                    at: unix(SystemTime::now()),
                    batch: report.batch_id.clone(),
                    records: report.records,
                    rows: report.rows_written,
                    action: action_text(&report),
                    after_webhook: matches!(
                        report.action,
                        CycleAction::Upserted {
                            after_webhook: true,
                            ..
                        }
                    ),
                    seconds,
                },
                freshness,
            );
            let every = l.members[i].every;
            (
                Instant::now() + l.clock.wait(l.jitter(every, l.limits.jitter_fraction)),
                false,
            )
        }
        Err(e) => {
            let failures = l.status.failures(&tenant_id, &name) + 1;
            let error = error_chain(&e);
            let wait = l.limits.backoff(failures);
            metrics::cycle_failed(&tenant_id, &name, seconds);
            tracing::warn!(tenant = %tenant_id, pipeline = %name, failures, retry_secs = wait.as_secs(), error = %error, "cycle failed: the batch is retried after a backoff");
            l.status.cycle_ended(
                &tenant_id,
                &name,
                LastCycle::Failed {
                    at: unix(SystemTime::now()),
                    error,
                    failures,
                    seconds,
                },
                None,
            );
            (
                Instant::now() + l.clock.wait(l.jitter(wait, l.limits.jitter_fraction)),
                true,
            )
        }
    };
    l.members[i].next = next;
    l.members[i].backing_off = backing_off;
    if let Ok(state) = tokio::task::block_in_place(|| l.tenant.store.open_batch(&name)) {
        metrics::open_batch(&tenant_id, &name, state.as_ref().map(|b| b.state.name()));
    }
}

/// Opens a replay batch unless the pipeline has an unfinished one.
fn open_replay(
    store: &TenantStore,
    pipeline: &str,
    kind: BatchKind,
    keys: &[String],
) -> Result<String, String> {
    tokio::task::block_in_place(|| {
        if let Some(open) = store.open_batch(pipeline).map_err(|e| e.to_string())? {
            return Err(format!(
                "batch {} is {}: it must finish first",
                open.id,
                open.state.name()
            ));
        }
        if store
            .pipeline(pipeline)
            .map_err(|e| e.to_string())?
            .datasource_id
            .is_none()
        {
            return Err("the pipeline was never published".into());
        }
        store
            .create_batch(pipeline, kind, keys)
            .map(|b| b.id)
            .map_err(|e| e.to_string())
    })
}

/// Seconds from the newest record's LastUpdateDate to now, for a cycle
/// that upserted new records (a first load or a replay says nothing about
/// how fresh a change is).
fn freshness(store: &TenantStore, pipeline: &str, report: &CycleReport) -> Option<f64> {
    if report.records == 0 || !matches!(report.action, CycleAction::Upserted { .. }) {
        return None;
    }
    let cursor = tokio::task::block_in_place(|| store.pipeline(pipeline))
        .ok()?
        .cursor?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_micros();
    let newest = u128::try_from(cursor.last_update).ok()?;
    Some(now.saturating_sub(newest) as f64 / 1e6)
}

fn action_text(r: &CycleReport) -> String {
    match &r.action {
        CycleAction::NothingNew => "nothing new".into(),
        CycleAction::Published { .. } => format!("published {} rows", r.rows_written),
        CycleAction::Upserted {
            after_webhook: true,
            ..
        } => format!(
            "upserted {} rows (job seen finished after a webhook)",
            r.rows_written
        ),
        CycleAction::Upserted { .. } => format!("upserted {} rows", r.rows_written),
    }
}
