//! `ml-connector sandbox oracle|tableau`: the stand-ins, served until
//! SIGINT/SIGTERM.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// An Oracle Fusion Cloud ERP REST stand-in.
    #[cfg(feature = "oracle")]
    Oracle(mlc_sandbox_oracle::cli::OracleSandboxArgs),
    /// A Tableau Server / Cloud REST stand-in.
    #[cfg(feature = "tableau")]
    Tableau(mlc_sandbox_tableau::cli::TableauSandboxArgs),
}

impl SandboxCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            #[cfg(feature = "oracle")]
            Self::Oracle(args) => Ok(mlc_sandbox_oracle::cli::run(args).await?),
            #[cfg(feature = "tableau")]
            Self::Tableau(args) => Ok(mlc_sandbox_tableau::cli::run(args).await?),
        }
    }
}
