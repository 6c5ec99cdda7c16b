//! Logging: `tracing` to stderr, filtered by `RUST_LOG` or `-v`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Logs go to stderr so that commands which
/// print machine-readable output on stdout keep it clean.
pub fn init(verbose: u8) {
    // At the default level the runtime's refusal warning is left out: the
    // commands report a refusal themselves, as their error.
    let default = match verbose {
        0 => "warn,mlc_plugin::runtime=error",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
