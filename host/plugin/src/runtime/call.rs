//! One batch call: the current version taken once, a fresh `Store` under
//! the tenant's limits (memory cap, epoch deadline, optional fuel), a
//! permit of the instance pool held for the store's life, and every
//! failure named by its cause (trap, deadline, fuel, memory, the plugin's
//! own error).

use std::time::Instant;

use mlc_common::MappedBatch;
use wasmtime::{Store, Trap, WasmBacktrace};

use super::PluginRuntime;
use super::registry::{Loaded, unknown_resource};
use crate::bindings::{MappingPre, mapper, types as wit};
use crate::convert::batch_from_wit;
use crate::error::{GuestError, GuestFailure, PluginError, PluginRef, VersionId, boxed};
use crate::host::HostState;
use crate::limits::{PluginLimits, deadline_ticks};

/// Why a call into an instance failed, before the cause is named.
pub(super) enum CallFailure {
    /// wasmtime failed: a trap, or instantiation itself.
    Wasm {
        error: wasmtime::Error,
        instantiating: bool,
    },
    /// The plugin returned its `plugin-error`.
    Guest(wit::PluginError),
}

impl CallFailure {
    /// A failure of an exported function.
    pub(super) fn calling(error: wasmtime::Error) -> Self {
        Self::Wasm {
            error,
            instantiating: false,
        }
    }
}

impl From<wit::PluginError> for GuestError {
    fn from(e: wit::PluginError) -> Self {
        match e {
            wit::PluginError::InvalidConfig(f) => Self::InvalidConfig(Box::new(f.into())),
            wit::PluginError::UnknownResource(m) => Self::UnknownResource(m),
            wit::PluginError::Internal(f) => Self::Internal(Box::new(f.into())),
        }
    }
}

impl From<wit::Failure> for GuestFailure {
    fn from(f: wit::Failure) -> Self {
        Self {
            kind: f.kind,
            message: f.message,
            file: f.file,
            line: f.line,
            column: f.column,
            output_column: f.output_column,
        }
    }
}

impl PluginRuntime {
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
    pub(super) fn run(
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
        let output = self.with_instance(
            plugin,
            &loaded.pre,
            &loaded.config,
            limits,
            |mapper, store| {
                mapper
                    .call_map_batch(store, resource, records)
                    .map_err(CallFailure::calling)?
                    .map_err(CallFailure::Guest)
            },
        )?;
        batch_from_wit(plugin, resource, schema, records.len(), limits, output)
    }

    /// Runs `calls` on a fresh instance of `pre`, configured with
    /// `config`, in a new store under `limits`: the one place that takes a
    /// permit of the instance pool (returned after the store, and with it
    /// the instance's pool slots, is dropped), flushes what the guest wrote
    /// and names the cause of a failure.
    pub(super) fn with_instance<T>(
        &self,
        plugin: &PluginRef,
        pre: &MappingPre<HostState>,
        config: &str,
        limits: &PluginLimits,
        calls: impl FnOnce(&mapper::Guest, &mut Store<HostState>) -> Result<T, CallFailure>,
    ) -> Result<T, PluginError> {
        // Declared before the store so that it is returned after it.
        let permit = self.inner.permits.acquire(&plugin.tenant);
        let mut store = self.new_store(plugin, limits)?;
        let result = (|| {
            let instance = pre
                .instantiate(&mut store)
                .map_err(|error| CallFailure::Wasm {
                    error,
                    instantiating: true,
                })?;
            let mapper = instance.ml_connector_mapping_mapper();
            mapper
                .call_configure(&mut store, config)
                .map_err(CallFailure::calling)?
                .map_err(CallFailure::Guest)?;
            calls(mapper, &mut store)
        })();
        store.data().flush_output();
        let result = result.map_err(|f| self.failure(plugin, &store, limits, f));
        drop(store);
        drop(permit);
        result
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

#[cfg(test)]
mod tests {
    use super::super::test_support::load_mode;
    use super::super::{InstanceAllocator, RuntimeConfig};
    use super::*;

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
}
