//! Candidates: a version compiled and validated exactly as a load would
//! (upload limits, imports, world, `configure`, schemas, the sample) but
//! never swapped in, never kept for rollback and never recorded as a
//! refusal. A shadow run maps stored records with a candidate beside the
//! current version, in the same sandbox and under the same tenant limits,
//! to show what it would change before anyone installs it.

use std::sync::Arc;
use std::time::Duration;

use mlc_common::{MappedBatch, Schema};

use super::PluginRuntime;
use super::load::LoadOptions;
use super::registry::{Loaded, PluginInfo};
use crate::engine::version_hex;
use crate::error::{PluginError, PluginRef, VersionId};

/// A validated version that serves nothing until it is loaded for real.
#[derive(Clone)]
pub struct Candidate {
    loaded: Arc<Loaded>,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("tenant", &self.loaded.info.tenant)
            .field("name", &self.loaded.info.name)
            .field("version", &self.loaded.info.version)
            .finish_non_exhaustive()
    }
}

impl Candidate {
    /// What the candidate declares (resources, schemas, the sample's
    /// outcome), as [`PluginRuntime::info`] would after a load.
    pub fn info(&self) -> &PluginInfo {
        &self.loaded.info
    }

    /// Its version: the same id a load of the same wasm and configuration
    /// gives.
    pub fn version(&self) -> &VersionId {
        &self.loaded.info.version
    }

    /// The schema it declares for `resource`.
    pub fn schema(&self, resource: &str) -> Option<&Schema> {
        self.loaded.info.schema(resource)
    }
}

impl PluginRuntime {
    /// Compiles (off the async runtime) and validates a candidate for
    /// (`tenant`, `name`) without swapping it in. A refusal is returned,
    /// not recorded: the plugin's refusal history stays about what was
    /// offered for real.
    pub async fn candidate(
        &self,
        tenant: &str,
        name: &str,
        wasm: Vec<u8>,
        options: LoadOptions,
    ) -> Result<Candidate, PluginError> {
        let this = self.clone();
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        tokio::task::spawn_blocking(move || this.candidate_blocking(&tenant, &name, &wasm, options))
            .await
            .map_err(|e| PluginError::Task(e.to_string()))?
    }

    /// [`PluginRuntime::candidate`] on the calling thread.
    pub fn candidate_blocking(
        &self,
        tenant: &str,
        name: &str,
        wasm: &[u8],
        options: LoadOptions,
    ) -> Result<Candidate, PluginError> {
        super::check_name("tenant", tenant)?;
        super::check_name("plugin", name)?;
        let version = VersionId::from_hex(&version_hex(wasm, options.config.as_deref()));
        let plugin = PluginRef {
            tenant: tenant.into(),
            plugin: name.into(),
            version,
        };
        self.check_upload(
            &plugin,
            wasm,
            options.config.as_deref(),
            options.sample.as_ref(),
        )?;
        let loaded = self.prepare(&plugin, wasm, options)?;
        Ok(Candidate {
            loaded: Arc::new(loaded),
        })
    }

    /// Maps a batch with a candidate, on the calling thread, under its
    /// tenant's limits; the time the call took comes back with it.
    pub fn map_candidate_blocking(
        &self,
        candidate: &Candidate,
        resource: &str,
        records: &[String],
    ) -> Result<(MappedBatch, Duration), PluginError> {
        let limits = self.limits(&candidate.loaded.info.tenant);
        let started = std::time::Instant::now();
        let batch = self.run(&candidate.loaded, resource, records, &limits)?;
        Ok((batch, started.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::RuntimeConfig;
    use super::super::test_support::{component, load_mode, misbehave_wasm};
    use super::*;

    const SCRIPT: &str = "resource = \"invoices\"\n\n[[column]]\nname = \"Id\"\ntype = \"integer\"\nkey = true\nexpr = \"InvoiceId\"\n";

    #[tokio::test]
    async fn a_candidate_maps_beside_the_current_version_and_changes_nothing() {
        let runtime = PluginRuntime::new(RuntimeConfig::default()).unwrap();
        load_mode(&runtime, "acme", "ok");
        let before = runtime.info("acme", "items").unwrap().version;
        let options = LoadOptions {
            config: Some(SCRIPT.replace("\"Id\"", "\"InvoiceNumber\"")),
            ..LoadOptions::default()
        };
        let candidate = runtime
            .candidate("acme", "items", component("scripted"), options)
            .await
            .unwrap();
        let schema = candidate.schema("invoices").unwrap();
        assert_eq!(schema.columns[0].name, "InvoiceNumber", "{schema:?}");
        let (batch, _) = runtime
            .map_candidate_blocking(&candidate, "invoices", &[r#"{"InvoiceId":7}"#.into()])
            .unwrap();
        assert_eq!(batch.rows.len(), 1, "{batch:?}");
        assert_eq!(batch.rows[0].values[0], mlc_common::Value::Integer(7));
        // Nothing was swapped in or kept.
        assert_eq!(runtime.info("acme", "items").unwrap().version, before);
        assert_eq!(runtime.list().len(), 1);
        assert!(runtime.refusals().is_empty());
    }

    #[tokio::test]
    async fn a_refused_candidate_is_returned_not_recorded() {
        let runtime = PluginRuntime::new(RuntimeConfig::default()).unwrap();
        let err = runtime
            .candidate(
                "acme",
                "items",
                misbehave_wasm(),
                LoadOptions {
                    config: Some("no-such-mode".into()),
                    ..LoadOptions::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "guest", "{}", err.chain());
        assert!(runtime.refusals().is_empty(), "{:?}", runtime.refusals());
        assert!(runtime.list().is_empty());
    }
}
