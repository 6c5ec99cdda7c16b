//! Sandboxed WebAssembly mapping plugins.
//!
//! A tenant's mapping is a WebAssembly component of the world
//! `ml-connector:mapping/mapping@0.3.0` (`wit/mapping.wit`). This crate
//! loads such components, checks them, and runs each batch in a fresh,
//! bounded sandbox:
//!
//! - [`PluginRuntime`] owns one wasmtime `Engine` and `Linker`; it compiles
//!   components (cached on disk by content hash), validates them (imports,
//!   world, configuration, schemas, an optional sample batch), swaps them in
//!   atomically and keeps every version for [`PluginRuntime::rollback`];
//! - a component not in the cache is compiled out of the host process, by
//!   a short-lived worker ([`compile_worker`], the `mlc-plugin-compile`
//!   binary or an executable that calls [`serve_if_worker`]) under OS
//!   limits ([`CompileLimits`]: CPU seconds, address space, wall clock); a
//!   compile bomb fails its own upload with [`PluginError::CompileLimit`];
//! - before compiling, the upload's size, its sample's size and its
//!   instance shape ([`ShapeLimits`]: tables, memories, globals,
//!   functions, data, core modules and instances) are checked against
//!   [`UploadLimits`];
//! - every batch call gets a new `Store` under the tenant's
//!   [`PluginLimits`] (memory cap, epoch deadline, optional fuel, output
//!   caps); a trap, loop, memory bomb or oversized output fails that batch
//!   with a typed [`PluginError`] naming tenant, plugin, version and cause;
//! - instances come from wasmtime's pooling allocator (slots reserved once,
//!   reused with their first pages kept resident), sized from
//!   [`RuntimeConfig::max_concurrent_calls`]; a call beyond that waits for a
//!   slot ([`PluginRuntime::allocator`] says which allocator is in use);
//! - plugins may import only `lookup` (tenant-scoped [`ReferenceData`]) and
//!   `log`, plus the WASI interfaces Rust's std needs, linked to an empty
//!   context; anything else is refused at load, naming the import;
//! - [`PluginRuntime::watch`] hot-loads `<plugins-dir>/<tenant>/<name>.wasm`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mlc_plugin::PluginError> {
//! use std::sync::Arc;
//! use mlc_plugin::{JsonDirReference, PluginRuntime, RuntimeConfig};
//!
//! let reference = JsonDirReference::open("reference").map_err(|e| mlc_plugin::PluginError::Config(e.to_string()))?;
//! let runtime = PluginRuntime::new(RuntimeConfig {
//!     cache_dir: Some(".mlc/cache".into()),
//!     reference: Arc::new(reference),
//!     ..RuntimeConfig::default()
//! })?;
//! let wasm = std::fs::read("gl-journal-lines.wasm").map_err(|source| mlc_plugin::PluginError::Io { path: "gl-journal-lines.wasm".into(), source })?;
//! runtime.load("acme", "gl", wasm, None).await?;
//! let batch = runtime.map_batch("acme", "gl", "invoices", &[r#"{"InvoiceId": 1}"#.to_owned()]).await?;
//! println!("{} rows, {} rejects", batch.rows.len(), batch.rejects.len());
//! # Ok(()) }
//! ```

pub mod bindings;
pub mod compile_worker;
pub mod convert;
mod engine;
mod error;
mod host;
mod limits;
pub mod output;
mod pool;
mod reference;
mod runtime;
mod shape;
mod watch;

pub use engine::CompileSource;

/// The version of the plugin contract (`wit/mapping.wit`) this runtime
/// speaks.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// The world every plugin implements.
pub const WORLD: &str = "ml-connector:mapping/mapping@0.3.0";
pub use compile_worker::serve_if_worker;
pub use error::{
    BoxError, GuestError, GuestFailure, OutputMeasure, PluginError, PluginRef, VersionId,
    locate_config_error,
};
pub use limits::{
    CompileConfig, CompileLimits, CompileMode, PluginLimits, ShapeLimits, UploadLimits,
};
pub use pool::InstanceAllocator;
pub use reference::{
    JsonDirReference, LookupError, NoReferenceData, ReferenceData, ReferenceError,
};
pub use runtime::{
    Candidate, LoadOptions, PluginInfo, PluginRuntime, PluginStatus, Refusal, RuntimeConfig,
    Sample, SampleSummary, check_name, records_of, version_of,
};
pub use watch::{WatchHandle, WatchOptions};
