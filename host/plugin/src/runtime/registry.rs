//! The registry: the versions kept per (tenant, plugin), the current one
//! of each in an `ArcSwap`, swaps, rollback, and the refusals recorded.
//!
//! A batch takes the current version once, at its start, so a swap never
//! affects a batch already running. Every version loaded is kept (up to
//! [`RuntimeConfig::max_versions`](super::RuntimeConfig::max_versions) per
//! plugin), so rollback is a swap.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use mlc_common::Schema;
use wasmtime::component::Component;

use super::load::SampleSummary;
use super::{PluginRuntime, lock, read, write};
use crate::bindings::MappingPre;
use crate::engine::CompileSource;
use crate::error::{GuestError, GuestFailure, PluginError, PluginRef, VersionId};
use crate::host::HostState;

/// A loaded plugin version.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PluginInfo {
    /// The tenant.
    pub tenant: String,
    /// The plugin name.
    pub name: String,
    /// The version: SHA-256 of the wasm and the configuration.
    pub version: VersionId,
    /// SHA-256 of the wasm alone (the compile cache key).
    pub wasm_sha256: String,
    /// The resources the plugin maps, as it declares them.
    pub resources: Vec<String>,
    /// The output schema of each resource.
    pub schemas: BTreeMap<String, Schema>,
    /// The component's imports.
    pub imports: Vec<String>,
    /// Whether a configuration was given.
    pub configured: bool,
    /// When this version was loaded.
    #[serde(serialize_with = "unix_seconds")]
    pub loaded_at: SystemTime,
    /// How the compiled code was obtained.
    pub compile: CompileSource,
    /// Time spent validating (instantiate, configure, schemas, sample).
    #[serde(serialize_with = "millis")]
    pub validation: Duration,
    /// The sample result, when a sample was given.
    pub sample: Option<SampleSummary>,
    /// Where the component came from, when known.
    pub origin: Option<String>,
}

impl PluginInfo {
    /// The schema of `resource`, if the plugin maps it.
    pub fn schema(&self, resource: &str) -> Option<&Schema> {
        self.schemas.get(resource)
    }

    /// Which plugin version this is.
    pub fn plugin_ref(&self) -> PluginRef {
        PluginRef {
            tenant: self.tenant.as_str().into(),
            plugin: self.name.as_str().into(),
            version: self.version.clone(),
        }
    }
}

fn unix_seconds<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    s.serialize_u64(secs)
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// A component that was refused, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Refusal {
    /// The tenant.
    pub tenant: String,
    /// The plugin name.
    pub name: String,
    /// The refused version; `None` when its files could not be read (kind
    /// `io`), so that the version is not known.
    pub version: Option<VersionId>,
    /// The cause, machine-readable (`forbidden-import`, `sample`, `io`, ...).
    pub kind: &'static str,
    /// The full reason.
    pub reason: String,
    /// What the plugin itself reported, as it reported it, when it refused
    /// (kind `guest`) or failed its sample (kind `sample`): its cause,
    /// message, and where the fault is (file, line, column, output
    /// column). A fault in a configuration read from a file names that
    /// file.
    pub failure: Option<GuestFailure>,
    /// Where the component came from, when known.
    pub origin: Option<String>,
    /// When it was refused.
    #[serde(serialize_with = "unix_seconds")]
    pub at: SystemTime,
}

/// A loaded plugin: its current version and the versions kept.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PluginStatus {
    /// The version serving batches now.
    pub current: PluginInfo,
    /// Every version kept, oldest first.
    pub versions: Vec<VersionId>,
    /// How many rollbacks are possible.
    pub rollback_depth: usize,
}

/// One loaded version.
pub(crate) struct Loaded {
    pub info: PluginInfo,
    pub plugin: PluginRef,
    pub component: Component,
    pub pre: MappingPre<HostState>,
    pub config: String,
}

pub(super) struct History {
    /// Kept versions, oldest first.
    versions: Vec<Arc<Loaded>>,
    /// Activation order; the last one is current.
    stack: Vec<VersionId>,
}

pub(super) struct Slot {
    current: ArcSwap<Loaded>,
    history: Mutex<History>,
}

pub(super) type Key = (String, String);

/// Refusals kept in memory.
const MAX_REFUSALS: usize = 256;

impl PluginRuntime {
    /// Records (and logs) a refused version of (`tenant`, `name`);
    /// `config_file` is where its configuration was read from, if a file.
    pub(crate) fn refuse(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&VersionId>,
        origin: Option<String>,
        config_file: Option<&str>,
        error: &PluginError,
    ) {
        let reason = error.refusal_reason(config_file);
        tracing::warn!(
            tenant,
            plugin = name,
            version = version.map(VersionId::short).unwrap_or("unknown"),
            kind = error.kind(),
            origin = origin.as_deref().unwrap_or("api"),
            reason = %reason,
            "plugin refused; the previous version keeps serving"
        );
        let mut refusals = lock(&self.inner.refusals);
        if refusals.len() >= MAX_REFUSALS {
            refusals.remove(0);
        }
        refusals.push(Refusal {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            version: version.cloned(),
            kind: error.kind(),
            reason,
            failure: error.refusal_failure(config_file),
            origin,
            at: SystemTime::now(),
        });
    }

    /// Components refused since the runtime started (the latest 256),
    /// oldest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        lock(&self.inner.refusals).clone()
    }

    pub(super) fn kept(
        &self,
        tenant: &str,
        name: &str,
        version: &VersionId,
    ) -> Option<Arc<Loaded>> {
        let slot = self.slot(tenant, name)?;
        let history = lock(&slot.history);
        history
            .versions
            .iter()
            .find(|l| &l.info.version == version)
            .cloned()
    }

    pub(super) fn slot(&self, tenant: &str, name: &str) -> Option<Arc<Slot>> {
        read(&self.inner.slots)
            .get(&(tenant.to_owned(), name.to_owned()))
            .cloned()
    }

    /// A compiled component with the same wasm, from any loaded version.
    pub(super) fn compiled(&self, wasm_sha256: &str) -> Option<Component> {
        let slots: Vec<Arc<Slot>> = read(&self.inner.slots).values().cloned().collect();
        slots.iter().find_map(|slot| {
            lock(&slot.history)
                .versions
                .iter()
                .find(|l| l.info.wasm_sha256 == wasm_sha256)
                .map(|l| l.component.clone())
        })
    }

    /// Makes `loaded` the current version of its plugin.
    pub(super) fn activate(&self, loaded: Arc<Loaded>) {
        let key = (loaded.info.tenant.clone(), loaded.info.name.clone());
        let slot = {
            let mut slots = write(&self.inner.slots);
            slots
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(Slot {
                        current: ArcSwap::new(loaded.clone()),
                        history: Mutex::new(History {
                            versions: Vec::new(),
                            stack: Vec::new(),
                        }),
                    })
                })
                .clone()
        };
        let mut history = lock(&slot.history);
        let version = loaded.info.version.clone();
        if !history.versions.iter().any(|l| l.info.version == version) {
            history.versions.push(loaded.clone());
        }
        history.stack.retain(|v| v != &version);
        history.stack.push(version);
        while history.versions.len() > self.inner.max_versions {
            // Drop the oldest version that is not current.
            let current = history.stack.last().cloned();
            let Some(pos) = history
                .versions
                .iter()
                .position(|l| Some(&l.info.version) != current.as_ref())
            else {
                break;
            };
            let dropped = history.versions.remove(pos);
            history.stack.retain(|v| v != &dropped.info.version);
        }
        slot.current.store(loaded);
    }

    /// Swaps back to the version that was current before the current one.
    /// The version rolled back from stays kept (load it again, or
    /// [`PluginRuntime::activate_version`], to return to it).
    pub fn rollback(&self, tenant: &str, name: &str) -> Result<PluginInfo, PluginError> {
        let slot = self
            .slot(tenant, name)
            .ok_or_else(|| PluginError::NotFound {
                tenant: tenant.to_owned(),
                plugin: name.to_owned(),
            })?;
        let mut history = lock(&slot.history);
        if history.stack.len() < 2 {
            return Err(PluginError::NoSuchVersion {
                tenant: tenant.to_owned(),
                plugin: name.to_owned(),
                detail: "no previous version to roll back to".into(),
            });
        }
        let from = history.stack.pop();
        let target = history.stack.last().cloned();
        let loaded = history
            .versions
            .iter()
            .find(|l| Some(&l.info.version) == target.as_ref())
            .cloned()
            .ok_or_else(|| PluginError::NoSuchVersion {
                tenant: tenant.to_owned(),
                plugin: name.to_owned(),
                detail: "the previous version is no longer kept".into(),
            })?;
        slot.current.store(loaded.clone());
        tracing::info!(tenant, plugin = name, from = ?from.map(|v| v.short().to_owned()), to = %loaded.info.version, "plugin rolled back");
        Ok(loaded.info.clone())
    }

    /// Swaps to a kept version, named by a prefix (at least 4 hex digits)
    /// of its version id.
    pub fn activate_version(
        &self,
        tenant: &str,
        name: &str,
        version_prefix: &str,
    ) -> Result<PluginInfo, PluginError> {
        let slot = self
            .slot(tenant, name)
            .ok_or_else(|| PluginError::NotFound {
                tenant: tenant.to_owned(),
                plugin: name.to_owned(),
            })?;
        let matches: Vec<Arc<Loaded>> = lock(&slot.history)
            .versions
            .iter()
            .filter(|l| l.info.version.matches_prefix(version_prefix))
            .cloned()
            .collect();
        match matches.as_slice() {
            [one] => {
                self.activate(one.clone());
                Ok(one.info.clone())
            }
            [] => Err(PluginError::NoSuchVersion {
                tenant: tenant.to_owned(),
                plugin: name.to_owned(),
                detail: format!("no kept version starts with `{version_prefix}`"),
            }),
            _ => Err(PluginError::NoSuchVersion {
                tenant: tenant.to_owned(),
                plugin: name.to_owned(),
                detail: format!("`{version_prefix}` names several versions"),
            }),
        }
    }

    /// The current version of every loaded plugin, sorted by tenant and name.
    pub fn list(&self) -> Vec<PluginStatus> {
        let slots: Vec<Arc<Slot>> = read(&self.inner.slots).values().cloned().collect();
        let mut out: Vec<PluginStatus> = slots
            .iter()
            .map(|slot| {
                let history = lock(&slot.history);
                PluginStatus {
                    current: slot.current.load().info.clone(),
                    versions: history
                        .versions
                        .iter()
                        .map(|l| l.info.version.clone())
                        .collect(),
                    rollback_depth: history.stack.len().saturating_sub(1),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.current.tenant, &a.current.name).cmp(&(&b.current.tenant, &b.current.name))
        });
        out
    }

    /// The current version of a plugin.
    pub fn info(&self, tenant: &str, name: &str) -> Result<PluginInfo, PluginError> {
        Ok(self.current(tenant, name)?.info.clone())
    }

    /// The configuration the current version of a plugin was loaded with
    /// (for the scripted mapper, its mapping script; empty when none).
    pub fn config(&self, tenant: &str, name: &str) -> Result<String, PluginError> {
        Ok(self.current(tenant, name)?.config.clone())
    }

    /// The output schema of `resource` in the current version of a plugin.
    pub fn schema(&self, tenant: &str, name: &str, resource: &str) -> Result<Schema, PluginError> {
        let loaded = self.current(tenant, name)?;
        loaded
            .info
            .schema(resource)
            .cloned()
            .ok_or_else(|| unknown_resource(&loaded, resource))
    }

    pub(super) fn current(&self, tenant: &str, name: &str) -> Result<Arc<Loaded>, PluginError> {
        self.slot(tenant, name)
            .map(|slot| slot.current.load_full())
            .ok_or_else(|| PluginError::NotFound {
                tenant: tenant.to_owned(),
                plugin: name.to_owned(),
            })
    }
}

/// What a refusal records of an error.
impl PluginError {
    /// The reason a refusal of this error records, `config_file` being
    /// where the configuration was read from, if a file: a configuration
    /// the plugin refused names the file, as `FILE:LINE:COL: message (...
    /// refused this configuration)` when the plugin located the fault (as
    /// `mappings/README.md` documents for mapping scripts). Any other
    /// error gives its chain.
    pub fn refusal_reason(&self, config_file: Option<&str>) -> String {
        match (self, config_file) {
            (
                PluginError::Guest {
                    plugin,
                    error: GuestError::InvalidConfig(failure),
                },
                Some(file),
            ) if failure.is_located() => format!(
                "{} ({plugin} refused this configuration)",
                failure.in_file(file)
            ),
            (
                PluginError::Guest {
                    error: GuestError::InvalidConfig(_),
                    ..
                },
                Some(file),
            ) => format!("{} (configuration file {file})", self.chain()),
            _ => self.chain(),
        }
    }

    /// The plugin's own failure behind this error, as a refusal records
    /// it: naming `config_file` (when the configuration was read from one)
    /// if the fault is in the configuration, i.e. a refused configuration
    /// or any failure the plugin located.
    pub fn refusal_failure(&self, config_file: Option<&str>) -> Option<GuestFailure> {
        let failure = self.guest_failure()?;
        let in_config = failure.is_located()
            || matches!(
                self,
                PluginError::Guest {
                    error: GuestError::InvalidConfig(_),
                    ..
                }
            );
        Some(match config_file {
            Some(file) if in_config => failure.in_file(file),
            _ => failure.clone(),
        })
    }
}

pub(super) fn unknown_resource(loaded: &Loaded, resource: &str) -> PluginError {
    PluginError::UnknownResource {
        plugin: loaded.plugin.clone(),
        resource: resource.to_owned(),
        known: loaded.info.resources.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_configuration_names_its_file() {
        let plugin = PluginRef {
            tenant: "acme".into(),
            plugin: "invoices".into(),
            version: VersionId::from_hex("0123456789abcdef"),
        };
        let config = |failure: GuestFailure| PluginError::Guest {
            plugin: plugin.clone(),
            error: GuestError::InvalidConfig(Box::new(failure)),
        };
        let file = "/p/acme/invoices.toml";
        let located = GuestFailure {
            line: Some(12),
            column: Some(9),
            output_column: Some("Supplier".into()),
            ..GuestFailure::new("script", "unknown function")
        };
        let error = config(located.clone());
        assert_eq!(
            error.refusal_reason(Some(file)),
            "/p/acme/invoices.toml:12:9: column \"Supplier\": unknown function \
             (plugin `invoices` version 0123456789ab of tenant `acme` refused this configuration)"
        );
        assert_eq!(
            error.refusal_failure(Some(file)),
            Some(GuestFailure {
                file: Some(file.into()),
                ..located.clone()
            })
        );
        assert_eq!(error.refusal_failure(None), Some(located));
        assert_eq!(error.refusal_reason(None), error.chain());
        // Refused but not located: the whole error, and the file (even
        // when the message looks located: it is never parsed).
        for failure in [
            GuestFailure::new("config", "unknown mode \"x\""),
            GuestFailure::new("config", "mapping script line 3:9: y"),
        ] {
            let error = config(failure.clone());
            let reason = error.refusal_reason(Some(file));
            assert_eq!(
                reason,
                format!("{} (configuration file {file})", error.chain())
            );
            assert_eq!(
                error.refusal_failure(Some(file)),
                Some(failure.in_file(file))
            );
        }
        // Not a refusal of the configuration: the error as it is, and its
        // failure without the file.
        let lookup = GuestFailure::new("lookup", "reference data unavailable");
        let internal = PluginError::Guest {
            plugin: plugin.clone(),
            error: GuestError::Internal(Box::new(lookup.clone())),
        };
        assert_eq!(internal.refusal_reason(Some(file)), internal.chain());
        assert_eq!(internal.refusal_failure(Some(file)), Some(lookup));
        let io = PluginError::Io {
            path: file.into(),
            source: std::io::Error::other("gone"),
        };
        assert_eq!(io.refusal_failure(Some(file)), None);
    }
}
