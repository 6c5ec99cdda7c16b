//! The scheduler: one task per pipeline ([`crate::pipeline`]) running its
//! cycles on its `every`, and a supervisor that keeps the set of tenants and
//! mappings in step with the data directory.
//!
//! - A pipeline task sleeps until its next run (its first run spread at
//!   random, each next one moved by a little jitter), or until it is told to
//!   run now; takes a slot of its tenant, then one of the process; runs one
//!   durable cycle; and schedules the next run — `every` after a success, an
//!   exponential backoff after a failure (the journal resumes the failed
//!   batch before any new data). One task per pipeline: a cycle is never
//!   started twice. Tenants do not share slots beyond the process's: a slow
//!   or failing tenant holds at most its own share.
//! - The supervisor, every [`ServeLimits::reload_every`]: starts tenants the
//!   runtime file lists and this replica owns, stops removed ones, rebuilds a
//!   tenant whose stored definition changed (the new one is built before the
//!   old one stops; a definition that does not build leaves the old one
//!   running and is reported), and reloads a mapping script whose file
//!   changed (a refused one is reported and the previous version serves).
//!
//! Pause and resume are read from the store before each run, so they apply
//! without a restart whichever process set them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mlc_common::Secret;
use mlc_store::TenantStore;
use mlc_sync::definition::Mapping;
use mlc_sync::{Host, Tenant};
use rand::Rng;
use tokio::sync::{Mutex, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::limits::{Clock, ServeLimits};
use crate::pipeline::{Addressed, Command, GroupLoop, Member, group_loop};
use crate::runtime_file;
use crate::status::{Refused, Status, TenantState, error_chain, unix};

/// The secret that holds a tenant's webhook token.
pub const WEBHOOK_TOKEN_SECRET: &str = "webhook-token";

/// Which tenants this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replica {
    /// This replica's index, from 0.
    pub index: u32,
    /// How many replicas share the data directory.
    pub count: u32,
}

impl Replica {
    /// The only replica.
    pub const SOLE: Replica = Replica { index: 0, count: 1 };

    /// True when the rendezvous hash of `tenant` picks this replica: each
    /// tenant has exactly one owner, and resizing the set moves only the
    /// tenants of the replicas that came or went.
    pub fn owns(&self, tenant: &str) -> bool {
        self.count <= 1 || owner(tenant, self.count) == self.index
    }
}

/// The replica (of `count`) whose score for `tenant` is highest.
pub fn owner(tenant: &str, count: u32) -> u32 {
    use sha2::{Digest, Sha256};
    (0..count.max(1))
        .max_by_key(|r| {
            let h = Sha256::new()
                .chain_update(tenant.as_bytes())
                .chain_update([0])
                .chain_update(r.to_le_bytes())
                .finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&h[..8]);
            (u64::from_be_bytes(first), *r)
        })
        .unwrap_or(0)
}

/// A file's identity for change detection: length and modification time.
type Fingerprint = Option<(u64, SystemTime)>;

fn fingerprint(path: &std::path::Path) -> Fingerprint {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
}

/// A running tenant.
pub struct Running {
    /// The built tenant.
    pub tenant: Arc<Tenant>,
    definition: String,
    /// Script files (and their samples) per pipeline, as last loaded.
    scripts: BTreeMap<String, (Vec<PathBuf>, Vec<Fingerprint>)>,
    /// Each pipeline's group's commands (a group: the pipelines that read
    /// one resource and share its pull).
    pipelines: BTreeMap<String, mpsc::Sender<Addressed>>,
    /// One task per group.
    tasks: Vec<JoinHandle<()>>,
    /// The token its webhooks carry.
    pub webhook_token: Option<Secret>,
}

/// A tenant this process holds.
pub struct Slot {
    /// Its store, open (and locked) while the process holds the tenant.
    pub store: Arc<TenantStore>,
    /// Running, or waiting to be built again.
    pub state: SlotState,
}

/// Whether a held tenant runs.
pub enum SlotState {
    /// Its pipelines are scheduled.
    Running(Box<Running>),
    /// It could not be built; tried again at `retry_at`.
    Failed {
        /// When to try again.
        retry_at: Instant,
        /// The definition text that failed.
        definition: Option<String>,
    },
}

/// The scheduler.
pub struct Scheduler {
    /// The composition root.
    pub host: Arc<Host>,
    /// What the API and the page show.
    pub status: Arc<Status>,
    /// Limits.
    pub limits: ServeLimits,
    /// The schedule clock.
    pub clock: Clock,
    /// Which tenants this process runs.
    pub replica: Replica,
    /// Where webhooks are registered (`--public-url`), if anywhere.
    pub public_url: Option<String>,
    global: Arc<Semaphore>,
    tenants: Mutex<BTreeMap<String, Slot>>,
    stop: watch::Sender<bool>,
}

impl Scheduler {
    /// A scheduler over `host`; nothing runs before [`Self::supervise`].
    pub fn new(
        host: Arc<Host>,
        limits: ServeLimits,
        clock: Clock,
        replica: Replica,
        public_url: Option<String>,
    ) -> Self {
        Self {
            host,
            status: Arc::new(Status::new(limits.freshness_samples)),
            global: Arc::new(Semaphore::new(limits.global.max(1))),
            limits,
            clock,
            replica,
            public_url,
            tenants: Mutex::new(BTreeMap::new()),
            stop: watch::channel(false).0,
        }
    }

    /// Runs the supervisor until [`Self::stop`].
    pub async fn supervise(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            self.reconcile_tenants().await;
            tokio::select! {
                _ = tokio::time::sleep(self.limits.reload_every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Tells every task to stop after its current cycle.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// True once every tenant has been tried at least once.
    pub async fn ready(&self) -> bool {
        let listed = runtime_file::tenants(self.host.data()).await;
        let held = self.tenants.lock().await;
        match listed {
            Ok(ids) => ids
                .iter()
                .filter(|t| self.replica.owns(t))
                .all(|t| held.contains_key(t)),
            Err(_) => false,
        }
    }

    /// The store of a tenant this process holds.
    pub async fn store(&self, tenant: &str) -> Option<Arc<TenantStore>> {
        self.tenants
            .lock()
            .await
            .get(tenant)
            .map(|s| s.store.clone())
    }

    /// The tenants this process holds, with their stores.
    pub async fn stores(&self) -> Vec<(String, Arc<TenantStore>)> {
        self.tenants
            .lock()
            .await
            .iter()
            .map(|(id, s)| (id.clone(), s.store.clone()))
            .collect()
    }

    /// A running tenant's webhook token and built tenant.
    pub async fn running(&self, tenant: &str) -> Option<(Arc<Tenant>, Option<Secret>)> {
        match self.tenants.lock().await.get(tenant).map(|s| &s.state) {
            Some(SlotState::Running(r)) => Some((r.tenant.clone(), r.webhook_token.clone())),
            _ => None,
        }
    }

    /// Sends `command` to a pipeline's task; false when it does not run.
    pub async fn command(&self, tenant: &str, pipeline: &str, command: Command) -> bool {
        let sender = match self.tenants.lock().await.get(tenant).map(|s| &s.state) {
            Some(SlotState::Running(r)) => r.pipelines.get(pipeline).cloned(),
            _ => None,
        };
        match sender {
            Some(tx) => tx.send((pipeline.to_owned(), command)).await.is_ok(),
            None => false,
        }
    }

    /// Builds a running tenant again from its store (after a secret
    /// changed): the new clients serve its next cycles.
    pub async fn restart(&self, id: &str) {
        let Some(store) = self.store(id).await else {
            return;
        };
        let text = tokio::task::block_in_place(|| store.definition())
            .ok()
            .flatten();
        self.build_tenant(id, store, text).await;
    }

    /// Looks at the data directory now instead of at the next tick (after
    /// the API applied a definition).
    pub async fn refresh(&self) {
        self.reconcile_tenants().await;
    }

    async fn reconcile_tenants(&self) {
        let listed = match runtime_file::tenants(self.host.data()).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the tenant list; trying again");
                return;
            }
        };
        let wanted: Vec<String> = listed
            .into_iter()
            .filter(|t| self.replica.owns(t))
            .collect();
        let held: Vec<String> = self.tenants.lock().await.keys().cloned().collect();
        for gone in held.iter().filter(|t| !wanted.contains(t)) {
            tracing::info!(tenant = %gone, "tenant removed: stopping it");
            self.release(gone).await;
        }
        for id in &wanted {
            if *self.stop.borrow() {
                return;
            }
            self.check_tenant(id).await;
        }
    }

    /// Starts, rebuilds or re-checks one tenant.
    async fn check_tenant(&self, id: &str) {
        let store = match self.store(id).await {
            Some(s) => s,
            None => match self.host.open_store(id) {
                Ok(s) => {
                    self.status.tenant_state(id, TenantState::Starting);
                    self.tenants.lock().await.insert(
                        id.to_owned(),
                        Slot {
                            store: s.clone(),
                            state: SlotState::Failed {
                                retry_at: Instant::now(),
                                definition: None,
                            },
                        },
                    );
                    s
                }
                Err(e) => {
                    // Another process (a CLI command, another replica) holds
                    // it now; next tick.
                    tracing::debug!(tenant = %id, error = %e, "tenant store not available yet");
                    return;
                }
            },
        };
        let text = tokio::task::block_in_place(|| store.definition())
            .ok()
            .flatten();
        let (build, scripts_changed) = {
            let tenants = self.tenants.lock().await;
            match tenants.get(id).map(|s| &s.state) {
                Some(SlotState::Running(r)) => (
                    text.as_deref().is_some_and(|t| t != r.definition),
                    changed_scripts(r),
                ),
                Some(SlotState::Failed {
                    retry_at,
                    definition,
                }) => (
                    Instant::now() >= *retry_at || text.as_deref() != definition.as_deref(),
                    Vec::new(),
                ),
                None => (false, Vec::new()),
            }
        };
        if build {
            self.build_tenant(id, store, text).await;
        } else if !scripts_changed.is_empty() {
            self.reload_scripts(id, &scripts_changed).await;
        }
    }

    async fn reload_scripts(&self, id: &str, pipelines: &[String]) {
        let Some((tenant, _)) = self.running(id).await else {
            return;
        };
        for name in pipelines {
            let Some(def) = tenant.definition.pipeline(name) else {
                continue;
            };
            let Mapping::Script(file) = &def.mapping else {
                continue;
            };
            let (script, sample) = self.host.mapping_paths(id, file);
            match self.host.reload_mapping(id, def).await {
                Ok(()) => {
                    tracing::info!(tenant = %id, pipeline = %name, file = %script.display(), "mapping script reloaded: it maps the next batch");
                    self.status.accepted(id, name);
                }
                Err(e) => {
                    let reason = error_chain(&e);
                    tracing::warn!(tenant = %id, pipeline = %name, reason = %reason, "mapping script refused: the previous version keeps serving");
                    self.status.refused(
                        id,
                        Refused {
                            pipeline: name.clone(),
                            file: script.display().to_string(),
                            reason: reason.clone(),
                            at: unix(SystemTime::now()),
                        },
                    );
                    let detail = serde_json::json!({"pipeline": name, "file": script.display().to_string(), "reason": reason});
                    if let Err(e) = runtime_file::audit(
                        self.host.data(),
                        "serve",
                        "mapping.refused",
                        Some(id),
                        detail,
                    )
                    .await
                    {
                        tracing::warn!(error = %e, "the refusal could not be written to the audit log");
                    }
                }
            }
            // Whatever the outcome, this version of the files was seen.
            let mut tenants = self.tenants.lock().await;
            if let Some(Slot {
                state: SlotState::Running(r),
                ..
            }) = tenants.get_mut(id)
                && let Some(entry) = r.scripts.get_mut(name)
            {
                entry.1 = [&script, &sample].iter().map(|p| fingerprint(p)).collect();
            }
        }
    }

    async fn build_tenant(&self, id: &str, store: Arc<TenantStore>, text: Option<String>) {
        let built = self.host.tenant(store.clone()).await;
        let tenant = match built {
            Ok(t) => t,
            Err(e) => {
                let error = error_chain(&e);
                let retry = self.clock.wait(self.limits.tenant_retry);
                let mut tenants = self.tenants.lock().await;
                match tenants.get_mut(id).map(|s| &mut s.state) {
                    // The running version keeps serving; this text is not
                    // tried again until it changes.
                    Some(SlotState::Running(r)) => {
                        tracing::warn!(tenant = %id, error = %error, "changed definition refused: the running one keeps serving");
                        self.status.refused(
                            id,
                            Refused {
                                pipeline: "(definition)".into(),
                                file: "tenant definition".into(),
                                reason: error,
                                at: unix(SystemTime::now()),
                            },
                        );
                        r.definition = text.unwrap_or_default();
                    }
                    Some(state) => {
                        tracing::warn!(tenant = %id, error = %error, retry_secs = retry.as_secs_f64(), "tenant could not be started");
                        self.status.tenant_state(
                            id,
                            TenantState::Failed {
                                error,
                                retry_at: unix(SystemTime::now() + retry),
                            },
                        );
                        *state = SlotState::Failed {
                            retry_at: Instant::now() + retry,
                            definition: text,
                        };
                    }
                    None => {}
                }
                return;
            }
        };
        let webhook_token = self.webhooks(&tenant).await;
        let tenant = Arc::new(tenant);
        // The old version stops (after its running cycles) before the new
        // one's tasks start: a pipeline never runs twice at once.
        let old = {
            let mut tenants = self.tenants.lock().await;
            match tenants.get_mut(id) {
                Some(slot) => std::mem::replace(
                    &mut slot.state,
                    SlotState::Failed {
                        retry_at: Instant::now() + Duration::from_secs(3600),
                        definition: text.clone(),
                    },
                ),
                None => return,
            }
        };
        if let SlotState::Running(r) = old {
            tracing::info!(tenant = %id, "restarting the tenant's pipelines with its new definition or secrets");
            self.stop_running(*r, false).await;
        }
        let per_tenant = Arc::new(Semaphore::new(self.limits.per_tenant.max(1)));
        let mut pipelines = BTreeMap::new();
        let mut tasks = Vec::new();
        let mut scripts = BTreeMap::new();
        let names: Vec<String> = tenant.pipelines.iter().map(|p| p.name.clone()).collect();
        for group in tenant.pull_groups(&names) {
            let mut members = Vec::new();
            for name in group {
                let (Some(spec), Some(def)) =
                    (tenant.pipeline(name), tenant.definition.pipeline(name))
                else {
                    continue;
                };
                if let Mapping::Script(file) = &def.mapping {
                    let (script, sample) = self.host.mapping_paths(id, file);
                    let prints = vec![fingerprint(&script), fingerprint(&sample)];
                    scripts.insert(spec.name.clone(), (vec![script, sample], prints));
                }
                members.push(Member::new(spec.clone(), def.every));
            }
            if members.is_empty() {
                continue;
            }
            let (tx, rx) = mpsc::channel(8);
            for m in &members {
                pipelines.insert(m.spec.name.clone(), tx.clone());
            }
            tasks.push(tokio::spawn(group_loop(GroupLoop {
                host: self.host.clone(),
                tenant: tenant.clone(),
                members,
                status: self.status.clone(),
                limits: self.limits.clone(),
                clock: self.clock,
                per_tenant: per_tenant.clone(),
                global: self.global.clone(),
                stop: self.stop.subscribe(),
                commands: rx,
            })));
        }
        self.status.tenant_state(id, TenantState::Running);
        self.status.set_pipelines(
            id,
            &tenant
                .definition
                .pipelines
                .iter()
                .map(|p| (p.id.clone(), p.every))
                .collect::<Vec<_>>(),
        );
        let since = unix(SystemTime::now()).saturating_sub(crate::status::DAY);
        for p in &tenant.definition.pipelines {
            match tokio::task::block_in_place(|| tenant.store.freshness(&p.id, since)) {
                Ok(samples) => self.status.restore_freshness(id, &p.id, samples),
                Err(e) => {
                    tracing::warn!(tenant = %id, pipeline = %p.id, error = %e, "freshness history not readable")
                }
            }
            if let Some(at) = last_confirmed(&tenant.store, &p.id) {
                self.status.restore_last_success(id, &p.id, at);
            }
        }
        tracing::info!(tenant = %id, pipelines = pipelines.len(), "tenant running");
        let mut tenants = self.tenants.lock().await;
        if let Some(slot) = tenants.get_mut(id) {
            slot.state = SlotState::Running(Box::new(Running {
                tenant,
                definition: text.unwrap_or_default(),
                scripts,
                pipelines,
                tasks,
                webhook_token,
            }));
        }
    }

    /// Makes sure the tenant has a webhook token and, with a public URL,
    /// that Tableau posts its events there; returns the token.
    async fn webhooks(&self, tenant: &Tenant) -> Option<Secret> {
        let id = tenant.id();
        let key = self.host.key();
        let token = match tokio::task::block_in_place(|| {
            tenant.store.secret(key, WEBHOOK_TOKEN_SECRET)
        }) {
            Ok(t) => t,
            Err(mlc_store::StoreError::NotFound { .. }) => {
                let mut bytes = [0u8; 32];
                rand::rng().fill(&mut bytes);
                let t = Secret::new(hex::encode(bytes));
                if let Err(e) = tokio::task::block_in_place(|| {
                    tenant.store.set_secret(key, WEBHOOK_TOKEN_SECRET, &t)
                }) {
                    tracing::warn!(tenant = %id, error = %e, "could not store a webhook token: webhooks are refused for this tenant");
                    return None;
                }
                t
            }
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e, "could not read the webhook token: webhooks are refused for this tenant");
                return None;
            }
        };
        if let Some(base) = &self.public_url {
            let url = format!(
                "{}/webhooks/tableau/{id}/{}",
                base.trim_end_matches('/'),
                token.expose()
            );
            match tenant.connectors.tableau.ensure_webhooks(&url).await {
                Ok(hooks) => {
                    tracing::info!(tenant = %id, webhooks = hooks.len(), "Tableau webhooks registered")
                }
                Err(e) => {
                    tracing::warn!(tenant = %id, error = %error_chain(&e), "could not register Tableau webhooks: batches are confirmed by polling only")
                }
            }
        }
        Some(token)
    }

    /// Stops a running tenant's tasks (after their current cycles);
    /// `release` closes it for good, otherwise a new build of it (sharing
    /// its store and lookups) takes over and only the old clients go.
    async fn stop_running(&self, running: Running, release: bool) {
        let Running {
            tenant,
            pipelines,
            tasks,
            ..
        } = running;
        drop(pipelines);
        for task in tasks {
            if let Err(e) = task.await
                && e.is_panic()
            {
                tracing::error!(tenant = %tenant.id(), "a pipeline task panicked");
            }
        }
        if let Some(t) = Arc::into_inner(tenant) {
            if release {
                self.host.close(t).await;
            } else if let Err(e) = t.connectors.tableau.shutdown().await {
                tracing::debug!(tenant = %t.id(), error = %e, "signing the old Tableau session out failed");
            }
        }
    }

    async fn release(&self, id: &str) {
        let slot = self.tenants.lock().await.remove(id);
        if let Some(Slot {
            state: SlotState::Running(r),
            ..
        }) = slot
        {
            self.stop_running(*r, true).await;
        }
        self.status.remove_tenant(id);
    }

    /// Stops every tenant, waiting for running cycles at most `grace`;
    /// cycles still running then are abandoned (their batches resume from
    /// the journal at the next start).
    pub async fn shutdown(&self, grace: Duration) {
        self.stop();
        let ids: Vec<String> = self.tenants.lock().await.keys().cloned().collect();
        let all = async {
            for id in &ids {
                self.release(id).await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "cycles still running after the grace period: abandoned, they resume at the next start"
            );
            let mut tenants = self.tenants.lock().await;
            for (_, slot) in std::mem::take(&mut *tenants) {
                if let SlotState::Running(r) = slot.state {
                    for task in r.tasks {
                        task.abort();
                    }
                }
            }
        }
    }
}

/// When the pipeline's newest confirmed batch was confirmed (Unix seconds).
fn last_confirmed(store: &TenantStore, pipeline: &str) -> Option<u64> {
    let newest =
        tokio::task::block_in_place(|| store.recent_batches(pipeline, Some("confirmed"), 1))
            .ok()?
            .into_iter()
            .next()?;
    let at = &newest.history.last()?.at;
    let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

fn changed_scripts(r: &Running) -> Vec<String> {
    r.scripts
        .iter()
        .filter(|(_, (paths, prints))| {
            paths
                .iter()
                .zip(prints)
                .any(|(p, old)| fingerprint(p) != *old)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_success_is_read_from_the_newest_confirmed_batch() {
        use mlc_store::{BatchKind, BatchState};
        let dir = tempfile::tempdir().unwrap();
        let store = TenantStore::open(&dir.path().join("acme.redb"), "acme").unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(last_confirmed(&store, "inv"), None, "nothing confirmed yet");
            let mut b = store.create_batch("inv", BatchKind::Full, &[]).unwrap();
            store
                .transition(&mut b, BatchState::Pulled { end: None })
                .unwrap();
            assert_eq!(
                last_confirmed(&store, "inv"),
                None,
                "an open batch is not a success"
            );
            store
                .transition(
                    &mut b,
                    BatchState::Submitted {
                        end: None,
                        rows: 0,
                        extract: String::new(),
                        request_ids: Vec::new(),
                        jobs: Vec::new(),
                    },
                )
                .unwrap();
            store.confirm(&mut b, Vec::new(), "ds", "{}").unwrap();
            let at = last_confirmed(&store, "inv").expect("a confirmed batch");
            let now = unix(SystemTime::now());
            assert!(now.abs_diff(at) <= 2, "confirmed at {at}, now {now}");
        });
    }

    #[test]
    fn each_tenant_has_one_owner_and_resizing_moves_few() {
        let tenants: Vec<String> = (0..200).map(|i| format!("tenant-{i}")).collect();
        for t in &tenants {
            let owners: Vec<u32> = (0..3)
                .filter(|i| {
                    Replica {
                        index: *i,
                        count: 3,
                    }
                    .owns(t)
                })
                .collect();
            assert_eq!(owners.len(), 1, "{t}: {owners:?}");
        }
        // From 3 replicas to 2: only the tenants of replica 2 move.
        for t in &tenants {
            let before = owner(t, 3);
            if before != 2 {
                assert_eq!(owner(t, 2), before, "{t} moved without cause");
            }
        }
        let on_each: Vec<usize> = (0..3)
            .map(|i| tenants.iter().filter(|t| owner(t, 3) == i).count())
            .collect();
        assert!(on_each.iter().all(|n| *n > 40), "unbalanced: {on_each:?}");
        assert!(Replica::SOLE.owns("anything"));
    }
}
