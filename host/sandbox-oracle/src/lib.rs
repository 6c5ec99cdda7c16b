//! A faithful Oracle Fusion Cloud ERP REST stand-in, for tests, demos and
//! plugin authors (`ml-connector sandbox oracle`).
//!
//! It serves `/fscmRestApi/resources/11.13.18.05/…` (invoices with lines,
//! distributions and installments; payables payments; suppliers with sites
//! and a parent hierarchy; purchase orders; receivables invoices; journal
//! batches, headers and lines; account combinations, charts of accounts,
//! ledgers and segment value sets) and an OAuth 2.0 token endpoint, as
//! `shared/reference/oracle-fusion-rest.md` describes them: both `q`
//! dialects with their quirks, the silent 499 page cap, the collection
//! envelope, `describe`, ADF error bodies. Data comes from a deterministic
//! generator (`seed`), one record at a time, so a sandbox of millions of
//! invoices starts at once and holds only its changes in memory. Live
//! behaviour (changes while a client pages, late commits, deletes, 429,
//! 5xx, slowness, dropped connections, token revocation) is switchable at
//! start and while running, and so is the realism of a real pod: a latency
//! model (a base delay per request plus a cost per record and per expanded
//! child row) and throttling per OAuth client (requests in flight at once,
//! requests per minute), with counters a test reads
//! ([`OracleSandbox::stats`]).
//!
//! | path | key in the path | children | size for `invoices = N` |
//! |---|---|---|---|
//! | `invoices` | `InvoiceId` (or its `invoicesUniqID`) | `invoiceLines` (UniqID) → `invoiceDistributions`; `invoiceDistributions`; `invoiceInstallments` | N |
//! | `payablesPayments` | `CheckId` | `relatedInvoices` | 3N/5, each paying one invoice |
//! | `suppliers` | `SupplierId` | `sites` | N/20 (≥ 5), `ParentSupplierId` hierarchy |
//! | `purchaseOrders` | `purchaseOrdersUniqID` only | `lines` → `schedules` (UniqID) | N/4 |
//! | `receivablesInvoices` | `CustomerTransactionId` | `receivablesInvoiceLines` | N/2 |
//! | `journalBatches` | `JeBatchId` | `journalHeaders` (UniqID) → `journalLines` (UniqID) | N/10, posted, balanced |
//! | `accountCombinationsLOV` | `_CODE_COMBINATION_ID` | | N/10 within 50..=20,000 |
//! | `chartOfAccountsLOV`, `ledgersLOV` | `StructureInstanceId`, `LedgerId` | | 1, 2 |
//! | `valueSets` | `ValueSetCode` | `values` (`ValueId`) | 5 segment value sets; cost centers are `CORP_COST_CENTER` |
//!
//! The first six carry `LastUpdateDate` and take live changes; the lists of
//! values and value sets are read-only and have no timestamps. Base
//! timestamps start at 2024-01-01T00:00:00Z and rise one second per record
//! (or per `same_timestamp` records); changes are stamped with the wall
//! clock (minus the late-commit lag).
//!
//! ```no_run
//! # async fn demo() -> Result<(), mlc_sandbox_oracle::SandboxError> {
//! use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};
//! let sandbox = OracleSandbox::start(SandboxConfig { invoices: 500, ..SandboxConfig::default() }).await?;
//! let url = format!("{}/invoices?limit=10", sandbox.base_url());
//! sandbox.faults().fail_next(503, 1);
//! sandbox.shutdown().await;
//! # let _ = url;
//! # Ok(()) }
//! ```

mod auth;
pub mod cli;
mod error;
mod faults;
mod form;
mod generator;
mod model;
mod query;
mod render;
mod resources;
mod server;
mod store;
mod throttle;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mlc_common::Secret;

pub use error::SandboxError;
pub use faults::Faults;
pub use throttle::{ClientStats, Latency, SandboxStats, Throttling};

use crate::generator::{Gen, Sizes};
use crate::server::Shared;
use crate::store::Store;

/// How to start a sandbox. `SandboxConfig::default()` is small and fast:
/// 1,000 invoices, seed 1, hour-long tokens, no live behaviour, no
/// latency, no throttling.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Generator seed: the same seed gives the same data.
    pub seed: u64,
    /// Number of payables invoices; the other resources scale with it
    /// (suppliers /20, payments 3/5, POs /4, AR invoices /2, journal
    /// batches /10, account combinations /10 within 50..=20,000).
    pub invoices: u64,
    /// `expires_in` of issued access tokens.
    pub token_ttl: Duration,
    /// How many consecutive records share one base `LastUpdateDate`
    /// (1 = each its own).
    pub same_timestamp: u64,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret (`None`: a random one per start).
    pub client_secret: Option<Secret>,
    /// The Fusion instance id in the scope
    /// `urn:opc:resource:fa:instanceid=<id>urn:opc:resource:consumer::all`.
    pub instance_id: String,
    /// Background updates per second.
    pub updates_per_sec: f64,
    /// Background inserts per second.
    pub inserts_per_sec: f64,
    /// Background deletes per second.
    pub deletes_per_sec: f64,
    /// Background changes are stamped up to this many seconds in the past.
    pub late_commit_secs: u64,
    /// Records updated after every collection page served.
    pub mutate_between_pages: u32,
    /// Every nth resource request answers 429 (0: never).
    pub rate_limit_every: u64,
    /// `Retry-After` seconds on 429s.
    pub retry_after_secs: u64,
    /// Every nth resource request answers `error_status` (0: never).
    pub error_every: u64,
    /// Status for `error_every` (503 or 504, typically).
    pub error_status: u16,
    /// Delay before every resource response.
    pub slow: Duration,
    /// Latency model, base: every resource request answers no sooner than
    /// this after its arrival (default 0). On a timer: concurrent requests
    /// wait side by side.
    pub latency: Duration,
    /// Latency model, added per record returned (collection items, or 1
    /// for an item; default 0).
    pub latency_per_record: Duration,
    /// Latency model, added per child row inlined by `expand`/`fields`, at
    /// any depth (default 0).
    pub latency_per_child: Duration,
    /// Throttling: resource requests in flight at once per OAuth client;
    /// one more answers 429 (default 0: no limit).
    pub max_in_flight_per_client: u32,
    /// Throttling: resource requests per OAuth client in any 60 seconds;
    /// one more answers 429 with `Retry-After` until a slot frees
    /// (default 0: no limit).
    pub requests_per_minute_per_client: u32,
    /// `Retry-After` seconds of a 429 for too many requests in flight
    /// (default 1).
    pub throttle_retry_after_secs: u64,
    /// Every nth resource request has its connection dropped mid-body.
    pub drop_every: u64,
    /// Revoke every token at this interval (`None`: never).
    pub revoke_every: Option<Duration>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 1,
            invoices: 1000,
            token_ttl: Duration::from_secs(3600),
            same_timestamp: 1,
            client_id: "ml-connector-sandbox".to_owned(),
            client_secret: None,
            instance_id: "SANDBOX01".to_owned(),
            updates_per_sec: 0.0,
            inserts_per_sec: 0.0,
            deletes_per_sec: 0.0,
            late_commit_secs: 0,
            mutate_between_pages: 0,
            rate_limit_every: 0,
            retry_after_secs: 1,
            error_every: 0,
            error_status: 503,
            slow: Duration::ZERO,
            latency: Duration::ZERO,
            latency_per_record: Duration::ZERO,
            latency_per_child: Duration::ZERO,
            max_in_flight_per_client: 0,
            requests_per_minute_per_client: 0,
            throttle_retry_after_secs: 1,
            drop_every: 0,
            revoke_every: None,
        }
    }
}

/// A running sandbox. Dropping it stops the server too; [`shutdown`]
/// waits for it.
///
/// [`shutdown`]: OracleSandbox::shutdown
#[derive(Debug)]
pub struct OracleSandbox {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), std::io::Error>>>,
    live: Option<tokio::task::JoinHandle<()>>,
}

impl OracleSandbox {
    /// Binds, then serves in the background.
    pub async fn start(config: SandboxConfig) -> Result<OracleSandbox, SandboxError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: config.listen,
            source,
        })?;
        let secret = config
            .client_secret
            .clone()
            .unwrap_or_else(|| Secret::new(uuid::Uuid::new_v4().simple().to_string()));
        let scope = format!(
            "urn:opc:resource:fa:instanceid={}urn:opc:resource:consumer::all",
            config.instance_id
        );
        let data = Gen::new(
            config.seed,
            Sizes::for_invoices(config.invoices),
            config.same_timestamp,
        );
        let faults = Faults::default();
        faults.set_mutation_rate(config.updates_per_sec, config.inserts_per_sec);
        faults.set_delete_rate(config.deletes_per_sec);
        faults.set_late_commit_secs(config.late_commit_secs);
        faults.mutate_between_pages(config.mutate_between_pages);
        faults.rate_limit_every(config.rate_limit_every, config.retry_after_secs);
        faults.fail_every(config.error_every, config.error_status);
        faults.slow(config.slow);
        faults.set_latency(Latency {
            base: config.latency,
            per_record: config.latency_per_record,
            per_child: config.latency_per_child,
        });
        faults.set_throttling(Throttling {
            max_in_flight: config.max_in_flight_per_client,
            per_minute: config.requests_per_minute_per_client,
            retry_after_secs: config.throttle_retry_after_secs,
        });
        faults.drop_every(config.drop_every);
        let shared = Arc::new(Shared {
            store: Store::new(data),
            auth: auth::Auth::new(config.client_id.clone(), secret, scope, config.token_ttl),
            faults,
            base_url: format!("http://{addr}/fscmRestApi/resources/{}", server::VERSION),
            requests: AtomicU64::new(0),
            requests_by_resource: Default::default(),
            recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
            live_counter: AtomicU64::new(0),
        });
        let app = server::router(Arc::clone(&shared));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await
        });
        let live = tokio::spawn(live_loop(Arc::clone(&shared), config.revoke_every));
        tracing::info!(%addr, seed = config.seed, invoices = config.invoices, "oracle sandbox listening");
        Ok(OracleSandbox {
            shared,
            addr,
            stop: Some(stop_tx),
            server: Some(server),
            live: Some(live),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/fscmRestApi/resources/11.13.18.05`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `http://127.0.0.1:PORT/oauth2/v1/token`.
    pub fn token_url(&self) -> String {
        format!("http://{}/oauth2/v1/token", self.addr)
    }

    /// `http://127.0.0.1:PORT/oauth2/v1/authorize` (approves at once and
    /// redirects with `code`).
    pub fn authorize_url(&self) -> String {
        format!("http://{}/oauth2/v1/authorize", self.addr)
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> String {
        self.shared.auth.client_id().to_owned()
    }

    /// The OAuth client secret.
    pub fn client_secret(&self) -> Secret {
        self.shared.auth.client_secret().clone()
    }

    /// The Fusion scope to request.
    pub fn scope(&self) -> String {
        self.shared.auth.scope().to_owned()
    }

    /// Run-time switches (faults, change rates).
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// `expires_in` of tokens issued from now on.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.auth.set_ttl(ttl);
    }

    /// Revokes every access and refresh token issued so far (their next
    /// use is a 401).
    pub fn revoke_tokens(&self) {
        self.shared.auth.revoke_all();
    }

    /// Expires every access token issued so far (refresh tokens keep
    /// working).
    pub fn expire_tokens(&self) {
        self.shared.auth.expire_all();
    }

    fn table(&self, resource: &str) -> Result<&store::Table, SandboxError> {
        self.shared
            .store
            .table(resource)
            .ok_or_else(|| SandboxError::UnknownResource(resource.to_owned()))
    }

    fn mutable_table(&self, resource: &str) -> Result<&store::Table, SandboxError> {
        let t = self.table(resource)?;
        if t.res.mutable {
            Ok(t)
        } else {
            Err(SandboxError::ReadOnly(resource.to_owned()))
        }
    }

    /// Updates `n_updates` random invoices and inserts `n_inserts` new ones,
    /// stamped now; returns the keys touched (`InvoiceId`s).
    pub fn mutate(&self, n_updates: u64, n_inserts: u64) -> Vec<i64> {
        self.mutate_resource("invoices", n_updates, n_inserts)
            .unwrap_or_default()
    }

    /// [`mutate`](Self::mutate) on any timestamped resource.
    pub fn mutate_resource(
        &self,
        resource: &str,
        n_updates: u64,
        n_inserts: u64,
    ) -> Result<Vec<i64>, SandboxError> {
        self.change(resource, n_updates, n_inserts, 0)
    }

    fn change(
        &self,
        resource: &str,
        n_updates: u64,
        n_inserts: u64,
        seconds_back: u64,
    ) -> Result<Vec<i64>, SandboxError> {
        let t = self.mutable_table(resource)?;
        let stamp = Shared::now_micros() - i64::try_from(seconds_back).unwrap_or(0) * 1_000_000;
        let mut keys = self.shared.update_random(resource, n_updates, stamp);
        for _ in 0..n_inserts {
            let i = t.insert(stamp);
            keys.push(self.shared.store.data.int_key(t.res.kind, i));
        }
        Ok(keys)
    }

    /// Late commits: updates `n` random records of `resource` stamped
    /// `seconds_back` seconds in the past (they surface behind a cursor
    /// that already passed that time); returns their keys.
    pub fn late_commit(
        &self,
        resource: &str,
        n: u64,
        seconds_back: u64,
    ) -> Result<Vec<i64>, SandboxError> {
        self.change(resource, n, 0, seconds_back)
    }

    /// Updates the record with `key`, stamped now.
    pub fn update(&self, resource: &str, key: i64) -> Result<(), SandboxError> {
        let t = self.mutable_table(resource)?;
        let g = &self.shared.store.data;
        let index = g.index_of_int(t.res.kind, key);
        match index {
            Some(i) if t.update(g, i, Shared::now_micros()) => Ok(()),
            _ => Err(SandboxError::UnknownKey {
                resource: resource.to_owned(),
                key,
            }),
        }
    }

    /// Deletes the record with `key` (it vanishes from every answer).
    pub fn delete(&self, resource: &str, key: i64) -> Result<(), SandboxError> {
        let t = self.mutable_table(resource)?;
        let g = &self.shared.store.data;
        match g.index_of_int(t.res.kind, key) {
            Some(i) if t.delete(g, i) => Ok(()),
            _ => Err(SandboxError::UnknownKey {
                resource: resource.to_owned(),
                key,
            }),
        }
    }

    /// The full current state of `resource` in key order: each record's
    /// attributes (no links, no children). Amounts are JSON numbers parsed
    /// by `serde_json`, i.e. `f64`; use [`snapshot_json`] for the exact text.
    ///
    /// [`snapshot_json`]: OracleSandbox::snapshot_json
    pub fn snapshot(&self, resource: &str) -> Result<Vec<serde_json::Value>, SandboxError> {
        Ok(self
            .snapshot_json(resource)?
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect())
    }

    /// Like [`snapshot`](Self::snapshot), as the exact JSON text the
    /// sandbox serves for each record.
    pub fn snapshot_json(&self, resource: &str) -> Result<Vec<String>, SandboxError> {
        let t = self.table(resource)?;
        let g = &self.shared.store.data;
        Ok(t.live_indices()
            .into_iter()
            .filter_map(|i| t.get(g, i).map(|v| render::record_json(&t.record(g, i, v))))
            .collect())
    }

    /// The live keys of an integer-keyed resource, ascending.
    pub fn keys(&self, resource: &str) -> Result<Vec<i64>, SandboxError> {
        let t = self.table(resource)?;
        if t.res.node.key_ty() != model::Ty::Int {
            return Err(SandboxError::NotIntegerKeyed(resource.to_owned()));
        }
        let g = &self.shared.store.data;
        Ok(t.live_indices()
            .into_iter()
            .map(|i| g.int_key(t.res.kind, i))
            .collect())
    }

    /// Number of live records of `resource`.
    pub fn count(&self, resource: &str) -> Result<u64, SandboxError> {
        Ok(self.table(resource)?.live_count())
    }

    /// Resource requests served since start or the last reset (any
    /// outcome, faults included; token requests not counted).
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The last 256 resource requests as `path?query` (query still
    /// percent-encoded), oldest first: what a client asked for.
    pub fn recent_requests(&self) -> Vec<String> {
        self.shared
            .recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Requests of one top-level resource (`invoices`, its children
    /// included) served since start or the last reset, any outcome.
    pub fn resource_request_count(&self, resource: &str) -> u64 {
        self.shared
            .requests_by_resource
            .lock()
            .map_or(0, |by| by.get(resource).copied().unwrap_or(0))
    }

    /// Sets [`request_count`](Self::request_count) and
    /// [`resource_request_count`](Self::resource_request_count) back to 0.
    pub fn reset_request_count(&self) {
        self.shared.requests.store(0, Ordering::Relaxed);
        if let Ok(mut by) = self.shared.requests_by_resource.lock() {
            by.clear();
        }
    }

    /// Throttling counters since start or the last
    /// [`reset_stats`](Self::reset_stats): requests served and throttled,
    /// and per OAuth client the most requests in flight at once (a client
    /// test asserts its concurrency cap with it).
    pub fn stats(&self) -> SandboxStats {
        self.shared.faults.gate().stats()
    }

    /// Zeroes [`stats`](Self::stats) (requests in flight stay counted).
    pub fn reset_stats(&self) {
        self.shared.faults.gate().reset_stats();
    }

    /// Token endpoint requests served since start.
    pub fn token_request_count(&self) -> u64 {
        self.shared.auth.token_requests.load(Ordering::Relaxed)
    }

    /// Stops serving and waits for the server to finish.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(server) = self.server.take() {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "oracle sandbox server ended with an error")
                }
                Err(e) => tracing::warn!(error = %e, "oracle sandbox server task failed"),
            }
        }
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(live) = self.live.take() {
            live.abort();
        }
    }
}

impl Drop for OracleSandbox {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Applies background change rates (ten ticks a second) and periodic
/// token revocation.
async fn live_loop(shared: Arc<Shared>, revoke_every: Option<Duration>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut owed = [0.0f64; 3];
    let mut last_revoke = Instant::now();
    loop {
        tick.tick().await;
        if let Some(every) = revoke_every
            && last_revoke.elapsed() >= every
        {
            shared.auth.revoke_all();
            last_revoke = Instant::now();
        }
        let (up, ins, del, late) = shared.faults.rates();
        for (slot, rate) in owed.iter_mut().zip([up, ins, del]) {
            *slot += rate / 10.0;
        }
        let mutable: Vec<&store::Table> = shared
            .store
            .tables()
            .iter()
            .filter(|t| t.res.mutable)
            .collect();
        let weights: Vec<u64> = mutable.iter().map(|t| t.live_count().max(1)).collect();
        let total: u64 = weights.iter().sum();
        if total == 0 {
            continue;
        }
        for (op, slot) in owed.iter_mut().enumerate() {
            while *slot >= 1.0 {
                *slot -= 1.0;
                let mut r = shared.random() % total;
                let mut pick = 0;
                for (i, w) in weights.iter().enumerate() {
                    if r < *w {
                        pick = i;
                        break;
                    }
                    r -= w;
                }
                let t = mutable[pick];
                let back = if late > 0 {
                    (shared.random() % (late * 1_000_000)) as i64
                } else {
                    0
                };
                let stamp = Shared::now_micros() - back;
                let g = &shared.store.data;
                match op {
                    0 => {
                        shared.update_random(t.res.node.name, 1, stamp);
                    }
                    1 => {
                        t.insert(stamp);
                    }
                    _ => {
                        // Suppliers are referenced by everything else:
                        // deletes go to the other resources.
                        if t.res.kind != resources::Kind::Suppliers
                            && let Some(i) = t.random_live(shared.random())
                        {
                            t.delete(g, i);
                        }
                    }
                }
            }
        }
    }
}
