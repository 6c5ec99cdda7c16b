//! The `ml-connector` binary: parse arguments, run, report a failure with
//! its exit code (see `failure` for the codes).

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod failure;
mod telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    // Started as the plugin runtime's compile worker: compile and exit.
    #[cfg(feature = "plugin")]
    mlc_plugin::serve_if_worker();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(usage) => return failure::usage(usage),
    };
    telemetry::init(args.verbose, args.output == cli::Output::Json);
    let output = args.output;
    match args.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => failure::report(&error, output),
    }
}
