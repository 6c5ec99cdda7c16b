//! Every limit of the runtime, documented with its default: per-call
//! limits ([`PluginLimits`]: memory cap, CPU deadline, fuel, output caps);
//! the upload limits ([`UploadLimits`]: component, configuration and
//! sample sizes, plugins per tenant, and the instance shape,
//! [`ShapeLimits`]); and how uploads are compiled ([`CompileConfig`]: out
//! of process by default, under [`CompileLimits`]). The per-tenant share
//! of call permits is `RuntimeConfig::max_calls_per_tenant`.
//!
//! One [`PluginLimits`] value describes everything a single batch call may
//! use. The runtime applies it to the fresh `Store` of each call:
//!
//! - memory through [`MemoryLimiter`], a `ResourceLimiter` that turns a
//!   refused `memory.grow` into a trap carrying [`MemoryLimitExceeded`]
//!   (the `trap_on_grow_failure` behaviour), so the cause is typed rather
//!   than a guest abort;
//! - the deadline through epoch interruption: [`EpochTicker`] advances the
//!   engine's epoch every tick from a thread that holds only a weak engine
//!   handle and ends with the engine;
//! - fuel, when the engine was built with fuel metering (deterministic
//!   tests);
//! - the output caps after the results are lifted, before they are
//!   converted.

use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{EngineWeak, ResourceLimiter};

/// What one batch call may use. Defaults: 64 MiB memory, a 5 s deadline, no
/// fuel bound, 1,000,000 output rows and 64 MiB of output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginLimits {
    /// Largest linear memory of the instance, bytes.
    pub memory: usize,
    /// Wall-clock time a call may run (epoch interruption; the granularity
    /// is the runtime's epoch tick).
    pub deadline: Duration,
    /// Fuel units a call may consume; `None` for no bound. Needs a runtime
    /// built with fuel metering (see `RuntimeConfig::consume_fuel`).
    pub fuel: Option<u64>,
    /// Largest output: rows plus rejects.
    pub max_output_rows: usize,
    /// Largest output, approximate bytes (text bytes plus 16 per value).
    pub max_output_bytes: usize,
}

impl PluginLimits {
    /// Default memory cap: 64 MiB.
    pub const DEFAULT_MEMORY: usize = 64 << 20;
    /// Default deadline: 5 seconds per batch.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
    /// Default output cap in rows.
    pub const DEFAULT_MAX_OUTPUT_ROWS: usize = 1_000_000;
    /// Default output cap in bytes: 64 MiB.
    pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 << 20;
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory: Self::DEFAULT_MEMORY,
            deadline: Self::DEFAULT_DEADLINE,
            fuel: None,
            max_output_rows: Self::DEFAULT_MAX_OUTPUT_ROWS,
            max_output_bytes: Self::DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// What a tenant may hand the runtime to load, checked before anything is
/// compiled: a larger upload, or one plugin too many, is refused with the
/// limit named and the previous version keeps serving. Defaults: 16 MiB of
/// component, 256 KiB of configuration (a mapping script), 64 plugins per
/// tenant, a validation sample of 8 MiB and 10,000 records (the size of a
/// sample file is checked before it is parsed), and the instance shape of
/// [`ShapeLimits::default`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadLimits {
    /// Largest component, bytes.
    pub max_component: usize,
    /// Largest configuration text (a mapping script), bytes.
    pub max_config: usize,
    /// Most plugins one tenant may have loaded at once.
    pub max_plugins_per_tenant: usize,
    /// Largest validation sample, bytes of record text (a sample file:
    /// its size, before it is parsed).
    pub max_sample_bytes: usize,
    /// Most records in a validation sample, over all resources.
    pub max_sample_records: usize,
    /// The instance shape a component may have.
    pub shape: ShapeLimits,
}

impl UploadLimits {
    /// Default component cap: 16 MiB.
    pub const DEFAULT_MAX_COMPONENT: usize = 16 << 20;
    /// Default configuration cap: 256 KiB.
    pub const DEFAULT_MAX_CONFIG: usize = 256 << 10;
    /// Default plugins per tenant.
    pub const DEFAULT_MAX_PLUGINS_PER_TENANT: usize = 64;
    /// Default sample cap in bytes: 8 MiB.
    pub const DEFAULT_MAX_SAMPLE_BYTES: usize = 8 << 20;
    /// Default sample cap in records: 10,000.
    pub const DEFAULT_MAX_SAMPLE_RECORDS: usize = 10_000;
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            max_component: Self::DEFAULT_MAX_COMPONENT,
            max_config: Self::DEFAULT_MAX_CONFIG,
            max_plugins_per_tenant: Self::DEFAULT_MAX_PLUGINS_PER_TENANT,
            max_sample_bytes: Self::DEFAULT_MAX_SAMPLE_BYTES,
            max_sample_records: Self::DEFAULT_MAX_SAMPLE_RECORDS,
            shape: ShapeLimits::default(),
        }
    }
}

/// The shape of a component's core modules, checked at load before it
/// is compiled or instantiated, so that a component that would pass the
/// per-call limits but blow up instantiation (or the pool) is refused with
/// the limit named ([`crate::PluginError::ShapeLimit`]). Counts are over
/// the whole component (every core module it defines, nested ones
/// included); `max_table_elements` is per table. Defaults fit a Rust
/// wasip2 guest with room (a guest has one memory, one table, a few
/// thousand functions, a few hundred KiB of data): 16 tables of at most
/// 2^20 initial elements, 2 memories, 10,000 globals, 100,000 functions,
/// 8 MiB of data segments, 16 core modules, 16 core instances, and a
/// 512 KiB wasm stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeLimits {
    /// Tables, defined or imported, over all core modules.
    pub max_tables: u64,
    /// Initial elements of any one table.
    pub max_table_elements: u64,
    /// Linear memories, defined or imported, over all core modules.
    pub max_memories: u64,
    /// Globals, defined or imported, over all core modules.
    pub max_globals: u64,
    /// Functions, defined or imported, over all core modules.
    pub max_functions: u64,
    /// Bytes of data segments, over all core modules.
    pub max_data_bytes: u64,
    /// Core modules the component defines.
    pub max_core_modules: u64,
    /// Core instances the component creates.
    pub max_core_instances: u64,
    /// The wasm stack of a call, bytes (wasmtime's `max_wasm_stack`): a
    /// deeper recursion traps with a stack overflow. Engine-wide.
    pub max_wasm_stack: usize,
}

impl ShapeLimits {
    /// Default tables: 16 (the pool's tables per component).
    pub const DEFAULT_MAX_TABLES: u64 = 16;
    /// Default initial elements per table: 2^20 (the pool's table size).
    pub const DEFAULT_MAX_TABLE_ELEMENTS: u64 = MAX_TABLE_ELEMENTS as u64;
    /// Default memories: 2 (the pool's memories per component).
    pub const DEFAULT_MAX_MEMORIES: u64 = 2;
    /// Default globals: 10,000.
    pub const DEFAULT_MAX_GLOBALS: u64 = 10_000;
    /// Default functions: 100,000.
    pub const DEFAULT_MAX_FUNCTIONS: u64 = 100_000;
    /// Default data segment bytes: 8 MiB.
    pub const DEFAULT_MAX_DATA_BYTES: u64 = 8 << 20;
    /// Default core modules: 16.
    pub const DEFAULT_MAX_CORE_MODULES: u64 = 16;
    /// Default core instances: 16 (the pool's core instances per
    /// component).
    pub const DEFAULT_MAX_CORE_INSTANCES: u64 = 16;
    /// Default wasm stack: 512 KiB.
    pub const DEFAULT_MAX_WASM_STACK: usize = 512 << 10;
}

impl Default for ShapeLimits {
    fn default() -> Self {
        Self {
            max_tables: Self::DEFAULT_MAX_TABLES,
            max_table_elements: Self::DEFAULT_MAX_TABLE_ELEMENTS,
            max_memories: Self::DEFAULT_MAX_MEMORIES,
            max_globals: Self::DEFAULT_MAX_GLOBALS,
            max_functions: Self::DEFAULT_MAX_FUNCTIONS,
            max_data_bytes: Self::DEFAULT_MAX_DATA_BYTES,
            max_core_modules: Self::DEFAULT_MAX_CORE_MODULES,
            max_core_instances: Self::DEFAULT_MAX_CORE_INSTANCES,
            max_wasm_stack: Self::DEFAULT_MAX_WASM_STACK,
        }
    }
}

/// How an uploaded component is compiled: where, and under which OS
/// limits. Default: in a short-lived worker subprocess
/// ([`CompileMode::Worker`], see the `compile_worker` module) under
/// [`CompileLimits::default`]. A component found in the compile cache
/// (memory or disk) is not compiled again and pays no worker.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CompileConfig {
    /// Where Cranelift runs.
    pub mode: CompileMode,
    /// The worker's OS limits (ignored in process).
    pub limits: CompileLimits,
}

/// Where an uploaded component is compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompileMode {
    /// In a worker subprocess under [`CompileLimits`] (default). `program`
    /// is the worker executable; `None` looks for it as the
    /// `compile_worker` module describes (`ML_CONNECTOR_PLUGIN_COMPILE_WORKER`, this
    /// executable when it serves as its own worker, or `mlc-plugin-compile`
    /// next to it).
    Worker {
        /// The worker executable, or `None` to locate it.
        program: Option<std::path::PathBuf>,
    },
    /// In the host process, with no CPU, memory or time budget: only for
    /// environments that cannot start a subprocess, and only when
    /// configured so explicitly.
    InProcess,
}

impl Default for CompileMode {
    fn default() -> Self {
        Self::Worker { program: None }
    }
}

/// OS limits of one compile worker. A worker past one of them is killed
/// and the upload alone is refused with
/// [`crate::PluginError::CompileLimit`] naming the limit
/// (`cpu-seconds`, `address-space`, `wall-clock` or `artifact-size`).
/// Defaults: 20 CPU seconds, 4 GiB of address space, 60 s of wall-clock
/// time, a 256 MiB artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileLimits {
    /// CPU time of the worker, all its threads together, whole seconds
    /// (`RLIMIT_CPU`, set in the child before exec).
    pub cpu_seconds: u64,
    /// Address space of the worker, bytes (`RLIMIT_AS`). The worker
    /// builds an engine but never instantiates, so it reserves no linear
    /// memory; what it maps is its own code, thread stacks and Cranelift's
    /// working memory. Below ~256 MiB even small components fail.
    pub address_space: u64,
    /// Wall-clock time the parent waits before killing the worker.
    pub wall_clock: Duration,
    /// Largest compiled artifact the parent reads back, bytes (compiled
    /// code is a few times the size of the wasm).
    pub max_artifact: usize,
}

impl CompileLimits {
    /// Default CPU budget: 20 seconds.
    pub const DEFAULT_CPU_SECONDS: u64 = 20;
    /// Default address space: 4 GiB.
    pub const DEFAULT_ADDRESS_SPACE: u64 = 4 << 30;
    /// Default wall-clock budget: 60 seconds.
    pub const DEFAULT_WALL_CLOCK: Duration = Duration::from_secs(60);
    /// Default artifact cap: 256 MiB.
    pub const DEFAULT_MAX_ARTIFACT: usize = 256 << 20;
}

impl Default for CompileLimits {
    fn default() -> Self {
        Self {
            cpu_seconds: Self::DEFAULT_CPU_SECONDS,
            address_space: Self::DEFAULT_ADDRESS_SPACE,
            wall_clock: Self::DEFAULT_WALL_CLOCK,
            max_artifact: Self::DEFAULT_MAX_ARTIFACT,
        }
    }
}

/// The error a refused memory growth traps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded: the guest asked for {requested} bytes")]
pub(crate) struct MemoryLimitExceeded {
    /// The cap.
    pub limit: usize,
    /// The size asked for.
    pub requested: usize,
}

/// Caps linear memory (and the number of tables, memories and instances) of
/// one store. A growth past the cap traps instead of returning -1 to the
/// guest, and is remembered so the caller can report it even if the error
/// was wrapped on its way out.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    exceeded: Option<MemoryLimitExceeded>,
}

impl MemoryLimiter {
    /// A limiter for `limit` bytes of linear memory.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            exceeded: None,
        }
    }

    /// The refused growth, if one happened.
    pub fn exceeded(&self) -> Option<MemoryLimitExceeded> {
        self.exceeded
    }
}

/// Tables and memories a mapping component may create: Rust guests use one
/// memory and one table per core module; the component adapter adds a few.
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;
const MAX_INSTANCES: usize = 64;
/// Largest table a guest may grow to (function references).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            let exceeded = MemoryLimitExceeded {
                limit: self.limit,
                requested: desired,
            };
            self.exceeded = Some(exceeded);
            return Err(wasmtime::Error::new(exceeded));
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // The host could not provide memory within the cap: a trap, like
        // `trap_on_grow_failure`, rather than -1 and a guest abort.
        Err(error)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Advances the engine's epoch every `tick` on a background thread. The
/// thread holds a weak engine handle: it ends once the engine is dropped, or
/// when the ticker is dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking.
    pub fn start(engine: EngineWeak, tick: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mlc-plugin-epoch".into())
            .spawn(move || {
                loop {
                    match stopped.recv_timeout(tick) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        // stop requested, or the ticker was dropped
                        _ => return,
                    }
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Epoch ticks for a deadline: rounded up, plus one because the current
/// tick may end right after the deadline is set.
pub(crate) fn deadline_ticks(deadline: Duration, tick: Duration) -> u64 {
    let tick_nanos = tick.as_nanos().max(1);
    let ticks = deadline.as_nanos().div_ceil(tick_nanos);
    u64::try_from(ticks)
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_refuses_growth_past_the_cap_with_a_typed_error() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 16, None).unwrap());
        assert!(limiter.memory_growing(1 << 16, 1 << 20, None).unwrap());
        assert_eq!(limiter.exceeded(), None);
        let err = limiter
            .memory_growing(1 << 20, (1 << 20) + (1 << 16), None)
            .unwrap_err();
        let typed = err.downcast_ref::<MemoryLimitExceeded>().unwrap();
        assert_eq!(typed.limit, 1 << 20);
        assert_eq!(typed.requested, (1 << 20) + (1 << 16));
        assert_eq!(limiter.exceeded(), Some(*typed));
    }

    #[test]
    fn deadline_ticks_round_up() {
        let tick = Duration::from_millis(10);
        assert_eq!(deadline_ticks(Duration::from_millis(100), tick), 11);
        assert_eq!(deadline_ticks(Duration::from_millis(101), tick), 12);
        assert_eq!(deadline_ticks(Duration::ZERO, tick), 1);
        assert_eq!(
            deadline_ticks(Duration::MAX, Duration::from_nanos(1)),
            u64::MAX
        );
    }

    #[test]
    fn ticker_ends_with_its_engine() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let ticker = EpochTicker::start(engine.weak(), Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!ticker.thread.as_ref().unwrap().is_finished());
        drop(engine);
        let started = std::time::Instant::now();
        while !ticker.thread.as_ref().unwrap().is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the epoch thread outlived its engine"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
