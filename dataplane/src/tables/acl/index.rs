//! The index of one pod direction: finds the first rule that matches a
//! packet without trying the rules one by one.
//!
//! The direction's rules are bit positions, in evaluation order. Each field
//! of a packet (peer address, destination port, protocol) selects the set
//! of rules that accept its value; the rules accepting the packet are the
//! intersection of the three sets, and its lowest bit is the deciding rule
//! (none: the default). Rules are judged only by what they store, so the
//! answer is the scan's.
//!
//! - **Protocol**: 256 entries, each naming a dense set (one bit per rule):
//!   the rules of any protocol and those of this one.
//! - **Port**: the port space is cut at every bound of the rules' port
//!   ranges into elementary intervals; each holds the set of the rules with
//!   ports that cover it, and a binary search over the interval starts finds
//!   the packet's. The rules without ports are one dense set, in every
//!   port's set; for a packet whose protocol has no ports it is the whole
//!   set (a rule that lists ports never matches such a packet).
//! - **Peer address**: cut likewise at every bound of the rules' address
//!   ranges (`except` blocks already subtracted), each interval with the set
//!   of the rules naming a peer that covers it. The rules with any peer are
//!   one more set, merged in at lookup.
//!
//! Port and address sets are sparse — only their non-zero 64-rule words,
//! in order, as (word number, bits) pairs — since every block or port range
//! gives its own set and a rule usually names few; a port set whose sparse
//! form would be no smaller than the dense one (many rules on one port) is
//! stored dense instead, with the rules without ports in it. Identical
//! sets are stored once, and adjacent intervals with the same set are one.
//! A lookup walks the words of the packet's address set (merged with the
//! any-peer set) in order, ANDs each with the protocol's word and the port
//! side's (a dense read, or the rules without ports plus the port's sparse
//! set walked alongside), and stops at the first non-zero word.
//!
//! Cost of a lookup: two binary searches (over the port and the address
//! intervals, each an 8-byte pair so the set's offset comes with the bound),
//! one table read for the protocol, then a few instructions per non-zero
//! word of the sets up to the deciding one — independent of how many rules
//! come before it. Building is O(E log E + I · w) for E range bounds, I
//! intervals and w non-zero words per set, bounded by the work and memory
//! budgets of [`IndexLimits`]; a direction that would pass them keeps the
//! scan.

use std::collections::HashMap;
use std::mem::size_of;

use super::{has_ports, Rule};

/// When directions get an index and what they may spend on it. `Default`
/// is what [`AclTable::build`](super::AclTable::build) uses; tests lower it.
#[derive(Debug, Clone, Copy)]
pub(super) struct IndexLimits {
    /// Directions with fewer rules keep the scan.
    pub min_rules: usize,
    pub direction_bytes: usize,
    pub table_bytes: usize,
    pub direction_work: usize,
    pub table_work: usize,
}

impl Default for IndexLimits {
    fn default() -> Self {
        IndexLimits {
            min_rules: super::INDEX_MIN_RULES,
            direction_bytes: super::MAX_INDEX_BYTES_PER_DIRECTION,
            table_bytes: super::MAX_INDEX_BYTES,
            direction_work: super::MAX_INDEX_WORK_PER_DIRECTION,
            table_work: super::MAX_INDEX_WORK,
        }
    }
}

/// Why a direction has no index although it has enough rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OverBudget {
    Bytes,
    Work,
}

/// See the module doc.
#[derive(Debug)]
pub(super) struct DirIndex {
    /// 64-rule words per dense set.
    words: usize,
    /// Protocol number → its dense set, numbered in `words` (256 entries;
    /// the protocol sets come first in `dense`, so they number at most 257).
    proto: Vec<u16>,
    /// Offset of the dense set of the rules without ports (in every port's
    /// set, and the whole set for a packet without ports).
    portless: u32,
    /// Port intervals: (first port, offset of the sparse set of the rules
    /// with ports that cover it), from port 0.
    ports: Vec<(u32, u32)>,
    /// Dense sets, `words` each, each distinct one once: the protocols',
    /// then the rules without ports.
    dense: Vec<u64>,
    /// Address intervals: (first address, offset of the sparse set of the
    /// rules that name a peer covering it), from 0.0.0.0. The set's offset
    /// sits next to the bound the search reads, so it costs no extra
    /// cache line.
    addrs: Vec<(u32, u32)>,
    /// The sparse set of the rules with any peer; `None`: there are none.
    any_peer: Option<u32>,
    /// Sparse sets, each a run of pairs: the word number (with [`LAST`] on
    /// the set's last pair), then its bits. The empty set is one pair with
    /// no bits.
    sparse: Vec<u64>,
}

/// What building spends, checked as it goes.
struct Budget {
    work: usize,
    max_work: usize,
    max_bytes: usize,
}

impl Budget {
    fn spend(&mut self, n: usize) -> Result<(), OverBudget> {
        self.work = self.work.saturating_add(n);
        if self.work > self.max_work {
            Err(OverBudget::Work)
        } else {
            Ok(())
        }
    }
}

// A rule bit of `event` takes 15 bits.
const _: () = assert!(super::MAX_RULES_PER_DIRECTION <= 1 << 15);

/// Sort key of one range bound: position, rule bit, whether the rule
/// starts (1) or stops (0) accepting there.
fn event(pos: u64, bit: usize, on: bool) -> u64 {
    pos << 16 | (bit as u64) << 1 | u64::from(on)
}

/// A set of rules being swept, with a summary bit per non-zero word so its
/// non-zero words are found without reading the zero ones.
struct Sweep {
    cur: Vec<u64>,
    nonzero: Vec<u64>,
}

impl Sweep {
    fn new(words: usize) -> Self {
        Sweep { cur: vec![0; words], nonzero: vec![0; words.div_ceil(64)] }
    }

    fn apply(&mut self, ev: u64) {
        let bit = ((ev >> 1) & 0x7fff) as usize;
        let (w, b) = (bit / 64, bit % 64);
        let (Some(word), Some(summary)) = (self.cur.get_mut(w), self.nonzero.get_mut(w / 64)) else { return };
        if ev & 1 == 1 {
            *word |= 1 << b;
        } else {
            *word &= !(1 << b);
        }
        if *word == 0 {
            *summary &= !(1 << (w % 64));
        } else {
            *summary |= 1 << (w % 64);
        }
    }

    /// The non-zero words, in order, into `out`.
    fn sparse(&self, out: &mut Vec<(u32, u64)>) {
        out.clear();
        for (si, &s) in self.nonzero.iter().enumerate() {
            let mut s = s;
            while s != 0 {
                let w = si * 64 + s.trailing_zeros() as usize;
                s &= s - 1;
                out.push((w as u32, self.cur.get(w).copied().unwrap_or(0)));
            }
        }
    }
}

impl DirIndex {
    /// Indexes `rules` (one direction, in evaluation order); `addrs` and
    /// `ports` are the table's range stores their spans point into. `work`
    /// is what the table has spent so far on indexes, and is increased.
    pub(super) fn build(
        rules: &[Rule],
        addrs: &[(u32, u32)],
        ports: &[(u16, u16)],
        max_bytes: usize,
        max_work: usize,
        work: &mut usize,
    ) -> Result<DirIndex, OverBudget> {
        let mut budget = Budget { work: 0, max_work, max_bytes };
        let r = Self::build_in(rules, addrs, ports, &mut budget);
        *work = work.saturating_add(budget.work);
        r
    }

    fn build_in(
        rules: &[Rule],
        addrs: &[(u32, u32)],
        ports: &[(u16, u16)],
        budget: &mut Budget,
    ) -> Result<DirIndex, OverBudget> {
        let words = rules.len().div_ceil(64);
        // Refuse cheaply what cannot fit: every range bound is an event.
        let bounds: usize = rules
            .iter()
            .map(|r| 2 * (r.peers.map_or(0, |s| s.len as usize) + r.ports.map_or(0, |s| s.len as usize)))
            .sum();
        budget.spend(bounds)?;
        let mut ix = DirIndex {
            words,
            proto: Vec::with_capacity(256),
            portless: 0,
            ports: Vec::new(),
            dense: Vec::new(),
            addrs: Vec::new(),
            any_peer: None,
            sparse: Vec::new(),
        };
        let mut dense_seen: HashMap<Vec<u64>, u32> = HashMap::new();
        let set_of = |pred: &dyn Fn(&Rule) -> bool| {
            let mut s = vec![0u64; words];
            for (i, r) in rules.iter().enumerate() {
                if pred(r) {
                    if let Some(w) = s.get_mut(i / 64) {
                        *w |= 1 << (i % 64);
                    }
                }
            }
            s
        };

        // Protocols.
        let any_proto = set_of(&|r| r.proto.is_none());
        let mut by_proto: HashMap<u8, Vec<u64>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            if let Some(p) = r.proto {
                let s = by_proto.entry(p).or_insert_with(|| any_proto.clone());
                if let Some(w) = s.get_mut(i / 64) {
                    *w |= 1 << (i % 64);
                }
            }
        }
        budget.spend((by_proto.len() + 1) * words)?;
        let any_off = ix.intern_dense(&mut dense_seen, &any_proto, budget)?;
        for p in 0..=255u8 {
            let off = match by_proto.get(&p) {
                Some(s) => ix.intern_dense(&mut dense_seen, s, budget)?,
                None => any_off,
            };
            // At most 257 sets so far, each `words` long.
            ix.proto.push((off as usize).checked_div(words).unwrap_or(0) as u16);
        }

        // Ports: the rules without ports, dense (they are in every port's
        // set); those with ports, sparse per port interval.
        let portless = set_of(&|r| r.ports.is_none());
        budget.spend(words)?;
        ix.portless = ix.intern_dense(&mut dense_seen, &portless, budget)?;
        let mut sparse_seen: HashMap<Vec<(u32, u64)>, u32> = HashMap::new();
        let mut events = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            for &(s, e) in r.ports.map_or(&[][..], |span| span.of(ports)) {
                events.push(event(u64::from(s), i, true));
                if e < u16::MAX {
                    events.push(event(u64::from(e) + 1, i, false));
                }
            }
        }
        ix.ports = ix.intervals(&mut events, &mut sparse_seen, budget, Some((&portless, &mut dense_seen)))?;

        // Addresses: the rules with any peer, then those naming peers per
        // address interval.
        let mut scratch = Vec::new();
        let mut sweep = Sweep::new(words);
        for (i, r) in rules.iter().enumerate() {
            if r.peers.is_none() {
                sweep.apply(event(0, i, true));
            }
        }
        sweep.sparse(&mut scratch);
        if !scratch.is_empty() {
            ix.any_peer = Some(ix.intern_sparse(&mut sparse_seen, &scratch, budget)?);
        }
        events.clear();
        for (i, r) in rules.iter().enumerate() {
            for &(s, e) in r.peers.map_or(&[][..], |span| span.of(addrs)) {
                events.push(event(u64::from(s), i, true));
                if e < u32::MAX {
                    events.push(event(u64::from(e) + 1, i, false));
                }
            }
        }
        ix.addrs = ix.intervals(&mut events, &mut sparse_seen, budget, None)?;
        ix.shrink();
        if ix.bytes() > budget.max_bytes {
            return Err(OverBudget::Bytes);
        }
        Ok(ix)
    }

    /// Sweeps range bound `events` from position 0 up: the elementary
    /// intervals, each (first position, offset of its sparse set), adjacent
    /// ones with the same set merged. With `dense` (the port side: the set
    /// of the rules without ports, and the dense sets stored so far), a set
    /// whose sparse form would be at least as big as a dense one is stored
    /// dense, with those rules in it, and its offset marked [`DENSE`].
    fn intervals(
        &mut self,
        events: &mut [u64],
        seen: &mut HashMap<Vec<(u32, u64)>, u32>,
        budget: &mut Budget,
        mut dense: Option<(&[u64], &mut DenseSeen)>,
    ) -> Result<Vec<(u32, u32)>, OverBudget> {
        events.sort_unstable();
        let mut sweep = Sweep::new(self.words);
        let mut scratch = Vec::new();
        let mut out: Vec<(u32, u32)> = Vec::new();
        let mut at = 0;
        let mut first = true;
        loop {
            // The interval starting at `pos`: 0 first, then each bound.
            let pos = if first { 0 } else { events.get(at).map_or(u64::MAX, |e| e >> 16) };
            if pos == u64::MAX {
                break;
            }
            first = false;
            while let Some(&e) = events.get(at).filter(|&&e| e >> 16 == pos) {
                sweep.apply(e);
                at += 1;
            }
            sweep.sparse(&mut scratch);
            budget.spend(scratch.len() + 1)?;
            let off = match dense.as_mut() {
                Some((base, dense_seen)) if 2 * scratch.len() >= self.words => {
                    budget.spend(self.words)?;
                    let set: Vec<u64> = base.iter().zip(&sweep.cur).map(|(a, b)| a | b).collect();
                    self.intern_dense(dense_seen, &set, budget)? | DENSE
                }
                _ => self.intern_sparse(seen, &scratch, budget)?,
            };
            if out.last().map(|p| p.1) != Some(off) {
                // Bounds are below 2^32: a position past u32::MAX has no event.
                out.push((pos as u32, off));
            }
        }
        Ok(out)
    }

    fn intern_dense(
        &mut self,
        seen: &mut HashMap<Vec<u64>, u32>,
        set: &[u64],
        budget: &Budget,
    ) -> Result<u32, OverBudget> {
        if let Some(&off) = seen.get(set) {
            return Ok(off);
        }
        if (self.dense.len() + set.len() + self.sparse.len()) * 8 > budget.max_bytes {
            return Err(OverBudget::Bytes);
        }
        let off = self.dense.len() as u32;
        self.dense.extend_from_slice(set);
        seen.insert(set.to_vec(), off);
        Ok(off)
    }

    fn intern_sparse(
        &mut self,
        seen: &mut HashMap<Vec<(u32, u64)>, u32>,
        set: &[(u32, u64)],
        budget: &Budget,
    ) -> Result<u32, OverBudget> {
        if let Some(&off) = seen.get(set) {
            return Ok(off);
        }
        let grown = self.dense.len() + self.sparse.len() + 2 * set.len().max(1) + self.addrs.len();
        if grown * 8 > budget.max_bytes {
            return Err(OverBudget::Bytes);
        }
        let off = self.sparse.len() as u32;
        if set.is_empty() {
            self.sparse.extend([LAST, 0]);
        }
        for (k, &(w, b)) in set.iter().enumerate() {
            let last = if k + 1 == set.len() { LAST } else { 0 };
            self.sparse.extend([u64::from(w) | last, b]);
        }
        seen.insert(set.to_vec(), off);
        Ok(off)
    }

    fn shrink(&mut self) {
        self.proto.shrink_to_fit();
        self.ports.shrink_to_fit();
        self.dense.shrink_to_fit();
        self.addrs.shrink_to_fit();
        self.sparse.shrink_to_fit();
    }

    /// Heap bytes, and the struct itself.
    pub(super) fn bytes(&self) -> usize {
        size_of::<DirIndex>()
            + self.proto.capacity() * 2
            + self.ports.capacity() * 8
            + self.dense.capacity() * 8
            + self.addrs.capacity() * 8
            + self.sparse.capacity() * 8
    }

    /// Intervals of the address and port spaces.
    pub(super) fn shape(&self) -> (usize, usize) {
        (self.addrs.len(), self.ports.len())
    }

    /// The position (in the direction's evaluation order) of the first rule
    /// accepting the packet; `None`: no rule does.
    #[inline]
    pub(super) fn first(&self, peer: u32, proto: u8, port: u16) -> Option<u32> {
        let q = usize::from(*self.proto.get(usize::from(proto))?) * self.words;
        // The rules with ports that accept this one (none for a packet
        // without ports), walked along with the address sets' words.
        // A dense port set holds the rules without ports too.
        let (mut port_base, mut ported) = (self.portless as usize, SetWords { sparse: &[], at: 0 });
        if has_ports(proto) {
            let port = u32::from(port);
            let i = self.ports.partition_point(|&(s, _)| s <= port).wrapping_sub(1);
            let off = self.ports.get(i)?.1;
            if off & DENSE != 0 {
                port_base = (off & !DENSE) as usize;
            } else {
                ported.sparse = &self.sparse;
                ported.at = off as usize;
            }
        }
        let mut ported_at = ported.next();
        let i = self.addrs.partition_point(|&(s, _)| s <= peer).wrapping_sub(1);
        let a = self.addrs.get(i)?.1;
        // The rules of this word (words come in increasing order) that
        // accept the port and the protocol too.
        let mut hit = |word: u32, bits: u64| {
            let k = word as usize;
            let mut found = bits & self.dense.get(q + k).copied().unwrap_or(0);
            if found == 0 {
                return None;
            }
            let mut ports = self.dense.get(port_base + k).copied().unwrap_or(0);
            while let Some((w, b)) = ported_at {
                if w > word {
                    break;
                }
                if w == word {
                    ports |= b;
                }
                ported_at = ported.next();
            }
            found &= ports;
            (found != 0).then(|| word * 64 + found.trailing_zeros())
        };
        let mut a = SetWords { sparse: &self.sparse, at: a as usize };
        let Some(x) = self.any_peer else { return a.find_map(|(w, b)| hit(w, b)) };
        // Merge the address set with the any-peer set, word by word.
        let mut x = SetWords { sparse: &self.sparse, at: x as usize };
        let (mut na, mut nx) = (a.next(), x.next());
        loop {
            let word = match (na, nx) {
                (None, None) => return None,
                (Some((w, _)), None) | (None, Some((w, _))) => w,
                (Some((wa, _)), Some((wx, _))) => wa.min(wx),
            };
            let mut bits = 0;
            if let Some((_, b)) = na.filter(|&(w, _)| w == word) {
                bits |= b;
                na = a.next();
            }
            if let Some((_, b)) = nx.filter(|&(w, _)| w == word) {
                bits |= b;
                nx = x.next();
            }
            if let Some(pos) = hit(word, bits) {
                return Some(pos);
            }
        }
    }
}

/// The dense sets stored so far, to their offsets.
type DenseSeen = HashMap<Vec<u64>, u32>;

/// Marks the last pair of a sparse set.
const LAST: u64 = 1 << 32;
/// Marks a port interval's set as dense (offsets stay below 2^31: the
/// budgets are far smaller).
const DENSE: u32 = 1 << 31;

/// The (word, bits) pairs of one sparse set.
struct SetWords<'a> {
    sparse: &'a [u64],
    at: usize,
}

impl Iterator for SetWords<'_> {
    type Item = (u32, u64);

    #[inline]
    fn next(&mut self) -> Option<(u32, u64)> {
        let head = *self.sparse.get(self.at)?;
        let bits = *self.sparse.get(self.at + 1)?;
        self.at = if head & LAST != 0 { usize::MAX } else { self.at + 2 };
        Some((head as u32, bits))
    }
}
