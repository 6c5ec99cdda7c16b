//! `ml-connector sandbox oracle`: flags, the one-line JSON start message,
//! and serving until SIGINT/SIGTERM. Durations are written with a unit:
//! `250ms`, `1s`, `1.5s`, `800us`, `2m` (a bare `0` is zero).

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use mlc_common::Secret;

use crate::{OracleSandbox, SandboxConfig, SandboxError};

/// Flags of `ml-connector sandbox oracle`.
#[derive(Debug, clap::Args)]
pub struct OracleSandboxArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long,
        default_value = "127.0.0.1:0",
        env = "ML_CONNECTOR_SANDBOX_ORACLE_LISTEN"
    )]
    pub listen: SocketAddr,
    /// Generator seed: the same seed gives the same data.
    #[arg(long, default_value_t = 1, env = "ML_CONNECTOR_SANDBOX_ORACLE_SEED")]
    pub seed: u64,
    /// Number of payables invoices (other resources scale with it).
    #[arg(
        long,
        default_value_t = 1000,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_INVOICES"
    )]
    pub invoices: u64,
    /// Access token lifetime (`expires_in`), seconds.
    #[arg(
        long,
        default_value_t = 3600,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_TOKEN_TTL"
    )]
    pub token_ttl: u64,
    /// Consecutive records sharing one base LastUpdateDate.
    #[arg(
        long,
        default_value_t = 1,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_SAME_TIMESTAMP"
    )]
    pub same_timestamp: u64,
    /// OAuth client id.
    #[arg(
        long,
        default_value = "ml-connector-sandbox",
        env = "ML_CONNECTOR_SANDBOX_ORACLE_CLIENT_ID"
    )]
    pub client_id: String,
    /// OAuth client secret (random when not given).
    #[arg(
        long,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<String>,
    /// Background updates per second.
    #[arg(
        long,
        default_value_t = 0.0,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_UPDATES_PER_SEC"
    )]
    pub updates_per_sec: f64,
    /// Background inserts per second.
    #[arg(
        long,
        default_value_t = 0.0,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_INSERTS_PER_SEC"
    )]
    pub inserts_per_sec: f64,
    /// Background deletes per second.
    #[arg(
        long,
        default_value_t = 0.0,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_DELETES_PER_SEC"
    )]
    pub deletes_per_sec: f64,
    /// Stamp background changes up to this many seconds in the past.
    #[arg(
        long,
        default_value_t = 0,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_LATE_COMMIT_SECS"
    )]
    pub late_commit_secs: u64,
    /// Update this many records after every collection page served.
    #[arg(
        long,
        default_value_t = 0,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_MUTATE_BETWEEN_PAGES"
    )]
    pub mutate_between_pages: u32,
    /// Answer every nth resource request with 429 (0: never).
    #[arg(
        long,
        default_value_t = 0,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_RATE_LIMIT_EVERY"
    )]
    pub rate_limit_every: u64,
    /// Retry-After seconds on 429s.
    #[arg(
        long,
        default_value_t = 1,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_RETRY_AFTER"
    )]
    pub retry_after: u64,
    /// Answer every nth resource request with --error-status (0: never).
    #[arg(
        long,
        default_value_t = 0,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_ERROR_EVERY"
    )]
    pub error_every: u64,
    /// Status for --error-every (503, 504, ...).
    #[arg(
        long,
        default_value_t = 503,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_ERROR_STATUS"
    )]
    pub error_status: u16,
    /// Delay every resource response by this many milliseconds.
    #[arg(long, default_value_t = 0, env = "ML_CONNECTOR_SANDBOX_ORACLE_SLOW_MS")]
    pub slow_ms: u64,
    /// Latency model: every resource answer takes at least this long
    /// (e.g. 1s; a Fusion pod answers a 499-row page in a second or more).
    #[arg(long, default_value = "0ms", value_parser = parse_duration, env = "ML_CONNECTOR_SANDBOX_ORACLE_LATENCY")]
    pub latency: Duration,
    /// Latency model: added per record returned (e.g. 1ms).
    #[arg(long, default_value = "0ms", value_parser = parse_duration, env = "ML_CONNECTOR_SANDBOX_ORACLE_LATENCY_PER_RECORD")]
    pub latency_per_record: Duration,
    /// Latency model: added per expanded child row (e.g. 200us).
    #[arg(long, default_value = "0ms", value_parser = parse_duration, env = "ML_CONNECTOR_SANDBOX_ORACLE_LATENCY_PER_CHILD")]
    pub latency_per_child: Duration,
    /// Throttling: resource requests in flight at once per OAuth client;
    /// more answer 429 (0: no limit).
    #[arg(
        long,
        default_value_t = 0,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_MAX_IN_FLIGHT"
    )]
    pub max_in_flight: u32,
    /// Throttling: resource requests per OAuth client in any 60 seconds;
    /// more answer 429 (0: no limit).
    #[arg(
        long,
        default_value_t = 0,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_REQUESTS_PER_MINUTE"
    )]
    pub requests_per_minute: u32,
    /// Retry-After seconds of a 429 for too many requests in flight.
    #[arg(
        long,
        default_value_t = 1,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_THROTTLE_RETRY_AFTER"
    )]
    pub throttle_retry_after: u64,
    /// Drop the connection mid-response on every nth resource request.
    #[arg(
        long,
        default_value_t = 0,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_DROP_EVERY"
    )]
    pub drop_every: u64,
    /// Revoke all tokens every this many seconds (0: never).
    #[arg(
        long,
        default_value_t = 0,
        env = "ML_CONNECTOR_SANDBOX_ORACLE_REVOKE_TOKENS_EVERY"
    )]
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
            latency: self.latency,
            latency_per_record: self.latency_per_record,
            latency_per_child: self.latency_per_child,
            max_in_flight_per_client: self.max_in_flight,
            requests_per_minute_per_client: self.requests_per_minute,
            throttle_retry_after_secs: self.throttle_retry_after,
            drop_every: self.drop_every,
            revoke_every: (self.revoke_tokens_every > 0)
                .then(|| Duration::from_secs(self.revoke_tokens_every)),
            ..SandboxConfig::default()
        }
    }
}

/// A duration flag that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number followed by a unit.
    #[error("{0:?} is not a duration: write a number and a unit (ns, us, ms, s, m), e.g. 250ms")]
    Syntax(String),
    /// Too long to represent.
    #[error("{0:?} is too long")]
    Overflow(String),
}

/// Reads `250ms`, `1s`, `1.5s`, `800us` (or `µs`), `100ns`, `2m`; a bare
/// `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| DurationError::Syntax(text.to_owned()))?;
    let (number, unit) = t.split_at(split);
    let nanos_per_unit: f64 = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        _ => return Err(DurationError::Syntax(text.to_owned())),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError::Syntax(text.to_owned()))?;
    let nanos = (value * nanos_per_unit).round();
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(DurationError::Overflow(text.to_owned()));
    }
    Ok(Duration::from_nanos(nanos as u64))
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
            "--latency",
            "1s",
            "--latency-per-record",
            "1ms",
            "--latency-per-child",
            "250us",
            "--max-in-flight",
            "8",
            "--requests-per-minute",
            "600",
            "--throttle-retry-after",
            "2",
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
        assert_eq!(
            (c.latency, c.latency_per_record, c.latency_per_child),
            (
                Duration::from_secs(1),
                Duration::from_millis(1),
                Duration::from_micros(250)
            )
        );
        assert_eq!(
            (
                c.max_in_flight_per_client,
                c.requests_per_minute_per_client,
                c.throttle_retry_after_secs
            ),
            (8, 600, 2)
        );
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
        assert_eq!(defaults.latency, Duration::ZERO, "no latency by default");
        assert_eq!(defaults.latency_per_record, Duration::ZERO);
        assert_eq!(defaults.latency_per_child, Duration::ZERO);
        assert_eq!(defaults.max_in_flight_per_client, 0, "no throttling");
        assert_eq!(defaults.requests_per_minute_per_client, 0);
    }

    #[test]
    fn durations_need_a_unit() {
        let ok = |t: &str| parse_duration(t).unwrap();
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0ms"), Duration::ZERO);
        assert_eq!(ok("1s"), Duration::from_secs(1));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("800us"), Duration::from_micros(800));
        assert_eq!(ok("800µs"), Duration::from_micros(800));
        assert_eq!(ok("100ns"), Duration::from_nanos(100));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        for bad in ["", "5", "ms", "1 parsec", "1.2.3s", "-1s"] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_duration("1e400s"),
            Err(DurationError::Syntax(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999m"),
            Err(DurationError::Overflow(_))
        ));
    }
}
