//! Flow logs (`weir-control --flow-log PATH`): a thread that arms the
//! dataplane's flow log over its management socket (`flow_log_start`),
//! polls it (`flow_log_poll`, every [`POLL`]), adds to each record the pods
//! it is between — by address, from the objects weir-control watches — and
//! writes one JSON object per line to a file (appended to) or stdout
//! (docs/flowlog.md has the fields).
//!
//! The session lives as long as the thread's connection: when the
//! dataplane restarts (the connection breaks), or ends the session, the
//! thread connects again and re-arms it; the dataplane stops it when
//! weir-control goes away. Records the dataplane could not keep (over the
//! rate, queue or meter full) are reported by a `dropped` line with their
//! count since the last one.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use weir_dataplane::api::{Reply, Request};
use weir_dataplane::inspect::{FlowLogDrops, FlowLogRecord};
use weir_dataplane::mgmt::Client;

use crate::model::{ns_name, ClusterObjects};
use crate::source::Shared;

/// How often the dataplane is polled for records.
pub const POLL: Duration = Duration::from_millis(200);
/// How long to wait before connecting again after a failure.
pub const RETRY: Duration = Duration::from_secs(1);
/// The default of `--flow-log-rate`.
pub const DEFAULT_RATE: u32 = 1000;

/// Where the lines go.
pub enum Sink {
    Stdout,
    File { path: PathBuf, file: std::io::BufWriter<std::fs::File> },
}

impl Sink {
    /// `-` is stdout; anything else a file, created if need be and
    /// appended to. An error names the path.
    pub fn open(path: &str) -> Result<Sink, String> {
        if path == "-" {
            return Ok(Sink::Stdout);
        }
        if path.is_empty() {
            return Err("--flow-log: empty path (a file, or - for stdout)".into());
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("--flow-log {path}: cannot open for appending: {e}"))?;
        Ok(Sink::File { path: PathBuf::from(path), file: std::io::BufWriter::new(file) })
    }

    pub fn name(&self) -> String {
        match self {
            Sink::Stdout => "stdout".into(),
            Sink::File { path, .. } => path.display().to_string(),
        }
    }

    /// Writes `lines` (each without its newline) and flushes.
    pub fn write(&mut self, lines: &[String]) -> std::io::Result<()> {
        fn all(w: &mut dyn Write, lines: &[String]) -> std::io::Result<()> {
            for l in lines {
                w.write_all(l.as_bytes())?;
                w.write_all(b"\n")?;
            }
            w.flush()
        }
        match self {
            Sink::Stdout => all(&mut std::io::stdout().lock(), lines),
            Sink::File { file, .. } => all(file, lines),
        }
    }
}

/// Pods by address: `namespace/name`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PodIndex(BTreeMap<Ipv4Addr, String>);

impl PodIndex {
    /// The pods with an IPv4 address that are not on the host network and
    /// not finished; when two claim one address, the first by
    /// namespace/name keeps it (as policy does).
    pub fn new(objs: &ClusterObjects) -> PodIndex {
        let mut pods: Vec<(String, Vec<Ipv4Addr>)> = objs
            .pods
            .iter()
            .filter(|p| !p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false))
            .filter(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Succeeded" | "Failed"))
            })
            .map(|p| {
                let s = p.status.as_ref();
                let ips = s
                    .and_then(|s| s.pod_ip.as_deref())
                    .into_iter()
                    .chain(s.and_then(|s| s.pod_ips.as_ref()).into_iter().flatten().map(|i| i.ip.as_str()))
                    .filter_map(|a| a.parse().ok())
                    .collect();
                (ns_name(&p.metadata), ips)
            })
            .collect();
        pods.sort();
        let mut map = BTreeMap::new();
        for (name, ips) in pods {
            for ip in ips {
                map.entry(ip).or_insert_with(|| name.clone());
            }
        }
        PodIndex(map)
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<&str> {
        self.0.get(&ip).map(String::as_str)
    }
}

/// `[original, reply]` as an object.
#[derive(Debug, Serialize, PartialEq)]
struct Pair {
    orig: u64,
    reply: u64,
}

/// One line, in this order.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    proto: String,
    src: String,
    dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_id: Option<u16>,
    nat_src: Option<String>,
    nat_dst: Option<String>,
    service: Option<&'a str>,
    verdict: &'a str,
    src_pod: Option<&'a str>,
    dst_pod: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_port: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    packets: Option<Pair>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<Pair>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

/// Whether the protocol has ports (else addresses are shown bare).
fn has_ports(p: u8) -> bool {
    matches!(p, 6 | 17 | 132)
}

/// One record as a JSON line: the pods added (`src_pod`: the client's own
/// address; `dst_pod`: the backend's when translated, else the
/// destination's).
pub fn line(r: &FlowLogRecord, pods: &PodIndex, node: Option<&str>) -> String {
    let ports = has_ports(r.proto);
    let ep = |a: Ipv4Addr, p: u16| if ports { SocketAddrV4::new(a, p).to_string() } else { a.to_string() };
    let to_pod = r.nat_dst.map_or(r.dst, |d| *d.ip());
    let pair = |v: Option<[u64; 2]>| v.map(|[orig, reply]| Pair { orig, reply });
    let l = Line {
        time: rfc3339(r.time_ns),
        event: &r.event,
        node,
        proto: proto_name(r.proto),
        src: ep(r.src, r.sport),
        dst: ep(r.dst, r.dport),
        // ICMP echo flows are keyed by their identifier.
        icmp_id: (r.proto == 1 && r.sport != 0).then_some(r.sport),
        nat_src: r.nat_src.map(|a| a.to_string()),
        nat_dst: r.nat_dst.map(|a| a.to_string()),
        service: r.service.as_deref(),
        verdict: &r.verdict,
        src_pod: pods.get(r.src),
        dst_pod: pods.get(to_pod),
        in_port: r.in_port.as_deref(),
        rule: r.rule.as_deref(),
        direction: r.direction.as_deref(),
        start: r.start_ns.map(rfc3339),
        duration_ms: r.duration_ms,
        packets: pair(r.packets),
        bytes: pair(r.bytes),
        reason: r.reason.as_deref(),
    };
    serde_json::to_string(&l).unwrap_or_default()
}

/// The line that reports records lost since `before` (None when none were).
pub fn dropped_line(now_ns: u64, node: Option<&str>, before: &FlowLogDrops, now: &FlowLogDrops) -> Option<String> {
    let d = FlowLogDrops {
        rate_limited: now.rate_limited.saturating_sub(before.rate_limited),
        queue_full: now.queue_full.saturating_sub(before.queue_full),
        meter_full: now.meter_full.saturating_sub(before.meter_full),
    };
    if d.total() == 0 {
        return None;
    }
    #[derive(Serialize)]
    struct Dropped<'a> {
        time: String,
        event: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        node: Option<&'a str>,
        count: u64,
        rate_limited: u64,
        queue_full: u64,
        meter_full: u64,
    }
    let l = Dropped {
        time: rfc3339(now_ns),
        event: "dropped",
        node,
        count: d.total(),
        rate_limited: d.rate_limited,
        queue_full: d.queue_full,
        meter_full: d.meter_full,
    };
    serde_json::to_string(&l).ok()
}

/// `ns` since the Unix epoch as RFC 3339 UTC with milliseconds
/// (`2026-11-23T17:15:36.943Z`).
pub fn rfc3339(ns: u64) -> String {
    let ms = ns / 1_000_000;
    let (secs, ms) = (ms / 1000, ms % 1000);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days_from_civil, inverted.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// What the thread works with.
pub struct FlowLogConfig {
    /// The dataplane's management socket.
    pub dataplane: PathBuf,
    pub rate: u32,
    pub shared: Arc<Shared>,
}

/// The pods of the current objects, rebuilt when their version changes.
struct Pods {
    version: Option<u64>,
    index: PodIndex,
}

impl Pods {
    fn current(&mut self, shared: &Shared) -> &PodIndex {
        let v = shared.version();
        if self.version != Some(v) {
            if let Some((v, objs)) = shared.snapshot() {
                self.index = PodIndex::new(&objs);
                self.version = Some(v);
            }
        }
        &self.index
    }
}

/// Runs the flow log until `stop`: arms, polls, writes, re-arms. Each
/// distinct problem is reported once on stderr.
pub fn run(cfg: &FlowLogConfig, sink: &mut Sink, stop: &AtomicBool) {
    let mut last_error = String::new();
    let mut pods = Pods { version: None, index: PodIndex::default() };
    while !stop.load(Ordering::Relaxed) {
        match session(cfg, sink, stop, &mut pods) {
            Ok(why) => {
                println!("weir-control: flow log session ended ({why}); arming again");
                last_error.clear();
            }
            Err(e) => {
                if e != last_error {
                    eprintln!("weir-control: flow log: {e}");
                    last_error = e;
                }
                sleep_unless(stop, RETRY);
            }
        }
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let t0 = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) && t0.elapsed() < d {
        std::thread::sleep(Duration::from_millis(20).min(d));
    }
}

/// One session: returns why the dataplane ended it, or the error that
/// broke it off.
fn session(cfg: &FlowLogConfig, sink: &mut Sink, stop: &AtomicBool, pods: &mut Pods) -> Result<String, String> {
    let mut c = Client::connect(&cfg.dataplane, Duration::from_secs(10))?;
    let node = match c.call(&Request::Hello)? {
        Reply::Hello { node, .. } => node,
        other => return Err(format!("hello: unexpected answer {other:?}")),
    };
    let id = match c.call(&Request::FlowLogStart { rate_per_s: cfg.rate, burst: None })? {
        Reply::FlowLogStarted { session } => session,
        Reply::Error { message } => return Err(format!("the dataplane refused it: {message}")),
        other => return Err(format!("flow_log_start: unexpected answer {other:?}")),
    };
    println!(
        "weir-control: flow log armed (session {id}, node {node}, at most {} records/s), writing to {}",
        cfg.rate,
        sink.name()
    );
    let mut seen = FlowLogDrops::default();
    loop {
        let req = if stop.load(Ordering::Relaxed) {
            Request::FlowLogStop { session: id }
        } else {
            sleep_unless(stop, POLL);
            Request::FlowLogPoll { session: id }
        };
        let (records, drops, done) = match c.call(&req)? {
            Reply::FlowLogged { records, drops, done, .. } => (records, drops, done),
            Reply::Error { message } => return Err(format!("flow_log_poll: {message}")),
            other => return Err(format!("flow_log_poll: unexpected answer {other:?}")),
        };
        let index = pods.current(&cfg.shared);
        let mut lines: Vec<String> = records.iter().map(|r| line(r, index, Some(&node))).collect();
        lines.extend(dropped_line(now_ns(), Some(&node), &seen, &drops));
        seen = drops;
        if !lines.is_empty() {
            sink.write(&lines).map_err(|e| format!("writing to {}: {e}", sink.name()))?;
        }
        if let Some(why) = done {
            return Ok(why);
        }
    }
}

/// The flow log thread. Dropping it asks the thread to stop (it ends the
/// dataplane's session at its next poll); the process ending closes the
/// connection, which ends the session too.
pub struct FlowLogHandle {
    stop: Arc<AtomicBool>,
}

/// Opens `path` (an error names it) and starts the thread.
pub fn spawn(cfg: FlowLogConfig, path: &str) -> Result<FlowLogHandle, String> {
    let max = weir_dataplane::inspect::flowlog::manager::MAX_RATE;
    if cfg.rate == 0 || cfg.rate > max {
        return Err(format!("--flow-log-rate {}: want 1 to {max} records per second", cfg.rate));
    }
    let mut sink = Sink::open(path)?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("weir-flowlog".into())
        .spawn(move || run(&cfg, &mut sink, &s))
        .map_err(|e| format!("cannot start the flow log thread: {e}"))?;
    Ok(FlowLogHandle { stop })
}

impl Drop for FlowLogHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
