//! The JSON documents that describe a tenant's pipelines and batches: one
//! builder each, used by the admin API and by the CLI (`pipeline list`,
//! `batches`, `--output json`), so both answer with the same document
//! whether the CLI opened the store itself or asked a running server.

use mlc_store::{Batch, StoreError, TenantStore};
use mlc_sync::definition::{TenantDefinition, format_duration};
use serde_json::{Value, json};

/// Batch states, in journal order.
pub const STATES: [&str; 7] = [
    "pulling",
    "pulled",
    "mapped",
    "written",
    "submitted",
    "confirmed",
    "failed",
];

/// `{"tenant", "pipelines": [...]}`: each pipeline with its schedule,
/// pause flag, cursor and open batch.
pub fn pipelines(store: &TenantStore, def: &TenantDefinition) -> Result<Value, StoreError> {
    let mut rows = Vec::new();
    for p in &def.pipelines {
        let state = store.pipeline(&p.id)?;
        let open = store.open_batch(&p.id)?;
        rows.push(json!({
            "pipeline": p.id,
            "resource": p.resource.name(),
            "datasource": p.datasource,
            "every": format_duration(p.every),
            "paused": state.paused,
            "confirmed_batches": state.confirmed_seq,
            "cursor": state.cursor,
            "open_batch": open.map(|b| json!({"id": b.id, "state": b.state.name()})),
        }));
    }
    Ok(json!({"tenant": def.id, "pipelines": rows}))
}

/// What to list of a tenant's batches.
#[derive(Clone, Debug, Default)]
pub struct BatchQuery {
    /// One pipeline, or all.
    pub pipeline: Option<String>,
    /// One state (one of [`STATES`]), or all.
    pub state: Option<String>,
    /// At most this many per pipeline, newest first.
    pub limit: usize,
}

/// `{"batches": [...]}`, newest first per pipeline.
pub fn batches(
    store: &TenantStore,
    def: &TenantDefinition,
    q: &BatchQuery,
) -> Result<Value, StoreError> {
    let pipelines: Vec<String> = match &q.pipeline {
        Some(p) => vec![p.clone()],
        None => def.pipelines.iter().map(|p| p.id.clone()).collect(),
    };
    let mut rows: Vec<Batch> = Vec::new();
    for p in &pipelines {
        rows.extend(store.recent_batches(p, q.state.as_deref(), q.limit)?);
    }
    Ok(json!({ "batches": rows }))
}
