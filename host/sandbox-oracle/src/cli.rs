//! `ml-connector sandbox oracle`: flags, the one-line JSON start message,
//! and serving until SIGINT/SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use mlc_common::Secret;

use crate::{OracleSandbox, SandboxConfig, SandboxError};

/// Flags of `ml-connector sandbox oracle`.
#[derive(Debug, clap::Args)]
pub struct OracleSandboxArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0", env = "MLC_SANDBOX_ORACLE_LISTEN")]
    pub listen: SocketAddr,
    /// Generator seed: the same seed gives the same data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of payables invoices (other resources scale with it).
    #[arg(long, default_value_t = 1000)]
    pub invoices: u64,
    /// Access token lifetime (`expires_in`), seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl: u64,
    /// Consecutive records sharing one base LastUpdateDate.
    #[arg(long, default_value_t = 1)]
    pub same_timestamp: u64,
    /// OAuth client id.
    #[arg(long, default_value = "ml-connector-sandbox")]
    pub client_id: String,
    /// OAuth client secret (random when not given).
    #[arg(long, env = "MLC_SANDBOX_ORACLE_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Background updates per second.
    #[arg(long, default_value_t = 0.0)]
    pub updates_per_sec: f64,
    /// Background inserts per second.
    #[arg(long, default_value_t = 0.0)]
    pub inserts_per_sec: f64,
    /// Background deletes per second.
    #[arg(long, default_value_t = 0.0)]
    pub deletes_per_sec: f64,
    /// Stamp background changes up to this many seconds in the past.
    #[arg(long, default_value_t = 0)]
    pub late_commit_secs: u64,
    /// Update this many records after every collection page served.
    #[arg(long, default_value_t = 0)]
    pub mutate_between_pages: u32,
    /// Answer every nth resource request with 429 (0: never).
    #[arg(long, default_value_t = 0)]
    pub rate_limit_every: u64,
    /// Retry-After seconds on 429s.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Answer every nth resource request with --error-status (0: never).
    #[arg(long, default_value_t = 0)]
    pub error_every: u64,
    /// Status for --error-every (503, 504, ...).
    #[arg(long, default_value_t = 503)]
    pub error_status: u16,
    /// Delay every resource response by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub slow_ms: u64,
    /// Drop the connection mid-response on every nth resource request.
    #[arg(long, default_value_t = 0)]
    pub drop_every: u64,
    /// Revoke all tokens every this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    pub revoke_tokens_every: u64,
}

impl OracleSandboxArgs {
    /// The sandbox configuration these flags describe.
    pub fn config(&self) -> SandboxConfig {
        SandboxConfig {
            listen: self.listen,
            seed: self.seed,
            invoices: self.invoices,
            token_ttl: Duration::from_secs(self.token_ttl),
            same_timestamp: self.same_timestamp,
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone().map(Secret::new),
            updates_per_sec: self.updates_per_sec,
            inserts_per_sec: self.inserts_per_sec,
            deletes_per_sec: self.deletes_per_sec,
            late_commit_secs: self.late_commit_secs,
            mutate_between_pages: self.mutate_between_pages,
            rate_limit_every: self.rate_limit_every,
            retry_after_secs: self.retry_after,
            error_every: self.error_every,
            error_status: self.error_status,
            slow: Duration::from_millis(self.slow_ms),
            drop_every: self.drop_every,
            revoke_every: (self.revoke_tokens_every > 0)
                .then(|| Duration::from_secs(self.revoke_tokens_every)),
            ..SandboxConfig::default()
        }
    }
}

/// The start line: where to connect and with which credentials.
pub fn start_line(sandbox: &OracleSandbox) -> serde_json::Value {
    serde_json::json!({
        "service": "oracle",
        "base_url": sandbox.base_url(),
        "token_url": sandbox.token_url(),
        "client_id": sandbox.client_id(),
        // The one place the secret is shown: the operator who started the
        // sandbox needs it to connect.
        "client_secret": sandbox.client_secret().expose(),
        "scope": sandbox.scope(),
    })
}

/// Starts the sandbox, prints one JSON line on stdout, serves until
/// SIGINT/SIGTERM.
pub async fn run(args: OracleSandboxArgs) -> Result<(), SandboxError> {
    let sandbox = OracleSandbox::start(args.config()).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", start_line(&sandbox)).map_err(SandboxError::Stdout)?;
        out.flush().map_err(SandboxError::Stdout)?;
    }
    wait_for_signal().await?;
    tracing::info!("oracle sandbox stopping");
    sandbox.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<(), SandboxError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(SandboxError::Signal)?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(SandboxError::Signal),
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<(), SandboxError> {
    tokio::signal::ctrl_c().await.map_err(SandboxError::Signal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        args: OracleSandboxArgs,
    }

    #[test]
    fn flags_become_the_sandbox_configuration() {
        let cmd = Cmd::try_parse_from([
            "sandbox",
            "--listen",
            "127.0.0.1:7001",
            "--seed",
            "9",
            "--invoices",
            "5000",
            "--token-ttl",
            "60",
            "--same-timestamp",
            "1000",
            "--updates-per-sec",
            "2.5",
            "--late-commit-secs",
            "300",
            "--mutate-between-pages",
            "3",
            "--rate-limit-every",
            "10",
            "--retry-after",
            "4",
            "--error-every",
            "7",
            "--error-status",
            "504",
            "--slow-ms",
            "250",
            "--drop-every",
            "11",
            "--revoke-tokens-every",
            "30",
        ])
        .unwrap();
        let c = cmd.args.config();
        assert_eq!(c.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!((c.seed, c.invoices, c.same_timestamp), (9, 5000, 1000));
        assert_eq!(c.token_ttl, Duration::from_secs(60));
        assert_eq!(c.updates_per_sec, 2.5);
        assert_eq!(c.late_commit_secs, 300);
        assert_eq!(c.mutate_between_pages, 3);
        assert_eq!((c.rate_limit_every, c.retry_after_secs), (10, 4));
        assert_eq!((c.error_every, c.error_status), (7, 504));
        assert_eq!(c.slow, Duration::from_millis(250));
        assert_eq!(c.drop_every, 11);
        assert_eq!(c.revoke_every, Some(Duration::from_secs(30)));
        assert!(c.client_secret.is_none(), "random secret unless given");

        let defaults = Cmd::try_parse_from(["sandbox"]).unwrap().args.config();
        assert_eq!(
            defaults.listen.ip().to_string(),
            "127.0.0.1",
            "loopback by default"
        );
        assert_eq!(defaults.listen.port(), 0);
        assert_eq!(defaults.token_ttl, Duration::from_secs(3600));
        assert_eq!(defaults.revoke_every, None);
    }
}
