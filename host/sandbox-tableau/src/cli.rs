//! `ml-connector sandbox tableau`: starts the sandbox, prints one JSON line
//! with what a client needs, and serves until SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mlc_common::Secret;

use crate::error::SandboxError;
use crate::server::{MB, TableauSandbox, TableauSandboxConfig};

/// Command-line options of the Tableau sandbox.
#[derive(Clone, Debug, clap::Args)]
pub struct TableauSandboxArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(
        long,
        default_value = "127.0.0.1:0",
        env = "ML_CONNECTOR_SANDBOX_TABLEAU_LISTEN"
    )]
    pub listen: SocketAddr,
    /// Directory for the stored .hyper files, uploads and hyperd logs
    /// (default: a new directory under the system temp dir, removed on exit).
    /// Not `--data-dir`: that names ml-connector's own data directory.
    #[arg(long, env = "ML_CONNECTOR_SANDBOX_TABLEAU_DIR")]
    pub sandbox_dir: Option<PathBuf>,
    /// Session lifetime after sign-in, in minutes.
    #[arg(
        long,
        default_value_t = 240,
        env = "ML_CONNECTOR_SANDBOX_TABLEAU_SESSION_TTL_MINUTES"
    )]
    pub session_ttl_minutes: u64,
    /// The hyperd binary (default: `ML_CONNECTOR_HYPERD`, then the Python
    /// tableauhyperapi package).
    #[arg(long, env = "ML_CONNECTOR_HYPERD")]
    pub hyperd: Option<PathBuf>,
    /// The site's URL name (contentUrl) for sign-in.
    #[arg(
        long,
        default_value = "sandbox",
        env = "ML_CONNECTOR_SANDBOX_TABLEAU_SITE"
    )]
    pub site: String,
    /// The project the connector publishes into.
    #[arg(
        long,
        default_value = "ml-connector",
        env = "ML_CONNECTOR_SANDBOX_TABLEAU_PROJECT"
    )]
    pub project: String,
    /// The personal access token name.
    #[arg(
        long,
        default_value = "ml-connector-pat",
        env = "ML_CONNECTOR_SANDBOX_TABLEAU_PAT_NAME"
    )]
    pub pat_name: String,
    /// The personal access token secret (default: random).
    #[arg(
        long,
        env = "ML_CONNECTOR_SANDBOX_PAT_SECRET",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub pat_secret: Option<Secret>,
    /// Largest Update-Data-in-Hyper payload in MB (413 above).
    #[arg(
        long,
        default_value_t = 100,
        env = "ML_CONNECTOR_SANDBOX_TABLEAU_UPDATE_PAYLOAD_LIMIT_MB"
    )]
    pub update_payload_limit_mb: u64,
    /// Largest single request in MB (publish without chunking, one chunk).
    #[arg(
        long,
        default_value_t = 64,
        env = "ML_CONNECTOR_SANDBOX_TABLEAU_SINGLE_REQUEST_LIMIT_MB"
    )]
    pub single_request_limit_mb: u64,
    /// Fault: the next chunk upload answers this HTTP status.
    #[arg(long, env = "ML_CONNECTOR_SANDBOX_TABLEAU_FAIL_NEXT_CHUNK")]
    pub fail_next_chunk: Option<u16>,
    /// Fault: the next job fails with these notes.
    #[arg(long, env = "ML_CONNECTOR_SANDBOX_TABLEAU_FAIL_NEXT_JOB")]
    pub fail_next_job: Option<String>,
    /// Fault: the next N calls answer 429 with Retry-After.
    #[arg(long, env = "ML_CONNECTOR_SANDBOX_TABLEAU_RATE_LIMIT_NEXT")]
    pub rate_limit_next: Option<u32>,
    /// Seconds in Retry-After for `--rate-limit-next`.
    #[arg(
        long,
        default_value_t = 30,
        env = "ML_CONNECTOR_SANDBOX_TABLEAU_RETRY_AFTER_SECS"
    )]
    pub retry_after_secs: u64,
    /// Fault: every job stays running this many milliseconds first.
    #[arg(long, env = "ML_CONNECTOR_SANDBOX_TABLEAU_SLOW_JOBS_MS")]
    pub slow_jobs_ms: Option<u64>,
    /// Fault: the next N webhook events are never sent.
    #[arg(long, env = "ML_CONNECTOR_SANDBOX_TABLEAU_LOSE_WEBHOOKS")]
    pub lose_webhooks: Option<u32>,
    /// Fault: deliver every webhook event twice.
    #[arg(long, env = "ML_CONNECTOR_SANDBOX_TABLEAU_DUPLICATE_WEBHOOKS")]
    pub duplicate_webhooks: bool,
    /// Fault: the next N sign-ins answer 301 (a Cloud pod redirect).
    #[arg(long, env = "ML_CONNECTOR_SANDBOX_TABLEAU_REDIRECT_SIGN_IN")]
    pub redirect_sign_in: Option<u32>,
}

impl TableauSandboxArgs {
    /// The sandbox configuration these options describe.
    pub fn config(&self) -> TableauSandboxConfig {
        let mut config = TableauSandboxConfig {
            listen: self.listen,
            session_ttl: Duration::from_secs(self.session_ttl_minutes.saturating_mul(60)),
            update_payload_limit: self.update_payload_limit_mb.saturating_mul(MB),
            single_request_limit: self.single_request_limit_mb.saturating_mul(MB),
            hyperd: self.hyperd.clone(),
            site_content_url: self.site.clone(),
            project_name: self.project.clone(),
            pat_name: self.pat_name.clone(),
            pat_secret: self.pat_secret.clone().unwrap_or_default(),
            ..TableauSandboxConfig::default()
        };
        match &self.sandbox_dir {
            Some(dir) => config.data_dir = dir.clone(),
            None => config.remove_data_dir_on_shutdown = true,
        }
        config
    }
}

/// Wraps the PAT secret at once so `Debug` never shows it.
fn parse_secret(text: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(text))
}

/// Starts the sandbox, prints the JSON line, serves until SIGINT/SIGTERM.
pub async fn run(args: TableauSandboxArgs) -> Result<(), SandboxError> {
    let sandbox = TableauSandbox::start(args.config()).await?;
    let faults = sandbox.faults();
    if let Some(status) = args.fail_next_chunk {
        faults.fail_next_chunk(status);
    }
    if let Some(notes) = &args.fail_next_job {
        faults.fail_next_job(notes.clone());
    }
    if let Some(count) = args.rate_limit_next {
        faults.rate_limit_next(count, args.retry_after_secs);
    }
    if let Some(ms) = args.slow_jobs_ms {
        faults.slow_jobs(Duration::from_millis(ms));
    }
    if let Some(count) = args.lose_webhooks {
        faults.lose_webhooks(count);
    }
    faults.duplicate_webhooks(args.duplicate_webhooks);
    if let Some(count) = args.redirect_sign_in {
        faults.redirect_sign_in(count);
    }
    let line = serde_json::json!({
        "service": "tableau",
        "server_url": sandbox.server_url(),
        "api_version": sandbox.api_version(),
        "site": sandbox.site_content_url(),
        "project": sandbox.project_name(),
        "pat_name": sandbox.pat_name(),
        "pat_secret": sandbox.pat_secret().expose(),
    });
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").map_err(SandboxError::Serve)?;
        out.flush().map_err(SandboxError::Serve)?;
    }
    wait_for_signal().await.map_err(SandboxError::Serve)?;
    tracing::info!("Tableau sandbox stopping");
    sandbox.shutdown().await
}

async fn wait_for_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: TableauSandboxArgs,
    }

    #[test]
    fn flags_map_onto_the_config_and_hide_the_secret() {
        let cli = Cli::try_parse_from([
            "sandbox",
            "--listen",
            "127.0.0.1:8123",
            "--sandbox-dir",
            "/tmp/x",
            "--session-ttl-minutes",
            "120",
            "--pat-secret",
            "hunter2",
            "--update-payload-limit-mb",
            "10",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("hunter2"));
        let config = cli.args.config();
        assert_eq!(config.listen.port(), 8123);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert!(!config.remove_data_dir_on_shutdown);
        assert_eq!(config.session_ttl, Duration::from_secs(7200));
        assert_eq!(config.update_payload_limit, 10 * MB);
        assert_eq!(config.single_request_limit, 64 * MB);
        assert_eq!(config.pat_secret.expose(), "hunter2");
        let defaults = Cli::try_parse_from(["sandbox"]).unwrap().args.config();
        assert!(defaults.remove_data_dir_on_shutdown);
        assert_eq!(defaults.session_ttl, Duration::from_secs(240 * 60));
        assert!(defaults.pat_secret.is_empty());
    }
}
