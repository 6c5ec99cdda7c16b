//! `serve`: the scheduler, webhook receiver, admin API, metrics and status
//! page in one process, until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, bail};
use mlc_serve::{Clock, Replica, ServeConfig, ServeLimits};

use super::runtime::{RuntimeArgs, duration_arg};

/// Run every tenant's pipelines on their schedules, and the HTTP server.
#[derive(Debug, clap::Args)]
pub struct ServeCommand {
    /// Where the HTTP server listens (loopback by default).
    #[arg(long, env = "ML_CONNECTOR_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The URL Tableau reaches this server at; with it, each tenant's
    /// webhooks are registered on its site at start.
    #[arg(long, env = "ML_CONNECTOR_PUBLIC_URL")]
    public_url: Option<String>,
    /// This replica's index (0-based) when several share the data directory.
    #[arg(long, env = "ML_CONNECTOR_REPLICA", default_value_t = 0)]
    replica: u32,
    /// How many replicas share the data directory (tenants are spread by a
    /// rendezvous hash of their ids).
    #[arg(long, env = "ML_CONNECTOR_REPLICAS", default_value_t = 1)]
    replicas: u32,
    /// Cycles of one tenant running at once.
    #[arg(long, env = "ML_CONNECTOR_PER_TENANT", default_value_t = ServeLimits::default().per_tenant)]
    per_tenant: usize,
    /// Cycles running at once in the process.
    #[arg(long, env = "ML_CONNECTOR_GLOBAL", default_value_t = ServeLimits::default().global)]
    global: usize,
    /// How long SIGTERM waits for running cycles (an interrupted cycle
    /// resumes from its journal at the next start).
    #[arg(long, env = "ML_CONNECTOR_GRACE", default_value = "30s", value_parser = duration_arg)]
    grace: Duration,
    /// Keep each batch's raw record versions this long after it is
    /// confirmed (the latest version of every record is always kept).
    #[arg(long, env = "ML_CONNECTOR_RAW_RETENTION", default_value = "30d", value_parser = duration_arg)]
    raw_retention: Duration,
    /// Webhook deliveries a minute from one source address.
    #[arg(long, env = "ML_CONNECTOR_WEBHOOK_RATE", default_value_t = ServeLimits::default().webhook_per_source)]
    webhook_rate: u32,
    /// Genuine webhook deliveries a minute for one tenant.
    #[arg(long, env = "ML_CONNECTOR_WEBHOOK_TENANT_RATE", default_value_t = ServeLimits::default().webhook_per_tenant)]
    webhook_tenant_rate: u32,
    /// Admin API requests a minute from one source address (counted before
    /// the token is checked).
    #[arg(long, env = "ML_CONNECTOR_API_RATE", default_value_t = ServeLimits::default().api_per_source)]
    api_rate: u32,
    /// Longest time a client may take to send a request's headers; a
    /// connection that has not sent them by then is closed.
    #[arg(long, env = "ML_CONNECTOR_HEADER_TIMEOUT", default_value = "10s", value_parser = duration_arg)]
    header_timeout: Duration,
    /// Run schedules this many times faster (tests and demos only).
    #[arg(
        long,
        env = "ML_CONNECTOR_TIME_SCALE",
        default_value_t = 1.0,
        hide = true
    )]
    time_scale: f64,
}

impl ServeCommand {
    pub async fn run(self, args: &RuntimeArgs) -> Result<()> {
        if self.replicas == 0 || self.replica >= self.replicas {
            bail!(
                "--replica {} is not one of 0..{} (--replicas)",
                self.replica,
                self.replicas
            );
        }
        let admin_token = args.admin_token()?;
        let key = args.master_key()?;
        // A port that is taken is said before hyperd and the tenants start.
        if self.listen.port() != 0 {
            std::net::TcpListener::bind(self.listen).map_err(|source| {
                crate::failure::CliError::ListenTaken {
                    addr: self.listen,
                    source,
                }
            })?;
        }
        let host = args.host(key).await?;
        let limits = ServeLimits {
            per_tenant: self.per_tenant.max(1),
            global: self.global.max(1),
            grace: self.grace,
            raw_retention: self.raw_retention,
            webhook_per_source: self.webhook_rate.max(1),
            webhook_per_tenant: self.webhook_tenant_rate.max(1),
            api_per_source: self.api_rate.max(1),
            header_timeout: self.header_timeout,
            ..ServeLimits::default()
        };
        let config = ServeConfig {
            listen: self.listen,
            public_url: self.public_url.clone(),
            admin_token,
            limits,
            clock: Clock::new(self.time_scale),
            replica: Replica {
                index: self.replica,
                count: self.replicas,
            },
        };
        mlc_serve::serve(host, config, shutdown_signal(), |addr| {
            // On stderr: stdout stays for results; tests wait for this line.
            eprintln!("serving on http://{addr} (status page /, API /api/v1, /metrics)");
        })
        .await?;
        eprintln!("stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C, saying so.
async fn shutdown_signal() {
    interrupted().await;
    eprintln!("stopping: waiting for running cycles");
}

/// Resolves on SIGTERM or Ctrl-C (also the live demo's stop).
pub async fn interrupted() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
