//! `ml-connector completions SHELL` and `ml-connector man --out DIR`: shell
//! completions and man pages generated from the clap definitions, so that
//! they never drift from `--help`.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::Cli;

/// Print a shell completion script on stdout.
#[derive(Debug, clap::Args)]
pub struct CompletionsCommand {
    /// The shell, e.g. `ml-connector completions bash > /etc/bash_completion.d/ml-connector`.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

impl CompletionsCommand {
    pub fn run(self) -> Result<()> {
        // Rendered first: the generator panics on a failed write, and a
        // closed pipe (`| head`) is not a failure.
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut Cli::command(), "ml-connector", &mut script);
        match std::io::stdout().lock().write_all(&script) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(e).context("writing the completion script")
            }
            _ => Ok(()),
        }
    }
}

/// Write man pages: ml-connector.1 and one per subcommand.
#[derive(Debug, clap::Args)]
pub struct ManCommand {
    /// The directory to write them to (created when missing).
    #[arg(
        long,
        env = "ML_CONNECTOR_MAN_OUT",
        default_value = "target/dist-docs/man"
    )]
    out: PathBuf,
}

impl ManCommand {
    pub fn run(self) -> Result<()> {
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("creating {}", self.out.display()))?;
        // One page per command, named after its path (ml-connector-tenant-apply.1).
        clap_mangen::generate_to(Cli::command(), &self.out)
            .with_context(|| format!("writing the man pages into {}", self.out.display()))?;
        let mut pages: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .with_context(|| format!("listing {}", self.out.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "1"))
            .collect();
        pages.sort();
        for page in pages {
            println!("{}", page.display());
        }
        Ok(())
    }
}
