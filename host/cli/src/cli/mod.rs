//! Command-line interface: one file per subcommand.

use clap::{Parser, Subcommand, ValueEnum};

#[cfg(feature = "demo")]
mod demo;
mod docs;
#[cfg(feature = "runtime")]
mod mapping;
#[cfg(feature = "runtime")]
mod ops;
#[cfg(feature = "plugin")]
mod plugin;
#[cfg(feature = "plugin")]
mod plugin_new;
#[cfg(feature = "runtime")]
mod remote;
#[cfg(feature = "runtime")]
mod runtime;
mod sandbox;
#[cfg(feature = "runtime")]
mod serve;
#[cfg(feature = "runtime")]
mod sync;
#[cfg(feature = "runtime")]
mod tenant;

/// `--version`: the crate's version and the git revision it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("GIT_REVISION"), ")");

/// Keeps Tableau data sources current with Oracle Fusion Cloud ERP.
#[derive(Debug, Parser)]
#[command(
    name = "ml-connector",
    version = VERSION,
    about,
    after_help = "Every option can also be set by its ML_CONNECTOR_* variable (shown as [env: ...]).\n\
                  Exit codes: 0 ok, 1 runtime failure, 2 usage, 3 configuration or validation, 4 not reachable."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Output format of commands that print results.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text, env = "ML_CONNECTOR_OUTPUT")]
    pub output: Output,

    #[cfg(feature = "runtime")]
    #[command(flatten)]
    runtime: runtime::RuntimeArgs,

    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable text and tables.
    Text,
    /// One JSON document.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check, test, load, list and roll back mapping plugins.
    #[cfg(feature = "plugin")]
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Run the whole pipeline once on the sandboxes: Oracle Fusion →
    /// scripted mappings → Hyper → Tableau, three cycles, then read back.
    #[cfg(feature = "demo")]
    Demo(demo::DemoCommand),
    /// Run the Oracle Fusion or Tableau sandbox.
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCommand),
    /// Apply, list, show and remove tenants.
    #[cfg(feature = "runtime")]
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Store a tenant's secrets (sealed under the master key).
    #[cfg(feature = "runtime")]
    #[command(subcommand)]
    Secret(tenant::SecretCommand),
    /// Generate or rotate the master key.
    #[cfg(feature = "runtime")]
    #[command(subcommand)]
    Keys(tenant::KeysCommand),
    /// Run a tenant's pipelines now (one durable cycle each).
    #[cfg(feature = "runtime")]
    Sync(sync::SyncCommand),
    /// Run every tenant's pipelines on their schedules, with the webhook
    /// receiver, admin API, /metrics and status page.
    #[cfg(feature = "runtime")]
    Serve(serve::ServeCommand),
    /// Export again from the store: a batch, a failed batch, a record, or all.
    #[cfg(feature = "runtime")]
    Replay(sync::ReplayCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(docs::CompletionsCommand),
    /// Write the man pages (ml-connector.1 and one per subcommand).
    Man(docs::ManCommand),
    /// List, pause and resume pipelines.
    #[cfg(feature = "runtime")]
    #[command(subcommand)]
    Pipeline(ops::PipelineCommand),
    /// List a tenant's batches.
    #[cfg(feature = "runtime")]
    Batches(ops::BatchesCommand),
    /// The audit trail: records, batches, the admin log.
    #[cfg(feature = "runtime")]
    Audit(ops::AuditCommand),
    /// Shadow-run a candidate mapping over stored records, and promote it.
    #[cfg(feature = "runtime")]
    #[command(subcommand)]
    Mapping(mapping::MappingCommand),
}

impl Cli {
    /// Runs the chosen command.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            #[cfg(feature = "plugin")]
            Command::Plugin(cmd) => cmd.run(self.output).await,
            #[cfg(feature = "demo")]
            Command::Demo(cmd) => cmd.run(self.output).await,
            Command::Sandbox(cmd) => cmd.run().await,
            Command::Completions(cmd) => cmd.run(),
            Command::Man(cmd) => cmd.run(),
            #[cfg(feature = "runtime")]
            Command::Tenant(cmd) => cmd.run(&self.runtime, self.output).await,
            #[cfg(feature = "runtime")]
            Command::Secret(cmd) => cmd.run(&self.runtime, self.output).await,
            #[cfg(feature = "runtime")]
            Command::Keys(cmd) => cmd.run(&self.runtime, self.output).await,
            #[cfg(feature = "runtime")]
            Command::Sync(cmd) => cmd.run(&self.runtime, self.output).await,
            #[cfg(feature = "runtime")]
            Command::Serve(cmd) => cmd.run(&self.runtime).await,
            #[cfg(feature = "runtime")]
            Command::Replay(cmd) => cmd.run(&self.runtime, self.output).await,
            #[cfg(feature = "runtime")]
            Command::Pipeline(cmd) => cmd.run(&self.runtime, self.output).await,
            #[cfg(feature = "runtime")]
            Command::Batches(cmd) => cmd.run(&self.runtime, self.output).await,
            #[cfg(feature = "runtime")]
            Command::Audit(cmd) => cmd.run(&self.runtime, self.output).await,
            #[cfg(feature = "runtime")]
            Command::Mapping(cmd) => cmd.run(&self.runtime, self.output).await,
        }
    }
}
