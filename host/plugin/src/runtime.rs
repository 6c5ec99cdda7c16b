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
//!   waits for a permit instead of failing.
//!
//! Each (tenant, plugin) has a slot whose current version sits in an
//! `ArcSwap`: a batch takes the current version once, at its start, so a
//! swap never affects a batch already running. Every version loaded is kept
//! (up to [`RuntimeConfig::max_versions`] per plugin), so rollback is a swap.
//! Compiling and validating run off the async runtime.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use mlc_common::{MappedBatch, Schema};
use wasmtime::component::Component;
use wasmtime::{Store, Trap, WasmBacktrace};

use crate::bindings::{MappingPre, types as wit};
use crate::convert::{batch_from_wit, schema_from_wit};
use crate::engine::{CompileSource, EngineParts, PoolSizing, sha256_hex, version_hex};
use crate::error::{GuestError, PluginError, PluginRef, VersionId, boxed};
use crate::host::HostState;
use crate::limits::{EpochTicker, PluginLimits, deadline_ticks};
use crate::pool::{CallPermits, InstanceAllocator, default_max_concurrent_calls};
use crate::reference::{NoReferenceData, ReferenceData};

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
            .finish_non_exhaustive()
    }
}

/// Records used to validate a component before it is swapped in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sample {
    /// Records mapped as every resource the plugin declares.
    Records(Vec<String>),
    /// Records per resource.
    PerResource(BTreeMap<String, Vec<String>>),
}

impl Sample {
    /// Reads a sample: a JSON array of records (mapped as every resource),
    /// or an object `{ "<resource>": [records...] }`. Record texts are kept
    /// exactly as written, so numbers keep every digit.
    pub fn from_json(origin: &str, text: &str) -> Result<Self, PluginError> {
        use serde_json::value::RawValue;
        let bad = |detail: String| PluginError::BadSample {
            origin: origin.to_owned(),
            detail,
        };
        let trimmed = text.trim_start();
        if trimmed.starts_with('[') {
            let records: Vec<Box<RawValue>> =
                serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
            Ok(Self::Records(records_of(records).map_err(bad)?))
        } else if trimmed.starts_with('{') {
            let map: BTreeMap<String, Vec<Box<RawValue>>> = serde_json::from_str(text)
                .map_err(|e| bad(format!("expected {{\"<resource>\": [records...]}}: {e}")))?;
            let mut out = BTreeMap::new();
            for (resource, records) in map {
                out.insert(resource, records_of(records).map_err(bad)?);
            }
            Ok(Self::PerResource(out))
        } else {
            Err(bad("expected a JSON array of records".into()))
        }
    }
}

/// Records of a JSON array, each an exact JSON object text in which no
/// object (at any depth) names the same member twice: the contract promises
/// plugins records the host has parsed, and a repeated member would be read
/// differently by different readers.
pub fn records_of(records: Vec<Box<serde_json::value::RawValue>>) -> Result<Vec<String>, String> {
    records
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let text = raw.get();
            if !text.starts_with('{') {
                return Err(format!("record {i} is not a JSON object"));
            }
            serde_json::from_str::<UniqueMembers>(text).map_err(|e| format!("record {i}: {e}"))?;
            Ok(text.to_owned())
        })
        .collect()
}

/// Deserializes any JSON value, failing when an object repeats a member.
pub(crate) struct UniqueMembers;

impl<'de> serde::Deserialize<'de> for UniqueMembers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueMembersVisitor)
    }
}

struct UniqueMembersVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueMembersVisitor {
    type Value = UniqueMembers;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_unit<E>(self) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<UniqueMembers, A::Error> {
        while seq.next_element::<UniqueMembers>()?.is_some() {}
        Ok(UniqueMembers)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<UniqueMembers, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            map.next_value::<UniqueMembers>()?;
            if let Some(name) = seen.replace(name) {
                return Err(serde::de::Error::custom(format_args!(
                    "member {name:?} appears twice in one object"
                )));
            }
        }
        Ok(UniqueMembers)
    }
}

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

struct History {
    /// Kept versions, oldest first.
    versions: Vec<Arc<Loaded>>,
    /// Activation order; the last one is current.
    stack: Vec<VersionId>,
}

struct Slot {
    current: ArcSwap<Loaded>,
    history: Mutex<History>,
}

type Key = (String, String);

/// Refusals kept in memory.
const MAX_REFUSALS: usize = 256;

struct Inner {
    parts: EngineParts,
    default_limits: PluginLimits,
    tick: Duration,
    reference: Arc<dyn ReferenceData>,
    max_versions: usize,
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

enum CallFailure {
    Wasm {
        error: wasmtime::Error,
        instantiating: bool,
    },
    Guest(wit::PluginError),
}

impl From<wit::PluginError> for GuestError {
    fn from(e: wit::PluginError) -> Self {
        match e {
            wit::PluginError::InvalidConfig(m) => Self::InvalidConfig(m),
            wit::PluginError::UnknownResource(m) => Self::UnknownResource(m),
            wit::PluginError::Internal(m) => Self::Internal(m),
        }
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
        let fuel = config.consume_fuel || config.default_limits.fuel.is_some();
        let pool = config.pooling.then(|| PoolSizing {
            max_calls: config.max_concurrent_calls,
            max_memory: pool_memory(&config.default_limits),
        });
        let parts = EngineParts::new(config.cache_dir.as_deref(), fuel, pool)?;
        let ticker = EpochTicker::start(parts.engine.weak(), config.epoch_tick)
            .map_err(|e| PluginError::Engine(Box::new(e)))?;
        Ok(Self {
            inner: Arc::new(Inner {
                parts,
                default_limits: config.default_limits,
                tick: config.epoch_tick,
                reference: config.reference,
                max_versions: config.max_versions,
                slots: RwLock::new(HashMap::new()),
                tenant_limits: RwLock::new(HashMap::new()),
                refusals: Mutex::new(Vec::new()),
                permits: CallPermits::new(config.max_concurrent_calls),
                _ticker: ticker,
            }),
        })
    }

    /// The instance allocator in use: the pool, or the on-demand allocator
    /// and why.
    pub fn allocator(&self) -> &InstanceAllocator {
        &self.inner.parts.allocator
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
        let reason = match config_file {
            Some(file) => config_refusal(error, file),
            None => error.chain(),
        };
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
            origin,
            at: SystemTime::now(),
        });
    }

    /// Components refused since the runtime started (the latest 256),
    /// oldest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        lock(&self.inner.refusals).clone()
    }

    fn kept(&self, tenant: &str, name: &str, version: &VersionId) -> Option<Arc<Loaded>> {
        let slot = self.slot(tenant, name)?;
        let history = lock(&slot.history);
        history
            .versions
            .iter()
            .find(|l| &l.info.version == version)
            .cloned()
    }

    fn slot(&self, tenant: &str, name: &str) -> Option<Arc<Slot>> {
        read(&self.inner.slots)
            .get(&(tenant.to_owned(), name.to_owned()))
            .cloned()
    }

    /// A compiled component with the same wasm, from any loaded version.
    fn compiled(&self, wasm_sha256: &str) -> Option<Component> {
        let slots: Vec<Arc<Slot>> = read(&self.inner.slots).values().cloned().collect();
        slots.iter().find_map(|slot| {
            lock(&slot.history)
                .versions
                .iter()
                .find(|l| l.info.wasm_sha256 == wasm_sha256)
                .map(|l| l.component.clone())
        })
    }

    /// Compiles and validates one version.
    fn prepare(
        &self,
        plugin: &PluginRef,
        wasm: &[u8],
        options: LoadOptions,
    ) -> Result<Loaded, PluginError> {
        let parts = &self.inner.parts;
        let wasm_sha256 = sha256_hex(wasm);
        let (component, compile) = match self.compiled(&wasm_sha256) {
            Some(component) => (component, CompileSource::Memory),
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

        // Configure, then read the resources and their schemas.
        // Held until the store is dropped (the sample batch below takes its
        // own permit, so this one must be returned first).
        let permit = self.inner.permits.acquire();
        let mut store = self.new_store(plugin, &limits)?;
        let described = (|| -> Result<Vec<(String, Vec<wit::Column>)>, CallFailure> {
            let wasm_err = |instantiating| {
                move |error| CallFailure::Wasm {
                    error,
                    instantiating,
                }
            };
            let instance = pre.instantiate(&mut store).map_err(wasm_err(true))?;
            let mapper = instance.ml_connector_mapping_mapper();
            mapper
                .call_configure(&mut store, &config)
                .map_err(wasm_err(false))?
                .map_err(CallFailure::Guest)?;
            let resources = mapper.call_resources(&mut store).map_err(wasm_err(false))?;
            let mut out = Vec::with_capacity(resources.len());
            for resource in resources {
                let columns = mapper
                    .call_schema(&mut store, &resource)
                    .map_err(wasm_err(false))?
                    .map_err(CallFailure::Guest)?;
                out.push((resource, columns));
            }
            Ok(out)
        })();
        store.data().flush_output();
        let described = described.map_err(|f| self.failure(plugin, &store, &limits, f))?;
        drop(store);
        drop(permit);

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

    /// Makes `loaded` the current version of its plugin.
    fn activate(&self, loaded: Arc<Loaded>) {
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

    /// The output schema of `resource` in the current version of a plugin.
    pub fn schema(&self, tenant: &str, name: &str, resource: &str) -> Result<Schema, PluginError> {
        let loaded = self.current(tenant, name)?;
        loaded
            .info
            .schema(resource)
            .cloned()
            .ok_or_else(|| unknown_resource(&loaded, resource))
    }

    fn current(&self, tenant: &str, name: &str) -> Result<Arc<Loaded>, PluginError> {
        self.slot(tenant, name)
            .map(|slot| slot.current.load_full())
            .ok_or_else(|| PluginError::NotFound {
                tenant: tenant.to_owned(),
                plugin: name.to_owned(),
            })
    }

    /// Maps a batch of raw records (JSON object texts) with the current
    /// version of (`tenant`, `name`). The records must be JSON the caller
    /// has parsed, with no object repeating a member (as the Oracle client
    /// and `records_of` check): the contract
    /// lets a plugin stop reading a record once it has what it needs, so a
    /// record broken after its last used field is not noticed by the
    /// plugin. The mapping runs on a blocking thread
    /// (`block_in_place` on a multi-threaded runtime, else `spawn_blocking`)
    /// under the tenant's limits; a failure fails this batch only.
    pub async fn map_batch(
        &self,
        tenant: &str,
        name: &str,
        resource: &str,
        records: &[String],
    ) -> Result<MappedBatch, PluginError> {
        self.map_batch_with_version(tenant, name, resource, records)
            .await
            .map(|(batch, _)| batch)
    }

    /// [`PluginRuntime::map_batch`], also returning the version that mapped
    /// the batch (for the batch's audit record).
    pub async fn map_batch_with_version(
        &self,
        tenant: &str,
        name: &str,
        resource: &str,
        records: &[String],
    ) -> Result<(MappedBatch, VersionId), PluginError> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let loaded = self.current(tenant, name)?;
        let limits = self.limits(tenant);
        match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.run_logged(&loaded, resource, records, &limits))
            }
            Ok(_) => {
                let this = self.clone();
                let resource = resource.to_owned();
                let records = records.to_vec();
                tokio::task::spawn_blocking(move || {
                    this.run_logged(&loaded, &resource, &records, &limits)
                })
                .await
                .map_err(|e| PluginError::Task(e.to_string()))?
            }
            Err(_) => self.run_logged(&loaded, resource, records, &limits),
        }
    }

    /// Maps a batch on the calling thread (benchmarks, or callers already
    /// on a blocking thread).
    pub fn map_batch_blocking(
        &self,
        tenant: &str,
        name: &str,
        resource: &str,
        records: &[String],
    ) -> Result<(MappedBatch, VersionId), PluginError> {
        let loaded = self.current(tenant, name)?;
        let limits = self.limits(tenant);
        self.run_logged(&loaded, resource, records, &limits)
    }

    fn run_logged(
        &self,
        loaded: &Loaded,
        resource: &str,
        records: &[String],
        limits: &PluginLimits,
    ) -> Result<(MappedBatch, VersionId), PluginError> {
        let started = Instant::now();
        let result = self.run(loaded, resource, records, limits);
        let info = &loaded.info;
        metrics::histogram!("mlc_plugin_call_seconds", "tenant" => info.tenant.clone(), "plugin" => info.name.clone())
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(batch) => tracing::debug!(
                tenant = %info.tenant,
                plugin = %info.name,
                version = %info.version,
                resource,
                records = records.len(),
                rows = batch.rows.len(),
                rejects = batch.rejects.len(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "batch mapped"
            ),
            Err(error) => tracing::warn!(
                tenant = %info.tenant,
                plugin = %info.name,
                version = %info.version,
                resource,
                records = records.len(),
                kind = error.kind(),
                error = %error.chain(),
                "batch failed"
            ),
        }
        result.map(|batch| (batch, info.version.clone()))
    }

    /// One batch call in a fresh store.
    fn run(
        &self,
        loaded: &Loaded,
        resource: &str,
        records: &[String],
        limits: &PluginLimits,
    ) -> Result<MappedBatch, PluginError> {
        let schema = loaded
            .info
            .schema(resource)
            .ok_or_else(|| unknown_resource(loaded, resource))?;
        let plugin = &loaded.plugin;
        if u32::try_from(records.len()).is_err() {
            return Err(PluginError::Config(format!(
                "a batch holds at most {} records",
                u32::MAX
            )));
        }
        // Declared before the store so that it is returned after the store
        // (and with it the instance's pool slots) is dropped.
        let permit = self.inner.permits.acquire();
        let mut store = self.new_store(&loaded.plugin, limits)?;
        let output = (|| -> Result<wit::BatchOutput, CallFailure> {
            let wasm_err = |instantiating| {
                move |error| CallFailure::Wasm {
                    error,
                    instantiating,
                }
            };
            let instance = loaded.pre.instantiate(&mut store).map_err(wasm_err(true))?;
            let mapper = instance.ml_connector_mapping_mapper();
            mapper
                .call_configure(&mut store, &loaded.config)
                .map_err(wasm_err(false))?
                .map_err(CallFailure::Guest)?;
            mapper
                .call_map_batch(&mut store, resource, records)
                .map_err(wasm_err(false))?
                .map_err(CallFailure::Guest)
        })();
        store.data().flush_output();
        let output = output.map_err(|f| self.failure(plugin, &store, limits, f))?;
        drop(store);
        drop(permit);
        batch_from_wit(plugin, resource, schema, records.len(), limits, output)
    }

    fn new_store(
        &self,
        identity: &PluginRef,
        limits: &PluginLimits,
    ) -> Result<Store<HostState>, PluginError> {
        let state = HostState::new(
            identity.clone(),
            self.inner.reference.clone(),
            limits.memory,
        );
        let mut store = Store::new(&self.inner.parts.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(deadline_ticks(limits.deadline, self.inner.tick));
        store.epoch_deadline_trap();
        if self.inner.parts.fuel {
            store
                .set_fuel(limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| PluginError::Engine(boxed(e)))?;
        }
        Ok(store)
    }

    /// Names the cause of a failed call.
    fn failure(
        &self,
        plugin: &PluginRef,
        store: &Store<HostState>,
        limits: &PluginLimits,
        failure: CallFailure,
    ) -> PluginError {
        let (error, instantiating) = match failure {
            CallFailure::Guest(e) => {
                return PluginError::Guest {
                    plugin: plugin.clone(),
                    error: e.into(),
                };
            }
            CallFailure::Wasm {
                error,
                instantiating,
            } => (error, instantiating),
        };
        if let Some(exceeded) = store.data().limiter.exceeded() {
            return PluginError::MemoryLimit {
                plugin: plugin.clone(),
                limit: exceeded.limit,
                requested: exceeded.requested,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::Deadline {
                plugin: plugin.clone(),
                deadline: limits.deadline,
            },
            Some(Trap::OutOfFuel) => PluginError::OutOfFuel {
                plugin: plugin.clone(),
                fuel: limits.fuel.unwrap_or(u64::MAX),
            },
            Some(trap) => PluginError::Trap {
                plugin: plugin.clone(),
                trap: describe_trap(trap, error.downcast_ref::<WasmBacktrace>()),
                stderr: store.data().stderr_tail(),
            },
            None if instantiating => PluginError::Instantiate {
                plugin: plugin.clone(),
                source: boxed(error),
            },
            None => PluginError::Trap {
                plugin: plugin.clone(),
                trap: format!("{error:#}"),
                stderr: store.data().stderr_tail(),
            },
        }
    }
}

/// The reason of a refusal when the configuration was read from `file`:
/// a configuration the plugin refused names the file, and a mapping script
/// error located as `mapping script line L:C: message` (the scripted
/// plugin's form for a script given as text) becomes `FILE:L:C: message`,
/// as `mappings/README.md` documents. Any other refusal keeps its chain.
fn config_refusal(error: &PluginError, file: &str) -> String {
    match error {
        PluginError::Guest {
            plugin,
            error: GuestError::InvalidConfig(message),
        } => crate::error::locate_config_error(message, file).map_or_else(
            || format!("{} (configuration file {file})", error.chain()),
            |located| format!("{located} ({plugin} refused this configuration)"),
        ),
        _ => error.chain(),
    }
}

/// A trap and the innermost named frames of its wasm backtrace.
fn describe_trap(trap: &Trap, backtrace: Option<&WasmBacktrace>) -> String {
    let frames: Vec<String> = backtrace
        .map(|bt| {
            bt.frames()
                .iter()
                .filter_map(|f| f.func_name().map(str::to_owned))
                .take(4)
                .collect()
        })
        .unwrap_or_default();
    if frames.is_empty() {
        trap.to_string()
    } else {
        format!("{trap} (in {})", frames.join(" <- "))
    }
}

fn unknown_resource(loaded: &Loaded, resource: &str) -> PluginError {
    PluginError::UnknownResource {
        plugin: loaded.plugin.clone(),
        resource: resource.to_owned(),
        known: loaded.info.resources.clone(),
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
mod tests {
    use super::*;

    #[test]
    fn samples_keep_record_text_exactly() {
        let sample = Sample::from_json(
            "inline",
            r#"[{"InvoiceId": 1, "InvoiceAmount": 12345678901234567890.123456789}, {"InvoiceId":2}]"#,
        )
        .unwrap();
        assert_eq!(
            sample,
            Sample::Records(vec![
                r#"{"InvoiceId": 1, "InvoiceAmount": 12345678901234567890.123456789}"#.into(),
                r#"{"InvoiceId":2}"#.into(),
            ])
        );
        let per =
            Sample::from_json("inline", r#"{"invoices": [{"a": 1}], "suppliers": []}"#).unwrap();
        let Sample::PerResource(map) = per else {
            panic!("expected per-resource sample");
        };
        assert_eq!(map["invoices"], vec![r#"{"a": 1}"#.to_owned()]);
        assert!(map["suppliers"].is_empty());
        for bad in ["", "3", "[1]", "{\"invoices\": 3}", "[{]"] {
            let err = Sample::from_json("s.json", bad).unwrap_err();
            assert!(matches!(err, PluginError::BadSample { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn records_repeating_a_member_are_refused_at_any_depth() {
        for (text, member) in [
            (r#"[{"InvoiceId": 1, "InvoiceId": 2}]"#, "InvoiceId"),
            // The same name, once escaped: decoded names are compared.
            (r#"[{"a": 1, "\u0061": 2}]"#, "a"),
            (
                r#"[{"InvoiceId": 1, "lines": [{"n": 1}, {"n": 2, "m": {"x": 1, "x": 1}}]}]"#,
                "x",
            ),
        ] {
            let err = Sample::from_json("s.json", text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("member \"{member}\" appears twice"))
                    && err.contains("record 0")
                    && err.contains("s.json"),
                "{text}: {err}"
            );
        }
        // Equal names in different objects are fine.
        Sample::from_json("s.json", r#"[{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}]"#).unwrap();
    }

    #[test]
    fn a_refused_configuration_names_its_file() {
        let plugin = PluginRef {
            tenant: "acme".into(),
            plugin: "invoices".into(),
            version: VersionId::from_hex("0123456789abcdef"),
        };
        let config = |message: &str| PluginError::Guest {
            plugin: plugin.clone(),
            error: GuestError::InvalidConfig(message.into()),
        };
        assert_eq!(
            config_refusal(
                &config("mapping script line 12:9: column \"Supplier\": unknown function"),
                "/p/acme/invoices.toml"
            ),
            "/p/acme/invoices.toml:12:9: column \"Supplier\": unknown function \
             (plugin `invoices` version 0123456789ab of tenant `acme` refused this configuration)"
        );
        // Refused but not located: the whole error, and the file.
        for error in [
            config("unknown mode \"x\""),
            config("mapping script line x:9: y"),
        ] {
            let reason = config_refusal(&error, "/p/acme/invoices.toml");
            assert_eq!(
                reason,
                format!(
                    "{} (configuration file /p/acme/invoices.toml)",
                    error.chain()
                )
            );
        }
        // Not a refusal of the configuration: the error as it is.
        let internal = PluginError::Guest {
            plugin: plugin.clone(),
            error: GuestError::Internal("mapping script line 1:1: z".into()),
        };
        assert_eq!(
            config_refusal(&internal, "/p/acme/invoices.toml"),
            internal.chain()
        );
    }

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

    /// The staged `misbehave` component (`cargo xtask build-plugins`).
    fn misbehave_wasm() -> Vec<u8> {
        let dir = std::env::var_os("MLC_PLUGINS_BUILT")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins")
            });
        let path = dir.join("misbehave.wasm");
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "component {} missing ({e}): run `cargo xtask build-plugins` \
                 (with CARGO_TARGET_DIR=<dir>, then set MLC_PLUGINS_BUILT=<dir>/plugins)",
                path.display()
            )
        })
    }

    fn load_mode(runtime: &PluginRuntime, tenant: &str, mode: &str) {
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

    #[test]
    fn calls_beyond_the_pool_wait_and_tenants_reuse_one_slot() {
        let runtime = PluginRuntime::new(RuntimeConfig {
            max_concurrent_calls: 1,
            ..RuntimeConfig::default()
        })
        .unwrap();
        assert!(
            matches!(runtime.allocator(), InstanceAllocator::Pooling { .. }),
            "{:?}",
            runtime.allocator()
        );
        load_mode(&runtime, "good", "version:pooled");
        load_mode(&runtime, "bomb", "memory-bomb");
        let records: Vec<String> = (0..3)
            .map(|i| format!(r#"{{"id": {i}, "amount": {i}.5}}"#))
            .collect();
        // Six threads share one pool slot: each call waits for the slot
        // instead of failing to instantiate. The memory bomb fills the
        // slot's memory up to the cap and is stopped by the limiter; the
        // other tenant's next instance in the same slot maps normally.
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let (runtime, records) = (runtime.clone(), records.clone());
                std::thread::spawn(move || {
                    for call in 0..10 {
                        if t % 3 == 0 {
                            let err = runtime
                                .map_batch_blocking("bomb", "items", "items", &records)
                                .unwrap_err();
                            assert!(
                                matches!(err, PluginError::MemoryLimit { .. }),
                                "thread {t} call {call}: {}",
                                err.chain()
                            );
                        } else {
                            let (batch, _) = runtime
                                .map_batch_blocking("good", "items", "items", &records)
                                .unwrap_or_else(|e| {
                                    panic!("thread {t} call {call}: {}", e.chain())
                                });
                            assert_eq!(batch.rows.len(), 3, "thread {t} call {call}");
                            assert!(batch.rejects.is_empty(), "{:?}", batch.rejects);
                            for (i, row) in batch.rows.iter().enumerate() {
                                assert_eq!(
                                    row.values[1],
                                    mlc_common::Value::Text("pooled".into()),
                                    "thread {t} call {call} row {i}"
                                );
                            }
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a calling thread failed");
        }
    }

    /// Every file under `dir`, recursively.
    fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
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
