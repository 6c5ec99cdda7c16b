//! Hostile tenants against the plugin runtime (issue 12): every case hands
//! the runtime something crafted to hurt it (a compile bomb, a component
//! over a shape limit, a forbidden import, a guest that loops, traps,
//! bloats or lies) and asserts that
//!
//! - it is refused (or the batch fails) with a typed error: its `kind()`
//!   and the limit or cause named in its message;
//! - nothing changed: the tenant's previous version is still current,
//!   nothing new is in the compile cache, the refusal is recorded;
//! - another tenant, `bystander`, kept mapping in the same runtime on
//!   another thread all along, without a single failure.
//!
//! Needs the staged guests (`cargo xtask build-plugins`, then
//! `ML_CONNECTOR_PLUGINS_BUILT=<target>/plugins`).
//!
//! The cases, by what they attack:
//!
//! - [`compile`]: compile bombs against each worker limit, a missing
//!   worker, an oversized or garbage component;
//! - [`shape`]: each instance-shape limit, and the sample caps;
//! - [`guests`]: the `misbehave` guest's modes (loop, trap, memory, stack,
//!   huge output, wrong schema and types, bad UTF-8 offsets, out-of-range
//!   decimals) and the per-tenant share of the call permits;
//! - [`imports`]: a component importing each forbidden interface.

// Test helpers outside `#[test]` functions panic with the failure, on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod compile;
mod guests;
mod imports;
mod shape;
mod support;
