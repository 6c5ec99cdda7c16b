//! The one `bindgen!` site: host-side bindings of `wit/mapping.wit`.
//!
//! Imports (`lookup`, `log`) are plain synchronous host functions: lookups
//! read in-memory or store-backed reference data and never block on the
//! network, and a batch call runs on a blocking thread anyway. Their
//! failures are data (`lookup-error`), never traps.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "mapping",
});

pub use exports::ml_connector::mapping::mapper;
pub use ml_connector::mapping::{host, types};
