//! The status writer: while this instance is the leader, makes every
//! LoadBalancer Service's `status.loadBalancer.ingress` what [`allocate`]
//! says, by JSON merge patches of `/status`. It acts on the level: each
//! round computes the whole allocation from the latest objects and writes
//! only the Services whose status differs. A round runs on every new
//! objects version, on becoming leader, and again after `interval` while
//! writes fail. Problems are told once each.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::pool::{allocate, apply, ingress_ips, service_key};
use super::{LbState, Reported};
use crate::model::ClusterObjects;
use crate::source::Shared;

/// How often the objects' version and the leadership are looked at (an
/// atomic load each).
const POLL: Duration = Duration::from_millis(50);

/// What of an ingress entry weir writes, and compares: the API server may
/// add fields (`ipMode`) that are no reason to write again.
fn ingress_of(svc: &Service) -> Vec<(Option<String>, Option<String>)> {
    let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    ingress.into_iter().flatten().map(|i| (i.ip.clone(), i.hostname.clone())).collect()
}

/// The writer's memory between rounds.
#[derive(Default)]
struct Writer {
    /// What was written to a Service, with its resourceVersion then: the
    /// watch may not have brought the write back yet, and writing the same
    /// again would only cost a request.
    written: BTreeMap<String, (Option<String>, Vec<Ipv4Addr>)>,
    /// Problems and pool warnings told (each once while it lasts).
    problems: BTreeMap<String, String>,
    warnings: BTreeSet<String>,
    failures: Reported,
}

impl Writer {
    fn tell_problems(&mut self, problems: &BTreeMap<String, String>, warnings: &[String]) {
        for (svc, why) in problems {
            if self.problems.get(svc) != Some(why) {
                eprintln!("weir-control: warning: LoadBalancer {svc}: no address: {why}");
            }
        }
        self.problems = problems.clone();
        let now: BTreeSet<String> = warnings.iter().cloned().collect();
        for w in now.difference(&self.warnings) {
            eprintln!("weir-control: warning: {w}");
        }
        self.warnings = now;
    }

    /// One round over `objs`; false if a write failed.
    async fn round(&mut self, client: &kube::Client, objs: &ClusterObjects, state: &LbState) -> bool {
        let allocation = allocate(objs);
        self.tell_problems(&allocation.problems, &allocation.pool_warnings);
        // The statuses as they should be (apply only looks at Services).
        let mut view = ClusterObjects { services: objs.services.clone(), ..ClusterObjects::default() };
        apply(&mut view, &allocation);
        // Forget Services that are gone.
        let keys: BTreeSet<String> = objs.services.iter().map(service_key).collect();
        self.written.retain(|k, _| keys.contains(k));
        self.failures.retain(|k| keys.contains(k));
        let mut ok = true;
        for (have, want) in objs.services.iter().zip(&view.services) {
            let key = service_key(have);
            if ingress_of(have) == ingress_of(want) {
                self.written.remove(&key);
                continue;
            }
            let ips = ingress_ips(want);
            let rv = have.metadata.resource_version.clone();
            if self.written.get(&key) == Some(&(rv.clone(), ips.clone())) {
                continue;
            }
            // Only the leader writes, and only while it is one: the write
            // must be answered before the leadership lapses.
            let left = state.leader_until().and_then(|u| u.checked_duration_since(Instant::now()));
            let Some(left) = left.filter(|d| !d.is_zero()) else {
                return ok;
            };
            let (ns, name) = key.split_once('/').unwrap_or(("default", key.as_str()));
            let api: Api<Service> = Api::namespaced(client.clone(), ns);
            let ingress: Vec<_> = ips.iter().map(|ip| json!({ "ip": ip.to_string() })).collect();
            let patch = json!({ "status": { "loadBalancer": { "ingress": ingress } } });
            let params = PatchParams { field_manager: Some("weir-control".into()), ..PatchParams::default() };
            match tokio::time::timeout(left, api.patch_status(name, &params, &Patch::Merge(&patch))).await {
                Ok(Ok(_)) => {
                    let shown: Vec<String> = ips.iter().map(Ipv4Addr::to_string).collect();
                    let shown = if shown.is_empty() { "(none)".to_string() } else { shown.join(", ") };
                    println!("weir-control: LoadBalancer {key}: {shown}");
                    self.written.insert(key.clone(), (rv, ips));
                    self.failures.clear(&key);
                    state.count_status_write();
                }
                Ok(Err(e)) => {
                    ok = false;
                    self.failures.report(&key, format!("LoadBalancer {key}: status not written: {e} (retrying)"));
                }
                Err(_) => {
                    ok = false;
                    self.failures
                        .report(&key, format!("LoadBalancer {key}: status not written: no answer in time (retrying)"));
                }
            }
        }
        ok
    }
}

/// The writer, forever (see the module doc).
pub(crate) async fn run_writer(client: kube::Client, shared: Arc<Shared>, state: Arc<LbState>, interval: Duration) {
    let mut w = Writer::default();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_leader = false;
    let mut last_version = None;
    let mut failed_at: Option<Instant> = None;
    loop {
        tick.tick().await;
        if !state.is_leader() {
            if was_leader {
                // A later leadership starts from what the objects say.
                w.written.clear();
                failed_at = None;
            }
            was_leader = false;
            continue;
        }
        let version = shared.version();
        let due = !was_leader || last_version != Some(version) || failed_at.is_some_and(|t| t.elapsed() >= interval);
        was_leader = true;
        if !due {
            continue;
        }
        // Never from a half-listed cluster: the source is ready or nothing.
        let Some((version, objs)) = shared.snapshot() else { continue };
        last_version = Some(version);
        failed_at = if w.round(&client, &objs, &state).await { None } else { Some(Instant::now()) };
    }
}
