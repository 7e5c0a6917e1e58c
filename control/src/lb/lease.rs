//! Leases (`coordination.k8s.io/v1`): the allocator's leader election and
//! the nodes' membership.
//!
//! Leader election follows client-go's `leaderelection` package:
//! - a Lease that does not exist is created, naming this instance;
//! - another holder's Lease is taken over only when it has not changed
//!   (its resourceVersion) for its `leaseDurationSeconds` *as observed
//!   here*: the time is this process's monotonic clock from when the change
//!   was seen, never a timestamp written by another host;
//! - every write is a replace carrying the resourceVersion read, so of two
//!   instances trying at once the API server lets one win (409 Conflict
//!   for the other);
//! - the leader renews every duration/3 and counts as leader only until
//!   2/3 of the duration after the start of its last successful renewal:
//!   the others' clock for the same renewal starts later (they saw it
//!   after it was written), so the leader always stops acting before
//!   anyone may take over, even when it is cut off from the API server;
//! - on a clean stop the leader releases the Lease (no holder, duration 1
//!   s), so a successor takes over at its next look.
//!
//! Membership: each node's weir-control renews the Lease
//! `weir-node-<node>` (holder: the node) while its dataplane is healthy,
//! and lists them all; a node is live while its Lease was seen to change
//! within its duration.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};

use super::{LbState, Reported};

/// The allocator's leader Lease.
pub const LEADER_LEASE: &str = "weir-lb-allocator";
/// The prefix of the nodes' membership Leases (`weir-node-<node>`).
pub const MEMBER_LEASE_PREFIX: &str = "weir-node-";

/// A Lease's `leaseDurationSeconds` for `d`: whole seconds, rounded up (a
/// reader must never see a shorter duration than the writer keeps to).
fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(i32::MAX).max(1)
}

/// A Lease's duration as its record says, else `default`.
fn duration_of(lease: &Lease, default: Duration) -> Duration {
    let secs = lease.spec.as_ref().and_then(|s| s.lease_duration_seconds).filter(|&s| s > 0);
    secs.map_or(default, |s| Duration::from_secs(s.unsigned_abs().into()))
}

fn holder_of(lease: &Lease) -> Option<String> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The leader Lease as last seen here.
#[derive(Debug, Clone)]
struct Observed {
    rv: Option<String>,
    holder: Option<String>,
    duration: Duration,
    /// When this resourceVersion was first seen (this process's clock).
    at: Instant,
}

/// One instance's side of the election.
pub(crate) struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    observed: Option<Observed>,
}

impl Elector {
    pub(crate) fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Elector {
        Elector { api, name: name.to_string(), identity: identity.to_string(), duration, observed: None }
    }

    pub(crate) fn duration(&self) -> Duration {
        self.duration
    }

    fn observe(&mut self, lease: &Lease, now: Instant) {
        let rv = lease.metadata.resource_version.clone();
        let at = match &self.observed {
            Some(o) if o.rv == rv => o.at,
            _ => now,
        };
        let duration = duration_of(lease, self.duration);
        self.observed = Some(Observed { rv, holder: holder_of(lease), duration, at });
    }

    /// When the observed holder's Lease expires as seen here (None: no
    /// holder seen).
    pub(crate) fn expires_at(&self) -> Option<Instant> {
        self.observed.as_ref().filter(|o| o.holder.is_some()).map(|o| o.at + o.duration)
    }

    /// One round: Ok(true) when this instance holds the Lease now (created,
    /// renewed or taken over), Ok(false) when another does (or won this
    /// round's race).
    pub(crate) async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let seen = Instant::now();
        let Some(current) = current else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds(self.duration)),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created, Instant::now());
                    Ok(true)
                }
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        self.observe(&current, seen);
        let holder = holder_of(&current);
        let mine = holder.as_deref() == Some(self.identity.as_str());
        if holder.is_some() && !mine && self.expires_at().is_some_and(|t| seen < t) {
            return Ok(false);
        }
        let mut next = current.clone();
        let spec = next.spec.get_or_insert_with(LeaseSpec::default);
        if !mine {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(seconds(self.duration));
        spec.renew_time = Some(MicroTime(now));
        // `next` carries the resourceVersion read: a precondition.
        match self.api.replace(&self.name, &PostParams::default(), &next).await {
            Ok(written) => {
                self.observe(&written, Instant::now());
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if this instance holds it: no holder, a duration
    /// of 1 s, so the next instance to look takes it at once. Ok(true) if
    /// it was released here.
    pub(crate) async fn release(&mut self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(false) };
        if holder_of(&lease).as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        let now = Timestamp::now();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(now));
        spec.acquire_time = Some(MicroTime(now));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Says on stdout when this instance's leadership changed since `shown`.
pub(crate) fn show_leadership(state: &LbState, shown: &mut bool) {
    let now = state.is_leader();
    if now != *shown {
        *shown = now;
        let what = if now { "leader" } else { "not leader any more" };
        println!("weir-control: LoadBalancer allocator: {what} (identity {})", state.identity);
    }
}

/// The election, forever: see the module doc for the timings. `shown` is
/// the leadership last logged.
pub(crate) async fn run_election(el: &mut Elector, state: &LbState, shown: &mut bool) {
    let d = el.duration();
    let (renew_every, keep_for, retry, poll, attempt_timeout) = (d / 3, d * 2 / 3, d / 8, d / 6, d / 4);
    let mut errors = Reported::default();
    loop {
        let next = if state.renewals_paused() {
            Instant::now() + retry
        } else {
            let start = Instant::now();
            match tokio::time::timeout(attempt_timeout, el.try_acquire_or_renew()).await {
                Ok(Ok(true)) => {
                    state.set_leader_until(Some(start + keep_for));
                    errors.clear("election");
                    start + renew_every
                }
                Ok(Ok(false)) => {
                    // Someone else holds it (or won this round).
                    state.set_leader_until(None);
                    errors.clear("election");
                    let now = Instant::now();
                    // Look again soon, and right when the holder's Lease
                    // would expire.
                    el.expires_at().filter(|t| *t > now).map_or(now + poll, |t| t.min(now + poll))
                }
                Ok(Err(e)) => {
                    errors.report("election", format!("leader Lease {LEADER_LEASE}: {e} (retrying)"));
                    Instant::now() + retry
                }
                Err(_) => {
                    errors.report(
                        "election",
                        format!("leader Lease {LEADER_LEASE}: no answer in {attempt_timeout:?} (retrying)"),
                    );
                    Instant::now() + retry
                }
            }
        };
        show_leadership(state, shown);
        // Sleep until the next round, waking at the end of leadership too
        // (to say so when it lapses).
        loop {
            let now = Instant::now();
            if now >= next {
                break;
            }
            let wake = state.leader_until().filter(|u| *u > now && *u < next).unwrap_or(next);
            tokio::time::sleep_until(wake.into()).await;
            show_leadership(state, shown);
        }
    }
}

/// The membership Lease of `node`.
pub fn member_lease_name(node: &str) -> String {
    format!("{MEMBER_LEASE_PREFIX}{node}")
}

/// Creates or renews this node's membership Lease.
async fn renew_member(api: &Api<Lease>, node: &str, duration: Duration) -> Result<(), kube::Error> {
    let name = member_lease_name(node);
    let now = MicroTime(Timestamp::now());
    let lease = match api.get_opt(&name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.to_string()),
                    lease_duration_seconds: Some(seconds(duration)),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    ..LeaseSpec::default()
                }),
            };
            return api.create(&PostParams::default(), &lease).await.map(drop);
        }
        Some(l) => l,
    };
    let mut next = lease;
    let spec = next.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(node) {
        spec.holder_identity = Some(node.to_string());
        spec.acquire_time = Some(now.clone());
    }
    spec.lease_duration_seconds = Some(seconds(duration));
    spec.renew_time = Some(now);
    api.replace(&name, &PostParams::default(), &next).await.map(drop)
}

/// One membership Lease as seen here.
#[derive(Debug, Clone)]
struct Member {
    rv: Option<String>,
    holder: Option<String>,
    duration: Duration,
    /// When this resourceVersion was first seen.
    at: Instant,
}

/// The membership Leases as seen here.
#[derive(Debug, Default)]
pub(crate) struct Members {
    listed: bool,
    by_node: BTreeMap<String, Member>,
}

impl Members {
    /// Takes in a list of the namespace's Leases made at `now`.
    pub(crate) fn observe(&mut self, leases: &[Lease], now: Instant, default: Duration) {
        let mut by_node = BTreeMap::new();
        for l in leases {
            let Some(node) = l.metadata.name.as_deref().and_then(|n| n.strip_prefix(MEMBER_LEASE_PREFIX)) else {
                continue;
            };
            let rv = l.metadata.resource_version.clone();
            let at = match self.by_node.get(node) {
                Some(m) if m.rv == rv => m.at,
                _ => now,
            };
            let member = Member { rv, holder: holder_of(l), duration: duration_of(l, default), at };
            by_node.insert(node.to_string(), member);
        }
        self.by_node = by_node;
        self.listed = true;
    }

    /// The live nodes at `now`: those whose Lease, held by the node itself,
    /// was seen to change within its duration, and `own` if `healthy`
    /// (its own Lease is not asked). None before the first list.
    pub(crate) fn live(&self, own: &str, healthy: bool, now: Instant) -> Option<BTreeSet<String>> {
        if !self.listed {
            return None;
        }
        let mut out: BTreeSet<String> = self
            .by_node
            .iter()
            .filter(|(node, m)| {
                node.as_str() != own && m.holder.as_deref() == Some(node.as_str()) && now < m.at + m.duration
            })
            .map(|(node, _)| node.clone())
            .collect();
        if healthy {
            out.insert(own.to_string());
        }
        Some(out)
    }
}

/// Membership, forever: every `duration`/3, renews this node's Lease if
/// healthy, then lists the Leases.
pub(crate) async fn run_membership(api: Api<Lease>, state: Arc<LbState>, duration: Duration) {
    let period = duration / 3;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut errors = Reported::default();
    let name = member_lease_name(&state.node);
    loop {
        tick.tick().await;
        if state.healthy() {
            match tokio::time::timeout(period, renew_member(&api, &state.node, duration)).await {
                Ok(Ok(())) => errors.clear("renew"),
                // Changed between our read and write: the next tick renews.
                Ok(Err(e)) if is_conflict(&e) => {}
                Ok(Err(e)) => errors.report("renew", format!("membership Lease {name}: {e} (retrying)")),
                Err(_) => {
                    errors.report("renew", format!("membership Lease {name}: no answer in {period:?} (retrying)"))
                }
            }
        }
        match tokio::time::timeout(period, api.list(&ListParams::default())).await {
            Ok(Ok(list)) => {
                state.observe_members(&list.items, Instant::now(), duration);
                errors.clear("list");
            }
            Ok(Err(e)) => errors.report("list", format!("membership Leases: {e} (retrying)")),
            Err(_) => errors.report("list", format!("membership Leases: no answer in {period:?} (retrying)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(name: &str, rv: &str, holder: Option<&str>, secs: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(secs),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Liveness is what this process saw change, and when: a Lease that
    /// stops changing ages out after its duration; one renewed stays;
    /// one not held by its node, or not a membership Lease, never counts;
    /// the own node counts by its health alone.
    #[test]
    fn members_are_live_while_seen_renewed() {
        let d = Duration::from_secs(3);
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut m = Members::default();
        assert_eq!(m.live("a", true, t0), None, "nothing listed yet");
        let list = |rv_b: &str, rv_c: &str| {
            vec![
                lease("weir-node-a", "1", Some("a"), 3),
                lease("weir-node-b", rv_b, Some("b"), 3),
                lease("weir-node-c", rv_c, Some("c"), 3),
                lease("weir-node-d", "4", Some("someone-else"), 3),
                lease("weir-lb-allocator", "5", Some("x"), 3),
            ]
        };
        m.observe(&list("2", "3"), t0, d);
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(m.live("a", true, t0), Some(set(&["a", "b", "c"])));
        assert_eq!(m.live("a", false, t0), Some(set(&["b", "c"])), "own node: by health, not by its lease");
        // b renews every second, c stops.
        m.observe(&list("12", "3"), t0 + s, d);
        m.observe(&list("22", "3"), t0 + 2 * s, d);
        assert_eq!(m.live("a", true, t0 + 2 * s), Some(set(&["a", "b", "c"])));
        m.observe(&list("32", "3"), t0 + 3 * s, d);
        assert_eq!(m.live("a", true, t0 + 3 * s), Some(set(&["a", "b"])), "c not seen renewed for 3 s");
        // Without lists, b ages out too: nothing is trusted unseen.
        assert_eq!(m.live("a", true, t0 + 6 * s), Some(set(&["a"])));
        // A deleted Lease is gone at once.
        m.observe(&[], t0 + 6 * s, d);
        assert_eq!(m.live("a", true, t0 + 6 * s), Some(set(&["a"])));
    }

    #[test]
    fn lease_seconds_round_up() {
        assert_eq!(seconds(Duration::from_secs(15)), 15);
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
        assert_eq!(seconds(Duration::from_millis(10)), 1);
        assert_eq!(seconds(Duration::ZERO), 1);
    }
}
