//! weirctl: inspect and change a running weir node — weir-dataplane over
//! its management socket, weir-control over its query socket. Human
//! tables by default, `-o json` for programs (docs/weirctl.md).
//!
//! Exit status: 0 done; 1 the daemon answered with an error; 2 bad usage,
//! or no answer on the socket (missing, refused, broken off).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use weir_control::query::{self, CallError, QueryReply, QueryRequest};
use weir_control::render;
use weir_dataplane::api::{Reply, Request, Stats};
use weir_dataplane::config::{PodAttachment, PortConfig, PortKind};

#[derive(Parser)]
#[command(
    version,
    about = "Inspect and change a running weir node (weir-dataplane and weir-control)",
    after_help = "Exit status: 0 done, 1 the daemon answered with an error, 2 bad usage or no answer on its socket."
)]
struct Cli {
    /// The dataplane's management socket.
    #[arg(short, long, global = true, default_value = "/run/weir/dataplane.sock", env = "WEIR_SOCKET")]
    socket: PathBuf,
    /// weir-control's query socket (net, group and rule list, control-status).
    #[arg(long, global = true, default_value = query::DEFAULT_SOCKET, env = "WEIR_CONTROL_SOCKET")]
    control_socket: PathBuf,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
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
    /// Everything at once: ports, drop reasons, packets weir answered,
    /// neighbours, workers.
    Stats,
    /// Ports: kind, driver, MAC, link, packets and bytes both ways, the
    /// driver's drops and errors.
    Ports,
    /// Packets dropped, by reason (those with drops; --all: every reason).
    Drops {
        /// Every reason, also those with no drops.
        #[arg(long)]
        all: bool,
    },
    /// Workers: core, the tables generation each runs, polls, busy share,
    /// idle sleeps, rx queues.
    Workers,
    /// The tables generation the workers run and the weir-control
    /// generation it was built from.
    Generation,
    /// Add a port while the dataplane runs.
    AddPort(AddPortArgs),
    /// Remove a port; workers stop using it before it goes.
    RemovePort { name: String },
    /// Replace the node's Services with those of a TOML file of
    /// `[[services]]` tables (the node config's format).
    SetServices {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Service frontends and backends with their Maglev slot counts.
    /// (-o json gives {"text": ...}: the dataplane has this table as text.)
    Services,
    /// ACL rules of the node's pods, with hit counts.
    /// (-o json gives {"text": ...}: the dataplane has this table as text.)
    Rules,
    /// Live flows: the tuple, the rewrite (NAT) or "tracked", state, timeout.
    /// (-o json gives {"text": ...}: the dataplane has this table as text.)
    Flows,
    /// Contiv networks, from weir-control: `net list`.
    Net {
        #[command(subcommand)]
        cmd: ListCmd,
    },
    /// Contiv endpoint groups, from weir-control: `group list`.
    Group {
        #[command(subcommand)]
        cmd: ListCmd,
    },
    /// Contiv policy rules, from weir-control: `rule list [-p POLICY]`.
    Rule {
        #[command(subcommand)]
        cmd: RuleCmd,
    },
    /// weir-control: its source, objects, the dataplane's generation, pushes.
    ControlStatus,
    /// Ask the dataplane to exit cleanly.
    Shutdown,
    /// The path a packet would take (decap, flow, Service and backend,
    /// policy, NAT, route, encap, verdict), computed by the workers' own
    /// pipeline against the live tables, changing nothing.
    Explain(ExplainArgs),
    /// Trace the next packets a filter matches through every stage.
    Trace(TraceArgs),
    /// Capture a port's packets to a pcap file.
    Capture(CaptureArgs),
}

#[derive(Subcommand)]
enum ListCmd {
    /// List them, as netctl does.
    #[command(visible_alias = "ls")]
    List,
}

#[derive(Subcommand)]
enum RuleCmd {
    /// List the rules, in the order weir tries them, as netctl does.
    #[command(visible_alias = "ls")]
    List {
        /// Only this policy's rules.
        #[arg(short, long)]
        policy: Option<String>,
    },
}

#[derive(Args)]
struct AddPortArgs {
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
}

fn parse_kind(s: &str) -> Result<PortKind, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("{s:?}: want pci, af_packet, tap, vhost_user, virtio_user, memif, ring or null"))
}

/// Why a command failed, and its exit status.
struct Fail {
    code: u8,
    message: String,
}

impl Fail {
    /// Bad usage or input (exit 2).
    fn usage(message: String) -> Fail {
        Fail { code: 2, message }
    }

    /// The daemon answered with an error (exit 1).
    fn daemon(message: String) -> Fail {
        Fail { code: 1, message }
    }

    /// No answer on `socket` (exit 2), with a hint at which option names it.
    fn no_answer(e: CallError, hint: &str) -> Fail {
        match e {
            CallError::Unreachable(m) => Fail { code: 2, message: format!("{m} ({hint})") },
            CallError::Failed(m) => Fail { code: 2, message: m },
        }
    }
}

/// How long a daemon may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = match &cli.cmd {
        Cmd::Hello => request(&cli, Request::Hello),
        Cmd::Stats => request(&cli, Request::Stats),
        Cmd::Ports => ports(&cli),
        Cmd::Drops { all } => drops(&cli, *all),
        Cmd::Workers => workers(&cli),
        Cmd::Generation => generation(&cli),
        Cmd::AddPort(a) => add_port_request(a).and_then(|r| request(&cli, r)),
        Cmd::RemovePort { name } => request(&cli, Request::RemovePort { name: name.clone() }),
        Cmd::SetServices { file } => set_services_request(file).and_then(|r| request(&cli, r)),
        Cmd::Services => show(&cli, "services"),
        Cmd::Rules => show(&cli, "rules"),
        Cmd::Flows => show(&cli, "flows"),
        Cmd::Net { cmd: ListCmd::List } => net_list(&cli),
        Cmd::Group { cmd: ListCmd::List } => group_list(&cli),
        Cmd::Rule { cmd: RuleCmd::List { policy } } => rule_list(&cli, policy.clone()),
        Cmd::ControlStatus => control_status(&cli),
        Cmd::Shutdown => request(&cli, Request::Shutdown),
        Cmd::Explain(a) => explain(&cli, a),
        Cmd::Trace(a) => trace(&cli, a),
        Cmd::Capture(a) => capture(&cli, a),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("weirctl: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Prints `view` as JSON, or `table(view)`.
fn emit<T: Serialize>(cli: &Cli, view: &T, table: impl FnOnce(&T) -> String) -> Result<(), Fail> {
    match cli.output {
        Output::Json => {
            let text = serde_json::to_string_pretty(view).map_err(|e| Fail::daemon(format!("cannot encode: {e}")))?;
            out(&format!("{text}\n"));
        }
        Output::Table => out(&table(view)),
    }
    Ok(())
}

// ------------------------------------------------------------ the dataplane

fn dataplane(cli: &Cli, req: &Request) -> Result<Reply, Fail> {
    query::call(&cli.socket, req, TIMEOUT)
        .map_err(|e| Fail::no_answer(e, "is weir-dataplane running? -s / WEIR_SOCKET names its socket"))
}

/// Sends `req` and prints the reply as it is (hello, stats, add-port,
/// remove-port, set-services, shutdown).
fn request(cli: &Cli, req: Request) -> Result<(), Fail> {
    let reply = dataplane(cli, &req)?;
    if let Output::Json = cli.output {
        emit(cli, &reply, |_| String::new())?;
        if let Reply::Error { message } = reply {
            return Err(Fail::daemon(message));
        }
        return Ok(());
    }
    let text = match reply {
        Reply::Hello { version, node, dpdk, control_generation, .. } => {
            let synced = control_generation
                .map_or("not synced by weir-control".to_string(), |g| format!("control generation {g}"));
            format!("node {node}, protocol {version}, {dpdk}, {synced}\n")
        }
        Reply::Text { text } => text,
        Reply::Synced { generation, tables_generation } => {
            format!("synced: control generation {generation}, tables generation {tables_generation}\n")
        }
        Reply::Stats(s) => render::stats(&s),
        Reply::Applied { generation } => format!("applied: tables generation {generation}\n"),
        Reply::Error { message } => return Err(Fail::daemon(message)),
        // An answer these requests do not get: shown as it came.
        other => serde_json::to_string_pretty(&other).map_or_else(|e| format!("{other:?} ({e})\n"), |t| t + "\n"),
    };
    out(&text);
    Ok(())
}

fn stats(cli: &Cli) -> Result<Stats, Fail> {
    match dataplane(cli, &Request::Stats)? {
        Reply::Stats(s) => Ok(s),
        Reply::Error { message } => Err(Fail::daemon(message)),
        other => Err(Fail::daemon(format!("unexpected answer to stats: {other:?}"))),
    }
}

fn ports(cli: &Cli) -> Result<(), Fail> {
    emit(cli, &render::ports_view(&stats(cli)?), render::ports)
}

fn drops(cli: &Cli, all: bool) -> Result<(), Fail> {
    emit(cli, &render::drops_view(&stats(cli)?, all), render::drops)
}

fn workers(cli: &Cli) -> Result<(), Fail> {
    emit(cli, &render::workers_view(&stats(cli)?), render::workers)
}

fn generation(cli: &Cli) -> Result<(), Fail> {
    emit(cli, &render::generation_view(&stats(cli)?), render::generation)
}

/// A table the dataplane gives as text: printed as it is, or as
/// `{"text": ...}`.
fn show(cli: &Cli, what: &str) -> Result<(), Fail> {
    match dataplane(cli, &Request::Show { what: what.into() })? {
        Reply::Text { text } => emit(cli, &render::TextView { text }, |v| v.text.clone()),
        Reply::Error { message } => Err(Fail::daemon(message)),
        other => Err(Fail::daemon(format!("unexpected answer to show {what}: {other:?}"))),
    }
}

fn add_port_request(a: &AddPortArgs) -> Result<Request, Fail> {
    let pod = match (a.pod_ip, &a.pod_mac) {
        (Some(ip), Some(mac)) => match mac.parse() {
            Ok(mac) => Some(PodAttachment { ip, mac, network: a.pod_network.clone() }),
            Err(e) => return Err(Fail::usage(format!("--pod-mac {mac:?}: {e}"))),
        },
        _ => None,
    };
    Ok(Request::AddPort {
        port: PortConfig {
            name: a.name.clone(),
            kind: a.kind,
            iface: a.iface.clone(),
            path: a.path.clone(),
            server: a.server,
            pci: a.pci.clone(),
            devargs: a.devargs.clone(),
            rx_queues: a.rx_queues,
            pod,
            uplink: a.uplink,
            host: a.host,
        },
    })
}

fn set_services_request(file: &Path) -> Result<Request, Fail> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Services {
        #[serde(default)]
        services: Vec<weir_dataplane::config::ServiceConfig>,
    }
    let text = std::fs::read_to_string(file).map_err(|e| Fail::usage(format!("{}: {e}", file.display())))?;
    let s = toml::from_str::<Services>(&text).map_err(|e| Fail::usage(format!("{}: {e}", file.display())))?;
    Ok(Request::SetServices { services: s.services })
}

// ------------------------------------------------------------ weir-control

fn control(cli: &Cli, req: &QueryRequest) -> Result<QueryReply, Fail> {
    let hint = "is weir-control running? --control-socket / WEIR_CONTROL_SOCKET names its query socket";
    match query::call(&cli.control_socket, req, TIMEOUT) {
        Ok(QueryReply::Error { message }) => Err(Fail::daemon(message)),
        Ok(r) => Ok(r),
        Err(e) => Err(Fail::no_answer(e, hint)),
    }
}

fn unexpected(what: &str, r: &QueryReply) -> Fail {
    Fail::daemon(format!("unexpected answer to {what}: {r:?}"))
}

fn net_list(cli: &Cli) -> Result<(), Fail> {
    #[derive(Serialize)]
    struct View {
        version: u64,
        networks: Vec<query::NetworkView>,
    }
    match control(cli, &QueryRequest::Networks {})? {
        QueryReply::Networks { version, networks } => {
            emit(cli, &View { version, networks }, |v| render::networks(&v.networks))
        }
        r => Err(unexpected("networks", &r)),
    }
}

fn group_list(cli: &Cli) -> Result<(), Fail> {
    #[derive(Serialize)]
    struct View {
        version: u64,
        groups: Vec<query::GroupView>,
    }
    match control(cli, &QueryRequest::Groups {})? {
        QueryReply::Groups { version, groups } => emit(cli, &View { version, groups }, |v| render::groups(&v.groups)),
        r => Err(unexpected("groups", &r)),
    }
}

fn rule_list(cli: &Cli, policy: Option<String>) -> Result<(), Fail> {
    #[derive(Serialize)]
    struct View {
        version: u64,
        policies: Vec<query::PolicyView>,
    }
    match control(cli, &QueryRequest::Policies { name: policy })? {
        QueryReply::Policies { version, policies } => {
            emit(cli, &View { version, policies }, |v| render::rules(&v.policies))
        }
        r => Err(unexpected("policies", &r)),
    }
}

fn control_status(cli: &Cli) -> Result<(), Fail> {
    match control(cli, &QueryRequest::Status {})? {
        QueryReply::Status(s) => emit(cli, &*s, render::control_status),
        r => Err(unexpected("status", &r)),
    }
}

// ------------------------------------------------ explain, trace, capture

#[derive(Args)]
struct ExplainArgs {
    /// The port the packet arrives on (a pod's port, the uplink, the host port).
    #[arg(long)]
    in_port: String,
    /// Source address.
    #[arg(long)]
    src: Ipv4Addr,
    /// Destination address.
    #[arg(long)]
    dst: Ipv4Addr,
    /// tcp, udp, sctp, icmp (an echo request) or a protocol number.
    #[arg(long, default_value = "tcp")]
    proto: String,
    /// Source port (the echo identifier for icmp) [default: 40000].
    #[arg(long)]
    sport: Option<u16>,
    /// Destination port [default: 80].
    #[arg(long)]
    dport: Option<u16>,
    /// TCP flags, comma-separated (syn, ack, fin, rst, psh) [default: syn].
    #[arg(long)]
    flags: Option<String>,
    /// IPv4 TTL [default: 64].
    #[arg(long)]
    ttl: Option<u8>,
    /// The IPv4 total length, to see what the tunnel MTU does with it.
    #[arg(long)]
    ip_len: Option<u16>,
    /// On the uplink: the packet arrives VXLAN-encapsulated by this VTEP.
    #[arg(long, value_name = "VTEP")]
    vxlan_from: Option<Ipv4Addr>,
    /// Its VNI [default: the node's default network's].
    #[arg(long, requires = "vxlan_from")]
    vni: Option<u32>,
}

/// Which packets trace and capture take.
#[derive(Args)]
struct FilterArgs {
    /// Source or destination address or prefix (VXLAN: outer or inner).
    #[arg(long)]
    host: Option<String>,
    /// Source address or prefix (a.b.c.d or a.b.c.d/len).
    #[arg(long)]
    src: Option<String>,
    /// Destination address or prefix.
    #[arg(long)]
    dst: Option<String>,
    /// tcp, udp, sctp, icmp, arp or a protocol number.
    #[arg(long)]
    proto: Option<String>,
    /// Source port (tcp, udp, sctp).
    #[arg(long)]
    sport: Option<u16>,
    /// Destination port (tcp, udp, sctp).
    #[arg(long)]
    dport: Option<u16>,
}

impl FilterArgs {
    fn spec(&self, port: Option<String>) -> weir_dataplane::inspect::FilterSpec {
        weir_dataplane::inspect::FilterSpec {
            port,
            host: self.host.clone(),
            src: self.src.clone(),
            dst: self.dst.clone(),
            proto: self.proto.clone(),
            sport: self.sport,
            dport: self.dport,
        }
    }
}

#[derive(Args)]
struct TraceArgs {
    /// Packets to trace.
    #[arg(long, default_value_t = 10)]
    count: u32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Only packets that come in on this port.
    #[arg(long)]
    port: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Dir {
    Rx,
    Tx,
    Both,
}

#[derive(Args)]
struct CaptureArgs {
    /// The port to capture.
    #[arg(long)]
    port: String,
    /// Packets it receives (before the pipeline), sends, or both.
    #[arg(long, value_enum, default_value_t = Dir::Both)]
    dir: Dir,
    /// Stop after this many packets.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<u64>,
    /// Bytes kept of each packet.
    #[arg(long, default_value_t = 2048)]
    snaplen: u32,
    /// The pcap file to write (relative to the current directory).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    filter: FilterArgs,
}

fn explain(cli: &Cli, a: &ExplainArgs) -> Result<(), Fail> {
    use weir_dataplane::inspect::{PacketSpec, VxlanSpec};
    let packet = PacketSpec {
        in_port: a.in_port.clone(),
        src: a.src,
        dst: a.dst,
        proto: a.proto.clone(),
        sport: a.sport,
        dport: a.dport,
        tcp_flags: a.flags.clone(),
        ttl: a.ttl,
        ip_len: a.ip_len,
        vxlan: a.vxlan_from.map(|vtep| VxlanSpec { vtep, vni: a.vni }),
    };
    match dataplane(cli, &Request::Explain { packet })? {
        Reply::Explained(e) => emit(cli, &e, |e| {
            let mut o = format!("packet: {}\nin on {}, tables generation {}\n", e.packet, e.in_port, e.generation);
            o.push_str(&steps_text(&e.steps));
            o.push_str(&format!("action: {}\n", e.action.text));
            if let Some(out) = &e.output {
                o.push_str(&format!("leaves as: {out}\n"));
            }
            if !e.flows_created.is_empty() {
                o.push_str("a worker would write these flow entries:\n");
                e.flows_created.iter().for_each(|f| o.push_str(&format!("  {f}\n")));
            }
            if !e.flows_removed.is_empty() {
                o.push_str("a worker would remove these flow entries:\n");
                e.flows_removed.iter().for_each(|f| o.push_str(&format!("  {f}\n")));
            }
            o
        }),
        Reply::Error { message } => Err(Fail::daemon(message)),
        other => Err(Fail::daemon(format!("unexpected answer to explain: {other:?}"))),
    }
}

fn steps_text(steps: &[weir_dataplane::inspect::StepReport]) -> String {
    steps.iter().map(|s| format!("  {:<9} {}\n", s.stage, s.text)).collect()
}

/// UTC time of day of `ns` since the epoch, to the microsecond.
fn time_of_day(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    format!("{:02}:{:02}:{:02}.{:06}", s / 3600 % 24, s / 60 % 60, s % 60, ns % 1_000_000_000 / 1000)
}

/// A session on its own connection (it ends when the connection closes).
fn session(cli: &Cli, start: Request) -> Result<(weir_dataplane::mgmt::Client, u64), Fail> {
    let hint = "is weir-dataplane running? -s / WEIR_SOCKET names its socket";
    let mut c = weir_dataplane::mgmt::Client::connect(&cli.socket, TIMEOUT)
        .map_err(|e| Fail::no_answer(CallError::Unreachable(e), hint))?;
    match c.call(&start).map_err(|e| Fail::no_answer(CallError::Failed(e), hint))? {
        Reply::InspectStarted { session } => Ok((c, session)),
        Reply::Error { message } => Err(Fail::daemon(message)),
        other => Err(Fail::daemon(format!("unexpected answer: {other:?}"))),
    }
}

/// How often a session is polled.
const POLL: Duration = Duration::from_millis(100);

fn trace(cli: &Cli, a: &TraceArgs) -> Result<(), Fail> {
    let start = Request::TraceStart {
        filter: a.filter.spec(a.port.clone()),
        count: a.count,
        timeout_ms: a.timeout.saturating_mul(1000),
    };
    let (mut c, id) = session(cli, start)?;
    if let Output::Table = cli.output {
        out(&format!("tracing the next {} matching packets (session {id}, at most {} s)\n", a.count, a.timeout));
    }
    let mut seen = 0usize;
    loop {
        let reply = c.call(&Request::InspectPoll { session: id }).map_err(Fail::usage)?;
        let (packets, done) = match reply {
            Reply::Traced { packets, done, .. } => (packets, done),
            Reply::Error { message } => return Err(Fail::daemon(message)),
            other => return Err(Fail::daemon(format!("unexpected answer to a trace poll: {other:?}"))),
        };
        for p in packets {
            seen += 1;
            match cli.output {
                Output::Json => out(&format!("{}\n", serde_json::to_string(&p).unwrap_or_default())),
                Output::Table => out(&format!(
                    "packet {seen}: worker {}, port {}, {}, tables generation {}\n  {}\n{}  action: {}\n",
                    p.worker,
                    p.port,
                    time_of_day(p.time_ns),
                    p.generation,
                    p.packet,
                    steps_text(&p.steps),
                    p.action.text
                )),
            }
        }
        if let Some(why) = done {
            match cli.output {
                Output::Json => out(&format!("{}\n", serde_json::json!({ "done": why, "packets": seen }))),
                Output::Table => out(&format!("trace ended: {why}, {seen} packets\n")),
            }
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

fn capture(cli: &Cli, a: &CaptureArgs) -> Result<(), Fail> {
    use weir_dataplane::inspect::pcap::{unhex, PcapWriter};
    use weir_dataplane::inspect::CaptureDir;
    // weirctl writes the file: a relative path is relative to where it runs.
    let path = std::env::current_dir().map(|d| d.join(&a.file)).unwrap_or_else(|_| a.file.clone());
    let file = std::fs::File::create(&path).map_err(|e| Fail::usage(format!("{}: {e}", path.display())))?;
    let mut pcap = PcapWriter::new(std::io::BufWriter::new(file), a.snaplen)
        .map_err(|e| Fail::usage(format!("{}: {e}", path.display())))?;
    let dir = match a.dir {
        Dir::Rx => CaptureDir::Rx,
        Dir::Tx => CaptureDir::Tx,
        Dir::Both => CaptureDir::Both,
    };
    let start = Request::CaptureStart {
        port: a.port.clone(),
        dir,
        filter: a.filter.spec(None),
        count: a.count,
        duration_ms: a.duration.map(|s| s.saturating_mul(1000)),
        snaplen: Some(a.snaplen),
    };
    let (mut c, id) = session(cli, start)?;
    eprintln!("weirctl: capturing {} of port {} to {} (session {id})", dir_name(a.dir), a.port, path.display());
    let mut n = 0u64;
    loop {
        let reply = c.call(&Request::InspectPoll { session: id }).map_err(Fail::usage)?;
        let (packets, lost, done) = match reply {
            Reply::Captured { packets, lost, done, .. } => (packets, lost, done),
            Reply::Error { message } => return Err(Fail::daemon(message)),
            other => return Err(Fail::daemon(format!("unexpected answer to a capture poll: {other:?}"))),
        };
        for p in &packets {
            let data = unhex(&p.data).map_err(|e| Fail::daemon(format!("captured packet: {e}")))?;
            pcap.write(p.time_ns, p.orig_len, &data).map_err(|e| Fail::usage(format!("{}: {e}", path.display())))?;
            n += 1;
        }
        pcap.flush().map_err(|e| Fail::usage(format!("{}: {e}", path.display())))?;
        if let Some(why) = done {
            #[derive(Serialize)]
            struct View {
                file: String,
                packets: u64,
                lost: u64,
                done: String,
            }
            let v = View { file: path.display().to_string(), packets: n, lost, done: why };
            return emit(cli, &v, |v| {
                format!(
                    "capture ended: {}; {} packets written to {}, {} lost (queue full)\n",
                    v.done, v.packets, v.file, v.lost
                )
            });
        }
        std::thread::sleep(POLL);
    }
}

fn dir_name(d: Dir) -> &'static str {
    match d {
        Dir::Rx => "rx",
        Dir::Tx => "tx",
        Dir::Both => "rx and tx",
    }
}
