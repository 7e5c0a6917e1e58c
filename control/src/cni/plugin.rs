//! weir-cni, the plugin binary's logic: reads the `CNI_*` environment and
//! the network configuration, answers VERSION itself, asks weir-control
//! for everything else and prints the result or the error document.
//! Holds no state of its own.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::proto::{self, AttachInfo, AttachParams, CniReply, CniRequest, PodPort};
use super::spec::{self, code, CniError, CniResult, Command, Env, Interface, IpConfig, NetConf, Route};

/// What the process does: its exit status and what it prints on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: i32,
    pub stdout: String,
}

impl Outcome {
    fn ok(stdout: String) -> Outcome {
        Outcome { status: 0, stdout }
    }

    fn err(e: &CniError, version: &str) -> Outcome {
        Outcome { status: 1, stdout: e.to_json(version) }
    }
}

/// How long weir-cni waits for weir-control (an ADD sets up a port).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one invocation: `get` reads the environment, `stdin` is the
/// network configuration.
pub fn run(get: &dyn Fn(&str) -> Option<String>, stdin: &str) -> Outcome {
    // The version errors are printed in: the configuration's, if it has a
    // supported one.
    let version = serde_json::from_str::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion").and_then(Value::as_str).map(String::from))
        .filter(|v| spec::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| spec::LATEST.to_string());
    let env = match Env::read(get) {
        Ok(e) => e,
        Err(e) => return Outcome::err(&e, &version),
    };
    if env.command == Command::Version {
        let asked = serde_json::from_str::<Value>(stdin)
            .ok()
            .and_then(|v| v.get("cniVersion").and_then(Value::as_str).map(String::from));
        return Outcome::ok(spec::version_json(asked.as_deref()));
    }
    let conf = match NetConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return Outcome::err(&e, &version),
    };
    match dispatch(&env, conf) {
        Ok(out) => Outcome::ok(out),
        Err(e) => Outcome::err(&e, &version),
    }
}

fn socket(conf: &NetConf) -> PathBuf {
    conf.socket.clone().unwrap_or_else(|| PathBuf::from(spec::DEFAULT_SOCKET))
}

fn dispatch(env: &Env, conf: NetConf) -> Result<String, CniError> {
    let sock = socket(&conf);
    let version = conf.cni_version.clone();
    let attach = |conf: NetConf| AttachParams {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        netns: env.netns.clone(),
        args: env.args.clone(),
        conf,
    };
    let unreachable =
        |e: String, c: u32| CniError::new(c, format!("weir-control does not answer on {}", sock.display())).details(e);
    match env.command {
        Command::Version => Ok(spec::version_json(Some(&version))),
        Command::Add => match proto::call(&sock, &CniRequest::Add(attach(conf)), CALL_TIMEOUT) {
            Err(e) => Err(unreachable(e, code::TRY_AGAIN_LATER)),
            Ok(CniReply::Attached { info }) => Ok(serde_json::to_string(&result(&info, &version)).unwrap_or_default()),
            Ok(CniReply::Error { error }) => Err(error),
            Ok(other) => Err(CniError::new(code::IO_FAILURE, format!("weir-control answered ADD with {other:?}"))),
        },
        Command::Check => {
            let prev = conf.prev_result.clone().ok_or_else(|| {
                CniError::new(code::INVALID_NETWORK_CONFIG, "CHECK needs prevResult (the result of the ADD)")
            })?;
            match proto::call(&sock, &CniRequest::Check(attach(conf)), CALL_TIMEOUT) {
                Err(e) => Err(unreachable(e, code::TRY_AGAIN_LATER)),
                Ok(CniReply::Attached { info }) => check_prev(&prev, &info).map(|_| String::new()),
                Ok(CniReply::Error { error }) => Err(error),
                Ok(other) => {
                    Err(CniError::new(code::IO_FAILURE, format!("weir-control answered CHECK with {other:?}")))
                }
            }
        }
        Command::Del => match proto::call(&sock, &CniRequest::Del(attach(conf)), CALL_TIMEOUT) {
            // The state is weir-control's: without it nothing can be
            // released, so the runtime is asked to try again (GC also
            // collects what a lost DEL leaves).
            Err(e) => Err(unreachable(e, code::TRY_AGAIN_LATER)),
            Ok(CniReply::Done) => Ok(String::new()),
            Ok(CniReply::Error { error }) => Err(error),
            Ok(other) => Err(CniError::new(code::IO_FAILURE, format!("weir-control answered DEL with {other:?}"))),
        },
        Command::Status => match proto::call(&sock, &CniRequest::Status { conf }, CALL_TIMEOUT) {
            Err(e) => Err(unreachable(e, code::NOT_AVAILABLE)),
            Ok(CniReply::Done) => Ok(String::new()),
            Ok(CniReply::Error { error }) => Err(error),
            Ok(other) => Err(CniError::new(code::IO_FAILURE, format!("weir-control answered STATUS with {other:?}"))),
        },
        Command::Gc => {
            let valid = conf.valid_attachments.clone().unwrap_or_default();
            match proto::call(&sock, &CniRequest::Gc { conf, valid }, CALL_TIMEOUT) {
                Err(e) => Err(unreachable(e, code::TRY_AGAIN_LATER)),
                Ok(CniReply::Done) => Ok(String::new()),
                Ok(CniReply::Error { error }) => Err(error),
                Ok(other) => Err(CniError::new(code::IO_FAILURE, format!("weir-control answered GC with {other:?}"))),
            }
        }
    }
}

/// ADD's result for `info` in spec version `version`: weir's port (host
/// side, no sandbox), the pod's interface (sandbox side), its address on
/// the sandbox interface, the default route via the gateway. 1.1.0 adds
/// the MTU and, for vhost-user, the socket path.
pub fn result(info: &AttachInfo, version: &str) -> CniResult {
    let v11 = spec::has_1_1_fields(version);
    let socket = info.socket_path.clone().filter(|_| v11);
    let host = Interface {
        name: info.port.clone(),
        mac: info.port_mac.clone(),
        mtu: None,
        sandbox: None,
        socket_path: socket.clone(),
    };
    let pod = Interface {
        name: info.ifname.clone(),
        mac: Some(info.mac.clone()),
        mtu: v11.then_some(info.mtu),
        sandbox: Some(info.netns.clone().unwrap_or_default()),
        socket_path: if info.kind == PodPort::VhostUser { socket } else { None },
    };
    CniResult {
        cni_version: version.to_string(),
        interfaces: vec![host, pod],
        ips: vec![IpConfig {
            address: format!("{}/{}", info.ip, info.prefix_len),
            gateway: Some(info.gateway),
            interface: Some(1),
        }],
        routes: vec![Route { dst: "0.0.0.0/0".into(), gw: Some(info.gateway), mtu: None }],
    }
}

/// CHECK: the attachment weir-control found must be the one `prev` (the
/// ADD's result) describes: the pod's address and MAC.
fn check_prev(prev: &Value, info: &AttachInfo) -> Result<(), CniError> {
    let fail = |m: String| CniError::new(code::CHECK_FAILED, m);
    let want = format!("{}/{}", info.ip, info.prefix_len);
    let ips: Vec<&str> = prev
        .get("ips")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|i| i.get("address").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    if !ips.contains(&want.as_str()) {
        return Err(fail(format!("prevResult has addresses {ips:?}, the pod holds {want}")));
    }
    let macs: Vec<&str> = prev
        .get("interfaces")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|i| i.get("sandbox").is_some())
                .filter_map(|i| i.get("mac").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if !macs.iter().any(|m| m.eq_ignore_ascii_case(&info.mac)) {
        return Err(fail(format!("prevResult has sandbox MACs {macs:?}, the pod has {}", info.mac)));
    }
    Ok(())
}

/// The binary's main: the process environment and stdin.
pub fn main() -> i32 {
    use std::io::{Read, Write};
    let mut stdin = String::new();
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    // VERSION may come without stdin; the others bring a configuration.
    if command != "VERSION" || !atty_stdin() {
        let _ = std::io::stdin().take(proto::MAX_LINE as u64).read_to_string(&mut stdin);
    }
    let out = run(&|k: &str| std::env::var(k).ok(), &stdin);
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(out.stdout.as_bytes());
    if !out.stdout.is_empty() {
        let _ = o.write_all(b"\n");
    }
    let _ = o.flush();
    if out.status != 0 {
        eprintln!("weir-cni {command}: {}", out.stdout);
    }
    out.status
}

/// Whether stdin is a terminal (someone typed `CNI_COMMAND=VERSION weir-cni`).
fn atty_stdin() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}
