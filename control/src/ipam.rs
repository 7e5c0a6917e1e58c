//! Pod address management for one node: which address of which network
//! each attachment (container ID + interface name) holds, and what else
//! weir-control must remember about it, in one small JSON file.
//!
//! Promises:
//! - the file is replaced atomically (written beside, synced, renamed, the
//!   directory synced): a crash leaves the old state or the new one, never
//!   half of either;
//! - every change is on disk before the call that made it returns, so a
//!   restarted weir-control neither leaks an address (it still knows every
//!   holder) nor hands one out twice;
//! - an address is held by at most one attachment per network; the network
//!   address, the broadcast address, the gateway and addresses the caller
//!   reserves are never handed out;
//! - addresses are handed out round-robin from the last one given, so a
//!   released address is reused as late as possible (stale ARP entries and
//!   flows of the old pod have time to go).
//!
//! A state file that does not parse is an error: weir-control then refuses
//! to start its CNI server rather than hand out addresses it may not own.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use weir_dataplane::tables::cidr::Ipv4Cidr;

/// The file's name inside the IPAM directory.
pub const STATE_FILE: &str = "state.json";
const FORMAT_VERSION: u32 = 1;

/// What the store keeps per attachment: anything serializable that says
/// which network and address it holds.
pub trait Record: Serialize + DeserializeOwned + Clone {
    /// The network the address belongs to ("default" or a Contiv network).
    fn network(&self) -> &str;
    fn ip(&self) -> Ipv4Addr;
}

/// The key of an attachment: container ID and interface name.
pub fn key(container_id: &str, ifname: &str) -> String {
    format!("{container_id}/{ifname}")
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "R: Record")]
struct State<R> {
    version: u32,
    /// By [`key`].
    attachments: BTreeMap<String, R>,
    /// The last address handed out, per network.
    #[serde(default)]
    last: BTreeMap<String, Ipv4Addr>,
}

/// The persisted allocations of a node.
pub struct Store<R: Record> {
    dir: PathBuf,
    state: State<R>,
}

impl<R: Record> Store<R> {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store<R>, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                let s: State<R> = serde_json::from_slice(&bytes).map_err(|e| {
                    format!("{}: does not parse ({e}); refusing to guess which addresses are free", path.display())
                })?;
                if s.version != FORMAT_VERSION {
                    return Err(format!(
                        "{}: format version {} (this weir-control writes {FORMAT_VERSION})",
                        path.display(),
                        s.version
                    ));
                }
                s
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                State { version: FORMAT_VERSION, attachments: BTreeMap::new(), last: BTreeMap::new() }
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        // A temporary file left by a crash mid-write is not the state.
        let _ = std::fs::remove_file(dir.join(format!("{STATE_FILE}.tmp")));
        Ok(Store { dir: dir.to_path_buf(), state })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub fn get(&self, key: &str) -> Option<&R> {
        self.state.attachments.get(key)
    }

    /// Every attachment, by key.
    pub fn all(&self) -> impl Iterator<Item = (&String, &R)> {
        self.state.attachments.iter()
    }

    pub fn len(&self) -> usize {
        self.state.attachments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.state.attachments.is_empty()
    }

    /// Addresses of `network` held now.
    fn held(&self, network: &str) -> HashSet<Ipv4Addr> {
        self.state.attachments.values().filter(|r| r.network() == network).map(|r| r.ip()).collect()
    }

    /// The next free address of `network` (`subnet`, `gateway`), after the
    /// last one handed out; `reserved` are never picked. Picks only: the
    /// address is held once [`Store::insert`] records it.
    pub fn pick(
        &self,
        network: &str,
        subnet: Ipv4Cidr,
        gateway: Ipv4Addr,
        reserved: &HashSet<Ipv4Addr>,
    ) -> Result<Ipv4Addr, String> {
        let held = self.held(network);
        let hosts =
            host_range(subnet).ok_or_else(|| format!("network {network}: subnet {subnet} has no host addresses"))?;
        let (first, last) = (u32::from(hosts.0), u32::from(hosts.1));
        let size = last - first + 1;
        let start = match self.state.last.get(network).map(|a| u32::from(*a)) {
            Some(a) if (first..=last).contains(&a) => a - first + 1,
            _ => 0,
        };
        for i in 0..size {
            let ip = Ipv4Addr::from(first + (start + i) % size);
            if ip != gateway && !held.contains(&ip) && !reserved.contains(&ip) {
                return Ok(ip);
            }
        }
        Err(format!("network {network}: no free address left in {subnet} ({} held)", held.len()))
    }

    /// How many addresses of `network` are free.
    pub fn free(&self, network: &str, subnet: Ipv4Cidr, gateway: Ipv4Addr) -> u32 {
        let Some((a, b)) = host_range(subnet) else { return 0 };
        let held = self.held(network);
        let mut n = u32::from(b) - u32::from(a) + 1;
        if subnet.contains(gateway) && gateway >= a && gateway <= b {
            n -= 1;
        }
        n.saturating_sub(held.iter().filter(|ip| subnet.contains(**ip) && **ip != gateway).count() as u32)
    }

    /// Records `rec` under `key` (replacing what the key held) and writes
    /// the state. Refused if another attachment holds the address.
    pub fn insert(&mut self, key: &str, rec: R) -> Result<(), String> {
        if let Some((k, _)) = self
            .state
            .attachments
            .iter()
            .find(|(k, r)| k.as_str() != key && r.network() == rec.network() && r.ip() == rec.ip())
        {
            return Err(format!("address {} of network {} is held by {k}", rec.ip(), rec.network()));
        }
        let old = self.state.attachments.insert(key.to_string(), rec.clone());
        let old_last = self.state.last.insert(rec.network().to_string(), rec.ip());
        if let Err(e) = self.save() {
            // Memory stays what the disk says.
            match old {
                Some(o) => self.state.attachments.insert(key.to_string(), o),
                None => self.state.attachments.remove(key),
            };
            match old_last {
                Some(l) => self.state.last.insert(rec.network().to_string(), l),
                None => self.state.last.remove(rec.network()),
            };
            return Err(e);
        }
        Ok(())
    }

    /// Forgets `key` (nothing if it is not there) and writes the state.
    pub fn remove(&mut self, key: &str) -> Result<Option<R>, String> {
        let Some(old) = self.state.attachments.remove(key) else { return Ok(None) };
        if let Err(e) = self.save() {
            self.state.attachments.insert(key.to_string(), old);
            return Err(e);
        }
        Ok(Some(old))
    }

    fn save(&self) -> Result<(), String> {
        use std::io::Write;
        let text = serde_json::to_vec_pretty(&self.state).map_err(|e| format!("cannot encode the IPAM state: {e}"))?;
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let path = self.path();
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// First and last host address of `subnet` (all of a /31 or /32).
fn host_range(subnet: Ipv4Cidr) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let base = u32::from(subnet.addr()) & subnet.mask();
    let len = subnet.len();
    if len >= 31 {
        let last = base | !subnet.mask();
        return Some((Ipv4Addr::from(base), Ipv4Addr::from(last)));
    }
    let bcast = base | !subnet.mask();
    Some((Ipv4Addr::from(base + 1), Ipv4Addr::from(bcast - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Rec {
        net: String,
        ip: Ipv4Addr,
    }

    impl Record for Rec {
        fn network(&self) -> &str {
            &self.net
        }
        fn ip(&self) -> Ipv4Addr {
            self.ip
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-ipam-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    const GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

    fn net() -> Ipv4Cidr {
        "10.1.0.0/29".parse().unwrap()
    }

    fn take(s: &mut Store<Rec>, k: &str) -> Result<Ipv4Addr, String> {
        let ip = s.pick("default", net(), GW, &HashSet::new())?;
        s.insert(k, Rec { net: "default".into(), ip })?;
        Ok(ip)
    }

    #[test]
    fn hands_out_every_host_address_once_then_refuses() {
        let d = dir("full");
        let mut s: Store<Rec> = Store::open(&d).unwrap();
        // /29: .1 is the gateway, .0 and .7 are not hosts: .2-.6.
        let got: Vec<Ipv4Addr> = (0..5).map(|i| take(&mut s, &key("c", &format!("eth{i}"))).unwrap()).collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|h| Ipv4Addr::new(10, 1, 0, h)).collect();
        assert_eq!(got, want);
        assert_eq!(s.free("default", net(), GW), 0);
        let e = take(&mut s, "c/eth9").unwrap_err();
        assert!(e.contains("no free address left in 10.1.0.0/29"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_restart_keeps_every_holder_and_the_round_robin() {
        let d = dir("restart");
        let mut s: Store<Rec> = Store::open(&d).unwrap();
        let a = take(&mut s, "a/eth0").unwrap();
        let b = take(&mut s, "b/eth0").unwrap();
        s.remove("a/eth0").unwrap();
        drop(s);
        let mut s: Store<Rec> = Store::open(&d).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.get("b/eth0").map(|r| r.ip), Some(b));
        // Not b (held), not a (released most recently: reused last).
        let c = take(&mut s, "c/eth0").unwrap();
        assert!(c != a && c != b, "{a} {b} {c}");
        assert_eq!(c, Ipv4Addr::new(10, 1, 0, 4));
        // Reserved addresses are skipped.
        let r: HashSet<Ipv4Addr> = [Ipv4Addr::new(10, 1, 0, 5)].into();
        assert_eq!(s.pick("default", net(), GW, &r).unwrap(), Ipv4Addr::new(10, 1, 0, 6));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn one_address_one_holder_per_network() {
        let d = dir("dup");
        let mut s: Store<Rec> = Store::open(&d).unwrap();
        let ip = Ipv4Addr::new(10, 1, 0, 2);
        s.insert("a/eth0", Rec { net: "default".into(), ip }).unwrap();
        let e = s.insert("b/eth0", Rec { net: "default".into(), ip }).unwrap_err();
        assert_eq!(e, "address 10.1.0.2 of network default is held by a/eth0");
        // The same address in another network is another address.
        s.insert("b/eth0", Rec { net: "poc".into(), ip }).unwrap();
        // Re-recording a key is not a conflict with itself.
        s.insert("a/eth0", Rec { net: "default".into(), ip }).unwrap();
        assert_eq!(Store::<Rec>::open(&d).unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_corrupt_file_is_refused_and_a_stale_temp_file_ignored() {
        let d = dir("corrupt");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("state.json.tmp"), b"{half").unwrap();
        let s: Store<Rec> = Store::open(&d).unwrap();
        assert!(s.is_empty());
        assert!(!d.join("state.json.tmp").exists());
        std::fs::write(d.join(STATE_FILE), b"{\"version\":1,\"attach").unwrap();
        let e = Store::<Rec>::open(&d).err().unwrap();
        assert!(e.contains("does not parse"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn host_ranges() {
        let r = |s: &str| host_range(s.parse().unwrap()).unwrap();
        assert_eq!(r("10.1.0.0/24"), (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 254)));
        assert_eq!(r("10.1.0.4/30"), (Ipv4Addr::new(10, 1, 0, 5), Ipv4Addr::new(10, 1, 0, 6)));
        assert_eq!(r("10.1.0.4/31"), (Ipv4Addr::new(10, 1, 0, 4), Ipv4Addr::new(10, 1, 0, 5)));
    }
}
