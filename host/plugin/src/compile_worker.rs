//! Compiling an uploaded component out of the host process, in a
//! short-lived worker subprocess under OS limits.
//!
//! Cranelift has no budget of its own: a crafted component (a huge or
//! deeply nested function) can take minutes of CPU and gigabytes of memory
//! to compile. Compiled inside the host, that would stall or exhaust the
//! runtime for every tenant. So a component that is not in the compile
//! cache is compiled by a worker process:
//!
//! - the parent starts the worker with `RLIMIT_CPU` (soft limit the CPU
//!   seconds, hard one second later), `RLIMIT_AS` and `RLIMIT_CORE = 0`
//!   set in the child between fork and exec, writes the wasm to its stdin
//!   and kills it when the wall-clock budget runs out;
//! - the worker builds an engine with the same compilation settings as the
//!   host's (`engine::compilation_config`), precompiles the
//!   component and writes the serialized artifact to its stdout;
//! - the parent deserializes the artifact; only then does it go into the
//!   disk cache (by the caller, which writes it atomically).
//!
//! A worker stopped by a limit fails that upload alone with
//! [`PluginError::CompileLimit`] naming the limit: `cpu-seconds` (killed by
//! `SIGXCPU`/`SIGKILL` from `RLIMIT_CPU`), `address-space` (an allocation
//! refused under `RLIMIT_AS`: Rust's allocation-failure abort, or wasmtime
//! reporting it could not map memory), `wall-clock` (killed by the parent)
//! or `artifact-size` (the artifact is larger than the parent reads back).
//!
//! **Which executable is the worker.** The worker must exist for every
//! binary that embeds the runtime (`ml-connector`, test binaries, benches),
//! and a test binary's `main` is libtest's, so "the same binary re-executed
//! with a worker flag" cannot cover all of them. The runtime therefore
//! looks, in order, for:
//!
//! 1. the program in [`crate::CompileMode::Worker`], when configured;
//! 2. `ML_CONNECTOR_PLUGIN_COMPILE_WORKER` (a path), when set and not empty;
//! 3. the current executable, when its `main` called [`serve_if_worker`]
//!    first (`ml-connector` does): it is re-executed with
//!    `ML_CONNECTOR_PLUGIN_COMPILE_WORKER_MODE=1`;
//! 4. `mlc-plugin-compile` (this crate's `[[bin]]`, which only calls
//!    [`worker_main`]) next to the current executable, or one directory up
//!    (test binaries live in `target/<profile>/deps`).
//!
//! None found is a [`PluginError::CompileWorker`] error saying where it
//! looked: the runtime never falls back to compiling in process unless
//! [`crate::CompileMode::InProcess`] is configured.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{PluginError, PluginRef};
use crate::limits::CompileLimits;

/// The environment variable naming the worker executable.
pub const WORKER_PATH_ENV: &str = "ML_CONNECTOR_PLUGIN_COMPILE_WORKER";

/// The environment variable that makes an executable which called
/// [`serve_if_worker`] act as a compile worker.
pub const WORKER_MODE_ENV: &str = "ML_CONNECTOR_PLUGIN_COMPILE_WORKER_MODE";

/// The dedicated worker executable's name.
pub const WORKER_BIN: &str = "mlc-plugin-compile";

/// Exit status of a worker whose component does not compile (the message
/// is on stderr).
const EXIT_COMPILE_ERROR: i32 = 3;
/// Exit status of a worker given unusable arguments or input.
const EXIT_USAGE: i32 = 2;

/// Most bytes of the worker's stderr kept (its tail).
const STDERR_KEEP: usize = 4096;

/// Whether this executable called [`serve_if_worker`] and so can be its
/// own worker.
static SELF_WORKER: AtomicBool = AtomicBool::new(false);

/// Call first thing in `main` of an executable that embeds the runtime:
/// when started as a compile worker (`ML_CONNECTOR_PLUGIN_COMPILE_WORKER_MODE=1`)
/// it compiles and exits; otherwise it returns at once and marks this
/// executable as able to serve as its own worker.
pub fn serve_if_worker() {
    if std::env::var_os(WORKER_MODE_ENV).is_some_and(|v| v == "1") {
        std::process::exit(worker_main());
    }
    SELF_WORKER.store(true, Ordering::Relaxed);
}

/// The worker: reads a component from stdin, compiles it with the
/// compilation settings given as arguments (`fuel=0|1`), writes the
/// serialized artifact to stdout. Returns the exit status.
pub fn worker_main() -> i32 {
    let mut fuel = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "fuel=1" => fuel = true,
            "fuel=0" => fuel = false,
            other => {
                eprintln!("{WORKER_BIN}: unknown argument {other:?}");
                return EXIT_USAGE;
            }
        }
    }
    let mut wasm = Vec::new();
    if let Err(error) = std::io::stdin().lock().read_to_end(&mut wasm) {
        eprintln!("{WORKER_BIN}: cannot read the component: {error}");
        return EXIT_USAGE;
    }
    let config = crate::engine::compilation_config(fuel);
    let engine = match wasmtime::Engine::new(&config) {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("{WORKER_BIN}: cannot build the engine: {error:#}");
            return EXIT_USAGE;
        }
    };
    let artifact = match engine.precompile_component(&wasm) {
        Ok(artifact) => artifact,
        Err(error) => {
            eprintln!("{error:#}");
            return EXIT_COMPILE_ERROR;
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(&artifact).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("{WORKER_BIN}: cannot write the artifact: {error}");
            EXIT_USAGE
        }
    }
}

/// Where the worker executable is, or every place looked at.
pub(crate) fn locate(configured: Option<&PathBuf>) -> Result<(PathBuf, bool), String> {
    if let Some(program) = configured {
        return Ok((program.clone(), false));
    }
    if let Some(path) = std::env::var_os(WORKER_PATH_ENV).filter(|p| !p.is_empty()) {
        return Ok((PathBuf::from(path), false));
    }
    let exe = std::env::current_exe().map_err(|e| format!("the current executable: {e}"))?;
    if SELF_WORKER.load(Ordering::Relaxed) {
        return Ok((exe, true));
    }
    let name = format!("{WORKER_BIN}{}", std::env::consts::EXE_SUFFIX);
    let dir = exe.parent();
    let candidates: Vec<PathBuf> = [dir, dir.and_then(|d| d.parent())]
        .into_iter()
        .flatten()
        .map(|d| d.join(&name))
        .collect();
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => Ok((found.clone(), false)),
        None => Err(format!(
            "no compile worker: set {WORKER_PATH_ENV}, call mlc_plugin::serve_if_worker() first in main, or build `{WORKER_BIN}` (cargo build -p mlc-plugin --bin {WORKER_BIN}); looked at {}",
            candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Compiles `wasm` in a worker under `limits`; returns the serialized
/// artifact.
pub(crate) fn compile(
    plugin: &PluginRef,
    wasm: &[u8],
    fuel: bool,
    program: Option<&PathBuf>,
    limits: &CompileLimits,
) -> Result<Vec<u8>, PluginError> {
    let failed = |detail: String| PluginError::CompileWorker {
        plugin: plugin.clone(),
        detail,
    };
    let (program, self_worker) = locate(program).map_err(failed)?;
    let mut command = Command::new(&program);
    command
        .arg(if fuel { "fuel=1" } else { "fuel=0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if self_worker {
        command.env(WORKER_MODE_ENV, "1");
    }
    os::set_limits(&mut command, limits);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| failed(format!("cannot start {}: {e}", program.display())))?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(failed("the worker's pipes were not set up".into()));
    };
    let input = wasm.to_vec();
    // A worker that dies early closes its stdin: the write fails, and the
    // exit status below says why.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    // One byte past the cap tells an artifact over it; the worker then
    // blocks on a full pipe until the wall clock kills it, or ends.
    let cap = limits.max_artifact;
    let over_cap = std::sync::Arc::new(AtomicBool::new(false));
    let reader = {
        let over_cap = over_cap.clone();
        std::thread::spawn(move || {
            let mut artifact = Vec::new();
            let read = (&mut stdout)
                .take(cap as u64 + 1)
                .read_to_end(&mut artifact);
            if artifact.len() > cap {
                over_cap.store(true, Ordering::Relaxed);
            }
            read.map(|_| artifact)
        })
    };
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        let tail = text.len().saturating_sub(STDERR_KEEP);
        String::from_utf8_lossy(&text[tail..]).trim().to_owned()
    });
    let deadline = started + limits.wall_clock;
    let (status, killed) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (status, false),
            // The reader stopped one byte past the cap: no need to wait
            // for the worker any longer.
            Ok(None) if over_cap.load(Ordering::Relaxed) => {
                let _ = child.kill();
                break (
                    child
                        .wait()
                        .map_err(|e| failed(format!("waiting for the worker: {e}")))?,
                    false,
                );
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                break (
                    child
                        .wait()
                        .map_err(|e| failed(format!("waiting for the worker: {e}")))?,
                    true,
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!("waiting for the worker: {e}")));
            }
        }
    };
    let _ = writer.join();
    let artifact = reader.join();
    let stderr = errors.join().unwrap_or_default();
    tracing::debug!(
        plugin = %plugin,
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        %status,
        "compile worker finished"
    );
    let limit = |limit: &'static str, limit_value: String| PluginError::CompileLimit {
        plugin: plugin.clone(),
        limit,
        limit_value,
        detail: (!stderr.is_empty()).then(|| stderr.clone()),
    };
    if killed {
        return Err(limit("wall-clock", format!("{:?}", limits.wall_clock)));
    }
    if let Ok(Ok(bytes)) = &artifact
        && bytes.len() > limits.max_artifact
    {
        return Err(limit(
            "artifact-size",
            format!("{} bytes", limits.max_artifact),
        ));
    }
    if status.success() {
        return match artifact {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => Err(failed(format!("reading the artifact: {e}"))),
            Err(_) => Err(failed("the artifact reader panicked".into())),
        };
    }
    if status.code() == Some(EXIT_COMPILE_ERROR) {
        return Err(PluginError::Compile {
            plugin: plugin.clone(),
            source: stderr.into(),
        });
    }
    match classify(&status, &stderr, started.elapsed(), limits.cpu_seconds) {
        Some("cpu-seconds") => Err(limit("cpu-seconds", format!("{} s", limits.cpu_seconds))),
        Some("address-space") => Err(limit(
            "address-space",
            format!("{} bytes", limits.address_space),
        )),
        _ => Err(failed(format!(
            "it ended with {status}{}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        ))),
    }
}

/// Which limit, if any, ended a worker that failed after `elapsed`.
/// `SIGKILL` is `RLIMIT_CPU`'s hard limit only if the worker can have used
/// that much CPU by then (its threads on every core); otherwise something
/// else killed it (the OOM killer) and no limit is named.
fn classify(
    status: &ExitStatus,
    stderr: &str,
    elapsed: Duration,
    cpu_seconds: u64,
) -> Option<&'static str> {
    let out_of_memory = stderr.contains("memory allocation of")
        || stderr.contains("Cannot allocate memory")
        || stderr.contains("out of memory")
        || stderr.contains("failed to mmap")
        || stderr.contains("failed to allocate");
    if out_of_memory {
        return Some("address-space");
    }
    match os::signal(status) {
        Some(signal) if signal == os::SIGXCPU => Some("cpu-seconds"),
        Some(signal) if signal == os::SIGKILL => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let possible = elapsed.as_secs_f64() * cores as f64;
            (possible >= cpu_seconds as f64).then_some("cpu-seconds")
        }
        // Rust aborts when an allocation fails, sometimes before it can
        // print why.
        Some(signal) if signal == os::SIGABRT => Some("address-space"),
        _ => None,
    }
}

#[cfg(unix)]
mod os {
    //! The worker's OS limits on Unix.

    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, ExitStatus};

    use crate::limits::CompileLimits;

    pub const SIGXCPU: i32 = libc::SIGXCPU;
    pub const SIGKILL: i32 = libc::SIGKILL;
    pub const SIGABRT: i32 = libc::SIGABRT;

    /// Sets `RLIMIT_CPU`, `RLIMIT_AS` and `RLIMIT_CORE` in the child
    /// between fork and exec.
    #[allow(unsafe_code)]
    pub fn set_limits(command: &mut Command, limits: &CompileLimits) {
        let cpu = limits.cpu_seconds.max(1);
        let address_space = limits.address_space;
        let set = move || -> std::io::Result<()> {
            set_rlimit(libc::RLIMIT_CPU, cpu, cpu.saturating_add(1))?;
            set_rlimit(libc::RLIMIT_AS, address_space, address_space)?;
            set_rlimit(libc::RLIMIT_CORE, 0, 0)
        };
        // SAFETY: the closure runs in the forked child before exec; it
        // only calls `setrlimit`, which is async-signal-safe, and touches
        // no lock or allocation (the values are copied in).
        unsafe {
            command.pre_exec(set);
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    type Resource = libc::__rlimit_resource_t;
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    type Resource = libc::c_int;

    #[allow(unsafe_code)]
    fn set_rlimit(resource: Resource, soft: u64, hard: u64) -> std::io::Result<()> {
        let limit = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: `limit` is a valid `rlimit` for the duration of the call.
        if unsafe { libc::setrlimit(resource, &limit) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// The signal that ended a process, if one did.
    pub fn signal(status: &ExitStatus) -> Option<i32> {
        status.signal()
    }
}

#[cfg(not(unix))]
mod os {
    //! No OS limits off Unix: the wall clock still holds.

    use std::process::{Command, ExitStatus};

    use crate::limits::CompileLimits;

    pub const SIGXCPU: i32 = -1;
    pub const SIGKILL: i32 = -2;
    pub const SIGABRT: i32 = -3;

    pub fn set_limits(_command: &mut Command, _limits: &CompileLimits) {}

    pub fn signal(_status: &ExitStatus) -> Option<i32> {
        None
    }
}
