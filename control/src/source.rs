//! Where the cluster's objects come from, shared between a source (the
//! cluster file's watcher, or the Kubernetes watch) and the loop that
//! computes and pushes tables: the latest [`ClusterObjects`], a version
//! bumped on every change, and whether the source is ready (every store
//! listed once — tables are never computed from a half-listed cluster, so
//! a restart never programs empty tables).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::model::ClusterObjects;

#[derive(Default)]
pub struct Shared {
    objs: Mutex<ClusterObjects>,
    version: AtomicU64,
    ready: AtomicBool,
    /// Why the source is unhappy, if it is (shown by the loop, once).
    error: Mutex<Option<String>>,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared::default())
    }

    /// Replaces the objects and marks the source ready.
    pub fn set(&self, objs: ClusterObjects) {
        if let Ok(mut o) = self.objs.lock() {
            *o = objs;
        }
        self.version.fetch_add(1, Ordering::Release);
        self.ready.store(true, Ordering::Release);
        self.set_error(None);
    }

    pub fn set_error(&self, e: Option<String>) {
        if let Ok(mut g) = self.error.lock() {
            *g = e;
        }
    }

    pub fn take_error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|mut g| g.take())
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The objects, if the source is ready.
    pub fn snapshot(&self) -> Option<(u64, ClusterObjects)> {
        if !self.ready() {
            return None;
        }
        let o = self.objs.lock().ok()?;
        Some((self.version(), o.clone()))
    }
}

/// The embedded default cluster (config/demo-cluster.yaml).
pub const DEMO_CLUSTER: &str = include_str!("../../config/demo-cluster.yaml");

/// Watches a cluster file (by modification time and size, every
/// `interval`) and publishes it into `shared` whenever it changes and
/// parses. A file that does not parse leaves the last good objects in
/// place. `None` serves the embedded demo cluster.
pub fn watch_file(path: Option<PathBuf>, shared: Arc<Shared>, interval: Duration) {
    let Some(path) = path else {
        match ClusterObjects::from_yaml(DEMO_CLUSTER) {
            Ok(o) => shared.set(o),
            Err(e) => shared.set_error(Some(format!("embedded cluster: {e}"))),
        }
        return;
    };
    std::thread::spawn(move || {
        let mut seen: Option<(SystemTime, u64)> = None;
        loop {
            let stamp = stamp(&path);
            if stamp.is_some() && stamp != seen {
                seen = stamp;
                match std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|t| ClusterObjects::from_yaml(&t)) {
                    Ok(o) => shared.set(o),
                    Err(e) => shared.set_error(Some(format!("{}: {e} (keeping the last good objects)", path.display()))),
                }
            }
            std::thread::sleep(interval);
        }
    });
}

fn stamp(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}
