//! Instance allocation: wasmtime's pooling allocator, sized from the
//! maximum number of concurrent batch calls, and the permits that keep the
//! number of live instances within the pool.
//!
//! Every batch call still gets a fresh `Store` and a fresh instance; what
//! the pool changes is where the instance's linear memory, tables and
//! instance state come from. With the on-demand allocator each call maps a
//! new memory reservation, faults its pages in as the guest touches them and
//! unmaps it when the store is dropped. With the pool, slots are reserved
//! once when the engine is built and reused: when an instance is dropped its
//! slot is reset, the first [`MEMORY_KEEP_RESIDENT`] bytes of its memory are
//! zeroed in place (they stay resident, so the next call does not fault them
//! in again) and the rest is handed back to the kernel.
//!
//! An exhausted pool makes instantiation fail rather than wait, so every
//! call first takes a [`CallPermit`] from [`CallPermits`], one per pool
//! slot set: a call beyond the maximum concurrency waits for a permit.
//!
//! Reserving the pool needs address space (about 4 GiB per memory slot, the
//! static reservation that lets compiled code skip bounds checks). Where it
//! cannot be reserved (a `ulimit -v`, a 32-bit host), the engine is built
//! with the on-demand allocator instead and a warning says why.

use std::sync::{Condvar, Mutex};

use wasmtime::PoolingAllocationConfig;

use crate::limits::MAX_TABLE_ELEMENTS;

/// Linear memory bytes kept resident per memory slot between calls (zeroed
/// with `memset` rather than decommitted). A batch of 1,000 records of
/// ~1.3 KB copies ~1.3 MB in and builds its rows next to it; 8 MiB covers
/// that with room, and bounds the resident cost to 8 MiB per slot.
pub(crate) const MEMORY_KEEP_RESIDENT: usize = 8 << 20;

/// Table bytes kept resident per table slot between calls.
pub(crate) const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// Core instances one mapping component may create. A Rust wasip2 guest is
/// one core module plus the small shim and fix-up modules of the component
/// adapter.
const CORE_INSTANCES_PER_CALL: u32 = 16;

/// Linear memories one mapping component may create (a Rust guest has one).
const MEMORIES_PER_CALL: u32 = 2;

/// Tables one mapping component may create (one per core module at most).
const TABLES_PER_CALL: u32 = 16;

/// Default maximum of concurrent batch calls: four per available core, at
/// least 4.
pub(crate) fn default_max_concurrent_calls() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .saturating_mul(4)
        .max(4)
}

/// The pool for `max_calls` concurrent calls whose memories may grow to
/// `max_memory` bytes.
pub(crate) fn pooling_config(max_calls: u32, max_memory: usize) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(max_calls)
        .total_core_instances(max_calls.saturating_mul(CORE_INSTANCES_PER_CALL))
        .max_core_instances_per_component(CORE_INSTANCES_PER_CALL)
        .total_memories(max_calls.saturating_mul(MEMORIES_PER_CALL))
        .max_memories_per_component(MEMORIES_PER_CALL)
        .total_tables(max_calls.saturating_mul(TABLES_PER_CALL))
        .max_tables_per_component(TABLES_PER_CALL)
        .table_elements(MAX_TABLE_ELEMENTS)
        // The per-tenant cap is the store's limiter; this is the ceiling of
        // every tenant's cap (see `RuntimeConfig::pooling`).
        .max_memory_size(max_memory)
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT.min(max_memory))
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        // Calls are synchronous: no fiber stacks are needed beyond one per
        // call, should an async path ever be used.
        .total_stacks(max_calls);
    pool
}

/// Which allocator the engine ended up with.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "allocator")]
pub enum InstanceAllocator {
    /// The pooling allocator: slots reserved once, reused by every call.
    Pooling {
        /// Concurrent calls the pool holds (the number of call permits).
        max_concurrent_calls: usize,
        /// Largest linear memory of any call, bytes: every tenant's memory
        /// limit must fit under it.
        max_memory: usize,
    },
    /// The on-demand allocator: each call maps and unmaps its own memory.
    OnDemand {
        /// Why the pool is not used: turned off in the configuration, or
        /// the reason it could not be reserved.
        reason: String,
    },
}

/// A counting semaphore in front of instantiation. Calls run on blocking
/// threads (the runtime's calls are synchronous), so it blocks the thread
/// rather than awaiting.
#[derive(Debug)]
pub(crate) struct CallPermits {
    free: Mutex<usize>,
    released: Condvar,
}

impl CallPermits {
    /// `permits` concurrent calls.
    pub fn new(permits: usize) -> Self {
        Self {
            free: Mutex::new(permits),
            released: Condvar::new(),
        }
    }

    /// Takes a permit, waiting for one if all are in use. Hold it until the
    /// call's `Store` is dropped: that is when the instance's pool slots are
    /// released.
    pub fn acquire(&self) -> CallPermit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if *free == 0 {
            let waited = std::time::Instant::now();
            while *free == 0 {
                free = self.released.wait(free).unwrap_or_else(|p| p.into_inner());
            }
            tracing::debug!(
                waited_us = waited.elapsed().as_micros() as u64,
                "waited for a free instance slot"
            );
        }
        *free -= 1;
        CallPermit { permits: self }
    }

    /// Permits not taken right now.
    #[cfg(test)]
    fn available(&self) -> usize {
        *self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One call's share of the pool; returned on drop.
#[derive(Debug)]
pub(crate) struct CallPermit<'a> {
    permits: &'a CallPermits,
}

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        let mut free = self.permits.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.permits.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn permits_bound_concurrency_and_waiters_proceed() {
        let permits = Arc::new(CallPermits::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (permits, running, peak) = (permits.clone(), running.clone(), peak.clone());
                std::thread::spawn(move || {
                    let _permit = permits.acquire();
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a permit holder panicked");
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&peak),
            "{peak} calls ran at once with 2 permits"
        );
        assert_eq!(permits.available(), 2, "a permit was not returned");
    }

    #[test]
    fn pool_sized_from_concurrency() {
        let pool = pooling_config(8, 64 << 20);
        let mut config = wasmtime::Config::new();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        // Reserving the pool is what the runtime's probe does; a 64-bit test
        // host has the address space for 8 calls.
        wasmtime::Engine::new(&config).expect("an 8-call pool fits in the address space");
        assert!(default_max_concurrent_calls() >= 4);
    }
}
