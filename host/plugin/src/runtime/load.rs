//! Loading a version: compile (or reuse the compiled component), check its
//! imports and world, configure it, read its resources and schemas, map
//! the validation sample, then swap it in; a failure at any step is
//! recorded as a refusal and the previous version keeps serving.
//!
//! Compiling and validating run off the async runtime.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::call::CallFailure;
use super::records::Sample;
use super::registry::{Loaded, PluginInfo};
use super::{PluginRuntime, check_name};
use crate::bindings::MappingPre;
use crate::convert::schema_from_wit;
use crate::engine::{CompileSource, sha256_hex, version_hex};
use crate::error::{PluginError, PluginRef, VersionId, boxed};
use crate::limits::PluginLimits;

/// How to load a component.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Passed to `configure` (for the scripted mapper, the mapping script).
    /// `None` passes an empty string but hashes differently from `Some("")`.
    pub config: Option<String>,
    /// Records that must map without a plugin failure before the swap.
    pub sample: Option<Sample>,
    /// Where the component came from (a path), for refusals and logs.
    pub origin: Option<String>,
}

/// What a sample validation produced.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SampleSummary {
    /// Resources the sample was mapped as.
    pub resources: Vec<String>,
    /// Records mapped, over all resources.
    pub records: usize,
    /// Rows produced.
    pub rows: usize,
    /// Records rejected.
    pub rejects: usize,
}

impl PluginRuntime {
    /// Compiles (off the async runtime), validates and swaps in a component
    /// as the current version of (`tenant`, `name`). `config` goes to the
    /// plugin's `configure`.
    pub async fn load(
        &self,
        tenant: &str,
        name: &str,
        wasm: Vec<u8>,
        config: Option<String>,
    ) -> Result<PluginInfo, PluginError> {
        self.load_with(
            tenant,
            name,
            wasm,
            LoadOptions {
                config,
                ..LoadOptions::default()
            },
        )
        .await
    }

    /// [`PluginRuntime::load`] with a validation sample.
    pub async fn load_with_sample(
        &self,
        tenant: &str,
        name: &str,
        wasm: Vec<u8>,
        config: Option<String>,
        sample: Sample,
    ) -> Result<PluginInfo, PluginError> {
        self.load_with(
            tenant,
            name,
            wasm,
            LoadOptions {
                config,
                sample: Some(sample),
                origin: None,
            },
        )
        .await
    }

    /// [`PluginRuntime::load`] with every option.
    pub async fn load_with(
        &self,
        tenant: &str,
        name: &str,
        wasm: Vec<u8>,
        options: LoadOptions,
    ) -> Result<PluginInfo, PluginError> {
        self.load_from_files(tenant, name, wasm, options, None)
            .await
    }

    /// [`PluginRuntime::load_with`] for a configuration read from
    /// `config_file`: a refusal because of the configuration names the file
    /// (a mapping script's error as `FILE:LINE:COL: message`).
    pub async fn load_from_files(
        &self,
        tenant: &str,
        name: &str,
        wasm: Vec<u8>,
        options: LoadOptions,
        config_file: Option<String>,
    ) -> Result<PluginInfo, PluginError> {
        let this = self.clone();
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        tokio::task::spawn_blocking(move || {
            this.load_inner(&tenant, &name, &wasm, options, config_file.as_deref())
        })
        .await
        .map_err(|e| PluginError::Task(e.to_string()))?
    }

    /// Loads on the calling thread (compiling can take a second in a debug
    /// build): for callers that are not on an async runtime.
    ///
    /// A version that is already kept (same wasm and configuration, loaded
    /// and validated before) is swapped in again at once, without running
    /// the sample again.
    pub fn load_blocking(
        &self,
        tenant: &str,
        name: &str,
        wasm: &[u8],
        options: LoadOptions,
    ) -> Result<PluginInfo, PluginError> {
        self.load_inner(tenant, name, wasm, options, None)
    }

    fn load_inner(
        &self,
        tenant: &str,
        name: &str,
        wasm: &[u8],
        options: LoadOptions,
        config_file: Option<&str>,
    ) -> Result<PluginInfo, PluginError> {
        check_name("tenant", tenant)?;
        check_name("plugin", name)?;
        let version = VersionId::from_hex(&version_hex(wasm, options.config.as_deref()));
        let plugin = PluginRef {
            tenant: tenant.into(),
            plugin: name.into(),
            version: version.clone(),
        };
        if let Err(error) = self.check_upload(
            &plugin,
            wasm,
            options.config.as_deref(),
            options.sample.as_ref(),
        ) {
            self.refuse(
                tenant,
                name,
                Some(&version),
                options.origin.clone(),
                config_file,
                &error,
            );
            return Err(error);
        }
        if let Some(kept) = self.kept(tenant, name, &version) {
            // Loaded and validated before: swap it in again.
            self.activate(kept.clone());
            tracing::info!(tenant, plugin = name, version = %version, "plugin version re-activated");
            return Ok(kept.info.clone());
        }
        let origin = options.origin.clone();
        match self.prepare(&plugin, wasm, options) {
            Ok(loaded) => {
                let loaded = Arc::new(loaded);
                self.activate(loaded.clone());
                tracing::info!(
                    tenant,
                    plugin = name,
                    version = %version,
                    resources = ?loaded.info.resources,
                    compile = ?loaded.info.compile,
                    validation_ms = loaded.info.validation.as_secs_f64() * 1000.0,
                    "plugin version loaded"
                );
                Ok(loaded.info.clone())
            }
            Err(error) => {
                self.refuse(tenant, name, Some(&version), origin, config_file, &error);
                Err(error)
            }
        }
    }
    /// Compiles and validates one version.
    pub(super) fn prepare(
        &self,
        plugin: &PluginRef,
        wasm: &[u8],
        options: LoadOptions,
    ) -> Result<Loaded, PluginError> {
        let parts = &self.inner.parts;
        let wasm_sha256 = sha256_hex(wasm);
        let (component, compile, cache_entry) = match self.compiled(&wasm_sha256) {
            Some(component) => (component, CompileSource::Memory, None),
            None => parts.compile(plugin, wasm, &wasm_sha256)?,
        };
        let imports = parts.imports(&component);
        parts.check_imports(plugin, &component)?;
        let started = Instant::now();
        let incompatible = |e: wasmtime::Error| PluginError::Incompatible {
            plugin: plugin.clone(),
            source: boxed(e),
        };
        let instance_pre = parts
            .linker
            .instantiate_pre(&component)
            .map_err(incompatible)?;
        let pre = MappingPre::new(instance_pre).map_err(incompatible)?;
        let config = options.config.clone().unwrap_or_default();
        let limits = self.limits(&plugin.tenant);

        // Configure, then read the resources and their schemas (the
        // instance is gone, and its pool permit returned, before the sample
        // batch below takes its own).
        let described = self.with_instance(plugin, &pre, &config, &limits, |mapper, store| {
            let resources = mapper
                .call_resources(&mut *store)
                .map_err(CallFailure::calling)?;
            let mut out = Vec::with_capacity(resources.len());
            for resource in resources {
                let columns = mapper
                    .call_schema(&mut *store, &resource)
                    .map_err(CallFailure::calling)?
                    .map_err(CallFailure::Guest)?;
                out.push((resource, columns));
            }
            Ok(out)
        })?;

        if described.is_empty() {
            return Err(PluginError::InvalidSchema {
                plugin: plugin.clone(),
                resource: "*".into(),
                detail: "the plugin declares no resources".into(),
            });
        }
        let mut resources = Vec::with_capacity(described.len());
        let mut schemas = BTreeMap::new();
        for (resource, columns) in described {
            if resource.trim().is_empty() || schemas.contains_key(&resource) {
                return Err(PluginError::InvalidSchema {
                    plugin: plugin.clone(),
                    resource: resource.clone(),
                    detail: "resource names must be non-empty and unique".into(),
                });
            }
            let schema = schema_from_wit(plugin, &resource, columns)?;
            schemas.insert(resource.clone(), schema);
            resources.push(resource);
        }

        let mut loaded = Loaded {
            info: PluginInfo {
                tenant: plugin.tenant.to_string(),
                name: plugin.plugin.to_string(),
                version: plugin.version.clone(),
                wasm_sha256,
                resources,
                schemas,
                imports,
                configured: options.config.is_some(),
                loaded_at: SystemTime::now(),
                compile,
                validation: Duration::ZERO,
                sample: None,
                origin: options.origin.clone(),
            },
            plugin: plugin.clone(),
            component,
            pre,
            config,
        };
        if let Some(sample) = options.sample {
            loaded.info.sample = Some(self.run_sample(&loaded, &limits, sample)?);
        }
        loaded.info.validation = started.elapsed();
        // Accepted: only now does a fresh compile go into the disk cache.
        if let Some(entry) = cache_entry {
            parts.store(entry, &loaded.component);
        }
        Ok(loaded)
    }

    fn run_sample(
        &self,
        loaded: &Loaded,
        limits: &PluginLimits,
        sample: Sample,
    ) -> Result<SampleSummary, PluginError> {
        let plugin = &loaded.plugin;
        let batches: Vec<(String, Vec<String>)> = match sample {
            Sample::Records(records) => loaded
                .info
                .resources
                .iter()
                .map(|r| (r.clone(), records.clone()))
                .collect(),
            Sample::PerResource(map) => map.into_iter().collect(),
        };
        let mut summary = SampleSummary {
            resources: Vec::new(),
            records: 0,
            rows: 0,
            rejects: 0,
        };
        for (resource, records) in batches {
            let batch = self
                .run(loaded, &resource, &records, limits)
                .map_err(|source| PluginError::Sample {
                    plugin: plugin.clone(),
                    resource: resource.clone(),
                    source: Box::new(source),
                })?;
            if !records.is_empty() && batch.rows.is_empty() && batch.rejects.len() >= records.len()
            {
                return Err(PluginError::SampleRejected {
                    plugin: plugin.clone(),
                    resource,
                    count: records.len(),
                    first: batch
                        .rejects
                        .first()
                        .map(|r| match &r.field {
                            Some(field) => format!("{field}: {}", r.reason),
                            None => r.reason.clone(),
                        })
                        .unwrap_or_default(),
                });
            }
            summary.records += records.len();
            summary.rows += batch.rows.len();
            summary.rejects += batch.rejects.len();
            summary.resources.push(resource);
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::super::RuntimeConfig;
    use super::super::test_support::{component, files_under, load_mode, misbehave_wasm};
    use super::*;
    use crate::error::{GuestError, GuestFailure};

    #[test]
    fn uploads_over_their_limits_are_refused_before_compiling() {
        let runtime = PluginRuntime::new(RuntimeConfig {
            uploads: crate::UploadLimits {
                max_component: 1 << 20,
                max_config: 64,
                max_plugins_per_tenant: 1,
                ..crate::UploadLimits::default()
            },
            ..RuntimeConfig::default()
        })
        .unwrap();
        // Not even wasm: refused for its size, never compiled.
        let big = vec![0u8; (1 << 20) + 1];
        let err = runtime
            .load_blocking("acme", "big", &big, LoadOptions::default())
            .unwrap_err();
        assert_eq!(err.kind(), "too-large", "{}", err.chain());
        assert!(err.to_string().contains("component"), "{err}");
        let err = runtime
            .load_blocking(
                "acme",
                "wordy",
                &misbehave_wasm(),
                LoadOptions {
                    config: Some("x".repeat(65)),
                    ..LoadOptions::default()
                },
            )
            .unwrap_err();
        assert_eq!(err.kind(), "too-large", "{}", err.chain());
        assert!(err.to_string().contains("configuration"), "{err}");
        // One plugin per tenant: a second name is refused, the first one
        // can still be replaced, another tenant has its own count.
        load_mode(&runtime, "acme", "ok");
        let err = runtime
            .load_blocking("acme", "second", &misbehave_wasm(), LoadOptions::default())
            .unwrap_err();
        assert_eq!(err.kind(), "too-many-plugins", "{}", err.chain());
        load_mode(&runtime, "acme", "ok");
        load_mode(&runtime, "globex", "ok");
        let kinds: Vec<&str> = runtime.refusals().iter().map(|r| r.kind).collect();
        assert_eq!(kinds, ["too-large", "too-large", "too-many-plugins"]);
    }

    #[test]
    fn a_component_refused_for_its_imports_leaves_no_cache_entry() {
        let cache = tempfile::tempdir().unwrap();
        let runtime = PluginRuntime::new(RuntimeConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..RuntimeConfig::default()
        })
        .unwrap();
        for (wat, kind) in [
            (
                r#"(component (import "wasi:sockets/tcp@0.2.6" (instance)))"#,
                "forbidden-import",
            ),
            (
                r#"(component (import "ml-connector:mapping/host@0.1.0" (instance)))"#,
                "contract-version",
            ),
        ] {
            let err = runtime
                .load_blocking("acme", "items", wat.as_bytes(), LoadOptions::default())
                .unwrap_err();
            assert_eq!(err.kind(), kind, "{}", err.chain());
            let cached = files_under(cache.path());
            assert!(
                cached.is_empty(),
                "refused for `{kind}` yet in the compile cache: {cached:?}"
            );
        }
        // The same cache does receive an accepted component.
        let wasm = misbehave_wasm();
        load_mode(&runtime, "acme", "ok");
        let cached = files_under(cache.path());
        let names: Vec<String> = cached
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        assert_eq!(
            names,
            vec![format!("{}.cwasm", sha256_hex(&wasm))],
            "{cached:?}"
        );
        let kinds: Vec<&str> = runtime.refusals().iter().map(|r| r.kind).collect();
        assert_eq!(kinds, vec!["forbidden-import", "contract-version"]);
    }

    #[tokio::test]
    async fn a_refused_script_carries_its_location_as_data() {
        let runtime = PluginRuntime::new(RuntimeConfig::default()).unwrap();
        let script = "resource = \"invoices\"\n\n[[column]]\nname = \"Supplier\"\ntype = \"text\"\nexpr = \"uper(Supplier)\"\n";
        let options = LoadOptions {
            config: Some(script.into()),
            ..LoadOptions::default()
        };
        let file = "/p/acme/invoices.toml";
        let err = runtime
            .load_from_files(
                "acme",
                "invoices",
                component("scripted"),
                options,
                Some(file.into()),
            )
            .await
            .unwrap_err();
        // The scripted guest's located error, field by field, as it gave it.
        let failure = err
            .guest_failure()
            .cloned()
            .unwrap_or_else(|| panic!("{}", err.chain()));
        assert!(
            matches!(
                &err,
                PluginError::Guest {
                    error: GuestError::InvalidConfig(_),
                    ..
                }
            ),
            "{}",
            err.chain()
        );
        assert_eq!(
            (
                failure.kind.as_str(),
                failure.file.as_deref(),
                failure.line,
                failure.column,
                failure.output_column.as_deref()
            ),
            ("script", None, Some(6), Some(9), Some("Supplier")),
            "{failure:?}"
        );
        assert!(
            failure
                .message
                .starts_with("in expr: unknown function \"uper\""),
            "{failure:?}"
        );
        // The refusal names the script's file, as text and as data.
        let refusals = runtime.refusals();
        let [refusal] = refusals.as_slice() else {
            panic!("{refusals:?}");
        };
        assert_eq!(refusal.failure, Some(failure.in_file(file)));
        assert!(
            refusal.reason.starts_with(&format!(
                "{file}:6:9: column \"Supplier\": in expr: unknown function \"uper\""
            )) && refusal.reason.ends_with("refused this configuration)"),
            "{}",
            refusal.reason
        );
        let json = serde_json::to_value(refusal).unwrap();
        assert_eq!(json["failure"]["line"], 6, "{json}");
        assert_eq!(json["failure"]["file"], file, "{json}");

        // A plugin's unlocated refusal has its kind and message only.
        let err = runtime
            .load(
                "acme",
                "items",
                misbehave_wasm(),
                Some("no-such-mode".into()),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.guest_failure(),
            Some(&GuestFailure::new(
                "config",
                "unknown mode \"no-such-mode\""
            )),
            "{}",
            err.chain()
        );
    }

    #[tokio::test]
    async fn unknown_plugins_and_names() {
        let runtime = PluginRuntime::new(RuntimeConfig::default()).unwrap();
        let err = runtime
            .map_batch("acme", "gl", "invoices", &[])
            .await
            .unwrap_err();
        assert!(matches!(err, PluginError::NotFound { .. }), "{err}");
        assert!(matches!(
            runtime.rollback("acme", "gl"),
            Err(PluginError::NotFound { .. })
        ));
        let err = runtime
            .load("../etc", "gl", vec![], None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, PluginError::InvalidName { what: "tenant", .. }),
            "{err}"
        );
        let err = runtime
            .load("acme", "gl", b"junk".to_vec(), None)
            .await
            .unwrap_err();
        assert!(matches!(err, PluginError::Compile { .. }), "{err}");
        let refusals = runtime.refusals();
        assert_eq!(refusals.len(), 1);
        assert_eq!(refusals[0].kind, "compile");
        assert!(runtime.list().is_empty());
    }
}
