//! The pod's side of an attachment, done by weir-control with iproute2 and
//! nsenter: moving weir's TAP into the pod's network namespace under the
//! interface name the runtime asked for, with the pod's MAC, MTU, address
//! and default route; checking it is still so; device-info files for
//! vhost-user pods.
//!
//! Why a TAP moved into the pod works: DPDK's net_tap keeps its queues on
//! file descriptors of the TAP device, which stay valid when the device
//! changes namespace, so packets flow both ways. Only the PMD's control
//! calls (link status, MTU, stop/start), which go by interface name in
//! weir's own namespace, fail with ENODEV there: weir reports such a port's
//! link as down and never changes its MTU. Removing the port closes the
//! descriptors, and the kernel deletes the TAP wherever it is (checked by
//! dataplane/tests/cni.rs, also when the pod's namespace went first).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

fn run(cmd: &mut Command, what: &str, input: Option<&str>) -> Result<String, String> {
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip` inside the namespace at `netns` (a path, e.g. /run/netns/cni-…).
fn ip_in(netns: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={netns}")).arg("ip");
    c
}

/// Whether `netns` is a network namespace one can enter.
pub fn netns_exists(netns: &str) -> bool {
    Path::new(netns).exists()
}

/// The pod's interface as an attachment wants it.
pub struct PodIface<'a> {
    pub netns: &'a str,
    pub ifname: &'a str,
    pub mac: &'a str,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u16,
}

/// Moves `tap` (in weir's namespace) into the pod as `p.ifname` and
/// configures it. On an error the TAP may be half-configured; the caller
/// removes the port, which deletes the TAP.
pub fn move_tap(tap: &str, p: &PodIface) -> Result<(), String> {
    run(
        Command::new("ip").args(["link", "set", "dev", tap, "netns", p.netns, "name", p.ifname]),
        &format!("moving {tap} into {} as {}", p.netns, p.ifname),
        None,
    )?;
    let batch = format!(
        "link set dev {i} address {mac} mtu {mtu}\naddr add {ip}/{len} dev {i}\nlink set dev {i} up\nroute add default via {gw} dev {i}\n",
        i = p.ifname,
        mac = p.mac,
        mtu = p.mtu,
        ip = p.ip,
        len = p.prefix_len,
        gw = p.gateway
    );
    run(ip_in(p.netns).args(["-batch", "-"]), &format!("configuring {} in {}", p.ifname, p.netns), Some(&batch))?;
    Ok(())
}

/// CHECK of a kernel pod: the interface is there, up, with the MAC, MTU
/// and address, and a default route via the gateway.
pub fn check(p: &PodIface) -> Result<(), String> {
    if !netns_exists(p.netns) {
        return Err(format!("network namespace {} is gone", p.netns));
    }
    let out = run(
        ip_in(p.netns).args(["-j", "addr", "show", "dev", p.ifname]),
        &format!("{} in {}", p.ifname, p.netns),
        None,
    )?;
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("ip -j addr: {e}"))?;
    let link = v.get(0).ok_or_else(|| format!("{} is not in {}", p.ifname, p.netns))?;
    let mac = link.get("address").and_then(Value::as_str).unwrap_or("");
    if !mac.eq_ignore_ascii_case(p.mac) {
        return Err(format!("{} has MAC {mac}, want {}", p.ifname, p.mac));
    }
    if link.get("mtu").and_then(Value::as_u64) != Some(u64::from(p.mtu)) {
        return Err(format!("{} has MTU {:?}, want {}", p.ifname, link.get("mtu"), p.mtu));
    }
    let flags: Vec<&str> = link
        .get("flags")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !flags.contains(&"UP") {
        return Err(format!("{} is down", p.ifname));
    }
    let has_ip = link.get("addr_info").and_then(Value::as_array).is_some_and(|a| {
        a.iter().any(|i| {
            i.get("local").and_then(Value::as_str) == Some(&p.ip.to_string())
                && i.get("prefixlen").and_then(Value::as_u64) == Some(u64::from(p.prefix_len))
        })
    });
    if !has_ip {
        return Err(format!("{} does not have {}/{}", p.ifname, p.ip, p.prefix_len));
    }
    let out = run(ip_in(p.netns).args(["-j", "route", "show", "default"]), "default route", None)?;
    let routes: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let gw = p.gateway.to_string();
    let ok = routes.as_array().is_some_and(|r| r.iter().any(|r| r.get("gateway").and_then(Value::as_str) == Some(&gw)));
    if !ok {
        return Err(format!("no default route via {gw} in {}", p.netns));
    }
    Ok(())
}

/// The device-info document (network plumbing device-info spec 1.1.0) of
/// a vhost-user attachment: `mode` is the pod's role — "client" when weir
/// creates the socket, "server" when the pod does.
pub fn vhost_device_info(socket: &str, weir_listens: bool) -> Value {
    serde_json::json!({
        "type": "vhost-user",
        "version": "1.1.0",
        "vhost-user": { "mode": if weir_listens { "client" } else { "server" }, "path": socket }
    })
}

/// Writes `doc` to `path` atomically, making its directory.
pub fn write_file(path: &Path, doc: &Value) -> Result<(), String> {
    let dir = path.parent().ok_or_else(|| format!("{}: no directory", path.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{doc}\n"))
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Removes a file if it is there.
pub fn remove_file(path: &str) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {path}: {e}")),
    }
}
