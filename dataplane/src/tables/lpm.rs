//! Longest-prefix-match route table for IPv4.
//!
//! One hash map per prefix length present, probed from the longest length down.
//! Kubernetes nodes hold few distinct lengths (/32 pods, the node's pod CIDR,
//! remote nodes' CIDRs, a default), so a lookup is a handful of probes, and the
//! table is an ordinary value that can be rebuilt and published as part of an
//! immutable snapshot. The table is immutable once built; lookups never allocate.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::Ipv4Addr;

use super::cidr::Ipv4Cidr;

type Map<V> = HashMap<u32, V, BuildHasherDefault<super::FastHasher>>;

#[derive(Debug, Clone)]
pub struct RouteTable<V> {
    /// (prefix length, routes of that length), longest first.
    levels: Vec<(u8, Map<V>)>,
    len: usize,
}

impl<V> Default for RouteTable<V> {
    fn default() -> Self {
        RouteTable { levels: Vec::new(), len: 0 }
    }
}

impl<V> RouteTable<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the route for `prefix`; returns the value it replaced.
    pub fn insert(&mut self, prefix: Ipv4Cidr, value: V) -> Option<V> {
        let key = u32::from(prefix.addr());
        let pos = match self.levels.binary_search_by(|(l, _)| prefix.len().cmp(l)) {
            Ok(i) => i,
            Err(i) => {
                self.levels.insert(i, (prefix.len(), Map::default()));
                i
            }
        };
        let old = self.levels[pos].1.insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, prefix: Ipv4Cidr) -> Option<V> {
        let pos = self.levels.binary_search_by(|(l, _)| prefix.len().cmp(l)).ok()?;
        let old = self.levels[pos].1.remove(&u32::from(prefix.addr()));
        if old.is_some() {
            self.len -= 1;
            if self.levels[pos].1.is_empty() {
                self.levels.remove(pos);
            }
        }
        old
    }

    /// The value of the longest prefix that contains `addr`.
    #[inline]
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<&V> {
        let a = u32::from(addr);
        for (len, map) in &self.levels {
            let mask = if *len == 0 { 0 } else { u32::MAX << (32 - u32::from(*len)) };
            if let Some(v) = map.get(&(a & mask)) {
                return Some(v);
            }
        }
        None
    }

    /// The exact entry for `prefix`.
    pub fn get(&self, prefix: Ipv4Cidr) -> Option<&V> {
        let pos = self.levels.binary_search_by(|(l, _)| prefix.len().cmp(l)).ok()?;
        self.levels[pos].1.get(&u32::from(prefix.addr()))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All routes, longest prefixes first, in no particular order within a length.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Cidr, &V)> {
        self.levels.iter().flat_map(|(len, map)| {
            map.iter().map(move |(k, v)| (Ipv4Cidr::new(Ipv4Addr::from(*k), *len).expect("len <= 32"), v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = RouteTable::new();
        t.insert(c("0.0.0.0/0"), "default");
        t.insert(c("10.1.0.0/16"), "node-cidr");
        t.insert(c("10.1.2.0/24"), "subnet");
        t.insert(c("10.1.2.7/32"), "pod");
        assert_eq!(t.lookup("10.1.2.7".parse().unwrap()), Some(&"pod"));
        assert_eq!(t.lookup("10.1.2.8".parse().unwrap()), Some(&"subnet"));
        assert_eq!(t.lookup("10.1.3.8".parse().unwrap()), Some(&"node-cidr"));
        assert_eq!(t.lookup("192.0.2.1".parse().unwrap()), Some(&"default"));
        assert_eq!(t.len(), 4);
        assert_eq!(t.remove(c("10.1.2.7/32")), Some("pod"));
        assert_eq!(t.lookup("10.1.2.7".parse().unwrap()), Some(&"subnet"));
        t.remove(c("0.0.0.0/0"));
        assert_eq!(t.lookup("192.0.2.1".parse().unwrap()), None);
        assert_eq!(t.iter().count(), 2);
    }

    /// Against a brute-force reference over random prefixes and addresses.
    #[test]
    fn matches_linear_scan() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut t = RouteTable::new();
        let mut all = Vec::new();
        for i in 0..500u32 {
            let len = [0u8, 8, 16, 20, 24, 28, 32][(rnd() % 7) as usize];
            let p = Ipv4Cidr::new(Ipv4Addr::from((rnd() as u32) & 0x0aff_ffff), len).unwrap();
            t.insert(p, i);
            all.retain(|(q, _)| *q != p);
            all.push((p, i));
        }
        for _ in 0..20_000 {
            let a = Ipv4Addr::from((rnd() as u32) & 0x0aff_ffff);
            let want = all.iter().filter(|(p, _)| p.contains(a)).max_by_key(|(p, _)| p.len()).map(|(_, v)| v);
            assert_eq!(t.lookup(a), want, "{a}");
        }
    }
}
