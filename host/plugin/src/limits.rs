//! Per-call limits: memory cap, CPU deadline, fuel, output caps; and the
//! upload limits ([`UploadLimits`]) on what a tenant may hand the runtime.
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
/// tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadLimits {
    /// Largest component, bytes.
    pub max_component: usize,
    /// Largest configuration text (a mapping script), bytes.
    pub max_config: usize,
    /// Most plugins one tenant may have loaded at once.
    pub max_plugins_per_tenant: usize,
}

impl UploadLimits {
    /// Default component cap: 16 MiB.
    pub const DEFAULT_MAX_COMPONENT: usize = 16 << 20;
    /// Default configuration cap: 256 KiB.
    pub const DEFAULT_MAX_CONFIG: usize = 256 << 10;
    /// Default plugins per tenant.
    pub const DEFAULT_MAX_PLUGINS_PER_TENANT: usize = 64;
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            max_component: Self::DEFAULT_MAX_COMPONENT,
            max_config: Self::DEFAULT_MAX_CONFIG,
            max_plugins_per_tenant: Self::DEFAULT_MAX_PLUGINS_PER_TENANT,
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
