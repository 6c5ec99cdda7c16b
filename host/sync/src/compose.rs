//! The composition root: one place builds what a tenant's pipelines run
//! on. [`Host`] holds the process's shared parts (the plugin runtime with
//! lookups over the tenants' stores, one `hyperd`, the master key and the
//! directories); [`Host::tenant`] builds a tenant's connectors and
//! pipelines from the definition stored in its file: the Oracle and
//! Tableau clients with their secrets opened, each pipeline's mapping
//! loaded (a script of `<mappings-dir>/<tenant>/` through the `scripted`
//! mapper as plugin `<pipeline>`, or a plugin of `<plugins-dir>/<tenant>/`).
//!
//! The CLI (`sync`, `replay`), the demo and the tests build tenants here;
//! nothing else wires clients by hand.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mlc_hyper::{Hyperd, HyperdConfig};
use mlc_oracle::{OracleClient, OracleConfig};
use mlc_plugin::{LoadOptions, PluginRuntime, RuntimeConfig, Sample, WatchHandle};
use mlc_store::{DataDir, MasterKey, StoreError, TenantStore};
use mlc_tableau::{TableauClient, TableauConfig};

use crate::definition::{self, Grant, Mapping, SecretRef, TenantDefinition};
use crate::mappings_dir::{mapping_paths, missing_scripts};
use crate::reference::{StoreReference, sync_reference_into_store};
use crate::{Connectors, CycleReport, PipelineSpec, SyncError};

/// The stored secret holding the refresh token of a tenant with
/// `grant = "authorization_code"` (written by `tenant authorize`, rotated
/// by [`Host::save_refresh_token`]).
pub const REFRESH_TOKEN_SECRET: &str = "oracle-refresh-token";

/// Where the host finds what tenants need.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The data directory (runtime file, tenant stores, scratch).
    pub data: DataDir,
    /// Mapping scripts: `<mappings-dir>/<tenant>/<file>.toml`, samples in
    /// `<mappings-dir>/<tenant>/samples/<file-stem>.json`.
    pub mappings_dir: PathBuf,
    /// Plugins: `<plugins-dir>/<tenant>/<name>.wasm`, watched while the host
    /// runs; `None` when no tenant uses `plugin = "…"`.
    pub plugins_dir: Option<PathBuf>,
    /// The `scripted` mapper component that runs mapping scripts.
    pub scripted_wasm: PathBuf,
    /// The hyperd binary (default: from the tableauhyperapi package).
    pub hyperd: Option<PathBuf>,
}

/// Why a host or a tenant could not be built. Each names the tenant and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The tenant's store could not be opened or read.
    #[error("tenant {tenant}: the store failed")]
    Store {
        /// The tenant.
        tenant: String,
        /// The store's error.
        #[source]
        source: Box<StoreError>,
    },
    /// The tenant was never applied.
    #[error(
        "tenant {tenant} has no definition in {}: apply one with `ml-connector tenant apply FILE`",
        .path.display()
    )]
    NoDefinition {
        /// The tenant.
        tenant: String,
        /// Its store file.
        path: PathBuf,
    },
    /// The stored definition does not parse any more (a newer binary wrote it).
    #[error("tenant {tenant}: the stored definition is refused: {source}")]
    Definition {
        /// The tenant.
        tenant: String,
        /// The parser's error.
        #[source]
        source: definition::DefinitionError,
    },
    /// A secret the definition names is not stored.
    #[error(
        "tenant {tenant}: secret `{name}` is not set: run `ml-connector secret set {tenant} {name}` (the value is read from stdin)"
    )]
    MissingSecret {
        /// The tenant.
        tenant: String,
        /// The secret's name.
        name: String,
    },
    /// A stored secret could not be opened (wrong master key, damage).
    #[error("tenant {tenant}: secret `{name}` cannot be opened")]
    Secret {
        /// The tenant.
        tenant: String,
        /// The secret's name.
        name: String,
        /// Why.
        #[source]
        source: Box<StoreError>,
    },
    /// The tenant uses the authorization-code grant and no operator has
    /// signed in yet.
    #[error(
        "tenant {tenant} uses grant = \"authorization_code\" and is not authorized yet: run `ml-connector tenant authorize {tenant}`"
    )]
    NotAuthorized {
        /// The tenant.
        tenant: String,
    },
    /// A mapping script or the scripted mapper could not be read.
    #[error("tenant {tenant}: reading {}", .path.display())]
    Read {
        /// The tenant.
        tenant: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A pipeline's mapping was refused.
    #[error("tenant {tenant}: pipeline {pipeline}: mapping {mapping} was refused: {reason}")]
    Mapping {
        /// The tenant.
        tenant: String,
        /// The pipeline.
        pipeline: String,
        /// The script file or plugin name.
        mapping: String,
        /// Why, as the plugin runtime recorded it (a script error as
        /// `FILE:LINE:COL: message`).
        reason: String,
    },
    /// A client could not be built from the definition.
    #[error("tenant {tenant}: {what}: {reason}")]
    Client {
        /// The tenant.
        tenant: String,
        /// `Oracle client` or `Tableau client`.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The tenant's reference data could not be read from Oracle.
    #[error("tenant {tenant}: reading reference data from Oracle failed")]
    Reference {
        /// The tenant.
        tenant: String,
        /// The cycle's error.
        #[source]
        source: Box<SyncError>,
    },
    /// A shared part (plugin runtime, hyperd, watcher) failed to start.
    #[error("starting {what}")]
    Start {
        /// What.
        what: &'static str,
        /// Why: the failing part's own error (a [`mlc_hyper::HyperError`]
        /// for hyperd), kept so that a caller can tell the causes apart.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The process's shared parts.
pub struct Host {
    pub(crate) config: HostConfig,
    key: MasterKey,
    pub(crate) plugins: PluginRuntime,
    hyperd: Arc<Hyperd>,
    pub(crate) reference: Arc<StoreReference>,
    _watcher: Option<WatchHandle>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A tenant ready to run: its definition, store, connectors and pipelines.
pub struct Tenant {
    /// The definition, as stored.
    pub definition: TenantDefinition,
    /// The tenant's store.
    pub store: Arc<TenantStore>,
    /// Its clients, the plugin runtime and hyperd.
    pub connectors: Connectors,
    /// Its pipelines, in the definition's order.
    pub pipelines: Vec<PipelineSpec>,
    /// True when building the tenant just read its reference data from
    /// Oracle (its first start), so a caller need not read it again.
    pub reference_fresh: bool,
}

/// A tenant's definition as its store holds it, parsed.
pub fn stored_definition(store: &TenantStore) -> Result<TenantDefinition, ComposeError> {
    let tenant = store.tenant();
    let text = store
        .definition()
        .map_err(|source| ComposeError::Store {
            tenant: tenant.to_owned(),
            source: Box::new(source),
        })?
        .ok_or_else(|| ComposeError::NoDefinition {
            tenant: tenant.to_owned(),
            path: store.path().to_path_buf(),
        })?;
    definition::parse(&format!("{tenant} (stored)"), &text).map_err(|source| {
        ComposeError::Definition {
            tenant: tenant.to_owned(),
            source,
        }
    })
}

/// The reference datasets a definition names.
fn reference_names(definition: &TenantDefinition) -> Vec<String> {
    let r = &definition.reference;
    let mut names: Vec<String> = Vec::new();
    if r.suppliers {
        names.push("suppliers".into());
    }
    names.extend(r.value_sets.keys().cloned());
    if !r.account_combination_segments.is_empty() {
        names.push("account-combinations".into());
    }
    names
}

impl Host {
    /// Starts the plugin runtime (lookups read the tenants' stores), hyperd
    /// and, with a plugins directory, its watcher.
    pub async fn start(config: HostConfig, key: MasterKey) -> Result<Self, ComposeError> {
        fn start<E: std::error::Error + Send + Sync + 'static>(
            what: &'static str,
        ) -> impl FnOnce(E) -> ComposeError {
            move |e| ComposeError::Start {
                what,
                source: Box::new(e),
            }
        }
        config.data.prepare().map_err(start("the data directory"))?;
        let reference = Arc::new(StoreReference::new());
        let plugins = PluginRuntime::new(RuntimeConfig {
            cache_dir: Some(config.data.root().join("plugin-cache")),
            reference: reference.clone(),
            ..RuntimeConfig::default()
        })
        .map_err(start("the plugin runtime"))?;
        let hyperd = Hyperd::start(HyperdConfig {
            binary: config.hyperd.clone(),
            log_dir: config.data.root().join("hyperd-logs"),
            ..HyperdConfig::default()
        })
        .await
        .map_err(start("hyperd"))?;
        let watcher = match &config.plugins_dir {
            Some(dir) if dir.is_dir() => Some(
                plugins
                    .watch(dir)
                    .await
                    .map_err(start("the plugins directory watcher"))?,
            ),
            _ => None,
        };
        Ok(Self {
            config,
            key,
            plugins,
            hyperd: Arc::new(hyperd),
            reference,
            _watcher: watcher,
        })
    }

    /// The plugin runtime.
    pub fn plugins(&self) -> &PluginRuntime {
        &self.plugins
    }

    /// The data directory.
    pub fn data(&self) -> &DataDir {
        &self.config.data
    }

    /// Opens (and locks) a tenant's store.
    pub fn open_store(&self, tenant: &str) -> Result<Arc<TenantStore>, ComposeError> {
        let path = self.config.data.tenant_file(tenant);
        tokio::task::block_in_place(|| TenantStore::open(&path, tenant))
            .map(Arc::new)
            .map_err(|source| ComposeError::Store {
                tenant: tenant.to_owned(),
                source: Box::new(source),
            })
    }

    /// Builds a tenant from the definition in its store.
    pub async fn tenant(&self, store: Arc<TenantStore>) -> Result<Tenant, ComposeError> {
        let tenant = store.tenant().to_owned();
        let store_err = |source| ComposeError::Store {
            tenant: tenant.clone(),
            source: Box::new(source),
        };
        let definition = tokio::task::block_in_place(|| stored_definition(&store))?;
        let secret = |r: &SecretRef| self.secret(&store, r);
        let o = &definition.oracle;
        let mut oracle_config = OracleConfig::new(
            o.base_url(),
            o.token_url.clone(),
            o.client_id.clone(),
            match &o.client_secret {
                Some(r) => secret(r)?,
                None => mlc_common::Secret::new(String::new()),
            },
            o.scope.clone(),
        );
        if o.grant == Grant::AuthorizationCode {
            let name = SecretRef::new(REFRESH_TOKEN_SECRET).map_err(|e| ComposeError::Client {
                tenant: tenant.clone(),
                what: "Oracle client",
                reason: e.to_string(),
            })?;
            oracle_config.refresh_token = Some(match self.secret(&store, &name) {
                Err(ComposeError::MissingSecret { .. }) => {
                    return Err(ComposeError::NotAuthorized { tenant });
                }
                other => other?,
            });
        }
        oracle_config.page_size = o.page_size;
        oracle_config.max_concurrency = o.max_concurrency;
        oracle_config.overlap_secs = o.overlap_secs;
        let client_err = |what: &'static str| {
            let tenant = tenant.clone();
            move |e: &dyn std::fmt::Display| ComposeError::Client {
                tenant,
                what,
                reason: e.to_string(),
            }
        };
        let oracle = OracleClient::new(tenant.as_str(), oracle_config)
            .map_err(|e| client_err("Oracle client")(&e))?;
        let t = &definition.tableau;
        let mut tableau_config = TableauConfig::new(
            t.url.clone(),
            t.site.clone(),
            t.pat_name.clone(),
            secret(&t.pat_secret)?,
            t.project.clone(),
        );
        tableau_config.api_version = t.api_version;
        let tableau = TableauClient::new(tenant.as_str(), tableau_config)
            .map_err(|e| client_err("Tableau client")(&e))?;

        self.reference.register(store.clone());
        // Mappings are validated against samples that look reference data
        // up: a tenant's first start reads it before loading them.
        let sources = definition.reference.sources();
        let names: Vec<String> = reference_names(&definition);
        let mut missing = false;
        for name in &names {
            missing |=
                !tokio::task::block_in_place(|| store.has_dataset(name)).map_err(store_err)?;
        }
        let reference_fresh = missing;
        if missing {
            sync_reference_into_store(&store, &oracle, &sources)
                .await
                .map_err(|source| ComposeError::Reference {
                    tenant: tenant.clone(),
                    source: Box::new(source),
                })?;
        }
        let mut pipelines = Vec::with_capacity(definition.pipelines.len());
        for p in &definition.pipelines {
            let plugin = match &p.mapping {
                Mapping::Script(file) => {
                    self.load_script(&tenant, &p.id, file).await?;
                    p.id.clone()
                }
                Mapping::Plugin(name) => {
                    self.plugins
                        .info(&tenant, name)
                        .map_err(|e| ComposeError::Mapping {
                            tenant: tenant.clone(),
                            pipeline: p.id.clone(),
                            mapping: format!("plugin {name}"),
                            reason: e.chain(),
                        })?;
                    name.clone()
                }
            };
            pipelines.push(PipelineSpec {
                tenant: tenant.clone(),
                name: p.id.clone(),
                resource: p.resource_spec(),
                plugin,
                datasource: p.datasource.clone(),
                max_records_per_batch: p.max_records_per_batch,
                reconcile: p.reconcile,
                pull: p.pull,
            });
        }
        let connectors = Connectors {
            oracle,
            tableau,
            plugins: self.plugins.clone(),
            hyperd: self.hyperd.clone(),
            work_dir: self.config.data.work_dir(&tenant),
        };
        Ok(Tenant {
            definition,
            store,
            connectors,
            pipelines,
            reference_fresh,
        })
    }

    fn secret(
        &self,
        store: &TenantStore,
        r: &SecretRef,
    ) -> Result<mlc_common::Secret, ComposeError> {
        let tenant = store.tenant().to_owned();
        match tokio::task::block_in_place(|| store.secret(&self.key, r.name())) {
            Ok(s) => Ok(s),
            Err(StoreError::NotFound { .. }) => Err(ComposeError::MissingSecret {
                tenant,
                name: r.name().to_owned(),
            }),
            Err(source) => Err(ComposeError::Secret {
                tenant,
                name: r.name().to_owned(),
                source: Box::new(source),
            }),
        }
    }

    /// The master key the tenants' secrets are sealed with.
    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// Where a tenant's mapping script `file` and its sample live
    /// ([`mapping_paths`] under this host's mappings directory).
    pub fn mapping_paths(&self, tenant: &str, file: &str) -> (PathBuf, PathBuf) {
        mapping_paths(&self.config.mappings_dir, tenant, file)
    }

    /// [`missing_scripts`] under this host's mappings directory.
    pub fn missing_scripts(&self, definition: &TenantDefinition) -> Vec<String> {
        missing_scripts(&self.config.mappings_dir, definition)
    }

    /// Loads a pipeline's mapping script again (after its file changed): a
    /// valid one serves the next batch, a refused one is recorded by the
    /// plugin runtime and the previous version keeps serving. A pipeline
    /// mapped by a plugin has nothing to load here (the plugins directory's
    /// watcher loads plugins).
    pub async fn reload_mapping(
        &self,
        tenant: &str,
        pipeline: &definition::PipelineDefinition,
    ) -> Result<(), ComposeError> {
        match &pipeline.mapping {
            Mapping::Script(file) => self.load_script(tenant, &pipeline.id, file).await,
            Mapping::Plugin(_) => Ok(()),
        }
    }

    /// Loads `<mappings-dir>/<tenant>/<file>` through the scripted mapper as
    /// plugin `<pipeline>`, validated against its sample when there is one.
    pub(crate) async fn load_script(
        &self,
        tenant: &str,
        pipeline: &str,
        file: &str,
    ) -> Result<(), ComposeError> {
        let (path, sample_path) = self.mapping_paths(tenant, file);
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ComposeError::Read {
                tenant: tenant.to_owned(),
                path: path.to_path_buf(),
                source,
            })
        };
        let script = String::from_utf8_lossy(&read(&path)?).into_owned();
        let wasm = read(&self.config.scripted_wasm)?;
        let script_file = path.display().to_string();
        let refused = |e: mlc_plugin::PluginError| ComposeError::Mapping {
            tenant: tenant.to_owned(),
            pipeline: pipeline.to_owned(),
            mapping: script_file.clone(),
            // What the runtime records for this refusal (the script's
            // FILE:LINE:COL when the plugin located the mistake), from this
            // error itself: never an older refusal of the pipeline.
            reason: e.refusal_reason(Some(&script_file)),
        };
        let sample = match std::fs::read_to_string(&sample_path) {
            Ok(text) => Some(
                Sample::from_json(&sample_path.display().to_string(), &text).map_err(refused)?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ComposeError::Read {
                    tenant: tenant.to_owned(),
                    path: sample_path,
                    source,
                });
            }
        };
        let options = LoadOptions {
            config: Some(script),
            sample,
            origin: Some(path.display().to_string()),
        };
        self.plugins
            .load_from_files(tenant, pipeline, wasm, options, Some(script_file.clone()))
            .await
            .map_err(refused)?;
        Ok(())
    }

    /// Stores the tenant's refresh token sealed when the identity domain
    /// rotated it (call after each cycle); true when it changed.
    pub fn save_refresh_token(&self, tenant: &Tenant) -> Result<bool, ComposeError> {
        let Some(now) = tenant.connectors.oracle.refresh_token() else {
            return Ok(false);
        };
        let store = &tenant.store;
        let store_err = |source| ComposeError::Store {
            tenant: tenant.id().to_owned(),
            source: Box::new(source),
        };
        let stored =
            tokio::task::block_in_place(|| store.secret(&self.key, REFRESH_TOKEN_SECRET)).ok();
        if stored.as_ref() == Some(&now) {
            return Ok(false);
        }
        tokio::task::block_in_place(|| store.set_secret(&self.key, REFRESH_TOKEN_SECRET, &now))
            .map_err(store_err)?;
        tracing::info!(tenant = %tenant.id(), "rotated Oracle refresh token stored");
        Ok(true)
    }

    /// Closes a tenant: its lookups stop, its store file is released once
    /// the last clone of its store is dropped (here, normally).
    pub async fn close(&self, tenant: Tenant) {
        self.reference.unregister(tenant.id());
        tenant.connectors.tableau.shutdown().await.ok();
    }

    /// Stops hyperd.
    pub async fn shutdown(self) {
        if let Some(hyperd) = Arc::into_inner(self.hyperd) {
            hyperd.shutdown().await.ok();
        }
    }
}

impl Tenant {
    /// The tenant id.
    pub fn id(&self) -> &str {
        &self.definition.id
    }

    /// A pipeline by id.
    pub fn pipeline(&self, id: &str) -> Option<&PipelineSpec> {
        self.pipelines.iter().find(|p| p.name == id)
    }

    /// Reads the reference datasets the definition names from Oracle into
    /// the store (before the pipelines whose mappings look them up).
    pub async fn sync_reference(&self) -> Result<Vec<(String, usize)>, SyncError> {
        let sources = self.definition.reference.sources();
        sync_reference_into_store(&self.store, &self.connectors.oracle, &sources).await
    }

    /// One durable cycle of a pipeline, reporting to `progress`.
    pub async fn run_once(
        &self,
        pipeline: &PipelineSpec,
        progress: &dyn crate::Progress,
    ) -> Result<CycleReport, SyncError> {
        crate::run_durable_cycle_with(pipeline, &self.store, &self.connectors, progress).await
    }

    /// One durable cycle of each pipeline, answered in order; those that
    /// read the same resource share one pull
    /// ([`crate::run_durable_cycles`]).
    pub async fn run_together(
        &self,
        pipelines: &[(&PipelineSpec, &dyn crate::Progress)],
    ) -> Vec<Result<CycleReport, SyncError>> {
        crate::run_durable_cycles(pipelines, &self.store, &self.connectors).await
    }

    /// `names` in groups of pipelines that read the same resource (each
    /// group in the order of `names`, groups in the order of their first
    /// member): a group's cycles run together to share their pull. A name
    /// the tenant does not have is a group of its own, for the caller to
    /// refuse.
    pub fn pull_groups<'n>(&self, names: &'n [String]) -> Vec<Vec<&'n str>> {
        let mut groups: Vec<(Option<&mlc_oracle::ResourceSpec>, Vec<&'n str>)> = Vec::new();
        for name in names {
            let resource = self.pipeline(name).map(|p| &p.resource);
            match groups
                .iter_mut()
                .find(|(r, _)| r.is_some() && *r == resource)
            {
                Some((_, group)) => group.push(name),
                None => groups.push((resource, vec![name])),
            }
        }
        groups.into_iter().map(|(_, g)| g).collect()
    }
}
