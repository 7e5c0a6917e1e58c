//! The CNI specification as weir-cni speaks it (versions 1.0.0 and 1.1.0):
//! the environment a runtime sets, the network configuration on stdin, the
//! result and error documents on stdout, the well-known error codes.
//!
//! Everything here is checked at the edge: a bad variable or field is an
//! error that names it, with the spec's code, and nothing is changed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weir_dataplane::tables::cidr::Ipv4Cidr;

/// The spec versions weir-cni implements, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0", "1.1.0"];
/// The newest, used where no configuration says which.
pub const LATEST: &str = "1.1.0";

/// Well-known error codes (spec section "Error") and weir's own (100 and up).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist (never for DEL).
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODING_FAILURE: u32 = 6;
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot serve ADD now.
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available, and existing containers may have limited connectivity.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// No free address in the network.
    pub const IPAM_EXHAUSTED: u32 = 100;
    /// weir-dataplane refused or failed the pod's port.
    pub const DATAPLANE_FAILED: u32 = 101;
    /// The pod's side (interface, addresses, routes, socket, device-info) could not be set up.
    pub const POD_SETUP_FAILED: u32 = 102;
    /// CHECK: the attachment is not what the previous result says.
    pub const CHECK_FAILED: u32 = 103;
}

/// A CNI error: printed as JSON on stdout with a non-zero exit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    pub fn details(mut self, d: impl Into<String>) -> CniError {
        self.details = d.into();
        self
    }

    /// The error document for spec version `version`.
    pub fn to_json(&self, version: &str) -> String {
        let mut v = serde_json::json!({ "cniVersion": version, "code": self.code, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v.to_string()
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

/// The operations of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }
}

/// The `CNI_*` environment, checked for the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<String>,
    pub ifname: String,
    /// `CNI_ARGS`: `K=V;K=V`.
    pub args: BTreeMap<String, String>,
    pub path: Option<String>,
}

/// A container ID: an alphanumeric first, then alphanumerics, `_`, `.`, `-`.
pub fn valid_container_id(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric()) && c.all(|x| x.is_ascii_alphanumeric() || "_.-".contains(x))
}

/// An interface name as Linux and the spec allow it.
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// A network name: an alphanumeric first, then alphanumerics, `_`, `.`, `-`.
pub fn valid_network_name(s: &str) -> bool {
    valid_container_id(s)
}

impl Env {
    /// Reads the environment through `get`. `CNI_COMMAND` must be one of
    /// the spec's; ADD, DEL and CHECK need a container ID and an interface
    /// name, ADD and CHECK a network namespace.
    pub fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let bad = |var: &str, why: &str| CniError::new(code::INVALID_ENVIRONMENT, format!("{var}: {why}"));
        let command = match get("CNI_COMMAND") {
            None => return Err(bad("CNI_COMMAND", "not set")),
            Some(c) => Command::parse(&c).ok_or_else(|| {
                bad("CNI_COMMAND", &format!("{c:?} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"))
            })?,
        };
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let mut env = Env {
            command,
            container_id: String::new(),
            netns: get("CNI_NETNS"),
            ifname: String::new(),
            args: BTreeMap::new(),
            path: get("CNI_PATH"),
        };
        if matches!(command, Command::Add | Command::Del | Command::Check) {
            let id = get("CNI_CONTAINERID").ok_or_else(|| bad("CNI_CONTAINERID", "not set"))?;
            if !valid_container_id(&id) {
                return Err(bad(
                    "CNI_CONTAINERID",
                    &format!("{id:?} is not a container ID (alphanumeric first, then [A-Za-z0-9_.-])"),
                ));
            }
            env.container_id = id;
            let ifname = get("CNI_IFNAME").ok_or_else(|| bad("CNI_IFNAME", "not set"))?;
            if !valid_ifname(&ifname) {
                return Err(bad(
                    "CNI_IFNAME",
                    &format!("{ifname:?} is not an interface name (1-15 characters, no '/', ':' or spaces)"),
                ));
            }
            env.ifname = ifname;
            if command != Command::Del && env.netns.is_none() {
                return Err(bad("CNI_NETNS", "not set"));
            }
            if let Some(a) = get("CNI_ARGS") {
                env.args = parse_args(&a).map_err(|e| bad("CNI_ARGS", &e))?;
            }
        }
        Ok(env)
    }
}

/// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.
pub fn parse_args(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in s.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Which side of a vhost-user socket weir-dataplane is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VhostMode {
    /// weir creates the socket and listens; the pod's virtio-user connects
    /// (device-info mode "client"). After a dataplane restart the socket is
    /// made again at the same path and the pod's application reconnects.
    #[default]
    Server,
    /// The pod's virtio-user creates the socket (`server=1`) and weir
    /// connects, and reconnects by itself after a dataplane restart
    /// (device-info mode "server").
    Client,
}

/// `ipam` of the network configuration: weir allocates itself; `subnet`
/// and `gateway` override the node's pod CIDR for the default network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct IpamConf {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Ipv4Cidr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
}

/// `runtimeConfig` fields weir reads (capabilities).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RuntimeConfig {
    /// The device-info file of this attachment (network plumbing
    /// device-info spec, capability `CNIDeviceInfoFile`).
    #[serde(default, rename = "CNIDeviceInfoFile", skip_serializing_if = "Option::is_none")]
    pub device_info_file: Option<String>,
}

/// One entry of GC's `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The default socket of weir-control's CNI server.
pub const DEFAULT_SOCKET: &str = "/run/weir/cni.sock";
/// Where vhost-user sockets go unless `socketDir` says otherwise.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/weir/vhost";
/// Where CNI device-info files go unless the runtime names one.
pub const DEFAULT_DEVICE_INFO_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo/cni";

/// The network configuration weir-cni reads from stdin (the plugin's
/// object of a conflist, as the runtime hands it over). Fields the spec
/// or other plugins define and weir does not use are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    /// weir-control's CNI socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// The pods' interface MTU; default: the overlay's pod MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Every pod of this network gets a vhost-user port (DPDK pods).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vhost_user: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost_user_mode: Option<VhostMode>,
    /// Host directory of the vhost-user sockets (shared with DPDK pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_dir: Option<PathBuf>,
    /// Where device-info files go when the runtime names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_info_dir: Option<PathBuf>,
    /// A Contiv network (weir `Network` resource) instead of the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamConf>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub runtime_config: RuntimeConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_result: Option<Value>,
    #[serde(default, rename = "cni.dev/valid-attachments", skip_serializing_if = "Option::is_none")]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

impl NetConf {
    /// Parses stdin: not JSON is a decoding failure (6); a missing or
    /// mistyped field an invalid configuration (7); a version weir does not
    /// speak, incompatible (1).
    pub fn parse(stdin: &str) -> Result<NetConf, CniError> {
        let v: Value = serde_json::from_str(stdin).map_err(|e| {
            CniError::new(code::DECODING_FAILURE, format!("the network configuration is not JSON: {e}"))
        })?;
        if let Some(ver) = v.get("cniVersion").and_then(Value::as_str) {
            check_version(ver)?;
        }
        let c: NetConf = serde_json::from_value(v)
            .map_err(|e| CniError::new(code::INVALID_NETWORK_CONFIG, format!("network configuration: {e}")))?;
        if !valid_network_name(&c.name) {
            return Err(CniError::new(
                code::INVALID_NETWORK_CONFIG,
                format!("name = {:?}: not a network name (alphanumeric first, then [A-Za-z0-9_.-])", c.name),
            ));
        }
        if let Some(t) = c.ipam.as_ref().and_then(|i| i.type_.as_deref()) {
            if t != "weir" {
                return Err(CniError::new(
                    code::UNSUPPORTED_FIELD,
                    format!(
                        "ipam.type = {t:?}: weir allocates addresses itself (leave ipam.type out, or say \"weir\")"
                    ),
                ));
            }
        }
        if let Some(m) = c.mtu {
            if !(576..=9000).contains(&m) {
                return Err(CniError::new(code::INVALID_NETWORK_CONFIG, format!("mtu = {m}: want 576..=9000")));
            }
        }
        if let Some(n) = &c.network {
            if n.is_empty() {
                return Err(CniError::new(
                    code::INVALID_NETWORK_CONFIG,
                    "network = \"\": name a weir Network or leave it out",
                ));
            }
        }
        Ok(c)
    }
}

/// Refuses versions weir-cni does not speak (code 1).
pub fn check_version(v: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("cniVersion {v:?}: weir-cni speaks {}", SUPPORTED_VERSIONS.join(" and ")),
        ))
    }
}

/// `1.1.0` and later carry the interface MTU, `socketPath` and route attributes.
pub fn has_1_1_fields(version: &str) -> bool {
    version != "1.0.0"
}

/// VERSION's answer.
pub fn version_json(asked: Option<&str>) -> String {
    let v = asked.filter(|v| SUPPORTED_VERSIONS.contains(v)).unwrap_or(LATEST);
    serde_json::json!({ "cniVersion": v, "supportedVersions": SUPPORTED_VERSIONS }).to_string()
}

/// ADD's result (the fields weir fills).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// 1.1.0: the vhost-user socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<Ipv4Addr>,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

/// Checks a result document against the spec for `version`: required
/// fields and their types, CIDR addresses, interface indexes that point at
/// a sandbox interface, and no 1.1.0 fields in a 1.0.0 result. Returns
/// what is wrong, naming the field. Used by the tests (and by CHECK on a
/// `prevResult`).
pub fn check_result(v: &Value, version: &str) -> Result<(), String> {
    let obj = v.as_object().ok_or("the result is not an object")?;
    if obj.get("cniVersion").and_then(Value::as_str) != Some(version) {
        return Err(format!("cniVersion = {:?}, want {version:?}", obj.get("cniVersion")));
    }
    let known = ["cniVersion", "interfaces", "ips", "routes", "dns"];
    if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("{k}: not a result field"));
    }
    let ifaces = match obj.get("interfaces") {
        None => &[][..],
        Some(Value::Array(a)) => &a[..],
        Some(_) => return Err("interfaces: not a list".into()),
    };
    let mut if_fields = vec!["name", "mac", "sandbox"];
    if has_1_1_fields(version) {
        if_fields.extend(["mtu", "socketPath", "pciID"]);
    }
    for (i, f) in ifaces.iter().enumerate() {
        let o = f.as_object().ok_or(format!("interfaces[{i}]: not an object"))?;
        if let Some(k) = o.keys().find(|k| !if_fields.contains(&k.as_str())) {
            return Err(format!("interfaces[{i}].{k}: not an interface field of {version}"));
        }
        let name = o.get("name").and_then(Value::as_str).ok_or(format!("interfaces[{i}].name: missing"))?;
        if name.is_empty() {
            return Err(format!("interfaces[{i}].name: empty"));
        }
        if let Some(m) = o.get("mac") {
            let m = m.as_str().ok_or(format!("interfaces[{i}].mac: not a string"))?;
            m.parse::<weir_dataplane::wire::MacAddr>()
                .map_err(|_| format!("interfaces[{i}].mac = {m:?}: not a MAC"))?;
        }
        if let Some(m) = o.get("mtu") {
            if !m.as_u64().is_some_and(|m| m > 0 && m <= 65535) {
                return Err(format!("interfaces[{i}].mtu = {m}: not an MTU"));
            }
        }
        for k in ["sandbox", "socketPath"] {
            if o.get(k).is_some_and(|s| !s.is_string()) {
                return Err(format!("interfaces[{i}].{k}: not a string"));
            }
        }
    }
    let ips = obj.get("ips").and_then(Value::as_array).ok_or("ips: missing or not a list")?;
    for (i, ip) in ips.iter().enumerate() {
        let o = ip.as_object().ok_or(format!("ips[{i}]: not an object"))?;
        if let Some(k) = o.keys().find(|k| !["address", "gateway", "interface"].contains(&k.as_str())) {
            return Err(format!("ips[{i}].{k}: not an ips field of {version} (1.0.0 dropped \"version\")"));
        }
        let a = o.get("address").and_then(Value::as_str).ok_or(format!("ips[{i}].address: missing"))?;
        let (addr, len) = a.split_once('/').ok_or(format!("ips[{i}].address = {a:?}: not in CIDR notation"))?;
        addr.parse::<Ipv4Addr>().map_err(|_| format!("ips[{i}].address = {a:?}: not an address"))?;
        len.parse::<u8>().ok().filter(|l| *l <= 32).ok_or(format!("ips[{i}].address = {a:?}: bad prefix length"))?;
        if let Some(g) = o.get("gateway") {
            g.as_str()
                .and_then(|g| g.parse::<Ipv4Addr>().ok())
                .ok_or(format!("ips[{i}].gateway = {g}: not an address"))?;
        }
        if let Some(n) = o.get("interface") {
            let n = n.as_u64().ok_or(format!("ips[{i}].interface: not an index"))? as usize;
            let f = ifaces.get(n).ok_or(format!("ips[{i}].interface = {n}: there are {} interfaces", ifaces.len()))?;
            if f.get("sandbox").is_none() {
                return Err(format!("ips[{i}].interface = {n}: that interface has no sandbox"));
            }
        }
    }
    if let Some(routes) = obj.get("routes") {
        let routes = routes.as_array().ok_or("routes: not a list")?;
        let mut fields = vec!["dst", "gw"];
        if has_1_1_fields(version) {
            fields.extend(["mtu", "advmss", "priority", "table", "scope"]);
        }
        for (i, r) in routes.iter().enumerate() {
            let o = r.as_object().ok_or(format!("routes[{i}]: not an object"))?;
            if let Some(k) = o.keys().find(|k| !fields.contains(&k.as_str())) {
                return Err(format!("routes[{i}].{k}: not a route field of {version}"));
            }
            let d = o.get("dst").and_then(Value::as_str).ok_or(format!("routes[{i}].dst: missing"))?;
            d.parse::<Ipv4Cidr>().map_err(|e| format!("routes[{i}].dst: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::read(&move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn environment_is_checked_per_command() {
        let add = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc-1.x_y"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web"),
            ("CNI_PATH", "/opt/cni/bin"),
        ];
        let e = env(&add).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.args.get("K8S_POD_NAME").map(String::as_str), Some("web"));
        let code_of = |pairs: &[(&str, &str)]| env(pairs).unwrap_err();
        let e = code_of(&[("CNI_CONTAINERID", "x")]);
        assert_eq!((e.code, e.msg.as_str()), (4, "CNI_COMMAND: not set"));
        assert!(code_of(&[("CNI_COMMAND", "REBOOT")]).msg.contains("\"REBOOT\" is not one of"));
        let mut no_netns = add.to_vec();
        no_netns.retain(|(k, _)| *k != "CNI_NETNS");
        assert_eq!(code_of(&no_netns).msg, "CNI_NETNS: not set");
        // DEL without a namespace is fine (the spec: clean up what you can).
        no_netns[0] = ("CNI_COMMAND", "DEL");
        assert!(env(&no_netns).is_ok());
        let mut bad_id = add.to_vec();
        bad_id[1] = ("CNI_CONTAINERID", "-x");
        assert_eq!(code_of(&bad_id).code, code::INVALID_ENVIRONMENT);
        let mut bad_if = add.to_vec();
        bad_if[3] = ("CNI_IFNAME", "a-very-long-ifname");
        assert!(code_of(&bad_if).msg.starts_with("CNI_IFNAME"));
        bad_if[3] = ("CNI_IFNAME", "..");
        assert!(env(&bad_if).is_err());
        let mut bad_args = add.to_vec();
        bad_args[4] = ("CNI_ARGS", "novalue");
        assert!(code_of(&bad_args).msg.contains("\"novalue\" is not KEY=VALUE"));
        // VERSION, STATUS and GC need none of them.
        for c in ["VERSION", "STATUS", "GC"] {
            assert!(env(&[("CNI_COMMAND", c)]).is_ok(), "{c}");
        }
    }

    #[test]
    fn network_configuration_errors_have_the_spec_codes() {
        let ok = r#"{"cniVersion":"1.0.0","name":"weir","type":"weir-cni","extra":{"ignored":true}}"#;
        let c = NetConf::parse(ok).unwrap();
        assert_eq!((c.name.as_str(), c.vhost_user), ("weir", false));
        let err = |s: &str| NetConf::parse(s).unwrap_err();
        assert_eq!(err("{not json").code, code::DECODING_FAILURE);
        assert_eq!(err(r#"{"cniVersion":"0.4.0","name":"w","type":"weir-cni"}"#).code, code::INCOMPATIBLE_VERSION);
        assert_eq!(err(r#"{"cniVersion":"1.0.0","type":"weir-cni"}"#).code, code::INVALID_NETWORK_CONFIG);
        assert_eq!(err(r#"{"cniVersion":"1.0.0","name":"-w","type":"weir-cni"}"#).code, code::INVALID_NETWORK_CONFIG);
        let e = err(r#"{"cniVersion":"1.1.0","name":"w","type":"weir-cni","ipam":{"type":"host-local"}}"#);
        assert_eq!(e.code, code::UNSUPPORTED_FIELD);
        let e = err(r#"{"cniVersion":"1.1.0","name":"w","type":"weir-cni","mtu":70000}"#);
        assert_eq!(e.code, code::INVALID_NETWORK_CONFIG);
        let e = err(r#"{"cniVersion":"1.1.0","name":"w","type":"weir-cni","vhostUserMode":"both"}"#);
        assert_eq!(e.code, code::INVALID_NETWORK_CONFIG);
        let full = r#"{"cniVersion":"1.1.0","name":"w","type":"weir-cni","vhostUser":true,"vhostUserMode":"client",
            "socketDir":"/tmp/v","ipam":{"subnet":"10.1.0.0/24","gateway":"10.1.0.1"},
            "runtimeConfig":{"CNIDeviceInfoFile":"/tmp/d.json"},
            "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#;
        let c = NetConf::parse(full).unwrap();
        assert_eq!(c.vhost_user_mode, Some(VhostMode::Client));
        assert_eq!(c.runtime_config.device_info_file.as_deref(), Some("/tmp/d.json"));
        assert_eq!(c.valid_attachments.unwrap()[0].container_id, "a");
    }

    #[test]
    fn errors_and_versions_print_as_the_spec_says() {
        let e = CniError::new(7, "bad").details("more");
        let v: Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
        assert_eq!(v, serde_json::json!({"cniVersion":"1.0.0","code":7,"msg":"bad","details":"more"}));
        let v: Value = serde_json::from_str(&version_json(Some("1.0.0"))).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["supportedVersions"], serde_json::json!(["1.0.0", "1.1.0"]));
        let v: Value = serde_json::from_str(&version_json(Some("0.3.1"))).unwrap();
        assert_eq!(v["cniVersion"], LATEST);
    }

    #[test]
    fn the_result_checker_catches_what_the_spec_forbids() {
        let good = serde_json::json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "cni-1"}, {"name": "eth0", "mac": "0a:58:0a:01:00:05", "sandbox": "/run/netns/x", "mtu": 1450}],
            "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]
        });
        check_result(&good, "1.1.0").unwrap();
        let mut v10 = good.clone();
        v10["cniVersion"] = "1.0.0".into();
        assert_eq!(check_result(&v10, "1.0.0").unwrap_err(), "interfaces[1].mtu: not an interface field of 1.0.0");
        let mut b = good.clone();
        b["ips"][0]["interface"] = 0.into();
        assert!(check_result(&b, "1.1.0").unwrap_err().contains("has no sandbox"));
        let mut b = good.clone();
        b["ips"][0]["version"] = "4".into();
        assert!(check_result(&b, "1.1.0").unwrap_err().starts_with("ips[0].version"));
        let mut b = good.clone();
        b["ips"][0]["address"] = "10.1.0.5".into();
        assert!(check_result(&b, "1.1.0").is_err());
        let mut b = good;
        b["interfaces"][1]["mac"] = "nope".into();
        assert!(check_result(&b, "1.1.0").is_err());
    }
}
