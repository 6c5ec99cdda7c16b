//! Shadow runs and promotion of a mapping candidate.
//!
//! [`Host::diff_mapping`] maps the stored raw records of a pipeline's
//! recent batches (their latest versions; default the last 10,000
//! records) with the version in use and with a candidate, both inside the
//! plugin sandbox under the tenant's limits, and reports what the
//! candidate would change ([`compare`]): the schema, the rows (cell by
//! cell for a sample), the rejects gained and lost, and the time per
//! record of each. Nothing is installed, exported or recorded.
//!
//! [`Host::promote_mapping`] installs a candidate mapping script through
//! the same path a changed file takes (validated against the pipeline's
//! sample first; the previous script kept under
//! `<mappings-dir>/<tenant>/.versions/`). A candidate whose schema differs
//! makes the pipeline's next batch a re-export of the data source from the
//! store (the journal compares the schema it published with the current
//! one). The callers (the CLI, the admin API) write the audit entry.

pub mod compare;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mlc_plugin::{GuestFailure, LoadOptions, PluginError, Sample, VersionId};
use mlc_store::{StoreError, TenantStore};
use serde::Serialize;

use crate::compose::{ComposeError, Host, stored_definition};
use crate::cycle::blocking;
use crate::definition::{Mapping, PipelineDefinition};
use crate::mappings_dir::{kept_script_path, mapping_paths};
use compare::{Comparison, RowChanges, SchemaChange};

/// Records mapped per call in a shadow run.
const CHUNK: usize = 500;

/// A candidate mapping, as uploaded or read from a file.
#[derive(Clone, Debug)]
pub struct CandidateFile {
    /// Where it came from (a path, or `api upload`), for errors.
    pub origin: String,
    /// Its bytes: a mapping script (UTF-8 TOML) or a component (`\0asm`).
    pub bytes: Vec<u8>,
}

impl CandidateFile {
    fn is_component(&self) -> bool {
        self.bytes.starts_with(b"\0asm")
    }
}

/// How much a shadow run maps and shows.
#[derive(Clone, Copy, Debug)]
pub struct DiffOptions {
    /// Records mapped (the latest versions of the keys of the newest
    /// batches, topped up from the whole store). Default 10,000.
    pub records: usize,
    /// Examples kept of each kind of change. Default 10.
    pub sample: usize,
}

impl Default for DiffOptions {
    fn default() -> Self {
        Self {
            records: 10_000,
            sample: 10,
        }
    }
}

/// Time a mapping took per record, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Timing {
    /// The version in use.
    pub current_us_per_record: f64,
    /// The candidate.
    pub candidate_us_per_record: f64,
}

/// What a candidate would change.
#[derive(Clone, Debug, Serialize)]
pub struct MappingDiff {
    /// The tenant.
    pub tenant: String,
    /// The pipeline.
    pub pipeline: String,
    /// The Oracle resource its records come from.
    pub resource: String,
    /// The version in use.
    pub current_version: VersionId,
    /// The candidate's version.
    pub candidate_version: VersionId,
    /// The schema change.
    pub schema: SchemaChange,
    /// The row changes.
    pub rows: RowChanges,
    /// Time per record of both.
    pub timing: Timing,
    /// What the candidate reads that the stored records were not pulled
    /// with (`pull = "mapped-fields"`): attributes of the record, and
    /// `child:attribute` of child collections (`child` alone: the whole
    /// collection). The diff sees those as empty; Oracle has them, and a
    /// promote makes the next batch pull every record again. Empty when
    /// the store holds everything the candidate reads.
    pub not_in_store: Vec<String>,
}

/// What a promote did.
#[derive(Clone, Debug, Serialize)]
pub struct Promoted {
    /// The tenant.
    pub tenant: String,
    /// The pipeline.
    pub pipeline: String,
    /// The script file now holding the candidate.
    pub file: PathBuf,
    /// Where the previous script was kept.
    pub previous_kept: Option<PathBuf>,
    /// The version that served before.
    pub previous_version: Option<VersionId>,
    /// The version serving now.
    pub version: VersionId,
    /// The schema changed: the next batch re-exports the data source.
    pub schema_changed: bool,
}

impl Promoted {
    /// What the admin audit log keeps of this promote: versions and paths,
    /// never the script itself (the kept file holds that). `candidate`
    /// names where it came from (a path, or the API).
    pub fn audit_detail(&self, candidate: &str) -> serde_json::Value {
        serde_json::json!({
            "pipeline": self.pipeline,
            "candidate": candidate,
            "file": self.file,
            "previous_version": self.previous_version,
            "previous_kept": self.previous_kept,
            "version": self.version,
            "schema_changed": self.schema_changed,
        })
    }
}

/// Why a shadow run or a promote could not be done. Each names the tenant
/// and pipeline.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    /// Building the tenant's parts failed (definition, current mapping).
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The store failed.
    #[error("tenant {tenant}: the store failed")]
    Store {
        /// The tenant.
        tenant: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// No such pipeline.
    #[error("tenant {tenant} has no pipeline `{pipeline}`")]
    UnknownPipeline {
        /// The tenant.
        tenant: String,
        /// The pipeline asked for.
        pipeline: String,
    },
    /// The candidate is not of the pipeline's kind (a script for a script
    /// pipeline, a component for a plugin pipeline).
    #[error("{tenant}/{pipeline}: {candidate} is {found}, the pipeline is mapped by {expected}")]
    WrongKind {
        /// The tenant.
        tenant: String,
        /// The pipeline.
        pipeline: String,
        /// The candidate's origin.
        candidate: String,
        /// What the candidate is.
        found: &'static str,
        /// What the pipeline needs.
        expected: &'static str,
    },
    /// The pipeline is mapped by a plugin: components are installed with
    /// `ml-connector plugin load`, which keeps their versions.
    #[error(
        "{tenant}/{pipeline} is mapped by plugin `{plugin}`: install a component with `ml-connector plugin load {tenant} {plugin} FILE.wasm` (the plugins directory keeps its versions)"
    )]
    PluginPipeline {
        /// The tenant.
        tenant: String,
        /// The pipeline.
        pipeline: String,
        /// The plugin.
        plugin: String,
    },
    /// The candidate was refused (it does not load, or fails its sample).
    #[error("{tenant}/{pipeline}: the candidate {candidate} is refused: {reason}")]
    Refused {
        /// The tenant.
        tenant: String,
        /// The pipeline.
        pipeline: String,
        /// The candidate's origin.
        candidate: String,
        /// Why (a script error as `FILE:LINE:COL: message`).
        reason: String,
        /// The plugin's located failure, when it gave one.
        failure: Option<Box<GuestFailure>>,
        /// The runtime's error kind (`guest`, `sample-rejected`, …).
        kind: &'static str,
    },
    /// A mapping failed on the stored records (the current version or the
    /// candidate: a trap, a deadline, a wrong schema).
    #[error("{tenant}/{pipeline}: mapping the stored records with {which} failed")]
    Map {
        /// The tenant.
        tenant: String,
        /// The pipeline.
        pipeline: String,
        /// `the current version` or `the candidate`.
        which: &'static str,
        /// The runtime's error.
        #[source]
        source: Box<PluginError>,
    },
    /// The candidate script could not be written into place.
    #[error("{tenant}/{pipeline}: installing {}", .path.display())]
    Write {
        /// The tenant.
        tenant: String,
        /// The pipeline.
        pipeline: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Keys picked for a shadow run, each once, up to a limit.
struct Picked {
    seen: std::collections::HashSet<String>,
    keys: Vec<String>,
    limit: usize,
}

impl Picked {
    fn full(&self) -> bool {
        self.keys.len() >= self.limit
    }

    /// Pages through one source of keys (`page(after)` gives the keys after
    /// `after`, in order) until it ends or enough are picked.
    fn drain(
        &mut self,
        mut page: impl FnMut(Option<&str>) -> Result<Vec<String>, StoreError>,
    ) -> Result<(), StoreError> {
        let mut after: Option<String> = None;
        while !self.full() {
            let chunk = page(after.as_deref())?;
            let Some(last) = chunk.last().cloned() else {
                return Ok(());
            };
            after = Some(last);
            for k in chunk {
                if !self.full() && self.seen.insert(k.clone()) {
                    self.keys.push(k);
                }
            }
        }
        Ok(())
    }
}

/// A pipeline and the plugin name its mapping runs as.
struct Target<'a> {
    tenant: &'a str,
    def: PipelineDefinition,
    plugin: String,
}

impl Host {
    fn target<'a>(
        &self,
        store: &'a Arc<TenantStore>,
        pipeline: &str,
    ) -> Result<Target<'a>, ShadowError> {
        let tenant = store.tenant();
        let definition = blocking(|| stored_definition(store))?;
        let def =
            definition
                .pipeline(pipeline)
                .cloned()
                .ok_or_else(|| ShadowError::UnknownPipeline {
                    tenant: tenant.to_owned(),
                    pipeline: pipeline.to_owned(),
                })?;
        let plugin = match &def.mapping {
            Mapping::Script(_) => def.id.clone(),
            Mapping::Plugin(name) => name.clone(),
        };
        Ok(Target {
            tenant,
            def,
            plugin,
        })
    }

    /// The version in use: the one serving, or (in a process that has not
    /// loaded the pipeline yet) the script on disk, loaded as a changed
    /// file would be.
    async fn current(
        &self,
        store: &Arc<TenantStore>,
        t: &Target<'_>,
    ) -> Result<VersionId, ShadowError> {
        if let Ok(info) = self.plugins.info(t.tenant, &t.plugin) {
            return Ok(info.version);
        }
        self.reference.register(store.clone());
        match &t.def.mapping {
            Mapping::Script(file) => self.load_script(t.tenant, &t.def.id, file).await?,
            Mapping::Plugin(name) => {
                return Err(ComposeError::Mapping {
                    tenant: t.tenant.to_owned(),
                    pipeline: t.def.id.clone(),
                    mapping: format!("plugin {name}"),
                    reason: "not loaded here: pass --plugins-dir (or ML_CONNECTOR_PLUGINS)".into(),
                }
                .into());
            }
        }
        let info = self
            .plugins
            .info(t.tenant, &t.plugin)
            .map_err(|source| ShadowError::Map {
                tenant: t.tenant.to_owned(),
                pipeline: t.def.id.clone(),
                which: "the current version",
                source: Box::new(source),
            })?;
        Ok(info.version)
    }

    /// Compiles and validates the candidate (against the pipeline's sample
    /// for a script) without swapping it in.
    async fn prepare_candidate(
        &self,
        t: &Target<'_>,
        candidate: &CandidateFile,
    ) -> Result<mlc_plugin::Candidate, ShadowError> {
        let wrong = |found, expected| ShadowError::WrongKind {
            tenant: t.tenant.to_owned(),
            pipeline: t.def.id.clone(),
            candidate: candidate.origin.clone(),
            found,
            expected,
        };
        let refused = |e: PluginError| ShadowError::Refused {
            tenant: t.tenant.to_owned(),
            pipeline: t.def.id.clone(),
            candidate: candidate.origin.clone(),
            reason: e.refusal_reason(Some(&candidate.origin)),
            failure: e.refusal_failure(Some(&candidate.origin)).map(Box::new),
            kind: e.kind(),
        };
        let (wasm, options) = match &t.def.mapping {
            Mapping::Script(file) => {
                if candidate.is_component() {
                    return Err(wrong("a component", "a mapping script"));
                }
                let script = String::from_utf8(candidate.bytes.clone())
                    .map_err(|_| wrong("not UTF-8 text", "a mapping script"))?;
                let (_, sample_path) = mapping_paths(&self.config.mappings_dir, t.tenant, file);
                let sample = match std::fs::read_to_string(&sample_path) {
                    Ok(text) => Some(
                        Sample::from_json(&sample_path.display().to_string(), &text)
                            .map_err(refused)?,
                    ),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(source) => {
                        return Err(ComposeError::Read {
                            tenant: t.tenant.to_owned(),
                            path: sample_path,
                            source,
                        }
                        .into());
                    }
                };
                let wasm = std::fs::read(&self.config.scripted_wasm).map_err(|source| {
                    ComposeError::Read {
                        tenant: t.tenant.to_owned(),
                        path: self.config.scripted_wasm.clone(),
                        source,
                    }
                })?;
                let options = LoadOptions {
                    config: Some(script),
                    sample,
                    origin: Some(candidate.origin.clone()),
                };
                (wasm, options)
            }
            Mapping::Plugin(_) => {
                if !candidate.is_component() {
                    return Err(wrong("not a component", "a plugin component"));
                }
                let options = LoadOptions {
                    origin: Some(candidate.origin.clone()),
                    ..LoadOptions::default()
                };
                (candidate.bytes.clone(), options)
            }
        };
        self.plugins
            .candidate(t.tenant, &t.plugin, wasm, options)
            .await
            .map_err(refused)
    }

    /// The keys a shadow run maps: those of the newest batches first, then
    /// any others, up to `limit`. Batches are read newest first, a few at a
    /// time, so a long history is not read to fill a small sample.
    fn recent_keys(
        store: &TenantStore,
        pipeline: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut picked = Picked {
            seen: std::collections::HashSet::new(),
            keys: Vec::new(),
            limit,
        };
        let (mut wanted, mut read) = (16, 0);
        loop {
            let batches = store.recent_batches(pipeline, None, wanted)?;
            // A batch created meanwhile shifts the list by one: the batch
            // read again at `read` adds no key twice.
            for batch in batches.iter().skip(read) {
                picked.drain(|after| store.batch_keys(pipeline, batch.seq, after, CHUNK))?;
                if picked.full() {
                    return Ok(picked.keys);
                }
            }
            if batches.len() < wanted {
                break;
            }
            read = batches.len();
            wanted = wanted.saturating_mul(4);
        }
        picked.drain(|after| store.latest_keys(pipeline, after, CHUNK))?;
        Ok(picked.keys)
    }

    /// Maps the pipeline's recent stored records with the version in use
    /// and with `candidate`, and reports the difference.
    pub async fn diff_mapping(
        &self,
        store: &Arc<TenantStore>,
        pipeline: &str,
        candidate: &CandidateFile,
        options: &DiffOptions,
    ) -> Result<MappingDiff, ShadowError> {
        let t = self.target(store, pipeline)?;
        let current_version = self.current(store, &t).await?;
        let pulled_with = blocking(|| store.pipeline(&t.def.id))
            .map_err(|source| ShadowError::Store {
                tenant: t.tenant.to_owned(),
                source,
            })?
            .pulled_with;
        let not_in_store = not_in_store(&t.def, pulled_with.as_deref(), candidate);
        let candidate = self.prepare_candidate(&t, candidate).await?;
        let resource = t.def.resource_spec().path;
        let (tenant, id) = (t.tenant.to_owned(), t.def.id.clone());
        let st = |source| ShadowError::Store {
            tenant: tenant.clone(),
            source,
        };
        let map_err = |which| {
            let (tenant, pipeline) = (tenant.clone(), id.clone());
            move |source| ShadowError::Map {
                tenant,
                pipeline,
                which,
                source: Box::new(source),
            }
        };
        let before = self
            .plugins
            .schema(t.tenant, &t.plugin, &resource)
            .map_err(map_err("the current version"))?;
        let after = candidate
            .schema(&resource)
            .cloned()
            .ok_or_else(|| ShadowError::Refused {
                tenant: tenant.clone(),
                pipeline: id.clone(),
                candidate: candidate.info().origin.clone().unwrap_or_default(),
                reason: format!(
                    "it does not map resource `{resource}` (it declares {})",
                    candidate.info().resources.join(", ")
                ),
                failure: None,
                kind: "unknown-resource",
            })?;
        let mut comparison = Comparison::new(before, after, options.sample);
        let keys = blocking(|| Self::recent_keys(store, &id, options.records)).map_err(st)?;
        let (mut current_time, mut candidate_time) = (Duration::ZERO, Duration::ZERO);
        let mut mapped_records = 0usize;
        for chunk in keys.chunks(CHUNK) {
            let records = blocking(|| store.latest_records(&id, chunk)).map_err(st)?;
            let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
            let jsons: Vec<String> = records.into_iter().map(|r| r.json).collect();
            let started = std::time::Instant::now();
            let (now, _) = self
                .plugins
                .map_batch_with_version(t.tenant, &t.plugin, &resource, &jsons)
                .await
                .map_err(map_err("the current version"))?;
            current_time += started.elapsed();
            let (then, took) = blocking(|| {
                self.plugins
                    .map_candidate_blocking(&candidate, &resource, &jsons)
            })
            .map_err(map_err("the candidate"))?;
            candidate_time += took;
            mapped_records += jsons.len();
            comparison.add(&keys, &now, &then);
        }
        let per_record = |d: Duration| {
            if mapped_records == 0 {
                0.0
            } else {
                d.as_secs_f64() * 1e6 / mapped_records as f64
            }
        };
        let (schema, rows) = comparison.finish();
        Ok(MappingDiff {
            tenant,
            pipeline: id,
            resource,
            current_version,
            candidate_version: candidate.version().clone(),
            schema,
            rows,
            timing: Timing {
                current_us_per_record: per_record(current_time),
                candidate_us_per_record: per_record(candidate_time),
            },
            not_in_store,
        })
    }

    /// Installs a candidate mapping script for a pipeline: validated first
    /// (a refused one changes nothing), the previous script kept, the file
    /// replaced atomically and loaded through the hot-load path, so it maps
    /// the next batch.
    pub async fn promote_mapping(
        &self,
        store: &Arc<TenantStore>,
        pipeline: &str,
        candidate: &CandidateFile,
    ) -> Result<Promoted, ShadowError> {
        let t = self.target(store, pipeline)?;
        let file = match &t.def.mapping {
            Mapping::Script(file) => file.clone(),
            Mapping::Plugin(plugin) => {
                return Err(ShadowError::PluginPipeline {
                    tenant: t.tenant.to_owned(),
                    pipeline: t.def.id.clone(),
                    plugin: plugin.clone(),
                });
            }
        };
        let previous_version = self.current(store, &t).await.ok();
        let prepared = self.prepare_candidate(&t, candidate).await?;
        let resource = t.def.resource_spec().path;
        let before = self.plugins.schema(t.tenant, &t.plugin, &resource).ok();
        let schema_changed = before.as_ref() != prepared.schema(&resource);
        let (path, _) = mapping_paths(&self.config.mappings_dir, t.tenant, &file);
        let write_err = |path: &std::path::Path| {
            let (tenant, pipeline, path) = (t.tenant.to_owned(), t.def.id.clone(), path.to_owned());
            move |source| ShadowError::Write {
                tenant,
                pipeline,
                path,
                source,
            }
        };
        let previous = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(write_err(&path)(e)),
        };
        let previous_kept = match (&previous, &previous_version) {
            (Some(bytes), Some(version)) => {
                let kept = kept_script_path(
                    &self.config.mappings_dir,
                    t.tenant,
                    &file,
                    &version.to_string(),
                );
                if let Some(dir) = kept.parent() {
                    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
                }
                mlc_common::fs::write_atomically(&kept, bytes).map_err(write_err(&kept))?;
                Some(kept)
            }
            _ => None,
        };
        mlc_common::fs::write_atomically(&path, &candidate.bytes).map_err(write_err(&path))?;
        if let Err(e) = self.load_script(t.tenant, &t.def.id, &file).await {
            // Validated a moment ago; if the live load still refuses it, the
            // previous script goes back so that disk and memory agree.
            if let Some(bytes) = &previous {
                let _ = mlc_common::fs::write_atomically(&path, bytes);
            }
            return Err(e.into());
        }
        let version = self
            .plugins
            .info(t.tenant, &t.plugin)
            .map(|i| i.version)
            .unwrap_or_else(|_| prepared.version().clone());
        tracing::info!(tenant = %t.tenant, pipeline = %t.def.id, version = %version, schema_changed, "mapping promoted");
        Ok(Promoted {
            tenant: t.tenant.to_owned(),
            pipeline: t.def.id.clone(),
            file: path,
            previous_kept,
            previous_version,
            version,
            schema_changed,
        })
    }
}

/// What a candidate script reads that records pulled with `pulled_with`
/// (as the store keeps it; `None`: whole records) lack. A component
/// candidate, or a script that does not compile (the candidate check
/// refuses it with its reason), reports nothing here.
fn not_in_store(
    def: &PipelineDefinition,
    pulled_with: Option<&str>,
    candidate: &CandidateFile,
) -> Vec<String> {
    let Some(text) = pulled_with else {
        return Vec::new();
    };
    if candidate.is_component() {
        return Vec::new();
    }
    let Ok(script) = std::str::from_utf8(&candidate.bytes)
        .map_err(|e| e.to_string())
        .and_then(|t| mlc_scripted_core::Script::compile(t).map_err(|e| e.to_string()))
    else {
        return Vec::new();
    };
    let Ok(stored) = serde_json::from_str::<mlc_oracle::Projection>(text) else {
        return vec!["(the stored projection is unreadable: every field)".to_owned()];
    };
    let wanted = crate::projection::project(def.resource_spec(), &script.reads());
    let Some(wanted) = wanted.fields else {
        // The candidate needs whole records (a child read for its rows).
        return vec!["(whole records)".to_owned()];
    };
    let mut missing: Vec<String> = wanted
        .attributes
        .iter()
        .filter(|a| !stored.attributes.contains(a))
        .cloned()
        .collect();
    for (child, attributes) in &wanted.children {
        match stored.children.get(child) {
            None => missing.push(child.clone()),
            Some(have) => missing.extend(
                attributes
                    .iter()
                    .filter(|a| !have.contains(a))
                    .map(|a| format!("{child}:{a}")),
            ),
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{Pull, Resource};

    fn def() -> PipelineDefinition {
        PipelineDefinition {
            id: "inv".into(),
            resource: Resource::Invoices,
            datasource: "Invoices".into(),
            mapping: Mapping::Script("inv.toml".into()),
            every: Duration::from_secs(600),
            reconcile: None,
            max_records_per_batch: 1,
            pull: Pull::MappedFields,
        }
    }

    fn script(columns: &[&str]) -> CandidateFile {
        let mut text = String::from("resource = \"invoices\"\n");
        for (i, source) in columns.iter().enumerate() {
            let key = if i == 0 { "key = true\n" } else { "" };
            text.push_str(&format!(
                "[[column]]\nname = \"c{i}\"\ntype = \"text\"\n{key}source = \"{source}\"\n"
            ));
        }
        CandidateFile {
            origin: "test".into(),
            bytes: text.into_bytes(),
        }
    }

    fn pulled_with(columns: &[&str]) -> String {
        let CandidateFile { bytes, .. } = script(columns);
        let text = String::from_utf8(bytes).unwrap();
        let reads = mlc_scripted_core::Script::compile(&text).unwrap().reads();
        let spec = crate::projection::project(def().resource_spec(), &reads);
        serde_json::to_string(&spec.fields.unwrap()).unwrap()
    }

    #[test]
    fn a_candidate_reading_more_than_the_store_holds_names_what_is_missing() {
        let stored = pulled_with(&["InvoiceId", "InvoiceNumber"]);
        let wider = script(&[
            "InvoiceId",
            "InvoiceNumber",
            "Description",
            "invoiceLines.X",
        ]);
        assert_eq!(
            not_in_store(&def(), Some(&stored), &wider),
            ["Description", "invoiceLines"],
            "a path into a non-expanded child reads that attribute"
        );
        let same = script(&["InvoiceNumber", "InvoiceId"]);
        assert!(not_in_store(&def(), Some(&stored), &same).is_empty());
        assert!(
            not_in_store(&def(), None, &wider).is_empty(),
            "whole records hold everything"
        );
    }
}
