//! weir-control: computes a node's tables from the cluster (a cluster file,
//! by default the embedded demo cluster, or the Kubernetes API) and keeps
//! the node's weir-dataplane running them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use weir_control::kube_source::{self, KubeOptions};

use std::collections::BTreeSet;

use weir_control::health::HealthServer;
use weir_control::metrics::Metrics;
use weir_control::model::{compute, ClusterObjects, Settings};
use weir_control::source::{self, Shared};
use weir_control::sync::{Link, Pushed};

#[derive(Parser)]
#[command(name = "weir-control", version, about = "weir's node agent: cluster → dataplane tables")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// `run`'s arguments, when no subcommand is given.
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
// Parsed once at start: the size of `Run` does not matter.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    /// Keep a dataplane's tables equal to the cluster's (the default).
    Run(RunArgs),
    /// Print a node's tables as text (what `run` would push).
    Dump {
        #[arg(long)]
        node: String,
        /// Cluster file; default: the embedded demo cluster.
        #[arg(long)]
        cluster_file: Option<PathBuf>,
    },
    /// Print the CustomResourceDefinitions of weir's resources.
    Crds,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The dataplane's management socket.
    #[arg(long, short = 's', default_value = "/run/weir/dataplane.sock", env = "WEIR_DATAPLANE_SOCKET")]
    dataplane: PathBuf,
    /// Cluster file (YAML documents of Services, EndpointSlices, Pods,
    /// Namespaces, Nodes, NetworkPolicies and weir's resources), watched for
    /// changes. Default: the embedded demo cluster.
    #[arg(long)]
    cluster_file: Option<PathBuf>,
    /// Watch the Kubernetes API instead of a cluster file: the in-cluster
    /// config (service account), else KUBECONFIG / ~/.kube/config.
    #[arg(long, conflicts_with_all = ["cluster_file", "kube_url"])]
    kube: bool,
    /// Watch the Kubernetes API at this plain-HTTP URL, without
    /// authentication (`kubectl proxy`, the tests' fake API server).
    #[arg(long, value_name = "URL", conflicts_with = "cluster_file")]
    kube_url: Option<String>,
    /// The node whose tables to compute; default: the dataplane's node name.
    #[arg(long)]
    node: Option<String>,
    /// How often sources and the dataplane are checked, ms.
    #[arg(long, default_value_t = 300)]
    interval_ms: u64,
    /// Serve weir-cni on this Unix socket (IPAM and pod ports; see docs/cni.md).
    #[arg(long, value_name = "PATH", env = "WEIR_CNI_SOCKET")]
    cni_socket: Option<PathBuf>,
    /// Where the CNI server keeps its IPAM state (with --cni-socket).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/weir/ipam")]
    ipam_dir: PathBuf,
    /// Prometheus endpoint (`GET /metrics`); `off` for none. A port that is
    /// taken is reported and the agent runs on without it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9310")]
    metrics: String,
    /// weirctl's query socket (networks, groups, policies, status; mode
    /// 0600); `off` for none. One in use is reported and the agent runs on.
    #[arg(long, value_name = "PATH", default_value = weir_control::query::DEFAULT_SOCKET, env = "WEIR_CONTROL_SOCKET")]
    control_socket: String,
    /// Serve the healthCheckNodePort of each `externalTrafficPolicy: Local`
    /// LoadBalancer Service on this address (in the host network
    /// namespace, where the kernel has the node IP); `off` for none.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    health_check_address: String,
    /// Namespace of weir's Leases: the LoadBalancer allocator's and each
    /// node's membership (with --kube / --kube-url).
    #[arg(long, value_name = "NS", default_value = "weir-system")]
    lb_namespace: String,
    /// The allocator's leader Lease: a new leader takes over this long
    /// after the last renewal of a leader that went away.
    #[arg(long, value_name = "S", default_value_t = 15)]
    leader_lease_seconds: u64,
    /// A node's membership Lease: this long after its agent or dataplane
    /// stopped, the other nodes take over the LoadBalancer IPs it announced.
    #[arg(long, value_name = "S", default_value_t = 3)]
    membership_lease_seconds: u64,
    /// Write flow logs (JSON lines: flows starting and ending, policy
    /// denies; docs/flowlog.md) to this file, appended to, or `-` for
    /// stdout. Default: off.
    #[arg(long, value_name = "PATH")]
    flow_log: Option<String>,
    /// Flow log records per second at most (bursts as large); more are
    /// counted in `dropped` lines.
    #[arg(long, value_name = "N", default_value_t = weir_control::flowlog::DEFAULT_RATE)]
    flow_log_rate: u32,
    /// Push once and exit (0 when applied).
    #[arg(long)]
    once: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Crds) => {
            print!("{}", weir_control::crd::manifests());
            ExitCode::SUCCESS
        }
        Some(Cmd::Dump { node, cluster_file }) => dump(&node, cluster_file),
        Some(Cmd::Run(a)) => run(a),
        None => run(cli.run),
    }
}

fn dump(node: &str, file: Option<PathBuf>) -> ExitCode {
    let text = match file {
        Some(p) => match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("weir-control: {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        None => source::DEMO_CLUSTER.to_string(),
    };
    let out = ClusterObjects::from_yaml(&text).and_then(|mut o| {
        // As `run` computes from a cluster file: LoadBalancer IPs allocated here.
        let mut warnings = weir_control::lb::allocate_in_place(&mut o);
        let (t, more) = compute(&o, node, &Settings::default())?;
        warnings.extend(more);
        for w in warnings {
            eprintln!("weir-control: warning: {w}");
        }
        weir_control::dump::dump(&o, node, &t)
    });
    match out {
        Ok(s) => {
            print!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weir-control: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(a: RunArgs) -> ExitCode {
    let shared = Shared::new();
    let interval = Duration::from_millis(a.interval_ms.max(10));
    // The Kubernetes source runs while this is held; the LoadBalancer
    // allocator and membership need the same config, once the node is known.
    let (kube_watch, mut lb_config) = match kube_config(&a) {
        Ok(Some(config)) => {
            (Some(kube_source::spawn(config.clone(), shared.clone(), KubeOptions::default())), Some(config))
        }
        Ok(None) => {
            source::watch_file(a.cluster_file.clone(), shared.clone(), interval);
            (None, None)
        }
        Err(e) => {
            eprintln!("weir-control: {e}");
            return ExitCode::from(2);
        }
    };
    // A cluster file: LoadBalancer IPs are allocated here (no API to write them to).
    let file_mode = kube_watch.is_none();
    let mut lb: Option<weir_control::lb::LbHandle> = None;
    let health = match a.health_check_address.as_str() {
        "off" => None,
        addr => match addr.parse() {
            Ok(ip) => Some(HealthServer::start(ip)),
            Err(e) => {
                eprintln!("weir-control: --health-check-address {addr:?}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let mut link = Link::new(a.dataplane.clone());
    // The CNI server runs on its own threads while this is held.
    let _cni = match &a.cni_socket {
        None => None,
        Some(sock) => match weir_control::cni::server::Server::start(weir_control::cni::server::ServerConfig {
            socket: sock.clone(),
            ipam_dir: a.ipam_dir.clone(),
            dataplane: a.dataplane.clone(),
            node: a.node.clone(),
            objects: Some(shared.clone()),
            interval,
        }) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("weir-control: CNI server: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let metrics = Metrics::new();
    if a.metrics != "off" {
        match a.metrics.parse().map_err(|e| format!("--metrics {:?}: {e}", a.metrics)) {
            Ok(addr) => match weir_control::metrics::serve(addr, metrics.clone(), a.dataplane.clone()) {
                Ok(bound) => println!("weir-control: metrics on http://{bound}/metrics"),
                Err(e) => eprintln!("weir-control: warning: {e}; running without metrics"),
            },
            Err(e) => {
                eprintln!("weir-control: {e}");
                return ExitCode::from(2);
            }
        }
    }
    // weirctl's queries (net, group and rule list, control-status) run while this is held.
    let _query = (a.control_socket != "off")
        .then(|| {
            use weir_control::query;
            let source = query::source_name(a.kube_url.as_deref(), a.kube, a.cluster_file.as_deref());
            let ctx = query::Context {
                source,
                node: a.node.clone(),
                dataplane: a.dataplane.clone(),
                metrics: Some(metrics.clone()),
            };
            match query::serve(std::path::Path::new(&a.control_socket), shared.clone(), ctx) {
                Ok(q) => {
                    println!("weir-control: queries on {}", q.path().display());
                    Some(q)
                }
                Err(e) => {
                    eprintln!("weir-control: warning: {e}; running without the query socket");
                    None
                }
            }
        })
        .flatten();
    // Flow logs are written while this is held.
    let _flow_log = match &a.flow_log {
        None => None,
        Some(path) => {
            let cfg = weir_control::flowlog::FlowLogConfig {
                dataplane: a.dataplane.clone(),
                rate: a.flow_log_rate,
                shared: shared.clone(),
            };
            match weir_control::flowlog::spawn(cfg, path) {
                Ok(h) => Some(h),
                Err(e) => {
                    eprintln!("weir-control: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let mut settings = Settings::default();
    if lb_config.is_some() {
        // Nobody is known alive before the first membership list: announce
        // nothing rather than guess.
        settings.live_nodes = Some(BTreeSet::new());
    }
    // The tables last computed (objects version, node), and the last error
    // shown (each shown once).
    let mut cache = None;
    let mut last_error = String::new();
    let mut last_warnings = Vec::new();
    let started = Instant::now();
    // SIGTERM (the kubelet stopping the pod) and SIGINT end the loop, so that
    // what holds state elsewhere is handed back: the allocator's Lease goes
    // to a successor at once, the query socket is removed.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("weir-control: warning: no handler for signal {sig}: {e}");
        }
    }
    while !stop.load(Ordering::Relaxed) {
        if let Some(e) = shared.take_error() {
            eprintln!("weir-control: {e}");
        }
        // Kubernetes: the allocator and this node's membership run once the
        // node is known (from --node or the dataplane), and the nodes alive
        // decide who announces LoadBalancer IPs.
        if let Some(node) = a.node.clone().or_else(|| link.node.clone()) {
            if let Some(config) = lb_config.take() {
                let opts = weir_control::lb::LbOptions {
                    namespace: a.lb_namespace.clone(),
                    node: node.clone(),
                    identity: node,
                    lease_duration: Duration::from_secs(a.leader_lease_seconds.max(1)),
                    membership_duration: Duration::from_secs(a.membership_lease_seconds.max(1)),
                    ..Default::default()
                };
                lb = Some(weir_control::lb::spawn(config, shared.clone(), opts));
            }
        }
        if let Some(lb) = &lb {
            settings.live_nodes = lb.live_nodes().or_else(|| Some(Default::default()));
        }
        let round = Round {
            shared: &shared,
            node: a.node.as_deref(),
            settings: &settings,
            file_mode,
            health: health.as_ref(),
            metrics: &metrics,
        };
        let result = step(&mut link, &round, &mut cache, &mut last_warnings);
        if let Some(lb) = &lb {
            lb.set_healthy(result.is_ok());
        }
        match result {
            Ok(Some(p)) => {
                last_error.clear();
                match p {
                    Pushed::Nothing => {}
                    Pushed::Resync { generation, tables_generation } => println!(
                        "weir-control: resync applied: generation {generation}, dataplane tables {tables_generation}"
                    ),
                    Pushed::Update { generation, tables_generation, changes } => println!(
                        "weir-control: {changes} change(s) applied: generation {generation}, dataplane tables {tables_generation}"
                    ),
                }
                if a.once {
                    return ExitCode::SUCCESS;
                }
            }
            Ok(None) => {}
            Err(e) => {
                metrics.errors.fetch_add(1, Ordering::Relaxed);
                if e != last_error {
                    eprintln!("weir-control: {e}");
                    last_error = e;
                }
                if a.once && started.elapsed() > Duration::from_secs(30) {
                    return ExitCode::from(1);
                }
            }
        }
        std::thread::sleep(interval);
    }
    if let Some(lb) = lb.take() {
        lb.stop();
    }
    println!("weir-control: stopped");
    ExitCode::SUCCESS
}

/// The Kubernetes client config of `--kube` / `--kube-url`, if either.
fn kube_config(a: &RunArgs) -> Result<Option<kube::Config>, String> {
    if let Some(url) = &a.kube_url {
        let uri = url.parse().map_err(|e| format!("--kube-url {url:?}: {e}"))?;
        return Ok(Some(kube::Config::new(uri)));
    }
    if !a.kube {
        return Ok(None);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("--kube: {e}"))?;
    let config = rt.block_on(kube::Config::infer());
    config.map(Some).map_err(|e| format!("--kube: no Kubernetes config (neither in-cluster nor KUBECONFIG): {e}"))
}

/// Tables computed for (objects version, node, nodes alive).
type Cache = Option<(u64, String, Option<BTreeSet<String>>, weir_dataplane::api::ClusterTables)>;

/// What a round works from: the objects, the node (else the dataplane's),
/// how to compute, and where results go besides the dataplane.
#[derive(Clone, Copy)]
struct Round<'a> {
    shared: &'a Shared,
    node: Option<&'a str>,
    settings: &'a Settings,
    /// A cluster file: LoadBalancer IPs are allocated here (no API to
    /// write them to).
    file_mode: bool,
    health: Option<&'a HealthServer>,
    metrics: &'a Metrics,
}

/// One round: if the source is ready, compute the tables when the objects
/// changed, and push (a push with nothing changed is one handshake, which
/// also notices a restarted dataplane and resyncs it).
fn step(
    link: &mut Link,
    r: &Round,
    cache: &mut Cache,
    last_warnings: &mut Vec<String>,
) -> Result<Option<Pushed>, String> {
    let Round { shared, node, settings, file_mode, health, metrics } = *r;
    if !shared.ready() {
        return Ok(None); // not every store listed yet: push nothing
    }
    let node = match node {
        Some(n) => n.to_string(),
        None => match &link.node {
            Some(n) => n.clone(),
            None => link.hello()?.0,
        },
    };
    let fresh =
        matches!(cache, Some((v, n, l, _)) if *v == shared.version() && *n == node && *l == settings.live_nodes);
    if !fresh {
        let Some((version, mut objs)) = shared.snapshot() else { return Ok(None) };
        // No API to write status to from a cluster file: every node
        // allocates its LoadBalancer IPs itself, all to the same answer.
        let lb_problems = if file_mode { weir_control::lb::allocate_in_place(&mut objs) } else { Vec::new() };
        let (tables, mut warnings) = compute(&objs, &node, settings)?;
        warnings.extend(lb_problems);
        let (checks, health_warnings) = weir_control::announce::health_checks(&objs, &node);
        warnings.extend(health_warnings);
        if let Some(h) = health {
            h.set(&checks);
        }
        if warnings != *last_warnings {
            for w in &warnings {
                eprintln!("weir-control: warning: {w}");
            }
            *last_warnings = warnings;
        }
        metrics.set_tables(&tables);
        *cache = Some((version, node, settings.live_nodes.clone(), tables));
    }
    let Some((_, _, _, tables)) = cache.as_ref() else { return Ok(None) };
    let t0 = Instant::now();
    let p = link.push(tables)?;
    match p {
        Pushed::Nothing => {}
        Pushed::Resync { .. } => {
            metrics.resyncs.fetch_add(1, Ordering::Relaxed);
            metrics.observe_sync(t0.elapsed());
        }
        Pushed::Update { changes, .. } => {
            metrics.updates.fetch_add(1, Ordering::Relaxed);
            metrics.changes.fetch_add(changes as u64, Ordering::Relaxed);
            metrics.observe_sync(t0.elapsed());
        }
    }
    Ok(Some(p))
}
