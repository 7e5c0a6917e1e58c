//! One io-forwarding measurement of `weir-dataplane`: write a node config with
//! two ports of the chosen type and `forward_mode = "io"`, start the binary,
//! wait for its management socket, read `stats` twice `seconds` apart, shut it
//! down.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_dataplane::api::{Reply, Request, Stats};
use weir_dataplane::config::NodeConfig;
use weir_dataplane::mgmt;

use crate::proc::{self, DpdkPrefix, Proc};
use crate::{Measurement, RunSpec};

/// Port names in the config; io mode pairs them (first ↔ second).
pub const PORT_NAMES: [&str; 2] = ["bench-a", "bench-b"];

/// How long the dataplane gets to answer `hello` after it is started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one management call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long it gets to exit after `shutdown` before it is killed.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The node config text for a benchmark run.
pub fn node_config(spec: &RunSpec, file_prefix: &str, socket: &Path) -> String {
    let mut s = format!(
        r#"# Written by weir-bench-fwd for one measurement; removed afterwards.
[node]
name = "weir-bench"
pod_cidr = "10.250.0.0/24"

[gateway]
ip = "10.250.0.1"
mac = "02:fe:00:00:00:01"

[dpdk]
main_core = {main}
worker_cores = [{fwd}]
memory_mb = {mem}
hugepages = true
file_prefix = {prefix:?}
burst = {burst}
busy_poll = true
forward_mode = "io"

[management]
socket = {socket:?}
"#,
        main = spec.main_core,
        fwd = spec.fwd_core,
        mem = spec.memory_mb,
        prefix = file_prefix,
        burst = spec.burst,
        socket = socket.display().to_string(),
    );
    for name in PORT_NAMES {
        s.push_str(&format!("\n[[ports]]\nname = {name:?}\nkind = {:?}\n", spec.port_type.as_str()));
    }
    s
}

/// `mgmt::call` with a time limit (the call itself has none). On a timeout
/// the calling thread is left blocked on the socket; it ends when the
/// dataplane is killed.
pub fn call(socket: &Path, req: Request, timeout: Duration) -> Result<Reply, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = socket.to_path_buf();
    let what = format!("{req:?}");
    std::thread::Builder::new()
        .name("weir-mgmt-call".into())
        .spawn(move || {
            let _ = tx.send(mgmt::call(&path, &req));
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    rx.recv_timeout(timeout)
        .map_err(|_| format!("{what} request to {} got no reply within {timeout:?}", socket.display()))?
}

pub(crate) fn stats(socket: &Path) -> Result<Stats, String> {
    match call(socket, Request::Stats, CALL_TIMEOUT)? {
        Reply::Stats(s) => Ok(s),
        other => Err(format!("stats request answered {other:?}")),
    }
}

/// Sum of the benchmark ports' `tx_packets` (counted by weir's workers).
fn tx_total(s: &Stats) -> Result<u64, String> {
    let mut total = 0;
    for name in PORT_NAMES {
        let p = s.port(name).ok_or_else(|| {
            let have: Vec<&str> = s.ports.iter().map(|p| p.name.as_str()).collect();
            format!("stats lack port {name:?} (ports: {have:?})")
        })?;
        total += p.tx_packets;
    }
    Ok(total)
}

/// Reads stats; the timestamp is the middle of the call.
fn stamped_stats(socket: &Path) -> Result<(Instant, Stats), String> {
    let before = Instant::now();
    let s = stats(socket)?;
    let after = Instant::now();
    Ok((before + (after - before) / 2, s))
}

/// Runs `weir-dataplane` once and measures it. `dir` holds the config,
/// socket and log; `tag` makes its file prefix unique.
pub fn run(binary: &Path, spec: &RunSpec, dir: &Path, tag: &str) -> Result<Measurement, String> {
    let prefix = DpdkPrefix::new(tag);
    let socket = dir.join(format!("{tag}.sock"));
    let config_path = dir.join(format!("{tag}.toml"));
    let log_path = dir.join(format!("{tag}.log"));
    let text = node_config(spec, prefix.name(), &socket);
    NodeConfig::from_toml(&text)
        .map_err(|e| format!("internal error: the benchmark's node config is refused: {e}\n{text}"))?;
    std::fs::write(&config_path, &text).map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    let log = File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| format!("{}: {e}", log_path.display()))?;

    let mut p = Proc::spawn(
        "weir-dataplane",
        Command::new(binary).arg("-c").arg(&config_path).stdin(Stdio::null()).stdout(log).stderr(log2),
    )?;
    let result = measure(&mut p, spec, &socket);
    let shutdown = match &result {
        Ok(_) => call(&socket, Request::Shutdown, CALL_TIMEOUT).map(|_| ()),
        Err(_) => Err(String::new()),
    };
    let status = if shutdown.is_ok() { p.finish(EXIT_TIMEOUT) } else { None };
    p.kill();
    drop(p);
    drop(prefix);
    let log_tail = || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        proc::tail_lines(&without_eal_usage(&log), 25)
    };
    match result {
        Err(_) if proc::interrupted() => Err("interrupted".into()),
        Err(e) => Err(format!("weir-dataplane run failed: {e}\n  {} (output):\n{}", binary.display(), log_tail())),
        Ok(m) => {
            match (shutdown, status) {
                (Err(e), _) => {
                    eprintln!("weir-bench-fwd: warning: weir-dataplane shutdown request failed ({e}); killed it")
                }
                (Ok(()), Some(s)) if !s.success() => {
                    eprintln!("weir-bench-fwd: warning: weir-dataplane exited with {s} after shutdown:\n{}", log_tail())
                }
                _ => {}
            }
            Ok(m)
        }
    }
}

fn measure(p: &mut Proc, spec: &RunSpec, socket: &Path) -> Result<Measurement, String> {
    wait_ready(p, socket)?;
    proc::sleep(spec.warmup)?;
    alive(p)?;
    let (t0, s0) = stamped_stats(socket)?;
    proc::sleep(spec.seconds)?;
    alive(p)?;
    let (t1, s1) = stamped_stats(socket)?;
    let (a, b) = (tx_total(&s0)?, tx_total(&s1)?);
    let m = Measurement { tx_packets: b.saturating_sub(a), elapsed: t1 - t0 };
    if m.tx_packets == 0 {
        let ports: Vec<String> = s1
            .ports
            .iter()
            .map(|p| {
                format!(
                    "{} ({}): rx {} tx {}, driver rx {} tx {}",
                    p.name, p.driver, p.rx_packets, p.tx_packets, p.nic_rx_packets, p.nic_tx_packets
                )
            })
            .collect();
        return Err(format!(
            "no packets forwarded in {:.1} s on {} ports [{}]; drops {:?}",
            m.elapsed.as_secs_f64(),
            spec.port_type,
            ports.join("; "),
            s1.drops.iter().filter(|(_, v)| **v > 0).collect::<Vec<_>>(),
        ));
    }
    Ok(m)
}

fn alive(p: &mut Proc) -> Result<(), String> {
    match p.try_status() {
        Some(s) => Err(format!("{} (pid {}) exited with {s}", p.name(), p.pid())),
        None => Ok(()),
    }
}

/// Waits until the dataplane answers `hello` (it answers once its ports are up).
pub(crate) fn wait_ready(p: &mut Proc, socket: &Path) -> Result<(), String> {
    let start = Instant::now();
    let mut last_err = String::from("socket not created yet");
    while start.elapsed() < READY_TIMEOUT {
        proc::check_interrupted()?;
        alive(p)?;
        if socket.exists() {
            match call(
                socket,
                Request::Hello,
                READY_TIMEOUT.saturating_sub(start.elapsed()).max(Duration::from_millis(100)),
            ) {
                Ok(Reply::Hello { .. }) => return Ok(()),
                Ok(other) => return Err(format!("hello answered {other:?}")),
                Err(e) => last_err = e,
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    alive(p)?;
    Err(format!("no answer to hello on {} within {READY_TIMEOUT:?} ({last_err})", socket.display()))
}

/// EAL answers bad arguments with pages of usage text (buffered stdout, so
/// the error lines on stderr land before or inside it): keep what came before
/// the usage and the error lines within it.
pub(crate) fn without_eal_usage(log: &str) -> String {
    let Some(i) = log.find("\nUsage:") else {
        return log.to_string();
    };
    let mut out = log[..i + 1].to_string();
    for line in log[i + 1..].lines() {
        for tag in ["EAL:", "weir-dataplane:"] {
            if let Some(j) = line.find(tag) {
                out.push_str(&line[j..]);
                out.push('\n');
                break;
            }
        }
    }
    out
}

/// The default binary: `weir-dataplane` next to the running executable.
pub fn default_binary() -> Option<PathBuf> {
    std::env::current_exe().ok()?.parent().map(|d| d.join("weir-dataplane"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PortType;

    fn spec(port_type: PortType) -> RunSpec {
        RunSpec {
            port_type,
            burst: 32,
            warmup: Duration::from_secs(1),
            seconds: Duration::from_secs(5),
            main_core: 0,
            fwd_core: 1,
            memory_mb: 512,
        }
    }

    #[test]
    fn config_is_valid() {
        let pt = PortType::Null;
        let text = node_config(&spec(pt), "weir-bench-1-w1", Path::new("/tmp/weir-bench-x/w1.sock"));
        let c = NodeConfig::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(c.dpdk.forward_mode, weir_dataplane::config::ForwardMode::Io);
        assert!(c.dpdk.busy_poll && c.dpdk.hugepages);
        assert_eq!((c.dpdk.main_core, c.dpdk.worker_cores.clone()), (0, vec![1]));
        assert_eq!(c.file_prefix(), "weir-bench-1-w1");
        assert_eq!(c.management.socket, PathBuf::from("/tmp/weir-bench-x/w1.sock"));
        assert_eq!(c.ports.len(), 2);
        assert!(c.ports.iter().all(|p| p.kind.as_str() == pt.as_str()));
    }

    #[test]
    fn eal_usage_is_cut() {
        let log = "EAL: Detected CPU lcores: 2\nEAL: Option --x is not compatible with --y\n\nUsage: weir-dataplane [options]\n  -l CORELIST\n  --force-max-simd-bitwidth Force EAL: FATAL: Invalid 'command line' arguments.\nEAL: Invalid 'command line' arguments.\nweir-dataplane: rte_eal_init failed: Invalid argument (errno 22)\n";
        assert_eq!(
            without_eal_usage(log),
            "EAL: Detected CPU lcores: 2\nEAL: Option --x is not compatible with --y\n\nEAL: FATAL: Invalid 'command line' arguments.\nEAL: Invalid 'command line' arguments.\nweir-dataplane: rte_eal_init failed: Invalid argument (errno 22)\n"
        );
        assert_eq!(without_eal_usage("a\nb\n"), "a\nb\n");
    }

    #[test]
    fn tx_total_sums_bench_ports() {
        let mut s = Stats::default();
        assert!(tx_total(&s).is_err());
        for (i, n) in PORT_NAMES.iter().enumerate() {
            s.ports.push(weir_dataplane::api::PortStats {
                name: n.to_string(),
                tx_packets: 10 * (i as u64 + 1),
                ..Default::default()
            });
        }
        assert_eq!(tx_total(&s), Ok(30));
    }
}
