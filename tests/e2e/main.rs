//! End-to-end tests, linked into one binary so wasmtime is linked once.
//! Each area owns one module; a module is compiled only with its feature.
#![allow(missing_docs)]
// The whole binary is test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[cfg(feature = "plugin")]
mod plugin;
#[cfg(feature = "plugin")]
mod scripted;

#[cfg(feature = "oracle-client")]
mod oracle_client;
#[cfg(feature = "oracle-sandbox")]
mod oracle_sandbox;
#[cfg(feature = "oracle-client")]
mod oracle_slices;

#[cfg(feature = "hyper")]
mod hyper;
#[cfg(feature = "tableau-client")]
mod tableau_client;
#[cfg(feature = "tableau-sandbox")]
mod tableau_sandbox;

#[cfg(feature = "pipeline")]
mod pipeline;
