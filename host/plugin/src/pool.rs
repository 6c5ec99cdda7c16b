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
//! slot set: a call beyond the maximum concurrency waits for a permit. One
//! tenant holds at most its share of the permits (by default half, at
//! least one; `RuntimeConfig::max_calls_per_tenant`), so a tenant whose
//! calls loop until their deadline cannot starve the others.
//!
//! Reserving the pool needs address space (about 4 GiB per memory slot, the
//! static reservation that lets compiled code skip bounds checks). Where it
//! cannot be reserved (a `ulimit -v`, a 32-bit host), the engine is built
//! with the on-demand allocator instead and a warning says why.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

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

/// A counting semaphore in front of instantiation, with a per-tenant
/// share: one tenant holds at most `per_tenant` permits at once, so while
/// it saturates its share the other tenants' calls still find permits.
/// Calls run on blocking threads (the runtime's calls are synchronous), so
/// it blocks the thread rather than awaiting.
#[derive(Debug)]
pub(crate) struct CallPermits {
    state: Mutex<PermitState>,
    released: Condvar,
    per_tenant: usize,
}

#[derive(Debug)]
struct PermitState {
    free: usize,
    /// Permits held per tenant (tenants holding none are removed).
    held: HashMap<Arc<str>, usize>,
}

/// The default per-tenant share of `permits`: half, at least one.
pub(crate) fn default_per_tenant(permits: usize) -> usize {
    (permits / 2).max(1)
}

impl CallPermits {
    /// `permits` concurrent calls, at most `per_tenant` (at least 1, at
    /// most `permits`) of them for one tenant.
    pub fn new(permits: usize, per_tenant: usize) -> Self {
        Self {
            state: Mutex::new(PermitState {
                free: permits,
                held: HashMap::new(),
            }),
            released: Condvar::new(),
            per_tenant: per_tenant.clamp(1, permits.max(1)),
        }
    }

    /// Takes a permit for `tenant`, waiting while all are in use or the
    /// tenant holds its whole share. Hold it until the call's `Store` is
    /// dropped: that is when the instance's pool slots are released.
    pub fn acquire(&self, tenant: &Arc<str>) -> CallPermit<'_> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let blocked = |state: &PermitState| {
            state.free == 0 || state.held.get(tenant).copied().unwrap_or(0) >= self.per_tenant
        };
        if blocked(&state) {
            let waited = std::time::Instant::now();
            let at_share = state.free > 0;
            while blocked(&state) {
                state = self.released.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            tracing::debug!(
                tenant = %tenant,
                waited_us = waited.elapsed().as_micros() as u64,
                cause = if at_share { "the tenant's share" } else { "the pool" },
                "waited for a free instance slot"
            );
        }
        state.free -= 1;
        *state.held.entry(tenant.clone()).or_insert(0) += 1;
        CallPermit {
            permits: self,
            tenant: tenant.clone(),
        }
    }

    /// Permits not taken right now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).free
    }
}

/// One call's share of the pool; returned on drop.
#[derive(Debug)]
pub(crate) struct CallPermit<'a> {
    permits: &'a CallPermits,
    tenant: Arc<str>,
}

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        let mut state = self.permits.state.lock().unwrap_or_else(|p| p.into_inner());
        state.free += 1;
        if let Some(held) = state.held.get_mut(&self.tenant) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                state.held.remove(&self.tenant);
            }
        }
        // Waiters wait on different conditions (the pool, their share):
        // wake them all to recheck.
        self.permits.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn one_tenant_holds_at_most_its_share_and_others_get_the_rest() {
        let permits = Arc::new(CallPermits::new(4, 2));
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let a1 = permits.acquire(&a);
        let _a2 = permits.acquire(&a);
        // A third for `a` waits although two permits are free...
        let waiting = {
            let (permits, a) = (permits.clone(), a.clone());
            std::thread::spawn(move || {
                let _a3 = permits.acquire(&a);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiting.is_finished(), "tenant a took more than its share");
        // ...and `b` takes them at once.
        let b1 = permits.acquire(&b);
        let b2 = permits.acquire(&b);
        assert_eq!(permits.available(), 0);
        drop((b1, b2));
        assert!(!waiting.is_finished(), "tenant a took more than its share");
        drop(a1);
        waiting
            .join()
            .expect("the waiting call proceeds once a has a permit back");
        assert_eq!(permits.available(), 3);
        assert_eq!(default_per_tenant(1), 1);
        assert_eq!(default_per_tenant(8), 4);
    }

    #[test]
    fn permits_bound_concurrency_and_waiters_proceed() {
        let permits = Arc::new(CallPermits::new(2, 2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (permits, running, peak) = (permits.clone(), running.clone(), peak.clone());
                std::thread::spawn(move || {
                    let _permit = permits.acquire(&Arc::from("acme"));
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
