//! The Kubernetes source: keeps [`Shared`] equal to the cluster, through
//! one `kube::runtime` reflector per kind — Services, EndpointSlices, Pods,
//! Namespaces, Nodes, NetworkPolicies and weir's Network, EndpointGroup,
//! Policy and LoadBalancerPool, all cluster-wide.
//!
//! What it promises:
//! - **Ready before the first push.** Nothing is published until every
//!   store has completed its initial list (`Store::wait_until_ready`), so a
//!   restarted weir-control never programs half-listed or empty tables.
//!   After a relist a store swaps its contents whole at the end of the list,
//!   so no later snapshot is half-listed either.
//! - **Level, not edge.** Every change rebuilds the whole
//!   [`ClusterObjects`] from the stores (sorted by namespace and name) and
//!   calls [`Shared::set`]; bursts are coalesced: a rebuild happens
//!   [`KubeOptions::debounce`] (50 ms) after the first change of a burst,
//!   with every change that arrived meanwhile.
//! - **Watches that heal.** The watchers ask for bookmarks, relist when a
//!   resume is answered 410 Gone (the watcher's own recovery), and back off
//!   exponentially on errors (`default_backoff`: 0.8 s doubling to 30 s,
//!   with jitter). Errors other than 410 are reported through
//!   [`Shared::set_error`], once per kind until that kind recovers; the last
//!   good objects stay in place meanwhile.
//! - **kube-proxy's label filter.** Services and EndpointSlices are watched
//!   with [`PROXY_LABEL_SELECTOR`], as kube-proxy does: objects of another
//!   service proxy, and the EndpointSlices of headless Services, never
//!   reach the stores (the model drops such Services again, for the cluster
//!   file).
//!
//! The kube client must live on the runtime it was built on, so
//! [`spawn`] takes a [`kube::Config`] and builds the client on the
//! source's own thread and runtime; [`run`] is the async loop for callers
//! that have a runtime.

#![deny(unsafe_code)]

use std::fmt::Debug;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::crd::{EndpointGroup, LoadBalancerPool, Network, Policy};
use crate::model::ClusterObjects;
use crate::source::Shared;

/// The label selector of the Service and EndpointSlice watches, kube-proxy's:
/// objects labelled `service.kubernetes.io/service-proxy-name` belong to
/// another proxy, EndpointSlices labelled `service.kubernetes.io/headless`
/// to Services without a cluster IP.
pub const PROXY_LABEL_SELECTOR: &str = "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";

/// Settings of the Kubernetes source.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// How long after the first change of a burst the objects are rebuilt
    /// (at most one rebuild per this interval).
    pub debounce: Duration,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions { debounce: Duration::from_millis(50) }
    }
}

/// A running Kubernetes source (its own thread and tokio runtime). Dropping
/// it asks the thread to stop; [`KubeSource::stop`] also waits for it.
pub struct KubeSource {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl KubeSource {
    /// Stops the watches and waits for the thread to end.
    pub fn stop(mut self) {
        self.signal();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Whether the source's thread has ended (it only ends when stopped, or
    /// when the client could not be built: see [`Shared::take_error`]).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn signal(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        self.signal();
    }
}

/// Starts the source on its own thread: builds a client from `config` and
/// runs [`run`] until stopped. A client that cannot be built is reported
/// through [`Shared::set_error`] and the thread ends.
pub fn spawn(config: kube::Config, shared: Arc<Shared>, opts: KubeOptions) -> KubeSource {
    let (stop, stopped) = oneshot::channel::<()>();
    let sh = shared.clone();
    let thread = std::thread::Builder::new().name("weir-kube".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return sh.set_error(Some(format!("Kubernetes source: tokio runtime: {e}"))),
        };
        rt.block_on(async move {
            let client = match kube::Client::try_from(config) {
                Ok(c) => c,
                Err(e) => return sh.set_error(Some(format!("Kubernetes source: client: {e}"))),
            };
            tokio::select! {
                _ = run(client, sh, opts) => {}
                _ = stopped => {}
            }
        });
    });
    match thread {
        Ok(t) => KubeSource { stop: Some(stop), thread: Some(t) },
        Err(e) => {
            shared.set_error(Some(format!("Kubernetes source: thread: {e}")));
            KubeSource { stop: None, thread: None }
        }
    }
}

/// A kind's watch events, as the loop needs them: whether the store
/// changed, or the watcher's error.
type Tagged = (&'static str, Result<bool, watcher::Error>);

/// The stores of every kind.
#[derive(Clone)]
struct Stores {
    services: Store<Service>,
    endpoint_slices: Store<EndpointSlice>,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    nodes: Store<Node>,
    network_policies: Store<NetworkPolicy>,
    networks: Store<Network>,
    endpoint_groups: Store<EndpointGroup>,
    policies: Store<Policy>,
    lb_pools: Store<LoadBalancerPool>,
}

impl Stores {
    /// Waits until every store has completed its initial list; false if a
    /// writer is gone (the source is ending).
    async fn ready(self) -> bool {
        self.services.wait_until_ready().await.is_ok()
            && self.endpoint_slices.wait_until_ready().await.is_ok()
            && self.pods.wait_until_ready().await.is_ok()
            && self.namespaces.wait_until_ready().await.is_ok()
            && self.nodes.wait_until_ready().await.is_ok()
            && self.network_policies.wait_until_ready().await.is_ok()
            && self.networks.wait_until_ready().await.is_ok()
            && self.endpoint_groups.wait_until_ready().await.is_ok()
            && self.policies.wait_until_ready().await.is_ok()
            && self.lb_pools.wait_until_ready().await.is_ok()
    }

    fn objects(&self) -> ClusterObjects {
        ClusterObjects {
            services: owned(&self.services),
            endpoint_slices: owned(&self.endpoint_slices),
            pods: owned(&self.pods),
            namespaces: owned(&self.namespaces),
            nodes: owned(&self.nodes),
            network_policies: owned(&self.network_policies),
            networks: owned(&self.networks),
            endpoint_groups: owned(&self.endpoint_groups),
            policies: owned(&self.policies),
            lb_pools: owned(&self.lb_pools),
        }
    }
}

/// A store's objects, sorted by namespace and name.
fn owned<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> Vec<K> {
    let mut v: Vec<K> = store.state().iter().map(|o| K::clone(o)).collect();
    v.sort_by_key(|o| (o.namespace(), o.name_any()));
    v
}

/// A reflector for one kind: its store, and its events pushed on `streams`.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: &'static str,
    streams: &mut Vec<BoxStream<'static, Tagged>>,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let events = watcher(api, config).default_backoff().reflect(writer).map(move |ev| {
        let changed =
            ev.map(|e| matches!(e, watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone));
        (kind, changed)
    });
    streams.push(events.boxed());
    store
}

/// Watches the cluster and keeps `shared` equal to it, forever (the
/// watchers retry every error). See the module doc for what it promises.
pub async fn run(client: kube::Client, shared: Arc<Shared>, opts: KubeOptions) {
    // Bookmarks are on by default in watcher::Config; said here too.
    let all = watcher::Config { bookmarks: true, ..watcher::Config::default() };
    let proxied = all.clone().labels(PROXY_LABEL_SELECTOR);
    let mut streams = Vec::new();
    let stores = Stores {
        services: reflect(Api::all(client.clone()), proxied.clone(), "Services", &mut streams),
        endpoint_slices: reflect(Api::all(client.clone()), proxied, "EndpointSlices", &mut streams),
        pods: reflect(Api::all(client.clone()), all.clone(), "Pods", &mut streams),
        namespaces: reflect(Api::all(client.clone()), all.clone(), "Namespaces", &mut streams),
        nodes: reflect(Api::all(client.clone()), all.clone(), "Nodes", &mut streams),
        network_policies: reflect(Api::all(client.clone()), all.clone(), "NetworkPolicies", &mut streams),
        networks: reflect(Api::all(client.clone()), all.clone(), "Networks (weir.dev)", &mut streams),
        endpoint_groups: reflect(Api::all(client.clone()), all.clone(), "EndpointGroups (weir.dev)", &mut streams),
        policies: reflect(Api::all(client.clone()), all.clone(), "Policies (weir.dev)", &mut streams),
        lb_pools: reflect(Api::all(client), all, "LoadBalancerPools (weir.dev)", &mut streams),
    };
    let mut events = futures::stream::select_all(streams);
    let ready_fut = stores.clone().ready();
    tokio::pin!(ready_fut);
    let mut ready = false;
    // When the next rebuild is due (a change is pending).
    let mut due: Option<Instant> = None;
    // The last error reported per kind (each reported once).
    let mut reported: std::collections::BTreeMap<&'static str, String> = Default::default();
    loop {
        let rebuild_at = due.filter(|_| ready);
        tokio::select! {
            ok = &mut ready_fut, if !ready => {
                if !ok {
                    return;
                }
                ready = true;
                due = Some(Instant::now());
            }
            ev = events.next() => match ev {
                None => return,
                Some((_, Ok(false))) => {}
                Some((kind, Ok(true))) => {
                    reported.remove(kind); // it made progress: a new error is news
                    if due.is_none() {
                        due = Some(Instant::now() + opts.debounce);
                    }
                }
                Some((kind, Err(e))) => {
                    // 410 Gone is the normal end of a resume: the watcher relists.
                    let gone = matches!(&e, watcher::Error::WatchError(s) if s.code == 410);
                    let text = e.to_string();
                    if !gone && reported.get(kind) != Some(&text) {
                        reported.insert(kind, text);
                        shared.set_error(Some(error_summary(&reported)));
                    }
                }
            },
            _ = tokio::time::sleep_until(rebuild_at.unwrap_or_else(Instant::now)), if rebuild_at.is_some() => {
                due = None;
                shared.set(stores.objects());
            }
        }
    }
}

/// One line for the kinds now failing, grouped by error:
/// `Kubernetes Pods, Nodes: <error>; Services: <error> (retrying with backoff)`.
fn error_summary(reported: &std::collections::BTreeMap<&'static str, String>) -> String {
    let mut by_text: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (kind, text) in reported {
        by_text.entry(text.as_str()).or_default().push(kind);
    }
    let parts: Vec<String> = by_text.iter().map(|(text, kinds)| format!("{}: {text}", kinds.join(", "))).collect();
    format!("Kubernetes {} (retrying with backoff)", parts.join("; "))
}

#[cfg(test)]
mod tests {
    //! The source driven through the real kube client against the fake
    //! API server. Every wait is bounded and polls; nothing asserts timing.

    use std::collections::BTreeMap;
    use std::time::Instant as StdInstant;

    use serde::Deserialize;
    use serde_json::Value;

    use super::*;
    use crate::fake_api::{FakeApi, FakeOptions, KIND_COUNT, KIND_NAMES};
    use crate::model::{compute, Settings};
    use crate::source::DEMO_CLUSTER;

    /// The fake's kinds the source watches (all but Leases), as indices of
    /// its counters.
    fn watched() -> impl Iterator<Item = usize> {
        (0..KIND_COUNT).filter(|&k| KIND_NAMES[k] != "Lease")
    }

    /// How many kinds the source watches.
    const WATCHED: u64 = KIND_COUNT as u64 - 1;

    /// One LIST of each watched kind.
    fn one_list_each() -> [u64; KIND_COUNT] {
        let mut lists = [0; KIND_COUNT];
        watched().for_each(|k| lists[k] = 1);
        lists
    }

    /// Generous: the watcher's backoff after an error starts at 0.8 s.
    const WAIT: Duration = Duration::from_secs(30);

    /// The fake API and the same objects as a cluster file would hold them:
    /// what the source must arrive at.
    struct Cluster {
        api: FakeApi,
        docs: BTreeMap<(String, String, String), String>,
    }

    impl Cluster {
        fn new(api: FakeApi) -> Cluster {
            Cluster { api, docs: BTreeMap::new() }
        }

        fn apply(&mut self, text: &str) {
            self.api.apply(text).unwrap();
            for doc in serde_yaml::Deserializer::from_str(text) {
                let v = Value::deserialize(doc).unwrap();
                if v.is_null() {
                    continue;
                }
                let field = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
                let key = (field("/kind"), field("/metadata/namespace"), field("/metadata/name"));
                self.docs.insert(key, serde_yaml::to_string(&v).unwrap());
            }
        }

        fn delete(&mut self, kind: &str, ns: &str, name: &str) {
            self.api.delete(kind, ns, name).unwrap();
            assert!(self.docs.remove(&(kind.into(), ns.into(), name.into())).is_some(), "{kind} {ns}/{name}");
        }

        fn expected(&self) -> ClusterObjects {
            let text = self.docs.values().cloned().collect::<Vec<_>>().join("---\n");
            ClusterObjects::from_yaml(&text).unwrap()
        }

        fn start(&self) -> (Arc<Shared>, KubeSource) {
            let shared = Shared::new();
            let config = kube::Config::new(self.api.url().parse().unwrap());
            let source = spawn(config, shared.clone(), KubeOptions::default());
            (shared, source)
        }
    }

    /// Both demo nodes' tables as text (or the error computing them).
    fn dumps(objs: &ClusterObjects) -> String {
        let mut out = String::new();
        for node in ["node1", "node2"] {
            let text = compute(objs, node, &Settings::default())
                .and_then(|(t, _)| crate::dump::dump(objs, node, &t))
                .unwrap_or_else(|e| format!("error: {e}"));
            out += &format!("== {node}\n{text}");
        }
        out
    }

    /// Polls until `f` holds for the counters or the source's objects.
    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let start = StdInstant::now();
        while !f() {
            assert!(start.elapsed() < WAIT, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the source's objects compute the same tables as the
    /// cluster file of the same objects; returns that dump.
    fn converged(shared: &Shared, cluster: &Cluster) -> String {
        let want = dumps(&cluster.expected());
        let start = StdInstant::now();
        loop {
            let got = shared.snapshot().map(|(_, o)| dumps(&o));
            if got.as_deref() == Some(want.as_str()) {
                return want;
            }
            if start.elapsed() > WAIT {
                panic!("the source did not converge\n--- got\n{}\n--- want\n{want}", got.unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A LoadBalancerPool besides the demo cluster's objects.
    const POOL: &str = "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {name: public}\nspec: {addresses: [192.168.50.96/28]}\n";

    fn demo() -> Cluster {
        let mut c = Cluster::new(FakeApi::start());
        c.apply(DEMO_CLUSTER);
        c.apply(POOL);
        c
    }

    fn names<K: Resource>(v: &[K]) -> Vec<String> {
        v.iter().map(|o| crate::model::ns_name(o.meta())).collect()
    }

    /// Whether the source's objects hold `kind` `namespace/name`.
    fn has(shared: &Shared, kind: &str, name: &str) -> bool {
        let Some((_, o)) = shared.snapshot() else { return false };
        let list = match kind {
            "Service" => names(&o.services),
            "EndpointSlice" => names(&o.endpoint_slices),
            "Pod" => names(&o.pods),
            "Namespace" => names(&o.namespaces),
            "Node" => names(&o.nodes),
            "NetworkPolicy" => names(&o.network_policies),
            "Network" => names(&o.networks),
            "EndpointGroup" => names(&o.endpoint_groups),
            "Policy" => names(&o.policies),
            "LoadBalancerPool" => names(&o.lb_pools),
            _ => panic!("kind {kind}"),
        };
        list.iter().any(|n| n == name)
    }

    #[test]
    fn not_ready_until_every_kind_listed_then_equal_to_the_cluster() {
        let cluster = demo();
        cluster.api.fail("Pod", true);
        let (shared, _source) = cluster.start();
        // Every other kind listed and watching (its store is ready) ...
        wait_for("every kind but Pods to watch", || {
            let c = cluster.api.counters();
            watched().all(|k| KIND_NAMES[k] == "Pod" || c.watches[k] > 0)
        });
        // ... and the failing one reported, naming it ...
        let mut error = None;
        wait_for("the Pod error to be reported", || {
            error = shared.take_error();
            error.is_some()
        });
        assert!(error.as_deref().unwrap_or("").contains("Pods"), "{error:?}");
        // ... but nothing published while Pods are not listed.
        assert!(!shared.ready());
        assert!(shared.snapshot().is_none());
        assert_eq!(shared.version(), 0);

        cluster.api.fail("Pod", false);
        converged(&shared, &cluster);
        let (_, objs) = shared.snapshot().unwrap();
        let want = cluster.expected();
        assert_eq!(names(&objs.services), names(&want.services));
        assert_eq!(names(&objs.endpoint_slices), names(&want.endpoint_slices));
        assert_eq!(names(&objs.pods), names(&want.pods));
        assert_eq!(names(&objs.namespaces), names(&want.namespaces));
        assert_eq!(names(&objs.nodes), names(&want.nodes));
        assert_eq!(names(&objs.network_policies), names(&want.network_policies));
        assert_eq!(names(&objs.networks), names(&want.networks));
        assert_eq!(names(&objs.endpoint_groups), names(&want.endpoint_groups));
        assert_eq!(names(&objs.policies), names(&want.policies));
        assert_eq!(names(&objs.lb_pools), names(&want.lb_pools));
        assert_eq!(objs.lb_pools.len(), 2, "the demo's and the test's");
        assert_eq!(objs.pods.len(), 6);
    }

    #[test]
    fn kube_proxy_label_filter_keeps_other_proxies_out() {
        let mut cluster = demo();
        cluster.apply(
            "apiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: default, labels: {service.kubernetes.io/service-proxy-name: foo}}\nspec: {clusterIP: 10.96.0.50, ports: [{port: 80}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: other-x1, namespace: default, labels: {kubernetes.io/service-name: other, service.kubernetes.io/service-proxy-name: foo}}\naddressType: IPv4\nendpoints: [{addresses: [10.1.0.9]}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: dns-x1, namespace: default, labels: {kubernetes.io/service-name: dns, service.kubernetes.io/headless: ''}}\naddressType: IPv4\nendpoints: [{addresses: [10.1.0.8]}]\n",
        );
        let (shared, _source) = cluster.start();
        converged(&shared, &cluster);
        let (_, objs) = shared.snapshot().unwrap();
        assert!(!names(&objs.services).contains(&"default/other".to_string()));
        assert_eq!(names(&objs.services).len(), 4, "{:?}", names(&objs.services));
        let slices = names(&objs.endpoint_slices);
        assert!(!slices.iter().any(|n| n == "default/other-x1" || n == "default/dns-x1"), "{slices:?}");

        // Labelled later: the watch drops it (a DELETED under the selector).
        cluster.apply("apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: default, labels: {service.kubernetes.io/service-proxy-name: foo}}\nspec: {clusterIP: 10.96.0.20, ports: [{name: redis, port: 6379}]}\n");
        converged(&shared, &cluster);
        let (_, objs) = shared.snapshot().unwrap();
        assert!(!names(&objs.services).contains(&"default/db".to_string()));
    }

    #[test]
    fn service_slice_and_policy_changes_arrive() {
        let mut cluster = demo();
        let (shared, _source) = cluster.start();
        let mut last = converged(&shared, &cluster);
        let mut step = |cluster: &mut Cluster, what: &str, yaml: &str| {
            cluster.apply(yaml);
            let now = converged(&shared, cluster);
            assert_ne!(now, last, "{what} changed nothing in the tables (a bad test)");
            last = now;
        };
        step(
            &mut cluster,
            "Service: new cluster IP and port",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {type: ClusterIP, clusterIP: 10.96.0.99, clusterIPs: [10.96.0.99], selector: {app: web}, ports: [{name: http, protocol: TCP, port: 8000, targetPort: http}]}\n",
        );
        step(
            &mut cluster,
            "EndpointSlice: one endpoint more, one not ready",
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-x1, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{name: http, protocol: TCP, port: 8080}]\nendpoints:\n- {addresses: [10.1.0.2], conditions: {ready: true}, nodeName: node1}\n- {addresses: [10.2.0.2], conditions: {ready: false}, nodeName: node2}\n- {addresses: [10.2.0.7], conditions: {ready: true}, nodeName: node2}\n",
        );
        step(
            &mut cluster,
            "NetworkPolicy: the web pods let in too",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-from-client, namespace: default}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}, {podSelector: {matchLabels: {app: web}}}]\n    ports: [{protocol: TCP, port: redis}]\n",
        );
        step(
            &mut cluster,
            "a new Service with its slice, and a Contiv policy",
            "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: default}\nspec: {clusterIP: 10.96.0.30, ports: [{name: http, port: 80}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: api-x1, namespace: default, labels: {kubernetes.io/service-name: api}}\naddressType: IPv4\nports: [{name: http, protocol: TCP, port: 80}]\nendpoints: [{addresses: [10.2.0.2], nodeName: node2}]\n---\napiVersion: weir.dev/v1alpha1\nkind: Policy\nmetadata: {name: icmpPol}\nspec:\n  rules:\n  - {id: 1, direction: in, priority: 1, protocol: icmp, action: deny}\n  - {id: 2, direction: in, priority: 2, protocol: tcp, port: 6379, action: deny}\n",
        );
        // A burst: many slice changes in a row end where the last one does.
        for i in 10..60 {
            cluster.apply(&format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: api-x1, namespace: default, labels: {{kubernetes.io/service-name: api}}}}\naddressType: IPv4\nports: [{{name: http, protocol: TCP, port: 80}}]\nendpoints: [{{addresses: [10.2.0.{i}], nodeName: node2}}]\n"
            ));
        }
        let now = converged(&shared, &cluster);
        assert!(now.contains("10.2.0.59"), "{now}");
    }

    #[test]
    fn relists_after_410_gone_and_keeps_going() {
        let mut cluster = demo();
        let (shared, _source) = cluster.start();
        converged(&shared, &cluster);
        let before = cluster.api.counters();
        assert_eq!(before.lists, one_list_each(), "one initial list per kind");
        cluster.api.compact();
        cluster.api.kill_watches();
        // Changed while the watches are down: only a relist can see it.
        cluster.apply("apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: default}\nspec: {clusterIP: 10.96.0.21, ports: [{name: redis, protocol: TCP, port: 6379, targetPort: redis}]}\n");
        converged(&shared, &cluster);
        wait_for("every kind to be answered 410 and relist", || {
            let c = cluster.api.counters();
            c.gone >= WATCHED && watched().all(|k| c.lists[k] > before.lists[k])
        });
        // Watching again: later changes and deletes arrive.
        wait_for("every kind to watch again", || cluster.api.open_watches() as u64 == WATCHED);
        cluster.apply("apiVersion: v1\nkind: Node\nmetadata: {name: node3}\nspec: {podCIDR: 10.3.0.0/24}\nstatus: {addresses: [{type: InternalIP, address: 192.168.50.3}]}\n");
        let with_node3 = converged(&shared, &cluster);
        assert!(with_node3.contains("node3"), "{with_node3}");
        cluster.delete("Pod", "default", "client-1");
        converged(&shared, &cluster);
    }

    #[test]
    fn bookmarks_change_nothing_and_resumes_need_no_relist() {
        let mut cluster =
            Cluster::new(FakeApi::start_with(FakeOptions { bookmark_interval: Duration::from_millis(10) }));
        cluster.apply(DEMO_CLUSTER);
        let (shared, _source) = cluster.start();
        converged(&shared, &cluster);
        // A change to one kind, then bookmarks carry every watch past it.
        cluster.apply(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: other, labels: {kubernetes.io/metadata.name: other}}\n",
        );
        wait_for("the new Namespace", || has(&shared, "Namespace", "other"));
        let version = shared.version();
        let seen = cluster.api.counters().bookmarks;
        wait_for("bookmarks to every watch", || cluster.api.counters().bookmarks >= seen + WATCHED * 5);
        assert_eq!(shared.version(), version, "a bookmark is not a change");
        // Watches end; what changes meanwhile is replayed from the history
        // when they resume from the bookmarked resourceVersion: no relist,
        // no 410.
        cluster.api.kill_watches();
        cluster.apply("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: db-x1, namespace: default, labels: {kubernetes.io/service-name: db}}\naddressType: IPv4\nports: [{name: redis, protocol: TCP, port: 6379}]\nendpoints:\n- {addresses: [10.2.0.3], conditions: {ready: true}, nodeName: node2}\n- {addresses: [10.1.0.4], conditions: {ready: true}, nodeName: node1}\n");
        let now = converged(&shared, &cluster);
        assert!(now.contains("10.1.0.4"), "{now}");
        let c = cluster.api.counters();
        assert_eq!(c.lists, one_list_each(), "resumed without a relist");
        assert_eq!(c.gone, 0);
    }

    #[test]
    fn deletes_arrive() {
        let mut cluster = demo();
        let (shared, _source) = cluster.start();
        let mut last = converged(&shared, &cluster);
        for (kind, ns, name) in [
            ("EndpointSlice", "default", "web-x1"),
            ("Service", "default", "db"),
            ("NetworkPolicy", "default", "db-from-client"),
            ("Pod", "default", "poc-1"),
            ("Node", "", "node2"),
            ("EndpointGroup", "", "noping-epg"),
            ("Policy", "", "icmpPol"),
            ("LoadBalancerPool", "", "public"),
            ("LoadBalancerPool", "", "demo-pool"),
        ] {
            let full = if ns.is_empty() { name.to_string() } else { format!("{ns}/{name}") };
            assert!(has(&shared, kind, &full));
            cluster.delete(kind, ns, name);
            wait_for("the delete", || !has(&shared, kind, &full));
            let now = converged(&shared, &cluster);
            // (An unreferenced Contiv policy is in no table, nor a pool.)
            assert!(
                now != last || kind == "Policy" || kind == "LoadBalancerPool",
                "deleting {kind} {name} changed nothing in the tables (a bad test)"
            );
            last = now;
        }
        let (_, objs) = shared.snapshot().unwrap();
        assert!(objs.policies.is_empty());
        assert!(objs.lb_pools.is_empty());
        assert_eq!(objs.nodes.len(), 1);
    }

    /// config/k8s/rbac.yaml grants list and watch on every kind the
    /// source watches, patch of Services' status (the LoadBalancer
    /// allocator) and Leases in the allocator's namespace only (a Role
    /// there), to the ServiceAccount its bindings name; and nothing more.
    #[test]
    fn rbac_grants_what_the_source_watches() {
        use k8s_openapi::api::coordination::v1::Lease;
        use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};
        let text = include_str!("../../config/k8s/rbac.yaml");
        let (mut role, mut binding, mut ns_role, mut ns_binding, mut account, mut namespace) =
            (None, None, None, None, None, None);
        for doc in serde_yaml::Deserializer::from_str(text) {
            let v = serde_yaml::Value::deserialize(doc).unwrap();
            match v.get("kind").and_then(|k| k.as_str()) {
                Some("ClusterRole") => role = Some(serde_yaml::from_value::<ClusterRole>(v).unwrap()),
                Some("ClusterRoleBinding") => binding = Some(serde_yaml::from_value::<ClusterRoleBinding>(v).unwrap()),
                Some("Role") => ns_role = Some(serde_yaml::from_value::<Role>(v).unwrap()),
                Some("RoleBinding") => ns_binding = Some(serde_yaml::from_value::<RoleBinding>(v).unwrap()),
                Some("ServiceAccount") => account = Some(v),
                Some("Namespace") => namespace = Some(v),
                other => panic!("unexpected {other:?}"),
            }
        }
        let (role, binding, account) = (role.unwrap(), binding.unwrap(), account.unwrap());
        let (ns_role, ns_binding, namespace) = (ns_role.unwrap(), ns_binding.unwrap(), namespace.unwrap());
        fn kind<K: Resource<DynamicType = ()>>() -> (String, String) {
            (K::group(&()).into_owned(), K::plural(&()).into_owned())
        }
        let watched = [
            kind::<Service>(),
            kind::<EndpointSlice>(),
            kind::<Pod>(),
            kind::<Namespace>(),
            kind::<Node>(),
            kind::<NetworkPolicy>(),
            kind::<Network>(),
            kind::<EndpointGroup>(),
            kind::<Policy>(),
            kind::<LoadBalancerPool>(),
        ];
        let service_status = (String::new(), "services/status".to_string());
        let leases = kind::<Lease>();
        let granted = |rules: &[PolicyRule], (group, res): &(String, String), verb: &str| {
            rules.iter().any(|r| {
                r.api_groups.iter().flatten().any(|g| g == group)
                    && r.resources.iter().flatten().any(|x| x == res)
                    && r.verbs.iter().any(|v| v == verb)
            })
        };
        let cluster_rules = role.rules.clone().unwrap_or_default();
        for k in &watched {
            assert!(granted(&cluster_rules, k, "list") && granted(&cluster_rules, k, "watch"), "{k:?}: list and watch");
        }
        assert!(granted(&cluster_rules, &service_status, "patch"), "services/status: patch");
        let ns_rules = ns_role.rules.clone().unwrap_or_default();
        for verb in ["get", "list", "watch", "create", "update"] {
            assert!(granted(&ns_rules, &leases, verb), "leases: {verb}");
        }
        // Nothing more: list/watch of watched kinds, status writes of
        // Services, Leases in the namespace only.
        let allowed = |group: &str, res: &str, verb: &str, namespaced: bool| {
            let k = (group.to_string(), res.to_string());
            if namespaced {
                k == leases && ["get", "list", "watch", "create", "update"].contains(&verb)
            } else {
                (watched.contains(&k) && (verb == "list" || verb == "watch"))
                    || (k == service_status && (verb == "patch" || verb == "update"))
            }
        };
        for (rules, namespaced) in [(&cluster_rules, false), (&ns_rules, true)] {
            for r in rules {
                for g in r.api_groups.iter().flatten() {
                    for res in r.resources.iter().flatten() {
                        for v in &r.verbs {
                            assert!(allowed(g, res, v, namespaced), "more than needed: {v} {g}/{res} in {r:?}");
                        }
                    }
                }
            }
        }
        // The Role is in the allocator's default namespace, which the file
        // creates; both bindings name the ServiceAccount.
        let lb_namespace = crate::lb::LbOptions::default().namespace;
        assert_eq!(ns_role.metadata.namespace.as_deref(), Some(lb_namespace.as_str()));
        assert_eq!(ns_binding.metadata.namespace.as_deref(), Some(lb_namespace.as_str()));
        assert_eq!(namespace["metadata"]["name"].as_str(), Some(lb_namespace.as_str()));
        assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
        assert_eq!(
            (ns_binding.role_ref.kind.as_str(), &ns_binding.role_ref.name),
            ("Role", ns_role.metadata.name.as_ref().unwrap())
        );
        let check = |subject: &Subject| {
            assert_eq!(subject.kind, "ServiceAccount");
            assert_eq!(Some(subject.name.as_str()), account["metadata"]["name"].as_str());
            assert_eq!(subject.namespace.as_deref(), account["metadata"]["namespace"].as_str());
        };
        check(&binding.subjects.unwrap()[0]);
        check(&ns_binding.subjects.unwrap()[0]);
    }

    #[test]
    fn stops_when_asked() {
        let cluster = demo();
        let (shared, source) = cluster.start();
        converged(&shared, &cluster);
        source.stop();
        wait_for("the watches to close", || cluster.api.open_watches() == 0);
    }
}
