//! weir-control: computes a node's tables from the cluster (a cluster file,
//! by default the embedded demo cluster, or the Kubernetes API) and keeps
//! the node's weir-dataplane running them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use weir_control::kube_source::{self, KubeOptions};
use std::sync::atomic::Ordering;

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
    let out = ClusterObjects::from_yaml(&text).and_then(|o| {
        let (t, warnings) = compute(&o, node, &Settings::default())?;
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
    // The Kubernetes source runs while this is held.
    let _kube = match kube_config(&a) {
        Ok(Some(config)) => Some(kube_source::spawn(config, shared.clone(), KubeOptions::default())),
        Ok(None) => {
            source::watch_file(a.cluster_file.clone(), shared.clone(), interval);
            None
        }
        Err(e) => {
            eprintln!("weir-control: {e}");
            return ExitCode::from(2);
        }
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
    let settings = Settings::default();
    // The tables last computed (objects version, node), and the last error
    // shown (each shown once).
    let mut cache = None;
    let mut last_error = String::new();
    let mut last_warnings = Vec::new();
    let started = Instant::now();
    loop {
        if let Some(e) = shared.take_error() {
            eprintln!("weir-control: {e}");
        }
        let result = step(&mut link, &shared, a.node.as_deref(), &settings, &mut cache, &mut last_warnings, &metrics);
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

/// Tables computed for (objects version, node).
type Cache = Option<(u64, String, weir_dataplane::api::ClusterTables)>;

/// One round: if the source is ready, compute the tables when the objects
/// changed, and push (a push with nothing changed is one handshake, which
/// also notices a restarted dataplane and resyncs it).
fn step(
    link: &mut Link,
    shared: &Shared,
    node: Option<&str>,
    settings: &Settings,
    cache: &mut Cache,
    last_warnings: &mut Vec<String>,
    metrics: &Metrics,
) -> Result<Option<Pushed>, String> {
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
    let fresh = matches!(cache, Some((v, n, _)) if *v == shared.version() && *n == node);
    if !fresh {
        let Some((version, objs)) = shared.snapshot() else { return Ok(None) };
        let (tables, warnings) = compute(&objs, &node, settings)?;
        if warnings != *last_warnings {
            for w in &warnings {
                eprintln!("weir-control: warning: {w}");
            }
            *last_warnings = warnings;
        }
        metrics.set_tables(&tables);
        *cache = Some((version, node, tables));
    }
    let Some((_, _, tables)) = cache.as_ref() else { return Ok(None) };
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
