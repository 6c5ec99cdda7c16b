//! The process-wide engine and linker, compilation with an on-disk cache,
//! and the import allow-list.
//!
//! One `Engine` (component model, epoch interruption, optional fuel) and one
//! `Linker` serve every plugin. Compiled components are cached on disk as
//! `<cache>/<engine-compat>/<sha256-of-wasm>.cwasm`, written only once
//! the version compiled from it is accepted (a refused upload leaves
//! nothing); a cache file that cannot be loaded is recompiled and replaced
//! (by rename, never in place). A component not in the cache is compiled
//! by the compile worker (`compile_worker`) unless in-process compiling is
//! configured.
//! Instances come from the pooling allocator when its slots can be reserved
//! (see `pool`), else from the on-demand allocator.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy};

use crate::bindings::Mapping;
use crate::error::{PluginError, PluginRef, boxed};
use crate::host::HostState;
use crate::limits::{CompileConfig, CompileMode};
use crate::pool::{InstanceAllocator, pooling_config};

/// The interfaces of our own package a plugin may import (exact version).
const OWN_IMPORTS: &[&str] = &[
    "ml-connector:mapping/types@0.3.0",
    "ml-connector:mapping/host@0.3.0",
];

/// Our own package's interfaces, any version.
const OWN_PACKAGE: &str = "ml-connector:mapping/";

/// WASI interfaces (any 0.2.x version) that Rust's wasip2 standard library
/// imports even when a plugin does no I/O. They are linked against an
/// empty `WasiCtx`: no environment, arguments, files, sockets; stdin empty,
/// stdout/stderr captured. `insecure-seed` is what std's `HashMap` seeds
/// itself with. Clocks, filesystem, sockets and the other random interfaces
/// are refused.
const WASI_IMPORTS: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:random/insecure-seed",
];

/// Whether a plugin may import `name` (e.g. `wasi:io/poll@0.2.6`).
pub(crate) fn import_allowed(name: &str) -> bool {
    if OWN_IMPORTS.contains(&name) {
        return true;
    }
    let Some((interface, version)) = name.split_once('@') else {
        return false;
    };
    let mut parts = version.split('.');
    let wasi_02 = parts.next() == Some("0")
        && parts.next() == Some("2")
        && parts
            .next()
            .is_some_and(|patch| !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_none();
    wasi_02 && WASI_IMPORTS.contains(&interface)
}

/// How a component was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "from")]
pub enum CompileSource {
    /// Compiled now (Cranelift).
    Compiled {
        /// Compile time.
        #[serde(with = "duration_ms")]
        took: Duration,
    },
    /// Loaded from the on-disk cache.
    DiskCache {
        /// Load time.
        #[serde(with = "duration_ms")]
        took: Duration,
    },
    /// Shared with an already loaded version of the same wasm.
    Memory,
}

mod duration_ms {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
}

/// The engine, the linker and the compile cache.
pub(crate) struct EngineParts {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    pub fuel: bool,
    /// The allocator the engine was built with.
    pub allocator: InstanceAllocator,
    compile: CompileSettings,
}

/// Where and how components are compiled, and the engine-wide stack.
#[derive(Clone, Debug)]
pub(crate) struct CompileSettings {
    /// Where and under which limits.
    pub config: CompileConfig,
    /// `Config::max_wasm_stack`, bytes.
    pub max_wasm_stack: usize,
}

/// The settings that decide what compiled code looks like: the host's
/// engine and the compile worker's are both built from this, so that the
/// worker's artifact deserializes in the host.
pub(crate) fn compilation_config(fuel: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(fuel);
    // Operators profiling guest code with `perf` set
    // ML_CONNECTOR_PLUGIN_PROFILE=perfmap (or jitdump) so that compiled plugin
    // functions carry their names in the profile.
    match std::env::var("ML_CONNECTOR_PLUGIN_PROFILE").as_deref() {
        Ok("perfmap") => {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        Ok("jitdump") => {
            config.profiler(wasmtime::ProfilingStrategy::JitDump);
        }
        _ => {}
    }
    config
}

/// The pool the engine should try to reserve.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolSizing {
    /// Concurrent calls.
    pub max_calls: usize,
    /// Largest linear memory of a call, bytes.
    pub max_memory: usize,
}

impl EngineParts {
    /// Builds the engine and links WASI and the mapping host imports.
    ///
    /// With `pool`, the engine first tries the pooling allocator; if its
    /// slots cannot be reserved it logs why and uses the on-demand
    /// allocator.
    pub fn new(
        cache_dir: Option<&Path>,
        fuel: bool,
        pool: Option<PoolSizing>,
        compile: CompileSettings,
    ) -> Result<Self, PluginError> {
        let mut config = compilation_config(fuel);
        config.max_wasm_stack(compile.max_wasm_stack);
        let (engine, allocator) = match pool {
            None => (
                Engine::new(&config).map_err(|e| PluginError::Engine(boxed(e)))?,
                InstanceAllocator::OnDemand {
                    reason: "pooling turned off in the runtime configuration".into(),
                },
            ),
            Some(sizing) => build_pooled(config, sizing)?,
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| PluginError::Engine(boxed(e)))?;
        Mapping::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|e| PluginError::Engine(boxed(e)))?;
        let cache_dir = match cache_dir {
            Some(dir) => {
                let mut hasher = std::hash::DefaultHasher::new();
                engine.precompile_compatibility_hash().hash(&mut hasher);
                let dir = dir.join(format!("{:016x}", hasher.finish()));
                std::fs::create_dir_all(&dir).map_err(|source| PluginError::Io {
                    path: dir.clone(),
                    source,
                })?;
                Some(dir)
            }
            None => None,
        };
        Ok(Self {
            engine,
            linker,
            cache_dir,
            fuel,
            allocator,
            compile,
        })
    }

    /// Compiles `wasm` (or loads it from the disk cache), then checks its
    /// imports against the allow-list. A fresh compile is not cached yet:
    /// the caller stores the returned [`CacheEntry`] once the version is
    /// accepted, so that a refused upload leaves nothing in the cache.
    pub fn compile(
        &self,
        plugin: &PluginRef,
        wasm: &[u8],
        wasm_sha256: &str,
    ) -> Result<(Component, CompileSource, Option<CacheEntry>), PluginError> {
        let cached = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{wasm_sha256}.cwasm")));
        if let Some(path) = cached.as_deref().filter(|p| p.exists()) {
            let started = Instant::now();
            match self.deserialize_cached(path) {
                Ok(component) => {
                    self.check_imports(plugin, &component)?;
                    return Ok((
                        component,
                        CompileSource::DiskCache {
                            took: started.elapsed(),
                        },
                        None,
                    ));
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "cached component unusable; compiling again");
                }
            }
        }
        let started = Instant::now();
        let (component, artifact) = match &self.compile.config.mode {
            CompileMode::InProcess => {
                let component =
                    Component::new(&self.engine, wasm).map_err(|e| PluginError::Compile {
                        plugin: plugin.clone(),
                        source: boxed(e),
                    })?;
                (component, None)
            }
            CompileMode::Worker { program } => {
                let artifact = crate::compile_worker::compile(
                    plugin,
                    wasm,
                    self.fuel,
                    program.as_ref(),
                    &self.compile.config.limits,
                )?;
                let component = self.deserialize_artifact(&artifact).map_err(|e| {
                    PluginError::CompileWorker {
                        plugin: plugin.clone(),
                        detail: format!("its artifact does not load: {e:#}"),
                    }
                })?;
                (component, Some(artifact))
            }
        };
        let took = started.elapsed();
        self.check_imports(plugin, &component)?;
        let entry = cached.map(|path| CacheEntry { path, artifact });
        Ok((component, CompileSource::Compiled { took }, entry))
    }

    /// Writes a fresh compile into the disk cache (by rename); a failure
    /// is logged, the version is loaded all the same.
    pub fn store(&self, entry: CacheEntry, component: &Component) {
        let bytes = match entry.artifact {
            Some(bytes) => Ok(bytes),
            None => component
                .serialize()
                .map_err(|e| std::io::Error::other(format!("{e:#}"))),
        };
        if let Err(error) = bytes.and_then(|bytes| write_cache(&bytes, &entry.path)) {
            tracing::warn!(path = %entry.path.display(), %error, "cannot write the compile cache");
        }
    }

    /// Loads a cached compiled component. The file is read into memory
    /// rather than mapped (`deserialize_file`): a cache file truncated or
    /// rewritten in place while mapped would fault the whole process
    /// (SIGBUS), whereas a copy is immune to what happens to the file later.
    #[allow(unsafe_code)]
    fn deserialize_cached(&self, path: &Path) -> wasmtime::Result<Component> {
        let bytes = std::fs::read(path)?;
        // SAFETY: `deserialize` trusts the bytes to be native code produced
        // by `Component::serialize` for a compatible engine. The cache
        // directory is ours: files are written only by `write_cache` (to a
        // temporary name, then renamed), named by the SHA-256 of the wasm
        // they were compiled from, under a directory keyed by this engine's
        // compatibility hash; wasmtime still checks the header and engine
        // settings and returns an error (we then recompile) on any mismatch.
        // The directory must be writable only by this service.
        unsafe { Component::deserialize(&self.engine, &bytes) }
    }

    /// Loads what the compile worker produced.
    #[allow(unsafe_code)]
    fn deserialize_artifact(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
        // SAFETY: the bytes are what `Engine::precompile_component` wrote
        // in our own worker process (`compile_worker`), started from our
        // own executable, from an engine built by `compilation_config` with
        // the same settings; wasmtime checks the header and the engine
        // settings and refuses a mismatch.
        unsafe { Component::deserialize(&self.engine, bytes) }
    }

    /// Refuses a component whose imports leave the allow-list, naming them.
    pub fn check_imports(
        &self,
        plugin: &PluginRef,
        component: &Component,
    ) -> Result<(), PluginError> {
        let imports = self.imports(component);
        // A component built against another version of our contract is
        // told so, rather than that its imports are forbidden.
        if let Some(other) = imports
            .iter()
            .find(|name| name.starts_with(OWN_PACKAGE) && !OWN_IMPORTS.contains(&name.as_str()))
            && let Some((_, version)) = other.split_once('@')
        {
            return Err(PluginError::ContractVersion {
                plugin: plugin.clone(),
                found: version.to_owned(),
            });
        }
        let forbidden: Vec<String> = imports
            .into_iter()
            .filter(|name| !import_allowed(name))
            .collect();
        match forbidden.split_first() {
            None => Ok(()),
            Some((first, rest)) => Err(PluginError::ForbiddenImport {
                plugin: plugin.clone(),
                import: first.clone(),
                others: rest.to_vec(),
            }),
        }
    }

    /// The names of a component's imports.
    pub fn imports(&self, component: &Component) -> Vec<String> {
        component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect()
    }
}

/// The probe: reserves the pool by building the engine with it, and falls
/// back to the on-demand allocator (logged) when that fails.
fn build_pooled(
    mut config: Config,
    sizing: PoolSizing,
) -> Result<(Engine, InstanceAllocator), PluginError> {
    let max_calls = u32::try_from(sizing.max_calls).unwrap_or(u32::MAX);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(
        max_calls,
        sizing.max_memory,
    )));
    match Engine::new(&config) {
        Ok(engine) => {
            tracing::debug!(
                max_concurrent_calls = sizing.max_calls,
                max_memory = sizing.max_memory,
                "instances come from the pooling allocator"
            );
            Ok((
                engine,
                InstanceAllocator::Pooling {
                    max_concurrent_calls: sizing.max_calls,
                    max_memory: sizing.max_memory,
                },
            ))
        }
        Err(error) => {
            let reason = format!("the instance pool cannot be reserved: {error:#}");
            tracing::warn!(
                max_concurrent_calls = sizing.max_calls,
                max_memory = sizing.max_memory,
                error = %format!("{error:#}"),
                "instance pool cannot be reserved; using the on-demand allocator"
            );
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            let engine = Engine::new(&config).map_err(|e| PluginError::Engine(boxed(e)))?;
            Ok((engine, InstanceAllocator::OnDemand { reason }))
        }
    }
}

/// A compiled component to write into the disk cache once its version is
/// accepted.
pub(crate) struct CacheEntry {
    path: PathBuf,
    /// The worker's artifact, when it compiled (else the component is
    /// serialized).
    artifact: Option<Vec<u8>>,
}

impl std::fmt::Debug for CacheEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheEntry")
            .field("path", &self.path)
            .field("artifact_len", &self.artifact.as_ref().map(Vec::len))
            .finish()
    }
}

fn write_cache(bytes: &[u8], path: &Path) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// SHA-256 of `bytes`, hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The version id of a component with a configuration: SHA-256 over the
/// wasm's length (8 bytes, little endian), the wasm, a presence byte and the
/// configuration text.
pub(crate) fn version_hex(wasm: &[u8], config: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update((wasm.len() as u64).to_le_bytes());
    hasher.update(wasm);
    match config {
        Some(config) => {
            hasher.update([1]);
            hasher.update(config.as_bytes());
        }
        None => hasher.update([0]),
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
impl CompileSettings {
    /// Compiling in process, for tests of the engine alone.
    pub(crate) fn test() -> Self {
        Self {
            config: CompileConfig {
                mode: CompileMode::InProcess,
                ..CompileConfig::default()
            },
            max_wasm_stack: crate::limits::ShapeLimits::DEFAULT_MAX_WASM_STACK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        for ok in [
            "ml-connector:mapping/host@0.3.0",
            "ml-connector:mapping/types@0.3.0",
            "wasi:io/poll@0.2.0",
            "wasi:io/streams@0.2.6",
            "wasi:cli/terminal-stderr@0.2.3",
            "wasi:random/insecure-seed@0.2.4",
        ] {
            assert!(import_allowed(ok), "{ok}");
        }
        for refused in [
            "ml-connector:mapping/host@0.1.0",
            "ml-connector:mapping/host@0.2.0",
            "ml-connector:mapping/host@0.4.0",
            "wasi:filesystem/types@0.2.6",
            "wasi:filesystem/preopens@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:random/random@0.2.6",
            "wasi:io/poll@0.3.0",
            "wasi:io/poll@0.2",
            "wasi:io/poll@0.2.x",
            "wasi:io/poll",
            "env",
        ] {
            assert!(!import_allowed(refused), "{refused}");
        }
    }

    #[test]
    fn version_depends_on_wasm_and_config() {
        let a = version_hex(b"wasm", None);
        assert_eq!(a.len(), 64);
        assert_ne!(a, version_hex(b"wasm", Some("")));
        assert_ne!(version_hex(b"wasm", Some("x")), version_hex(b"wasmx", None));
        assert_eq!(a, version_hex(b"wasm", None));
    }

    #[test]
    fn a_component_of_another_contract_version_is_told_so() {
        let parts = EngineParts::new(None, false, None, CompileSettings::test()).unwrap();
        let plugin = PluginRef {
            tenant: "t".into(),
            plugin: "p".into(),
            version: crate::error::VersionId::from_hex("00"),
        };
        let old = Component::new(
            &parts.engine,
            r#"(component (import "ml-connector:mapping/host@0.2.0" (instance)))"#,
        )
        .unwrap();
        let err = parts.check_imports(&plugin, &old).unwrap_err();
        assert!(
            matches!(&err, PluginError::ContractVersion { found, .. } if found == "0.2.0"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("built against plugin contract ml-connector:mapping@0.2.0; this runtime speaks 0.3.0"),
            "{err}"
        );
        let current = Component::new(
            &parts.engine,
            r#"(component (import "ml-connector:mapping/host@0.3.0" (instance)))"#,
        )
        .unwrap();
        parts.check_imports(&plugin, &current).unwrap();
        let foreign = Component::new(
            &parts.engine,
            r#"(component (import "wasi:sockets/tcp@0.2.6" (instance)))"#,
        )
        .unwrap();
        assert!(matches!(
            parts.check_imports(&plugin, &foreign),
            Err(PluginError::ForbiddenImport { import, .. }) if import == "wasi:sockets/tcp@0.2.6"
        ));
    }

    #[test]
    fn refuses_core_modules_and_garbage() {
        let parts = EngineParts::new(None, false, None, CompileSettings::test()).unwrap();
        let plugin = PluginRef {
            tenant: "t".into(),
            plugin: "p".into(),
            version: crate::error::VersionId::from_hex("00"),
        };
        for bytes in [&b"not wasm"[..], b"\0asm\x01\0\0\0"] {
            let err = parts
                .compile(&plugin, bytes, &sha256_hex(bytes))
                .unwrap_err();
            assert!(matches!(err, PluginError::Compile { .. }), "{err}");
        }
    }
}
