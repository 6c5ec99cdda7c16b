//! The `ml-connector` binary: parse arguments, run, print the error chain.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    // Started as the plugin runtime's compile worker: compile and exit.
    #[cfg(feature = "plugin")]
    mlc_plugin::serve_if_worker();
    let args = cli::Cli::parse();
    telemetry::init(args.verbose);
    match args.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
