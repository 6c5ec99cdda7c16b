//! Applying a tenant definition: parsed and checked, stored as text in the
//! tenant's file, listed in the runtime file with an audit entry. The one
//! way a definition gets in: `tenant apply`, the demo and the tests use it.

use std::path::PathBuf;

use mlc_store::{DataDir, RuntimeStore, StoreError, TenantEntry, TenantStore};

use crate::definition::{self, DefinitionError, TenantDefinition};

/// What applying changed.
#[derive(Debug)]
pub struct Applied {
    /// The definition, parsed.
    pub definition: TenantDefinition,
    /// False when the same text was applied before.
    pub changed: bool,
    /// Pipelines of the previous definition that this one drops (their
    /// history stays in the store).
    pub removed_pipelines: Vec<String>,
    /// Secrets the definition names that are not stored yet.
    pub missing_secrets: Vec<String>,
    /// The tenant's store file.
    pub store: PathBuf,
}

/// Why a definition was not applied; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The text is not a valid definition (file, line, column and field named).
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The definition is for another tenant than the one it was sent to.
    #[error("the definition is for tenant `{found}`, not `{expected}`")]
    OtherTenant {
        /// The tenant addressed.
        expected: String,
        /// The `id` the definition has.
        found: String,
    },
}

/// Applies `text` (read from `source`, a name for errors and the audit
/// log) in `data`, as `actor`. Blocking: call off the async workers.
pub fn apply_definition(
    data: &DataDir,
    runtime: &RuntimeStore,
    source: &str,
    text: &str,
    actor: &str,
) -> Result<Applied, ApplyError> {
    let def = definition::parse(source, text)?;
    let path = data.tenant_file(&def.id);
    let store = TenantStore::open(&path, &def.id)?;
    apply_parsed(&store, runtime, def, source, text, actor)
}

/// [`apply_definition`] into a store this process holds open (a running
/// `serve`); the definition must be for `store`'s tenant.
pub fn apply_definition_to(
    store: &TenantStore,
    runtime: &RuntimeStore,
    source: &str,
    text: &str,
    actor: &str,
) -> Result<Applied, ApplyError> {
    let def = definition::parse(source, text)?;
    if def.id != store.tenant() {
        return Err(ApplyError::OtherTenant {
            expected: store.tenant().to_owned(),
            found: def.id,
        });
    }
    apply_parsed(store, runtime, def, source, text, actor)
}

fn apply_parsed(
    store: &TenantStore,
    runtime: &RuntimeStore,
    def: TenantDefinition,
    source: &str,
    text: &str,
    actor: &str,
) -> Result<Applied, ApplyError> {
    let path = store.path().to_path_buf();
    let previous = store.definition()?;
    let changed = previous.as_deref() != Some(text);
    let old_pipelines: Vec<String> = previous
        .as_deref()
        .and_then(|t| definition::parse("stored", t).ok())
        .map(|d| d.pipelines.into_iter().map(|p| p.id).collect())
        .unwrap_or_default();
    if changed {
        store.put_definition(text)?;
    }
    let stored = store.secret_names()?;
    let missing_secrets: Vec<String> = def
        .secrets()
        .iter()
        .map(|s| s.name().to_owned())
        .filter(|n| !stored.contains(n))
        .collect();
    let ids: Vec<&str> = def.pipelines.iter().map(|p| p.id.as_str()).collect();
    let removed_pipelines: Vec<String> = old_pipelines
        .into_iter()
        .filter(|p| !ids.contains(&p.as_str()))
        .collect();
    let entry = TenantEntry {
        id: def.id.clone(),
        applied_at: mlc_store::now_rfc3339(),
        source: source.to_owned(),
    };
    let detail = serde_json::json!({
        "file": source,
        "changed": changed,
        "pipelines": ids,
        "pipelines_removed": removed_pipelines,
    });
    runtime.put_tenant(&entry, actor, "tenant.apply", detail)?;
    Ok(Applied {
        definition: def,
        changed,
        removed_pipelines,
        missing_secrets,
        store: path,
    })
}
