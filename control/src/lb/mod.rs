//! Services of type LoadBalancer on bare metal, control side: which
//! addresses of the `LoadBalancerPool`s each Service gets ([`allocate`],
//! pure), written back to the Services' status by one leader
//! ([`spawn`]: Lease leader election and the status writer), and which
//! nodes are live (membership Leases), for choosing who announces an
//! address.
//!
//! What it promises:
//! - **One allocation, whoever computes it.** [`allocate`] is a function of
//!   the objects alone, the Services' status included: every node of a
//!   cluster file computes the same, and a new leader keeps what the last
//!   one wrote.
//! - **One writer.** Only the leader writes status, and it stops counting
//!   itself leader before any other instance may take the Lease over (see
//!   `lease`): two leaders never overlap, even across a partition.
//! - **Level, not edge.** Each round compares every Service's status with
//!   the allocation; a failed write is retried at the next round; nothing
//!   here panics on what the API holds.
//! - **Membership by observation.** A node is live while its Lease is seen
//!   here to be renewed within its duration; this node is live while its
//!   dataplane is healthy ([`LbHandle::set_healthy`]).
//!
//! The kube client lives on the runtime it was built on, so [`spawn`]
//! takes a [`kube::Config`] and runs everything on its own thread and
//! runtime, like `kube_source::spawn`.

#![deny(unsafe_code)]

mod lease;
mod pool;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::sync::oneshot;

use crate::model::ClusterObjects;

pub use lease::{member_lease_name, LEADER_LEASE, MEMBER_LEASE_PREFIX};
pub use pool::{
    allocate, apply, ingress_ips, service_key, Allocation, IPS_ANNOTATION, LB_CLASS, METALLB_IPS_ANNOTATION,
    METALLB_SHARED_IP_ANNOTATION, SHARED_IP_ANNOTATION,
};

use crate::source::Shared;

/// Settings of the allocator and the membership.
#[derive(Debug, Clone)]
pub struct LbOptions {
    /// Where the Leases live.
    pub namespace: String,
    /// This node (its membership Lease is `weir-node-<node>`).
    pub node: String,
    /// This instance in the leader election; unique among the instances.
    pub identity: String,
    /// The leader Lease's duration: a dead leader is replaced after about
    /// this long; it renews every third of it. At least 1 s.
    pub lease_duration: Duration,
    /// The membership Leases' duration: a node that stops renewing leaves
    /// the live set after about this long; renewed every third of it. At
    /// least 1 s.
    pub membership_duration: Duration,
    /// How soon failed status writes are tried again.
    pub interval: Duration,
}

impl Default for LbOptions {
    /// Namespace `weir-system`, node and identity from `NODE_NAME` or the
    /// host name, a 15 s leader Lease (client-go's default), 3 s
    /// membership Leases, retries after 1 s.
    fn default() -> Self {
        let node = std::env::var("NODE_NAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "weir-control".to_string());
        LbOptions {
            namespace: "weir-system".to_string(),
            identity: node.clone(),
            node,
            lease_duration: Duration::from_secs(15),
            membership_duration: Duration::from_secs(3),
            interval: Duration::from_secs(1),
        }
    }
}

/// Distinct messages of a kind told once on stderr, until they change or
/// the trouble clears.
#[derive(Default)]
struct Reported(BTreeMap<String, String>);

impl Reported {
    fn report(&mut self, kind: &str, message: String) {
        if self.0.get(kind) != Some(&message) {
            eprintln!("weir-control: warning: {message}");
            self.0.insert(kind.to_string(), message);
        }
    }

    fn clear(&mut self, kind: &str) {
        self.0.remove(kind);
    }

    fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|k, _| keep(k));
    }
}

/// What the tasks and the handle share.
struct LbState {
    identity: String,
    node: String,
    /// Until when this instance is leader (None: not leader).
    leader_until: Mutex<Option<Instant>>,
    healthy: AtomicBool,
    members: Mutex<lease::Members>,
    status_writes: AtomicU64,
    /// Tests: the election makes no requests while set (a leader cut off).
    renewals_paused: AtomicBool,
}

impl LbState {
    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leader_until(&self) -> Option<Instant> {
        *Self::lock(&self.leader_until)
    }

    fn set_leader_until(&self, until: Option<Instant>) {
        *Self::lock(&self.leader_until) = until;
    }

    fn is_leader(&self) -> bool {
        self.leader_until().is_some_and(|u| Instant::now() < u)
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn observe_members(&self, leases: &[Lease], now: Instant, default: Duration) {
        Self::lock(&self.members).observe(leases, now, default);
    }

    fn count_status_write(&self) {
        self.status_writes.fetch_add(1, Ordering::Relaxed);
    }

    fn renewals_paused(&self) -> bool {
        self.renewals_paused.load(Ordering::Acquire)
    }
}

/// How the thread is to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Give the leader Lease up (a successor takes over at once).
    Release,
    /// Tests: end as a killed process would, releasing nothing.
    #[cfg_attr(not(test), allow(dead_code))]
    Abandon,
}

/// The running allocator and membership (their own thread and tokio
/// runtime). Dropping it asks the thread to stop (releasing the leader
/// Lease); [`LbHandle::stop`] also waits for it.
pub struct LbHandle {
    state: Arc<LbState>,
    stop: Option<oneshot::Sender<Stop>>,
    thread: Option<JoinHandle<()>>,
}

impl LbHandle {
    /// Whether this instance is the allocator's leader now (the only one
    /// that writes status).
    pub fn is_leader(&self) -> bool {
        self.state.is_leader()
    }

    /// Live nodes by membership Lease (this node when healthy); None until
    /// the first list succeeded.
    pub fn live_nodes(&self) -> Option<BTreeSet<String>> {
        let members = LbState::lock(&self.state.members);
        members.live(&self.state.node, self.state.healthy(), Instant::now())
    }

    /// Whether this node's dataplane is healthy: its membership Lease is
    /// renewed only while it is.
    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::Release);
    }

    /// How many Service statuses this instance has written.
    pub fn status_writes(&self) -> u64 {
        self.state.status_writes.load(Ordering::Relaxed)
    }

    /// Stops: steps down, releases the leader Lease if held, ends the
    /// tasks and waits for the thread.
    pub fn stop(mut self) {
        self.end(Stop::Release);
    }

    /// Tests: ends like a killed process, holding on to nothing but
    /// releasing nothing either.
    #[cfg(test)]
    fn kill(mut self) {
        self.end(Stop::Abandon);
    }

    /// Tests: the election stops making requests (a leader cut off from
    /// the API server, or frozen) while the rest goes on.
    #[cfg(test)]
    fn pause_renewals(&self, paused: bool) {
        self.state.renewals_paused.store(paused, Ordering::Release);
    }

    fn end(&mut self, how: Stop) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(how);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LbHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(Stop::Release);
        }
    }
}

/// `config` with a User-Agent naming this instance, so the API server's
/// audit log (and the tests' fake) tell instances apart.
fn with_user_agent(mut config: kube::Config, identity: &str) -> kube::Config {
    let agent = format!("weir-control/{} (lb {identity})", env!("CARGO_PKG_VERSION"));
    if let (Ok(name), Ok(value)) = ("user-agent".try_into(), agent.as_str().try_into()) {
        config.headers.push((name, value));
    }
    config
}

/// Cluster-file mode, where no API takes a status: allocates every
/// LoadBalancer Service's addresses and writes them into `objs` itself
/// (every node computing from the same file gets the same answer).
/// Returns what to warn about: Services left without an address and pool
/// entries that do not parse.
pub fn allocate_in_place(objs: &mut ClusterObjects) -> Vec<String> {
    let a = allocate(objs);
    apply(objs, &a);
    let mut warnings: Vec<String> =
        a.problems.iter().map(|(s, why)| format!("Service {s}: no LoadBalancer IP: {why}")).collect();
    warnings.extend(a.pool_warnings.iter().cloned());
    warnings
}

/// Starts the election, the status writer and the membership on their own
/// thread. A client that cannot be built is told on stderr and nothing
/// runs (never leader, no live nodes).
pub fn spawn(config: kube::Config, shared: Arc<Shared>, opts: LbOptions) -> LbHandle {
    let state = Arc::new(LbState {
        identity: opts.identity.clone(),
        node: opts.node.clone(),
        leader_until: Mutex::new(None),
        healthy: AtomicBool::new(false),
        members: Mutex::new(lease::Members::default()),
        status_writes: AtomicU64::new(0),
        renewals_paused: AtomicBool::new(false),
    });
    let (stop, stopped) = oneshot::channel::<Stop>();
    let st = state.clone();
    let thread = std::thread::Builder::new().name("weir-lb".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return eprintln!("weir-control: LoadBalancer allocator: tokio runtime: {e}"),
        };
        rt.block_on(run(config, shared, st, opts, stopped));
    });
    match thread {
        Ok(t) => LbHandle { state, stop: Some(stop), thread: Some(t) },
        Err(e) => {
            eprintln!("weir-control: LoadBalancer allocator: thread: {e}");
            LbHandle { state, stop: None, thread: None }
        }
    }
}

async fn run(
    config: kube::Config,
    shared: Arc<Shared>,
    state: Arc<LbState>,
    opts: LbOptions,
    stopped: oneshot::Receiver<Stop>,
) {
    let client = match kube::Client::try_from(with_user_agent(config, &opts.identity)) {
        Ok(c) => c,
        Err(e) => return eprintln!("weir-control: LoadBalancer allocator: client: {e}"),
    };
    let second = Duration::from_secs(1);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &opts.namespace);
    let mut elector =
        lease::Elector::new(leases.clone(), LEADER_LEASE, &opts.identity, opts.lease_duration.max(second));
    let interval = opts.interval.max(Duration::from_millis(10));
    let writer = tokio::spawn(status::run_writer(client, shared, state.clone(), interval));
    let members = tokio::spawn(lease::run_membership(leases, state.clone(), opts.membership_duration.max(second)));
    let mut shown = false;
    let how = tokio::select! {
        _ = lease::run_election(&mut elector, &state, &mut shown) => Stop::Release,
        how = stopped => how.unwrap_or(Stop::Release),
    };
    if how == Stop::Abandon {
        // As if the process died: the tasks end with the runtime, the
        // Lease stays as it was.
        return;
    }
    // Step down first, so nothing is written once the Lease is given up.
    state.set_leader_until(None);
    writer.abort();
    members.abort();
    let _ = writer.await;
    let _ = members.await;
    lease::show_leadership(&state, &mut shown);
    match tokio::time::timeout(elector.duration(), elector.release()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("weir-control: warning: leader Lease {LEADER_LEASE}: not released: {e}"),
        Err(_) => eprintln!("weir-control: warning: leader Lease {LEADER_LEASE}: not released: no answer"),
    }
}
