//! weirctl: inspect and change a running weir-dataplane over its management socket.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use weir_dataplane::api::{Reply, Request};
use weir_dataplane::config::{PodAttachment, PortConfig, PortKind};
use weir_dataplane::mgmt;

#[derive(Parser)]
#[command(version, about = "Inspect and change a running weir-dataplane")]
struct Cli {
    /// The dataplane's management socket.
    #[arg(short, long, default_value = "/run/weir/dataplane.sock", env = "WEIR_SOCKET")]
    socket: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Protocol version, node name and DPDK version.
    Hello,
    /// Ports, drop reasons, packets weir answered, workers.
    Stats,
    /// Add a port while the dataplane runs.
    AddPort {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_kind)]
        kind: PortKind,
        #[arg(long)]
        iface: Option<String>,
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        server: Option<bool>,
        #[arg(long)]
        pci: Option<String>,
        #[arg(long)]
        devargs: Option<String>,
        #[arg(long, default_value_t = 1)]
        rx_queues: u16,
        /// The pod's IP (with --pod-mac): makes this a pod port with a route.
        #[arg(long, requires = "pod_mac")]
        pod_ip: Option<Ipv4Addr>,
        #[arg(long, requires = "pod_ip")]
        pod_mac: Option<String>,
        /// The pod's network (default: the node's pod network).
        #[arg(long, requires = "pod_ip")]
        pod_network: Option<String>,
        /// This port is the node's uplink to the underlay.
        #[arg(long)]
        uplink: bool,
        /// This port leads to the node's own kernel (the host path).
        #[arg(long)]
        host: bool,
    },
    /// Remove a port; workers stop using it before it goes.
    RemovePort { name: String },
    /// Replace the node's Services with those of a TOML file of
    /// `[[services]]` tables (the node config's format).
    SetServices {
        #[arg(long, value_name = "FILE")]
        file: std::path::PathBuf,
    },
    /// Service frontends and backends with their Maglev slot counts.
    Services,
    /// ACL rules of the node's pods, with hit counts.
    Rules,
    /// Live flows: the tuple, the rewrite (NAT) or "tracked", state, timeout.
    Flows,
    /// Ask the dataplane to exit cleanly.
    Shutdown,
}

fn parse_kind(s: &str) -> Result<PortKind, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("{s:?}: want pci, af_packet, tap, vhost_user, virtio_user, memif, ring or null"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let req = match cli.cmd {
        Cmd::Hello => Request::Hello,
        Cmd::Stats => Request::Stats,
        Cmd::RemovePort { name } => Request::RemovePort { name },
        Cmd::SetServices { file } => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Services {
                #[serde(default)]
                services: Vec<weir_dataplane::config::ServiceConfig>,
            }
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("weirctl: {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            };
            match toml::from_str::<Services>(&text) {
                Ok(s) => Request::SetServices { services: s.services },
                Err(e) => {
                    eprintln!("weirctl: {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            }
        }
        Cmd::Shutdown => Request::Shutdown,
        Cmd::Services => Request::Show { what: "services".into() },
        Cmd::Rules => Request::Show { what: "rules".into() },
        Cmd::Flows => Request::Show { what: "flows".into() },
        Cmd::AddPort {
            name,
            kind,
            iface,
            path,
            server,
            pci,
            devargs,
            rx_queues,
            pod_ip,
            pod_mac,
            pod_network,
            uplink,
            host,
        } => {
            let pod = match (pod_ip, pod_mac) {
                (Some(ip), Some(mac)) => match mac.parse() {
                    Ok(mac) => Some(PodAttachment { ip, mac, network: pod_network.clone() }),
                    Err(e) => {
                        eprintln!("weirctl: --pod-mac {mac:?}: {e}");
                        return ExitCode::from(2);
                    }
                },
                _ => None,
            };
            Request::AddPort {
                port: PortConfig { name, kind, iface, path, server, pci, devargs, rx_queues, pod, uplink, host },
            }
        }
    };
    let reply = match mgmt::call(&cli.socket, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weirctl: {e}");
            return ExitCode::from(1);
        }
    };
    if let Output::Json = cli.output {
        println!("{}", serde_json::to_string_pretty(&reply).unwrap_or_default());
        return if matches!(reply, Reply::Error { .. }) { ExitCode::from(1) } else { ExitCode::SUCCESS };
    }
    match reply {
        Reply::Hello { version, node, dpdk, control_generation, .. } => {
            let synced = control_generation.map_or("not synced by weir-control".to_string(), |g| format!("control generation {g}"));
            println!("node {node}, protocol {version}, {dpdk}, {synced}")
        }
        Reply::Text { text } => print!("{text}"),
        Reply::Synced { generation, tables_generation } => {
            println!("synced: control generation {generation}, tables generation {tables_generation}")
        }
        Reply::Stats(s) => print!("{}", weir_control::render::stats(&s)),
        Reply::Applied { generation } => println!("applied: tables generation {generation}"),
        Reply::Error { message } => {
            eprintln!("weirctl: {message}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
