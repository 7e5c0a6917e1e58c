//! weir-cni ↔ weir-control: one JSON request line and one JSON reply line
//! per connection over weir-control's CNI socket (like the dataplane's
//! management protocol). weir-cni has already checked the environment and
//! the network configuration; weir-control does the work and keeps every
//! piece of state.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::spec::{CniError, NetConf, ValidAttachment};

/// What a runtime asked of one attachment (ADD, DEL, CHECK).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachParams {
    pub container_id: String,
    pub ifname: String,
    #[serde(default)]
    pub netns: Option<String>,
    /// `CNI_ARGS` (K8S_POD_NAMESPACE, K8S_POD_NAME, ...).
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    pub conf: NetConf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CniRequest {
    Add(AttachParams),
    Del(AttachParams),
    Check(AttachParams),
    Status { conf: NetConf },
    Gc { conf: NetConf, valid: Vec<ValidAttachment> },
}

/// How a pod is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PodPort {
    /// A kernel interface (a TAP of weir's moved into the pod).
    Tap,
    /// A vhost-user socket for a DPDK pod.
    VhostUser,
}

/// An attachment as set up: what ADD's result reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachInfo {
    pub kind: PodPort,
    /// weir-dataplane's port.
    pub port: String,
    /// The MAC of weir's side of the port, when the dataplane told it.
    #[serde(default)]
    pub port_mac: Option<String>,
    pub ifname: String,
    /// The pod's MAC.
    pub mac: String,
    #[serde(default)]
    pub netns: Option<String>,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u16,
    /// vhost-user: the socket's path on the host.
    #[serde(default)]
    pub socket_path: Option<String>,
    /// vhost-user: the device-info file written.
    #[serde(default)]
    pub device_info: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum CniReply {
    Attached { info: AttachInfo },
    Done,
    Error { error: CniError },
}

/// Longest request or reply line.
pub const MAX_LINE: usize = 1 << 20;

/// Sends `req` to weir-control at `socket` and reads the reply. An error
/// here means weir-control did not answer (not running, or gone mid-way).
pub fn call(socket: &Path, req: &CniRequest, timeout: Duration) -> Result<CniReply, String> {
    let mut conn = UnixStream::connect(socket).map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    conn.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let text = serde_json::to_string(req).map_err(|e| e.to_string())?;
    writeln!(conn, "{text}").map_err(|e| format!("write to {}: {e}", socket.display()))?;
    let mut line = String::new();
    std::io::Read::take(BufReader::new(conn), MAX_LINE as u64)
        .read_line(&mut line)
        .map_err(|e| format!("read from {}: {e}", socket.display()))?;
    if line.is_empty() {
        return Err(format!("{} closed the connection without an answer", socket.display()));
    }
    serde_json::from_str(&line).map_err(|e| format!("bad reply {line:?}: {e}"))
}
