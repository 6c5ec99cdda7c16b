//! The `hyperd` process: finding the binary, starting it on loopback with its
//! own log directory, health-checking it, restarting it when it dies, and
//! stopping it.
//!
//! `hyperd` ships inside Tableau's `tableauhyperapi` Python package. It
//! speaks the PostgreSQL wire protocol, so [`Hyperd::connect`] hands out
//! plain `tokio_postgres` clients. One [`Hyperd`] is meant to be shared
//! (behind an `Arc`) by everything in a process that writes `.hyper` files:
//! a file attached by one hyperd is locked against every other.
//!
//! hyperd is started with `--listen-connection tab.tcp://127.0.0.1:auto`
//! and a `--callback-connection` to a loopback port of ours: it picks a free
//! port itself and reports it over that connection (no window in which
//! another process can take the port), and it shuts itself down when the
//! connection closes, so it never outlives this process, even one killed
//! with SIGKILL.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use crate::error::HyperError;

/// Environment variable naming the `hyperd` binary.
pub const HYPERD_ENV: &str = "ML_CONNECTOR_HYPERD";
/// Environment variable naming a Python interpreter that has `tableauhyperapi`.
pub const PYTHON_ENV: &str = "ML_CONNECTOR_PYTHON";
/// The role hyperd is started with; every connection logs in as it.
pub const HYPER_USER: &str = "tableau_internal_user";

/// How long [`Hyperd::shutdown`] waits after SIGTERM before killing.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a failed connection waits for a dying hyperd's exit to show.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// Pause between health-check attempts while hyperd starts.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Start attempts when hyperd exits at once (e.g. its old port is taken
/// after a restart).
const START_ATTEMPTS: u32 = 3;

/// Python snippet printing the directory of the installed `tableauhyperapi`
/// package without importing it (importing loads its native library).
const FIND_PACKAGE: &str = "import importlib.util as u\n\
s = u.find_spec('tableauhyperapi')\n\
print(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')";

/// Finds the `hyperd` binary.
///
/// Order: `explicit` (the `--hyperd` flag), then the `ML_CONNECTOR_HYPERD`
/// environment variable, then the `tableauhyperapi` Python package as seen
/// by the interpreter in `ML_CONNECTOR_PYTHON`, by `.venv/bin/python` in the
/// current directory or any parent (the workspace), and by `python3`. The
/// binary sits at `<package>/bin/hyper/hyperd`.
///
/// An explicit path or variable that names no file is an error, not a
/// reason to look elsewhere. When nothing is found the error lists what was
/// tried and the install command.
pub fn locate_hyperd(explicit: Option<&Path>) -> Result<PathBuf, HyperError> {
    let mut pythons = Vec::new();
    if let Some(p) = std::env::var_os(PYTHON_ENV).filter(|p| !p.is_empty()) {
        pythons.push(PathBuf::from(p));
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            let candidate = dir.join(".venv/bin/python");
            if candidate.is_file() {
                pythons.push(candidate);
                break;
            }
        }
    }
    pythons.push(PathBuf::from("python3"));
    locate_in(explicit, std::env::var_os(HYPERD_ENV), &pythons)
}

/// [`locate_hyperd`] with its inputs spelled out (tested without touching
/// the process environment).
fn locate_in(
    explicit: Option<&Path>,
    env_value: Option<OsString>,
    pythons: &[PathBuf],
) -> Result<PathBuf, HyperError> {
    if let Some(path) = explicit {
        return existing_file(path).ok_or_else(|| HyperError::HyperdNotFound {
            tried: format!("--hyperd {}: no such file", path.display()),
            given: Some(path.to_path_buf()),
        });
    }
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return existing_file(&path).ok_or_else(|| HyperError::HyperdNotFound {
            tried: format!("{HYPERD_ENV}={}: no such file", path.display()),
            given: Some(path.clone()),
        });
    }
    let mut tried = vec![format!("--hyperd not given, {HYPERD_ENV} not set")];
    for python in pythons {
        match package_dir(python) {
            Ok(dir) => {
                let binary = dir.join("bin").join("hyper").join("hyperd");
                if let Some(found) = existing_file(&binary) {
                    tracing::debug!(python = %python.display(), hyperd = %found.display(), "found hyperd");
                    return Ok(found);
                }
                tried.push(format!(
                    "{}: tableauhyperapi at {} has no {}",
                    python.display(),
                    dir.display(),
                    binary.display()
                ));
            }
            Err(why) => tried.push(format!("{}: {why}", python.display())),
        }
    }
    Err(HyperError::HyperdNotFound {
        tried: tried.join("; "),
        given: None,
    })
}

fn existing_file(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
    } else {
        None
    }
}

/// Asks `python` where `tableauhyperapi` is installed.
fn package_dir(python: &Path) -> Result<PathBuf, String> {
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(FIND_PACKAGE)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ({e})"))?;
    if !output.status.success() {
        return Err(format!("failed ({})", output.status));
    }
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if text.is_empty() {
        return Err("tableauhyperapi is not installed".into());
    }
    Ok(PathBuf::from(text))
}

/// How to run `hyperd`.
#[derive(Clone, Debug)]
pub struct HyperdConfig {
    /// The binary; `None` finds it with [`locate_hyperd`].
    pub binary: Option<PathBuf>,
    /// Directory for hyperd's logs (`hyperd.log`, `hyperd.stdout.log`) and
    /// its working directory. Created when missing.
    pub log_dir: PathBuf,
    /// How long a start may take until `SELECT 1` answers.
    pub start_timeout: Duration,
    /// Whether [`Hyperd::connect`] restarts a hyperd that has exited.
    pub restart: bool,
}

impl Default for HyperdConfig {
    fn default() -> Self {
        Self {
            binary: None,
            log_dir: std::env::temp_dir()
                .join(format!("ml-connector-hyperd-{}", std::process::id())),
            start_timeout: Duration::from_secs(30),
            restart: true,
        }
    }
}

/// The supervised child and where it listens.
struct Running {
    child: Option<Child>,
    /// hyperd's callback connection: hyperd shuts itself down when it
    /// closes, so even if this process dies without running `Drop`, the
    /// kernel closes the socket and hyperd does not outlive it.
    callback: Option<TcpStream>,
    endpoint: SocketAddr,
    stopped: bool,
}

/// A running `hyperd`, restarted on the next [`connect`](Self::connect)
/// after it dies, stopped by [`shutdown`](Self::shutdown) or on drop.
pub struct Hyperd {
    binary: PathBuf,
    config: HyperdConfig,
    state: Mutex<Running>,
    endpoint: StdMutex<SocketAddr>,
    restarts: AtomicU32,
}

impl std::fmt::Debug for Hyperd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hyperd")
            .field("binary", &self.binary)
            .field("endpoint", &self.endpoint())
            .field("log_dir", &self.config.log_dir)
            .finish()
    }
}

impl Hyperd {
    /// Finds the binary (unless given), starts hyperd on a free loopback
    /// port with its logs in `config.log_dir`, and waits until it answers
    /// `SELECT 1` (up to `config.start_timeout`). A failure names the log
    /// directory to look in.
    pub async fn start(config: HyperdConfig) -> Result<Self, HyperError> {
        let explicit = config.binary.clone();
        let binary = tokio::task::spawn_blocking(move || locate_hyperd(explicit.as_deref()))
            .await
            .map_err(|e| HyperError::io("locating hyperd", std::io::Error::other(e)))??;
        std::fs::create_dir_all(&config.log_dir).map_err(|e| {
            HyperError::io(
                format!("creating hyperd log dir {}", config.log_dir.display()),
                e,
            )
        })?;
        let log_dir = std::path::absolute(&config.log_dir)
            .map_err(|e| HyperError::io(format!("resolving {}", config.log_dir.display()), e))?;
        let config = HyperdConfig { log_dir, ..config };
        let (child, callback, endpoint) = launch(&binary, &config, None).await?;
        Ok(Self {
            binary,
            state: Mutex::new(Running {
                child: Some(child),
                callback: Some(callback),
                endpoint,
                stopped: false,
            }),
            endpoint: StdMutex::new(endpoint),
            config,
            restarts: AtomicU32::new(0),
        })
    }

    /// Where hyperd listens now (the port may change after a restart).
    pub fn endpoint(&self) -> SocketAddr {
        *self
            .endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// hyperd's log directory (absolute).
    pub fn log_dir(&self) -> &Path {
        &self.config.log_dir
    }

    /// How many times hyperd was restarted after dying.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The process id of the current hyperd, if it runs.
    pub async fn pid(&self) -> Option<u32> {
        self.state.lock().await.child.as_ref().and_then(Child::id)
    }

    /// A new connection, restarting hyperd first when it has exited. The
    /// connection's driver task is spawned on the current runtime and ends
    /// when the client is dropped.
    pub async fn connect(&self) -> Result<Client, HyperError> {
        let endpoint = self.ensure_running().await?;
        match connect_to(endpoint).await {
            Ok(client) => Ok(client),
            Err(source) => {
                // A hyperd that was just killed refuses or resets connections
                // a moment before its exit can be collected: give the exit
                // time to show, then restart and try once more (or, with
                // restarts off, report the exit).
                if self.exited_within(EXIT_GRACE).await? {
                    let endpoint = self.ensure_running().await?;
                    connect_to(endpoint)
                        .await
                        .map_err(|source| HyperError::Connect { endpoint, source })
                } else {
                    Err(HyperError::Connect { endpoint, source })
                }
            }
        }
    }

    /// Whether the child exits within `grace` (polling `try_wait`).
    async fn exited_within(&self, grace: Duration) -> Result<bool, HyperError> {
        let deadline = Instant::now() + grace;
        loop {
            {
                let mut state = self.state.lock().await;
                let Some(child) = state.child.as_mut() else {
                    return Ok(true);
                };
                if child
                    .try_wait()
                    .map_err(|e| HyperError::io("checking hyperd", e))?
                    .is_some()
                {
                    return Ok(true);
                }
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Checks the child; when it has exited (and restarts are on), starts a
    /// new one, preferring the same port.
    async fn ensure_running(&self) -> Result<SocketAddr, HyperError> {
        let mut state = self.state.lock().await;
        if state.stopped {
            return Err(HyperError::Stopped);
        }
        let exit = match state.child.as_mut() {
            Some(child) => child
                .try_wait()
                .map_err(|e| HyperError::io("checking hyperd", e))?
                .map(|status| status.to_string()),
            None => Some("not running".to_owned()),
        };
        let Some(status) = exit else {
            return Ok(state.endpoint);
        };
        tracing::warn!(
            endpoint = %state.endpoint,
            status = %status,
            log_dir = %self.config.log_dir.display(),
            restart = self.config.restart,
            "hyperd exited"
        );
        state.child = None;
        state.callback = None;
        if !self.config.restart {
            return Err(HyperError::Exited {
                binary: self.binary.clone(),
                status,
                log_dir: self.config.log_dir.clone(),
            });
        }
        let (child, callback, endpoint) =
            launch(&self.binary, &self.config, Some(state.endpoint.port())).await?;
        state.child = Some(child);
        state.callback = Some(callback);
        state.endpoint = endpoint;
        *self
            .endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = endpoint;
        let restarts = self.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(%endpoint, restarts, "hyperd restarted");
        Ok(endpoint)
    }

    /// Stops hyperd: SIGTERM, up to 10 s for it to exit, then SIGKILL.
    /// Later [`connect`](Self::connect) calls fail with
    /// [`HyperError::Stopped`].
    pub async fn shutdown(&self) -> Result<(), HyperError> {
        let mut state = self.state.lock().await;
        state.stopped = true;
        let callback = state.callback.take();
        if let Some(child) = state.child.take() {
            terminate(child).await?;
            tracing::info!(endpoint = %state.endpoint, "hyperd stopped");
        }
        drop(callback);
        Ok(())
    }
}

impl Drop for Hyperd {
    /// Closes the callback connection and sends SIGTERM (either makes
    /// hyperd shut down cleanly), then leaves a task on the runtime that
    /// kills hyperd if it has not exited after the grace period. The child
    /// is spawned with `kill_on_drop`, so if that task never runs (runtime
    /// gone) the process is killed rather than leaked.
    fn drop(&mut self) {
        let state = self.state.get_mut();
        state.callback = None;
        let Some(mut child) = state.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        send_sigterm(&child);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if tokio::time::timeout(STOP_GRACE, child.wait())
                        .await
                        .is_err()
                    {
                        let _ = child.kill().await;
                    }
                });
            }
            Err(_) => {
                let _ = child.start_kill();
            }
        }
    }
}

/// SIGTERM, wait, SIGKILL.
async fn terminate(mut child: Child) -> Result<(), HyperError> {
    if child
        .try_wait()
        .map_err(|e| HyperError::io("checking hyperd", e))?
        .is_some()
    {
        return Ok(());
    }
    send_sigterm(&child);
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(result) => result
            .map(|_| ())
            .map_err(|e| HyperError::io("waiting for hyperd to exit", e)),
        Err(_) => {
            tracing::warn!("hyperd ignored SIGTERM; killing it");
            child
                .kill()
                .await
                .map_err(|e| HyperError::io("killing hyperd", e))
        }
    }
}

fn send_sigterm(child: &Child) {
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid
        && let Err(error) = rustix::process::kill_process(pid, rustix::process::Signal::TERM)
    {
        tracing::debug!(%error, "SIGTERM to hyperd failed");
    }
}

/// Starts hyperd and waits until it answers. hyperd listens on
/// `preferred_port` when given (a restart keeps its address), else on a
/// port it picks itself and reports over the callback connection. A start
/// that exits at once is retried on a port of hyperd's choosing.
async fn launch(
    binary: &Path,
    config: &HyperdConfig,
    preferred_port: Option<u16>,
) -> Result<(Child, TcpStream, SocketAddr), HyperError> {
    let mut last = None;
    for attempt in 0..START_ATTEMPTS {
        let listen_port = match (attempt, preferred_port) {
            (0, Some(port)) => port.to_string(),
            _ => "auto".to_owned(),
        };
        let callback = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| HyperError::io("opening hyperd's callback port", e))?;
        let callback_addr = callback
            .local_addr()
            .map_err(|e| HyperError::io("opening hyperd's callback port", e))?;
        let mut child = spawn(binary, &config.log_dir, &listen_port, callback_addr)?;
        match wait_ready(&mut child, callback, binary, config).await {
            Ok((stream, endpoint)) => {
                tracing::info!(
                    %endpoint,
                    pid = child.id(),
                    log_dir = %config.log_dir.display(),
                    "hyperd started"
                );
                return Ok((child, stream, endpoint));
            }
            Err(error @ HyperError::StartExited { .. }) => {
                tracing::debug!(%error, attempt, "hyperd exited at start; trying again");
                last = Some(error);
            }
            Err(error) => {
                let _ = terminate(child).await;
                return Err(error);
            }
        }
    }
    Err(last.unwrap_or(HyperError::Stopped))
}

fn spawn(
    binary: &Path,
    log_dir: &Path,
    listen_port: &str,
    callback: SocketAddr,
) -> Result<Child, HyperError> {
    let spawn_err = |source| HyperError::Spawn {
        binary: binary.to_path_buf(),
        log_dir: log_dir.to_path_buf(),
        source,
    };
    let out_path = log_dir.join("hyperd.stdout.log");
    let stdout = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .map_err(spawn_err)?;
    let stderr = stdout.try_clone().map_err(spawn_err)?;
    let mut command = Command::new(binary);
    command
        .arg("run")
        .arg(format!("--init-user={HYPER_USER}"))
        .arg("--skip-license")
        .arg("--no-password")
        .arg("--log-dir")
        .arg(log_dir)
        .arg("--listen-connection")
        .arg(format!("tab.tcp://127.0.0.1:{listen_port}"))
        .arg("--callback-connection")
        .arg(format!("tab.tcp://{callback}"))
        .current_dir(log_dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true);
    command.spawn().map_err(spawn_err)
}

/// Waits for hyperd's callback (which names the address it listens on),
/// then polls until `SELECT 1` answers; fails when the child exits or the
/// deadline passes.
async fn wait_ready(
    child: &mut Child,
    callback: TcpListener,
    binary: &Path,
    config: &HyperdConfig,
) -> Result<(TcpStream, SocketAddr), HyperError> {
    let started = Instant::now();
    let deadline = started + config.start_timeout;
    let mut last_error = String::from("no callback from hyperd yet");
    let mut stream: Option<TcpStream> = None;
    let mut received = Vec::new();
    let mut endpoint: Option<SocketAddr> = None;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| HyperError::io("checking hyperd", e))?
        {
            return Err(HyperError::StartExited {
                binary: binary.to_path_buf(),
                status: status.to_string(),
                log_dir: config.log_dir.clone(),
            });
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(HyperError::StartTimeout {
                endpoint: endpoint
                    .unwrap_or_else(|| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))),
                waited: started.elapsed(),
                last_error,
                log_dir: config.log_dir.clone(),
            });
        }
        let slice = remaining.min(Duration::from_millis(100));
        match (&mut stream, endpoint) {
            (None, _) => {
                if let Ok(accepted) = tokio::time::timeout(slice, callback.accept()).await {
                    let (s, _) =
                        accepted.map_err(|e| HyperError::io("accepting hyperd's callback", e))?;
                    stream = Some(s);
                    last_error = "hyperd has not reported its address yet".into();
                }
            }
            (Some(s), None) => {
                let mut chunk = [0u8; 256];
                match tokio::time::timeout(slice, s.read(&mut chunk)).await {
                    Ok(Ok(0)) => {
                        last_error = "hyperd closed its callback connection".into();
                        tokio::time::sleep(POLL_INTERVAL).await;
                    }
                    Ok(Ok(n)) => {
                        received.extend_from_slice(&chunk[..n]);
                        endpoint = parse_callback(&received);
                        if endpoint.is_none() && received.len() > 4096 {
                            last_error = format!(
                                "unexpected callback message {:?}",
                                String::from_utf8_lossy(&received[..64])
                            );
                        }
                    }
                    Ok(Err(e)) => last_error = format!("reading hyperd's callback: {e}"),
                    Err(_) => {}
                }
            }
            (Some(_), Some(at)) => match tokio::time::timeout(slice, probe(at)).await {
                Ok(Ok(())) => {
                    let stream = stream.take().ok_or(HyperError::Stopped)?;
                    return Ok((stream, at));
                }
                Ok(Err(error)) => {
                    last_error = error.to_string();
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(_) => last_error = "health check timed out".into(),
            },
        }
    }
}

/// The address in hyperd's callback message: a length byte, then
/// `tab.tcp://HOST:PORT` and a NUL. `None` until the NUL has arrived.
fn parse_callback(received: &[u8]) -> Option<SocketAddr> {
    const PREFIX: &[u8] = b"tab.tcp://";
    let start = received.windows(PREFIX.len()).position(|w| w == PREFIX)? + PREFIX.len();
    let rest = received.get(start..)?;
    let end = rest.iter().position(|b| *b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

async fn probe(endpoint: SocketAddr) -> Result<(), tokio_postgres::Error> {
    let client = connect_to(endpoint).await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

/// Opens a connection and spawns its driver task.
async fn connect_to(endpoint: SocketAddr) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host(endpoint.ip().to_string())
        .port(endpoint.port())
        .user(HYPER_USER)
        .connect(NoTls)
        .await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "hyperd connection ended with an error");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_message_names_the_endpoint() {
        let mut msg = vec![0x1a];
        msg.extend_from_slice(b"tab.tcp://127.0.0.1:38455\0");
        assert_eq!(
            parse_callback(&msg),
            Some("127.0.0.1:38455".parse().unwrap())
        );
        assert_eq!(parse_callback(&msg[..10]), None, "incomplete message");
        assert_eq!(parse_callback(b"\x05junk\0"), None);
    }

    #[test]
    fn explicit_path_must_exist() {
        let err = locate_in(Some(Path::new("/nonexistent/hyperd")), None, &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--hyperd /nonexistent/hyperd"), "{text}");
        assert!(text.contains("pip install tableauhyperapi"), "{text}");
        assert!(text.contains("cargo xtask setup"), "{text}");
    }

    #[test]
    fn env_path_must_exist_and_wins_over_python() {
        let err = locate_in(
            None,
            Some(OsString::from("/nonexistent/env-hyperd")),
            &[PathBuf::from("python3")],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("ML_CONNECTOR_HYPERD=/nonexistent/env-hyperd"),
            "{err}"
        );
    }

    #[test]
    fn existing_explicit_file_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("hyperd");
        std::fs::write(&fake, b"").unwrap();
        assert_eq!(locate_in(Some(&fake), None, &[]).unwrap(), fake);
    }

    #[test]
    fn missing_everywhere_lists_what_was_tried() {
        let err = locate_in(None, None, &[PathBuf::from("/nonexistent/python")]).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("hyperd not found"), "{text}");
        assert!(text.contains("/nonexistent/python: cannot run"), "{text}");
        assert!(
            text.contains("python3 -m venv .venv && .venv/bin/pip install tableauhyperapi"),
            "{text}"
        );
    }
}
