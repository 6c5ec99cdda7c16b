//! `ml-connector serve`: the hosted runtime over the durable one.
//!
//! One process runs, over one data directory:
//! - the [`scheduler`]: every pipeline of every tenant this replica owns, on
//!   its `every`, within per-tenant and global limits, failed batches first
//!   with backoff; tenant definitions and mapping scripts reloaded as they
//!   change;
//! - an HTTP server ([`http`]): the Tableau [`webhook`] receiver, the admin
//!   [`api`], `/metrics` ([`metrics`]), `/healthz`, `/readyz` and the
//!   status page.
//!
//! [`serve`] binds the listen address first (a taken port fails at once),
//! writes `serve-<replica>.json` into the data directory so the CLI can find
//! the server that holds a tenant's store, runs until the shutdown future
//! resolves, then lets running cycles finish within the grace period.

pub mod api;
pub mod app;
pub mod http;
pub mod limits;
mod listen;
pub mod metrics;
pub mod pipeline;
pub mod ratelimit;
mod runtime_file;
pub mod scheduler;
pub mod shadow;
pub mod status;
pub mod views;
pub mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mlc_common::Secret;
use mlc_sync::Host;
use serde::{Deserialize, Serialize};

pub use limits::{Clock, ServeLimits};
pub use scheduler::{Replica, Scheduler, WEBHOOK_TOKEN_SECRET};

/// How to serve.
#[derive(Debug)]
pub struct ServeConfig {
    /// Where to listen (loopback by default).
    pub listen: SocketAddr,
    /// The URL Tableau reaches this server at, for webhooks; none: webhooks
    /// are not registered (batches are confirmed by polling only).
    pub public_url: Option<String>,
    /// The admin API's bearer token.
    pub admin_token: Secret,
    /// Limits and intervals.
    pub limits: ServeLimits,
    /// The schedule clock (1 in production).
    pub clock: Clock,
    /// Which tenants this process runs.
    pub replica: Replica,
}

/// Why serving stopped or did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {source} (is another server running? choose another with --listen)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server file could not be written.
    #[error("cannot write {path}: {source}")]
    ServerFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// What `serve-<replica>.json` says: where a running server listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFile {
    /// The API's base URL.
    pub url: String,
    /// The server's process id.
    pub pid: u32,
    /// Its replica index and count.
    pub replica: u32,
    /// How many replicas share the data directory.
    pub replicas: u32,
}

impl ServerFile {
    /// Reads the server files of a data directory (one per replica).
    pub fn find(data: &mlc_store::DataDir) -> Vec<ServerFile> {
        let Ok(entries) = std::fs::read_dir(data.root()) else {
            return Vec::new();
        };
        let mut out: Vec<ServerFile> = entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("serve-") && name.ends_with(".json")
            })
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str(&t).ok())
            .collect();
        out.sort_by_key(|s| s.replica);
        out
    }
}

fn server_file_path(data: &mlc_store::DataDir, replica: u32) -> PathBuf {
    data.root().join(format!("serve-{replica}.json"))
}

/// Serves until `shutdown` resolves; `on_listening` is told the bound
/// address (port 0 picks one).
pub async fn serve(
    host: Host,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Http)?;
    let data = host.data().clone();
    let file = server_file_path(&data, config.replica.index);
    let doc = ServerFile {
        url: format!("http://{addr}"),
        pid: std::process::id(),
        replica: config.replica.index,
        replicas: config.replica.count,
    };
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap_or_default()).map_err(
        |source| ServeError::ServerFile {
            path: file.clone(),
            source,
        },
    )?;
    let host = Arc::new(host);
    let scheduler = Arc::new(Scheduler::new(
        host.clone(),
        config.limits.clone(),
        config.clock,
        config.replica,
        config.public_url.clone(),
    ));
    let supervisor = tokio::spawn(scheduler.clone().supervise());
    let app = Arc::new(app::App {
        scheduler: scheduler.clone(),
        admin_token: config.admin_token,
        metrics: metrics::install(),
        limits: config.limits.clone(),
        rates: ratelimit::RateLimits::new(&config.limits),
    });
    on_listening(addr);
    tracing::info!(%addr, replica = config.replica.index, replicas = config.replica.count, "serving");
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let router = http::router(app);
    let http_limits = config.limits.clone();
    let server = tokio::spawn(async move {
        listen::serve(listener, router, &http_limits, async {
            let _ = http_stopped.await;
        })
        .await;
    });
    shutdown.await;
    tracing::info!(
        grace_secs = config.limits.grace.as_secs(),
        "stopping: running cycles may finish"
    );
    scheduler.shutdown(config.limits.grace).await;
    let _ = supervisor.await;
    let _ = stop_http.send(());
    let served = server.await;
    let _ = std::fs::remove_file(&file);
    drop(scheduler);
    if let Some(host) = Arc::into_inner(host) {
        host.shutdown().await;
    }
    match served {
        Ok(()) => Ok(()),
        Err(e) => Err(ServeError::Http(std::io::Error::other(e.to_string()))),
    }
}
