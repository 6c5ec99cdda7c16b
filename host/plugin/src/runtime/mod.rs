//! [`PluginRuntime`]: load, validate, swap, run and roll back plugins.
//!
//! Lifecycle, per the house rules:
//!
//! - one `Engine` and `Linker` per runtime (per process in practice);
//! - one compiled `Component` and one pre-instantiated `MappingPre` per
//!   plugin version, built and validated when the version is loaded;
//! - one fresh `Store` per batch call, holding the batch's tenant, the
//!   limits of that tenant and an empty WASI context; dropped after the
//!   call, trapped or not (a trapped instance is never entered again);
//! - instances from wasmtime's pooling allocator (slots reserved once and
//!   reused, memory kept resident between calls), at most
//!   [`RuntimeConfig::max_concurrent_calls`] at a time: a call beyond that
//!   waits for a permit instead of failing; one tenant holds at most
//!   [`RuntimeConfig::max_calls_per_tenant`] of them, so the others' calls
//!   keep flowing while it saturates its share.
//!
//! Each (tenant, plugin) has a slot whose current version sits in an
//! `ArcSwap`: a batch takes the current version once, at its start, so a
//! swap never affects a batch already running. Every version loaded is kept
//! (up to [`RuntimeConfig::max_versions`] per plugin), so rollback is a swap.
//! Compiling and validating run off the async runtime.
//!
//! The runtime is split along its seams:
//!
//! - this module: [`RuntimeConfig`], the shared state and the limits;
//! - [`records`]: validation samples and the record texts they hold;
//! - [`registry`]: the versions kept per plugin, swaps, rollback, refusals;
//! - [`upload`]: the upload limits, checked before anything is compiled;
//! - [`load`]: compiling and validating a version before it is swapped in;
//! - [`call`]: one batch call in a fresh, bounded store;
//! - [`candidate`]: a version validated and run beside the current one,
//!   never swapped in (shadow runs).

mod call;
mod candidate;
mod load;
mod records;
mod registry;
mod upload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::engine::{CompileSettings, EngineParts, PoolSizing, version_hex};
use crate::error::{PluginError, VersionId};
use crate::limits::{CompileConfig, EpochTicker, PluginLimits, UploadLimits};
use crate::pool::{
    CallPermits, InstanceAllocator, default_max_concurrent_calls, default_per_tenant,
};
use crate::reference::{NoReferenceData, ReferenceData};

pub use candidate::Candidate;
pub use load::{LoadOptions, SampleSummary};
pub(crate) use records::UniqueMembers;
pub use records::{Sample, records_of};
use registry::{Key, Slot};
pub use registry::{PluginInfo, PluginStatus, Refusal};

/// How the runtime is set up.
#[derive(Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached (by SHA-256 of the wasm); `None`
    /// compiles every new component.
    pub cache_dir: Option<PathBuf>,
    /// Limits of every call, unless a tenant has its own
    /// ([`PluginRuntime::set_tenant_limits`]).
    pub default_limits: PluginLimits,
    /// Meter fuel (deterministic CPU bounds, ~25-30 % slower). Turned on
    /// automatically when `default_limits.fuel` is set.
    pub consume_fuel: bool,
    /// Epoch tick: the granularity of deadlines. Default 10 ms.
    pub epoch_tick: Duration,
    /// Reference data for `lookup`, queried with the batch's tenant.
    pub reference: Arc<dyn ReferenceData>,
    /// Versions kept per plugin for rollback (at least 2). Default 16.
    pub max_versions: usize,
    /// Take instances from wasmtime's pooling allocator (default). Its
    /// slots are reserved when the runtime is built; if they cannot be (too
    /// little address space) the runtime logs a warning and uses the
    /// on-demand allocator, as it does when this is `false`. With the pool,
    /// every tenant's memory limit must be at most the pool's memory size:
    /// the larger of `default_limits.memory` and
    /// [`PluginLimits::DEFAULT_MEMORY`].
    pub pooling: bool,
    /// Batch calls (and validation runs) that may hold an instance at once;
    /// the pool is sized from it and further calls wait. Default: four per
    /// available core, at least 4.
    pub max_concurrent_calls: usize,
    /// What a tenant may hand the runtime to load.
    pub uploads: UploadLimits,
    /// Where and under which limits uploads are compiled: out of process
    /// by default.
    pub compile: CompileConfig,
    /// Call permits one tenant may hold at once, so that one tenant's
    /// calls cannot take the whole pool. `None` (default): half the
    /// permits, at least one.
    pub max_calls_per_tenant: Option<usize>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            default_limits: PluginLimits::default(),
            consume_fuel: false,
            epoch_tick: Duration::from_millis(10),
            reference: Arc::new(NoReferenceData),
            max_versions: 16,
            pooling: true,
            max_concurrent_calls: default_max_concurrent_calls(),
            uploads: UploadLimits::default(),
            compile: CompileConfig::default(),
            max_calls_per_tenant: None,
        }
    }
}

impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("cache_dir", &self.cache_dir)
            .field("default_limits", &self.default_limits)
            .field("consume_fuel", &self.consume_fuel)
            .field("epoch_tick", &self.epoch_tick)
            .field("max_versions", &self.max_versions)
            .field("pooling", &self.pooling)
            .field("max_concurrent_calls", &self.max_concurrent_calls)
            .field("uploads", &self.uploads)
            .field("compile", &self.compile)
            .field("max_calls_per_tenant", &self.max_calls_per_tenant)
            .finish_non_exhaustive()
    }
}

struct Inner {
    parts: EngineParts,
    default_limits: PluginLimits,
    tick: Duration,
    reference: Arc<dyn ReferenceData>,
    max_versions: usize,
    uploads: UploadLimits,
    slots: RwLock<HashMap<Key, Arc<Slot>>>,
    tenant_limits: RwLock<HashMap<String, PluginLimits>>,
    refusals: Mutex<Vec<Refusal>>,
    /// One per instance the pool can hold at once.
    permits: CallPermits,
    _ticker: EpochTicker,
}

/// The sandboxed plugin runtime. Cheap to clone: clones share everything.
#[derive(Clone)]
pub struct PluginRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("default_limits", &self.inner.default_limits)
            .field("fuel", &self.inner.parts.fuel)
            .finish_non_exhaustive()
    }
}

/// The version id a component with a configuration gets when loaded:
/// SHA-256 over the wasm's length, the wasm and the configuration.
pub fn version_of(wasm: &[u8], config: Option<&str>) -> VersionId {
    VersionId::from_hex(&version_hex(wasm, config))
}

/// Checks a tenant or plugin name: it becomes a path component of the
/// plugins directory.
pub fn check_name(what: &'static str, name: &str) -> Result<(), PluginError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(PluginError::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

impl PluginRuntime {
    /// Builds the engine, the linker and the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self, PluginError> {
        if config.max_versions < 2 {
            return Err(PluginError::Config(
                "max_versions must be at least 2 (the current version and one to roll back to)"
                    .into(),
            ));
        }
        if config.epoch_tick.is_zero() {
            return Err(PluginError::Config("epoch_tick must be positive".into()));
        }
        check_limits(&config.default_limits)?;
        if config.max_concurrent_calls == 0 {
            return Err(PluginError::Config(
                "max_concurrent_calls must be at least 1".into(),
            ));
        }
        let per_tenant = match config.max_calls_per_tenant {
            Some(0) => {
                return Err(PluginError::Config(
                    "max_calls_per_tenant must be at least 1".into(),
                ));
            }
            Some(n) => n.min(config.max_concurrent_calls),
            None => default_per_tenant(config.max_concurrent_calls),
        };
        let fuel = config.consume_fuel || config.default_limits.fuel.is_some();
        let pool = config.pooling.then(|| PoolSizing {
            max_calls: config.max_concurrent_calls,
            max_memory: pool_memory(&config.default_limits),
        });
        let compile = CompileSettings {
            config: config.compile.clone(),
            max_wasm_stack: config.uploads.shape.max_wasm_stack,
        };
        let parts = EngineParts::new(config.cache_dir.as_deref(), fuel, pool, compile)?;
        let ticker = EpochTicker::start(parts.engine.weak(), config.epoch_tick)
            .map_err(|e| PluginError::Engine(Box::new(e)))?;
        Ok(Self {
            inner: Arc::new(Inner {
                parts,
                default_limits: config.default_limits,
                tick: config.epoch_tick,
                reference: config.reference,
                max_versions: config.max_versions,
                uploads: config.uploads,
                slots: RwLock::new(HashMap::new()),
                tenant_limits: RwLock::new(HashMap::new()),
                refusals: Mutex::new(Vec::new()),
                permits: CallPermits::new(config.max_concurrent_calls, per_tenant),
                _ticker: ticker,
            }),
        })
    }

    /// The instance allocator in use: the pool, or the on-demand allocator
    /// and why.
    pub fn allocator(&self) -> &InstanceAllocator {
        &self.inner.parts.allocator
    }

    /// What a tenant may hand the runtime to load.
    pub fn upload_limits(&self) -> &UploadLimits {
        &self.inner.uploads
    }

    /// Whether this runtime meters fuel.
    pub fn consumes_fuel(&self) -> bool {
        self.inner.parts.fuel
    }

    /// Sets the limits of every call for `tenant`'s plugins.
    pub fn set_tenant_limits(&self, tenant: &str, limits: PluginLimits) -> Result<(), PluginError> {
        check_name("tenant", tenant)?;
        check_limits(&limits)?;
        if limits.fuel.is_some() && !self.inner.parts.fuel {
            return Err(PluginError::Config(format!(
                "tenant `{tenant}` has a fuel limit but the runtime was built without fuel metering (RuntimeConfig::consume_fuel)"
            )));
        }
        if let InstanceAllocator::Pooling { max_memory, .. } = self.inner.parts.allocator
            && limits.memory > max_memory
        {
            return Err(PluginError::Config(format!(
                "tenant `{tenant}` has a memory limit of {} bytes, above the instance pool's {max_memory} (raise RuntimeConfig::default_limits.memory or turn RuntimeConfig::pooling off)",
                limits.memory
            )));
        }
        write(&self.inner.tenant_limits).insert(tenant.to_owned(), limits);
        Ok(())
    }

    /// The limits that apply to `tenant`'s calls.
    pub fn limits(&self, tenant: &str) -> PluginLimits {
        read(&self.inner.tenant_limits)
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.inner.default_limits.clone())
    }
}

/// The linear memory size of the pool's slots: the larger of the default
/// memory limit and [`PluginLimits::DEFAULT_MEMORY`], in whole wasm pages.
fn pool_memory(default_limits: &PluginLimits) -> usize {
    const PAGE: usize = 64 << 10;
    default_limits
        .memory
        .max(PluginLimits::DEFAULT_MEMORY)
        .div_ceil(PAGE)
        .saturating_mul(PAGE)
}

fn check_limits(limits: &PluginLimits) -> Result<(), PluginError> {
    if limits.memory < (1 << 20) {
        return Err(PluginError::Config(format!(
            "memory limit {} is below 1 MiB: no Rust guest starts in that",
            limits.memory
        )));
    }
    if limits.deadline.is_zero() {
        return Err(PluginError::Config("the deadline must be positive".into()));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers shared by the runtime's tests.

    use std::path::PathBuf;

    use super::{LoadOptions, PluginRuntime};

    /// The staged `misbehave` component (`cargo xtask build-plugins`).
    pub(crate) fn misbehave_wasm() -> Vec<u8> {
        component("misbehave")
    }

    /// A staged component (`cargo xtask build-plugins`) by name.
    pub(crate) fn component(name: &str) -> Vec<u8> {
        let dir = std::env::var_os("ML_CONNECTOR_PLUGINS_BUILT")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins")
            });
        let path = dir.join(format!("{name}.wasm"));
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "component {} missing ({e}): run `cargo xtask build-plugins` \
                 (with CARGO_TARGET_DIR=<dir>, then set ML_CONNECTOR_PLUGINS_BUILT=<dir>/plugins)",
                path.display()
            )
        })
    }

    pub(crate) fn load_mode(runtime: &PluginRuntime, tenant: &str, mode: &str) {
        runtime
            .load_blocking(
                tenant,
                "items",
                &misbehave_wasm(),
                LoadOptions {
                    config: Some(mode.into()),
                    ..LoadOptions::default()
                },
            )
            .unwrap_or_else(|e| panic!("loading misbehave `{mode}` for {tenant}: {}", e.chain()));
    }

    /// Every file under `dir`, recursively.
    pub(crate) fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_path_safe() {
        for ok in ["acme", "acme-corp_2", "gl.lines"] {
            check_name("tenant", ok).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(check_name("tenant", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_is_checked() {
        let err = PluginRuntime::new(RuntimeConfig {
            max_versions: 1,
            ..RuntimeConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, PluginError::Config(_)), "{err}");
        let runtime = PluginRuntime::new(RuntimeConfig::default()).unwrap();
        assert!(!runtime.consumes_fuel());
        let err = runtime
            .set_tenant_limits(
                "acme",
                PluginLimits {
                    fuel: Some(1000),
                    ..PluginLimits::default()
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("without fuel metering"), "{err}");
        let fuel = PluginRuntime::new(RuntimeConfig {
            default_limits: PluginLimits {
                fuel: Some(1_000_000),
                ..PluginLimits::default()
            },
            ..RuntimeConfig::default()
        })
        .unwrap();
        assert!(fuel.consumes_fuel());
        let small = PluginLimits {
            memory: 4 << 20,
            ..PluginLimits::default()
        };
        fuel.set_tenant_limits("acme", small.clone()).unwrap();
        assert_eq!(fuel.limits("acme"), small);
        assert_eq!(fuel.limits("globex").memory, PluginLimits::DEFAULT_MEMORY);
    }

    #[test]
    fn pool_by_default_and_every_tenant_memory_fits_it() {
        let runtime = PluginRuntime::new(RuntimeConfig {
            max_concurrent_calls: 3,
            ..RuntimeConfig::default()
        })
        .unwrap();
        assert_eq!(
            runtime.allocator(),
            &InstanceAllocator::Pooling {
                max_concurrent_calls: 3,
                max_memory: PluginLimits::DEFAULT_MEMORY,
            }
        );
        let at_ceiling = PluginLimits {
            memory: PluginLimits::DEFAULT_MEMORY,
            ..PluginLimits::default()
        };
        runtime.set_tenant_limits("acme", at_ceiling).unwrap();
        let above = PluginLimits {
            memory: PluginLimits::DEFAULT_MEMORY + 1,
            ..PluginLimits::default()
        };
        let err = runtime.set_tenant_limits("globex", above).unwrap_err();
        assert!(
            matches!(&err, PluginError::Config(m) if m.contains("globex") && m.contains("pool")),
            "{err}"
        );
        assert_eq!(
            runtime.limits("globex").memory,
            PluginLimits::DEFAULT_MEMORY
        );

        // A larger default memory limit raises the pool's memory size.
        let big = PluginRuntime::new(RuntimeConfig {
            default_limits: PluginLimits {
                memory: (128 << 20) + 1,
                ..PluginLimits::default()
            },
            max_concurrent_calls: 2,
            ..RuntimeConfig::default()
        })
        .unwrap();
        assert_eq!(
            big.allocator(),
            &InstanceAllocator::Pooling {
                max_concurrent_calls: 2,
                max_memory: (128 << 20) + (64 << 10),
            }
        );

        let on_demand = PluginRuntime::new(RuntimeConfig {
            pooling: false,
            ..RuntimeConfig::default()
        })
        .unwrap();
        assert!(
            matches!(on_demand.allocator(), InstanceAllocator::OnDemand { reason } if reason.contains("turned off")),
            "{:?}",
            on_demand.allocator()
        );
        // Without the pool, only the limiter bounds memory.
        on_demand
            .set_tenant_limits(
                "globex",
                PluginLimits {
                    memory: 1 << 30,
                    ..PluginLimits::default()
                },
            )
            .unwrap();

        let err = PluginRuntime::new(RuntimeConfig {
            max_concurrent_calls: 0,
            ..RuntimeConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, PluginError::Config(_)), "{err}");
        let err = PluginRuntime::new(RuntimeConfig {
            max_calls_per_tenant: Some(0),
            ..RuntimeConfig::default()
        })
        .unwrap_err();
        assert!(
            matches!(&err, PluginError::Config(m) if m.contains("max_calls_per_tenant")),
            "{err}"
        );
    }

    #[test]
    fn a_pool_that_cannot_be_reserved_falls_back_to_on_demand() {
        // 2^28 calls need 2^29 memory slots of ~4 GiB each: far beyond any
        // address space, so reserving the pool fails.
        let runtime = PluginRuntime::new(RuntimeConfig {
            max_concurrent_calls: 1 << 28,
            ..RuntimeConfig::default()
        })
        .unwrap();
        assert!(
            matches!(runtime.allocator(), InstanceAllocator::OnDemand { reason } if reason.contains("cannot be reserved")),
            "{:?}",
            runtime.allocator()
        );
        // Tenant memory is then bounded by the limiter only.
        runtime
            .set_tenant_limits(
                "acme",
                PluginLimits {
                    memory: 1 << 30,
                    ..PluginLimits::default()
                },
            )
            .unwrap();
    }
}
