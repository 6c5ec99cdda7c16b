//! Command-line interface: one file per subcommand.

use clap::{Parser, Subcommand, ValueEnum};

#[cfg(feature = "demo")]
mod demo;
#[cfg(feature = "plugin")]
mod plugin;
mod sandbox;

/// Keeps Tableau data sources current with Oracle Fusion Cloud ERP.
#[derive(Debug, Parser)]
#[command(name = "ml-connector", version, about)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Output format of commands that print results.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text, env = "MLC_OUTPUT")]
    pub output: Output,

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
        }
    }
}
