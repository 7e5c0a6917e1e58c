//! Lock-free publication of immutable table snapshots, with quiescent-state
//! tracking so the writer can tell when no worker still runs an old one.
//!
//! Readers (workers) call [`Snapshot::reader`] once, then per burst
//! [`Reader::load`] (an atomic pointer compare, and on change one `Arc` clone:
//! no lock, no allocation) and, after the burst, [`Reader::quiescent`] (one
//! atomic store). A worker holds no reference it got before its last quiescent
//! report other than the cached `Arc`, which it never reads again without a
//! fresh `load`.
//!
//! The writer publishes with [`Snapshot::publish`], one atomic swap. Memory is
//! safe by construction: snapshots are `Arc`s, freed when the last clone goes.
//! [`Snapshot::synchronize`] adds what `Arc` alone cannot say: it returns once
//! every registered worker has passed a quiescent state after the swap, so
//! anything only the old snapshot referred to (a DPDK port being removed, a
//! backend being retired) is no longer in use by any worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Cache};
use crossbeam::utils::CachePadded;

/// A worker that has left (or not yet started) reports this: it holds nothing.
const OFFLINE: u64 = u64::MAX;

pub struct Snapshot<T> {
    current: Arc<ArcSwap<T>>,
    /// Bumped by every `synchronize`.
    epoch: CachePadded<AtomicU64>,
    /// Per worker: the epoch it saw at its last quiescent state.
    seen: Vec<CachePadded<AtomicU64>>,
}

/// A worker's handle: caches the current snapshot between loads.
pub struct Reader<T> {
    cache: Cache<Arc<ArcSwap<T>>, Arc<T>>,
    shared: Arc<Snapshot<T>>,
    id: usize,
}

impl<T> Snapshot<T> {
    pub fn new(initial: T, workers: usize) -> Arc<Self> {
        Arc::new(Snapshot {
            current: Arc::new(ArcSwap::from_pointee(initial)),
            epoch: CachePadded::new(AtomicU64::new(0)),
            seen: (0..workers).map(|_| CachePadded::new(AtomicU64::new(OFFLINE))).collect(),
        })
    }

    /// The current snapshot (for the management side; workers use a `Reader`).
    pub fn get(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Makes `next` the snapshot every worker loads from its next burst on.
    /// Returns the previous one.
    pub fn publish(&self, next: T) -> Arc<T> {
        self.current.swap(Arc::new(next))
    }

    /// Waits until every online worker has reported a quiescent state after
    /// this call began. Returns false if `timeout` passed first (a worker is
    /// stuck); the caller must then not free what the old snapshot used.
    pub fn synchronize(&self, timeout: Duration) -> bool {
        let target = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let lagging = self.seen.iter().any(|s| {
                let v = s.load(Ordering::SeqCst);
                v != OFFLINE && v < target
            });
            if !lagging {
                return true;
            }
            if start.elapsed() > timeout {
                return false;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    pub fn workers(&self) -> usize {
        self.seen.len()
    }

    /// A reader for worker `id` (0-based, below the count given to `new`).
    /// The worker counts as online from here until the reader is dropped.
    pub fn reader(self: &Arc<Self>, id: usize) -> Reader<T> {
        assert!(id < self.seen.len(), "worker id {id} out of range");
        self.seen[id].store(self.epoch.load(Ordering::SeqCst), Ordering::SeqCst);
        Reader { cache: Cache::new(Arc::clone(&self.current)), shared: Arc::clone(self), id }
    }
}

impl<T> Reader<T> {
    /// The current snapshot; call once per burst.
    #[inline]
    pub fn load(&mut self) -> &Arc<T> {
        self.cache.load()
    }

    /// Reports that this worker holds nothing from before this call.
    #[inline]
    pub fn quiescent(&self) {
        let e = self.shared.epoch.load(Ordering::SeqCst);
        self.shared.seen[self.id].store(e, Ordering::SeqCst);
    }
}

impl<T> Drop for Reader<T> {
    fn drop(&mut self) {
        self.shared.seen[self.id].store(OFFLINE, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn synchronize_waits_for_every_worker() {
        let s = Snapshot::new(1u64, 2);
        let r0 = s.reader(0);
        let _r1 = s.reader(1);
        s.publish(2);
        // Worker 1 never reports: synchronize must time out.
        assert!(!s.synchronize(Duration::from_millis(20)));
        r0.quiescent();
        assert!(!s.synchronize(Duration::from_millis(20)));
        drop(_r1); // offline workers hold nothing
        let s2 = Arc::clone(&s);
        let t = std::thread::spawn(move || s2.synchronize(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(10));
        r0.quiescent();
        assert!(t.join().unwrap());
    }

    /// Writers publish while readers load and check each snapshot is whole
    /// (its two halves agree) and that a retired value is never seen after
    /// the synchronize that retired it.
    #[test]
    fn stress_no_torn_or_stale_reads() {
        #[derive(Debug)]
        struct Pair(u64, u64);
        let s = Snapshot::new(Pair(0, 0), 2);
        let stop = Arc::new(AtomicBool::new(false));
        let retired = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        for id in 0..2 {
            // Registered before the writer starts, so every synchronize waits for it.
            let mut r = s.reader(id);
            let stop = Arc::clone(&stop);
            let retired = Arc::clone(&retired);
            handles.push(std::thread::spawn(move || {
                let mut loads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let floor = retired.load(Ordering::SeqCst);
                    let snap = r.load();
                    assert_eq!(snap.0, snap.1, "torn snapshot");
                    assert!(snap.0 >= floor, "stale snapshot {} after {floor} was retired", snap.0);
                    loads += 1;
                    r.quiescent();
                }
                loads
            }));
        }
        for g in 1..=2000u64 {
            s.publish(Pair(g, g));
            assert!(s.synchronize(Duration::from_secs(10)));
            retired.store(g, Ordering::SeqCst);
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            assert!(h.join().unwrap() > 0);
        }
    }
}
