//! Logging: `tracing` to stderr, filtered by `RUST_LOG` or `-v`, without
//! colour under `NO_COLOR`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Logs go to stderr so that commands which
/// print machine-readable output on stdout keep it clean; with `json` each
/// log line is a JSON object, so that stderr stays JSON lines up to the
/// error object a failure ends with.
pub fn init(verbose: u8, json: bool) {
    // At the default level the runtime's refusal warning is left out: the
    // commands report a refusal themselves, as their error.
    // Our crates get the level asked for; the compiler stack below the
    // plugin runtime (cranelift, wasmtime, regalloc) stays at info: at
    // trace it logs every instruction it compiles, which makes a sync take
    // minutes instead of seconds.
    let default = match verbose {
        0 => "warn,mlc_plugin::runtime=error",
        1 => "info",
        2 => "debug,cranelift=info,wasmtime=info,regalloc2=info,wasmtime_cranelift=info",
        _ => {
            "trace,cranelift=info,cranelift_codegen=info,wasmtime=info,regalloc2=info,wasmtime_cranelift=info,cranelift_frontend=info"
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        logs.json().try_init()
    } else {
        logs.with_ansi(colour()).try_init()
    };
}

/// Whether logs are coloured: on a terminal, unless `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::IsTerminal::is_terminal(&std::io::stderr())
}
