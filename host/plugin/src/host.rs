//! Per-call store state and the host side of the plugin's imports.
//!
//! A [`HostState`] is built for every batch call, before instantiation, and
//! dropped with its `Store`. It holds the tenant the batch belongs to and a
//! read-only reference-data handle: `lookup` always passes that tenant, so a
//! guest can only ever see its own tenant's data. `log` goes to `tracing`
//! tagged with tenant, plugin and version. WASI is an empty context: no
//! environment, arguments, preopened directories or sockets; stdin is empty
//! and stdout/stderr are captured (bounded) and logged after the call, and
//! stderr's tail explains a trap (a Rust guest's panic message).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{host, types};
use crate::error::PluginRef;
use crate::limits::MemoryLimiter;
use crate::reference::{LookupError, ReferenceData};

/// Bytes of stdout and of stderr kept per call; the rest is counted and
/// dropped (the guest never sees an error for it).
pub(crate) const CAPTURE_BYTES: usize = 16 * 1024;
/// Log lines a single call may emit through `log`; later ones are counted.
pub(crate) const MAX_LOG_LINES: usize = 1000;
/// Longest log message kept, bytes.
pub(crate) const MAX_LOG_MESSAGE: usize = 4096;
/// Longest dataset name or key a lookup accepts, bytes.
pub(crate) const MAX_LOOKUP_ARG: usize = 4096;

/// The data of one call's `Store`.
pub(crate) struct HostState {
    identity: PluginRef,
    reference: Arc<dyn ReferenceData>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    stdout: Capture,
    stderr: Capture,
    log_lines: usize,
    logs_dropped: usize,
}

impl HostState {
    /// State for one call of `identity`, with a memory cap of `memory` bytes.
    pub fn new(identity: PluginRef, reference: Arc<dyn ReferenceData>, memory: usize) -> Self {
        let stdout = Capture::new(CAPTURE_BYTES);
        let stderr = Capture::new(CAPTURE_BYTES);
        // The builder's defaults grant nothing: no env, args, preopens;
        // sockets are denied (wasmtime-wasi 48); stdin is empty.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        Self {
            identity,
            reference,
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory),
            stdout,
            stderr,
            log_lines: 0,
            logs_dropped: 0,
        }
    }

    /// The last lines the guest wrote to stderr (up to ~1 KiB), if any.
    pub fn stderr_tail(&self) -> Option<String> {
        let text = self.stderr.text();
        let text = text.trim_end();
        if text.is_empty() {
            return None;
        }
        let mut start = text.len().saturating_sub(1024);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        let tail = &text[start..];
        let tail = match tail.find('\n') {
            Some(i) if start > 0 => &tail[i + 1..],
            _ => tail,
        };
        Some(tail.replace('\n', " | "))
    }

    /// Writes what the guest printed (and how much logging was dropped) to
    /// `tracing`. Called once after each call.
    pub fn flush_output(&self) {
        let PluginRef {
            tenant,
            plugin,
            version,
        } = &self.identity;
        for (stream, capture) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let text = capture.text();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::info!(tenant = %tenant, plugin = %plugin, version = %version, stream, "{line}");
            }
            let dropped = capture.dropped();
            if dropped > 0 {
                tracing::warn!(tenant = %tenant, plugin = %plugin, version = %version, stream, dropped_bytes = dropped, "plugin output beyond {CAPTURE_BYTES} bytes dropped");
            }
        }
        if self.logs_dropped > 0 {
            tracing::warn!(tenant = %tenant, plugin = %plugin, version = %version, dropped_lines = self.logs_dropped, "plugin log lines beyond {MAX_LOG_LINES} per call dropped");
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn lookup(
        &mut self,
        dataset: String,
        key: String,
    ) -> Result<Option<String>, host::LookupError> {
        if dataset.len() > MAX_LOOKUP_ARG || key.len() > MAX_LOOKUP_ARG {
            return Err(host::LookupError::Unavailable(format!(
                "dataset names and keys are limited to {MAX_LOOKUP_ARG} bytes"
            )));
        }
        match self.reference.lookup(&self.identity.tenant, &dataset, &key) {
            Ok(found) => Ok(found),
            Err(LookupError::UnknownDataset(name)) => Err(host::LookupError::UnknownDataset(name)),
            Err(LookupError::Unavailable(why)) => {
                tracing::warn!(tenant = %self.identity.tenant, plugin = %self.identity.plugin, dataset = %dataset, reason = %why, "reference data unavailable");
                Err(host::LookupError::Unavailable(why))
            }
        }
    }

    fn log(&mut self, level: types::Level, message: String) {
        if self.log_lines >= MAX_LOG_LINES {
            self.logs_dropped += 1;
            return;
        }
        self.log_lines += 1;
        let mut end = message.len().min(MAX_LOG_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let message = &message[..end];
        let PluginRef {
            tenant,
            plugin,
            version,
        } = &self.identity;
        match level {
            types::Level::Trace => {
                tracing::trace!(tenant = %tenant, plugin = %plugin, version = %version, "{message}")
            }
            types::Level::Debug => {
                tracing::debug!(tenant = %tenant, plugin = %plugin, version = %version, "{message}")
            }
            types::Level::Info => {
                tracing::info!(tenant = %tenant, plugin = %plugin, version = %version, "{message}")
            }
            types::Level::Warn => {
                tracing::warn!(tenant = %tenant, plugin = %plugin, version = %version, "{message}")
            }
            types::Level::Error => {
                tracing::error!(tenant = %tenant, plugin = %plugin, version = %version, "{message}")
            }
        }
    }
}

/// A bounded in-memory sink for the guest's stdout or stderr: keeps the
/// first `capacity` bytes, counts and drops the rest, and is always ready,
/// so a chatty guest never fails because of its output.
#[derive(Clone, Debug)]
pub(crate) struct Capture {
    buffer: Arc<Mutex<Vec<u8>>>,
    capacity: usize,
    dropped: Arc<AtomicUsize>,
}

impl Capture {
    fn new(capacity: usize) -> Self {
        Self {
            buffer: Arc::new(Mutex::new(Vec::new())),
            capacity,
            dropped: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let room = self.capacity.saturating_sub(buffer.len());
        let kept = bytes.len().min(room);
        buffer.extend_from_slice(&bytes[..kept]);
        if kept < bytes.len() {
            self.dropped
                .fetch_add(bytes.len() - kept, Ordering::Relaxed);
        }
    }

    fn text(&self) -> String {
        let buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buffer).into_owned()
    }

    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Largest write the guest is told it may make at once.
const WRITE_PERMIT: usize = 64 * 1024;

impl OutputStream for Capture {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::host::Host as _;
    use crate::error::VersionId;
    use crate::reference::JsonDirReference;

    fn state(tenant: &str) -> HostState {
        let mut reference = JsonDirReference::default();
        reference
            .insert_tenant(
                "acme",
                "cost-centers",
                r#"{"110": {"Description": "Acme Sales"}}"#,
            )
            .unwrap();
        reference
            .insert_tenant(
                "globex",
                "cost-centers",
                r#"{"110": {"Description": "Globex R&D"}}"#,
            )
            .unwrap();
        HostState::new(
            PluginRef {
                tenant: tenant.into(),
                plugin: "gl".into(),
                version: VersionId::from_hex("00ff00ff00ff00ff"),
            },
            Arc::new(reference),
            1 << 20,
        )
    }

    #[test]
    fn lookup_is_scoped_to_the_calls_tenant() {
        let mut acme = state("acme");
        let mut globex = state("globex");
        assert_eq!(
            acme.lookup("cost-centers".into(), "110".into())
                .unwrap()
                .as_deref(),
            Some(r#"{"Description": "Acme Sales"}"#)
        );
        assert_eq!(
            globex
                .lookup("cost-centers".into(), "110".into())
                .unwrap()
                .as_deref(),
            Some(r#"{"Description": "Globex R&D"}"#)
        );
        assert_eq!(
            acme.lookup("cost-centers".into(), "999".into()).unwrap(),
            None
        );
        assert!(matches!(
            acme.lookup("suppliers".into(), "1".into()),
            Err(host::LookupError::UnknownDataset(d)) if d == "suppliers"
        ));
        assert!(matches!(
            acme.lookup("cost-centers".into(), "x".repeat(MAX_LOOKUP_ARG + 1)),
            Err(host::LookupError::Unavailable(_))
        ));
    }

    #[test]
    fn log_lines_are_capped_per_call() {
        let mut s = state("acme");
        for i in 0..MAX_LOG_LINES + 5 {
            s.log(types::Level::Debug, format!("line {i}"));
        }
        s.log(types::Level::Info, "é".repeat(MAX_LOG_MESSAGE));
        assert_eq!(s.log_lines, MAX_LOG_LINES);
        assert_eq!(s.logs_dropped, 6);
    }

    #[test]
    fn capture_keeps_a_bounded_prefix_and_a_readable_tail() {
        let s = state("acme");
        let mut stderr = s.stderr.clone();
        stderr
            .write(bytes::Bytes::from_static(
                b"first\npanicked at src/lib.rs:1:1:\nboom\n",
            ))
            .unwrap();
        assert_eq!(
            s.stderr_tail().as_deref(),
            Some("first | panicked at src/lib.rs:1:1: | boom")
        );
        stderr
            .write(bytes::Bytes::from(vec![b'x'; CAPTURE_BYTES]))
            .unwrap();
        assert_eq!(s.stderr.text().len(), CAPTURE_BYTES);
        assert_eq!(s.stderr.dropped(), 39);
        assert_eq!(stderr.check_write().unwrap(), WRITE_PERMIT);
        assert_eq!(state("acme").stderr_tail(), None);
    }
}
