//! Errors of the sandbox's own API (starting, serving, run-time controls).
//! HTTP error answers to clients are built in `server`, not here.

use std::net::SocketAddr;

/// Why the sandbox could not start, serve, or apply a control.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listen address could not be bound.
    #[error("oracle sandbox: cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("oracle sandbox: server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// Writing the start line to stdout failed.
    #[error("oracle sandbox: cannot write the start line: {0}")]
    Stdout(#[source] std::io::Error),
    /// Installing the SIGINT/SIGTERM handler failed.
    #[error("oracle sandbox: cannot wait for signals: {0}")]
    Signal(#[source] std::io::Error),
    /// No resource of that name.
    #[error("oracle sandbox: unknown resource {0:?}")]
    UnknownResource(String),
    /// The resource takes no live changes (lists of values, value sets).
    #[error("oracle sandbox: resource {0} is read-only")]
    ReadOnly(String),
    /// No live record with that key.
    #[error("oracle sandbox: resource {resource} has no record with key {key}")]
    UnknownKey {
        /// Resource name.
        resource: String,
        /// Key asked for.
        key: i64,
    },
    /// The resource's key is not an integer (value sets).
    #[error("oracle sandbox: resource {0} is not keyed by an integer")]
    NotIntegerKeyed(String),
}
