//! The flow table (connection tracking for NAT), shared by every worker,
//! lock-free for readers and writers.
//!
//! A flow has two entries, one per direction, each keyed by the 5-tuple as it
//! arrives on the wire and holding the rewrite that direction needs (the
//! original direction: destination VIP:port → backend; the reply direction:
//! source backend → VIP:port). A reply that arrives on another worker than
//! the original finds its entry like any other: the table is shared.
//!
//! Layout: a fixed array of slots (the capacity, a power of two, is chosen
//! at start and never grows: a full table is a counted drop, not an
//! allocation on the packet path). A key hashes to two windows of slots
//! ([`PROBE`] slots in all) and may live in any of them. Every field of a slot is an `AtomicU64`, and
//! a per-slot sequence number makes each slot a seqlock: a writer claims a
//! slot by moving its sequence from even to odd with a compare-and-swap,
//! writes, and makes it even again; a reader reads the sequence, the
//! fields, and the sequence again, and retries if either was odd or they
//! differ. No locks, no `unsafe`, no torn entries. The last-seen time is a
//! plain atomic store outside the seqlock (readers tolerate it moving).
//! Beside the slots, one tag byte a slot (0: never used; else 7 bits of the
//! key it holds or held) lets a probe read only the slots that may hold its
//! key: a miss reads its two windows' 32 tags, not 32 slots.
//!
//! The slots may live in mapped memory (`dpdk::shm`): 2 MiB-aligned and
//! advised for huge pages, and, with a file behind them, kept across a
//! restart (`flowstate`).
//!
//! Entries expire: a lookup treats an entry past its deadline as absent, and
//! an insert may reuse its slot. Time is a caller-supplied `now` in
//! milliseconds (workers use a coarse clock read once per burst).

use std::net::Ipv4Addr;
use std::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};

/// Slots a key may occupy: two windows of `PROBE / 2` consecutive slots,
/// at two independent positions (two-choice hashing keeps the longest run
/// short even when the table is half full).
pub const PROBE: usize = 32;

/// A connection as it appears on the wire in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

impl FlowKey {
    /// The key of the other direction of the same packet stream (no NAT).
    pub fn reversed(&self) -> FlowKey {
        FlowKey { src: self.dst, dst: self.src, src_port: self.dst_port, dst_port: self.src_port, proto: self.proto }
    }

    fn words(&self) -> (u64, u64) {
        let a = u64::from(u32::from(self.src)) << 32 | u64::from(u32::from(self.dst));
        // Bit 63 marks a used key, so the all-zero word never matches a real key.
        let b = 1 << 63 | u64::from(self.proto) << 32 | u64::from(self.src_port) << 16 | u64::from(self.dst_port);
        (a, b)
    }

    fn from_words(a: u64, b: u64) -> FlowKey {
        FlowKey {
            src: Ipv4Addr::from((a >> 32) as u32),
            dst: Ipv4Addr::from(a as u32),
            src_port: (b >> 16) as u16,
            dst_port: b as u16,
            proto: (b >> 32) as u8,
        }
    }

    /// A hash of the key (also what Maglev picks a backend with, and where
    /// an SNAT port claim starts). The addresses are mixed first and the
    /// ports and protocol into that: folding both words into one before
    /// mixing let keys that differ in a source address's low bits and a
    /// destination port's high bits cancel out (the reply keys of SNAT
    /// flows to backends in one /25 shared hashes by the dozen).
    #[inline]
    pub fn hash(&self) -> u64 {
        let (a, b) = self.words();
        mix64(mix64(a ^ 0x9e37_79b9_7f4a_7c15) ^ b)
    }
}

/// The splitmix64 finaliser: a bijection of u64 whose every output bit
/// depends on every input bit.
#[inline(always)]
fn mix64(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// What to do to packets of one direction of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowEntry {
    /// Rewrite the destination (original direction) or the source (reply
    /// direction) to this address and port.
    pub nat_addr: Ipv4Addr,
    pub nat_port: u16,
    /// `true`: rewrite the destination; `false`: the source.
    pub rewrite_dst: bool,
    /// The service and backend the flow was given (opaque to the table).
    pub service: u32,
    pub backend: u16,
    /// The table generation the backend was picked under.
    pub generation: u32,
    /// How long the entry lives without packets, ms.
    pub timeout_ms: u32,
    /// A second rewrite on the other side of the packet (the source when
    /// `rewrite_dst`, else the destination): double NAT, for hairpin and
    /// source-translated flows.
    pub other: Option<(Ipv4Addr, u16)>,
    /// Connection state bits ([`state`]), the same in both directions' entries.
    pub state: u8,
    /// A flow tracked for policy only: nothing is rewritten. `nat_addr` and
    /// `nat_port` then hold the packet's own destination, and `rewrite_dst`
    /// tells the original direction (true) from the reply.
    pub plain: bool,
}

/// The bits of [`FlowEntry::state`].
pub mod state {
    /// A packet of the reply direction was seen (TCP: established; UDP: a
    /// stream).
    pub const REPLIED: u8 = 1;
    /// A FIN from the original direction's sender.
    pub const FIN_ORIG: u8 = 2;
    /// A FIN from the reply direction's sender.
    pub const FIN_REPLY: u8 = 4;
    /// A reset, or FINs both ways: the flow is closing.
    pub const CLOSING: u8 = 8;
}

impl FlowEntry {
    /// `other` (flag bit 63, address 16..48, port 0..16), `state` (48..56)
    /// and `plain` (56).
    fn other_word(&self) -> u64 {
        let other = self.other.map_or(0, |(a, p)| 1 << 63 | u64::from(u32::from(a)) << 16 | u64::from(p));
        other | u64::from(self.state) << 48 | u64::from(self.plain) << 56
    }

    fn other_from(c: u64) -> Option<(Ipv4Addr, u16)> {
        (c >> 63 == 1).then(|| (Ipv4Addr::from((c >> 16) as u32), c as u16))
    }

    fn words(&self) -> (u64, u64) {
        let a = u64::from(u32::from(self.nat_addr)) << 32 | u64::from(self.nat_port) << 16 | u64::from(self.backend);
        let b =
            u64::from(self.service) << 32 | u64::from(self.generation & 0x7fff_ffff) << 1 | u64::from(self.rewrite_dst);
        (a, b)
    }

    fn from_words(a: u64, b: u64, c: u64, timeout_ms: u32) -> FlowEntry {
        FlowEntry {
            other: Self::other_from(c),
            nat_addr: Ipv4Addr::from((a >> 32) as u32),
            nat_port: (a >> 16) as u16,
            backend: a as u16,
            service: (b >> 32) as u32,
            generation: ((b >> 1) & 0x7fff_ffff) as u32,
            rewrite_dst: b & 1 == 1,
            timeout_ms,
            state: (c >> 48) as u8,
            plain: (c >> 56) & 1 == 1,
        }
    }
}

/// One entry: eight words, one cache line (aligned), so a probe reads one
/// line per slot. `repr(C)` and atomics only: any bytes are a valid Slot,
/// which is what lets the slots live in a file a restarted process maps
/// again (`dpdk::shm`).
#[derive(Default)]
#[repr(C, align(64))]
pub(crate) struct Slot {
    /// Even: stable; odd: being written. 0: never used.
    seq: AtomicU64,
    key_a: AtomicU64,
    key_b: AtomicU64,
    val_a: AtomicU64,
    val_b: AtomicU64,
    val_c: AtomicU64,
    /// timeout (ms) << 40 | last seen (ms, 40 bits: 34 years).
    seen: AtomicU64,
    /// When the flow's entry was first written (ms): kept when the entry of
    /// a live flow is replaced (state, backend), for `weirctl flows`' age.
    /// Written on insert only, never read on the packet path.
    created: AtomicU64,
}

impl Slot {
    /// Writes a claimed slot (sequence `cur + 1`, odd) and releases it as
    /// `cur + 2`.
    fn fill(&self, cur: u64, (ka, kb): (u64, u64), entry: &FlowEntry, now_ms: u64, created_ms: u64) {
        let (va, vb) = entry.words();
        self.created.store(created_ms, Ordering::Relaxed);
        self.key_a.store(ka, Ordering::Relaxed);
        self.key_b.store(kb, Ordering::Relaxed);
        self.val_a.store(va, Ordering::Relaxed);
        self.val_b.store(vb, Ordering::Relaxed);
        self.val_c.store(entry.other_word(), Ordering::Relaxed);
        self.seen.store(pack_seen(now_ms, entry.timeout_ms), Ordering::Relaxed);
        self.seq.store(cur + 2, Ordering::Release);
    }
}

/// A live entry as `FlowTable::live_flows` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveFlow {
    pub key: FlowKey,
    pub entry: FlowEntry,
    /// Since the flow's entry was first written.
    pub age_ms: u64,
    /// Since its last packet.
    pub idle_ms: u64,
}

/// A slot's words, read consistently.
#[derive(Clone, Copy)]
struct Raw {
    ka: u64,
    kb: u64,
    va: u64,
    vb: u64,
    vc: u64,
    seen: u64,
}

const SEEN_BITS: u32 = 40;
const SEEN_MASK: u64 = (1 << SEEN_BITS) - 1;

/// The timeout's 24 bits: below `TIMEOUT_IN_SECONDS`, milliseconds (up to
/// 2.3 hours: every protocol state's timeout); with it set, the low 23 bits
/// are whole seconds, rounded up (ClientIP affinity, up to Kubernetes' 24
/// hours and beyond: any u32 of milliseconds fits).
const TIMEOUT_IN_SECONDS: u64 = 1 << 23;

/// The longest timeout an entry can hold (any `u32` of milliseconds).
pub const MAX_TIMEOUT_MS: u32 = u32::MAX;

fn pack_seen(now_ms: u64, timeout_ms: u32) -> u64 {
    let t = u64::from(timeout_ms);
    let field = if t < TIMEOUT_IN_SECONDS { t } else { TIMEOUT_IN_SECONDS | t.div_ceil(1000) };
    field << SEEN_BITS | (now_ms & SEEN_MASK)
}

/// The timeout of a packed `seen` word, in ms.
#[inline(always)]
fn timeout_ms_of(seen: u64) -> u64 {
    let field = seen >> SEEN_BITS;
    if field & TIMEOUT_IN_SECONDS == 0 {
        field
    } else {
        (field & (TIMEOUT_IN_SECONDS - 1)) * 1000
    }
}

/// [`timeout_ms_of`] as an entry holds it.
fn entry_timeout(seen: u64) -> u32 {
    u32::try_from(timeout_ms_of(seen)).unwrap_or(MAX_TIMEOUT_MS)
}

#[inline(always)]
fn expired(seen: u64, now_ms: u64) -> bool {
    let last = seen & SEEN_MASK;
    (now_ms & SEEN_MASK).wrapping_sub(last) & SEEN_MASK > timeout_ms_of(seen)
}

/// Why an insert did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// Every slot the key may use holds a live flow.
    Full,
    /// `insert_new`: the key has a live entry already.
    Exists,
}

/// What [`FlowTable::probe`] found for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The key's entry, and the time since it was last seen (it is expired
    /// when `idle_ms` exceeds `entry.timeout_ms`).
    Found { entry: FlowEntry, idle_ms: u64 },
    /// No slot holds the key.
    Absent,
    /// The key was not found, but a slot it may live in was being written:
    /// ask again.
    Busy,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64);

/// Where the slots live.
enum Storage {
    /// The process's own memory: the flows end with it.
    Heap(Box<[Slot]>),
    /// Mapped memory (`dpdk::shm`): huge-page friendly, and with a file
    /// behind it the flows outlive the process (`flowstate`).
    #[cfg(feature = "dpdk")]
    Mapped(crate::dpdk::shm::SharedSlots),
}

pub struct FlowTable {
    storage: Storage,
    /// One byte a slot: 0 while the slot has never held a key, else a hint
    /// of the key it holds or held ([`tag_of`]). A probe reads the slots
    /// whose tag matches, not every slot of its windows (16 tags are one or
    /// two cache lines, 16 slots sixteen). Written by the slot's writer
    /// while it holds the slot; a stale tag costs a slot read or, for a key
    /// being written at that moment, what a slot being written costs today.
    /// Kept in this process only: rebuilt from the slots of a kept file.
    tags: Box<[AtomicU8]>,
    mask: usize,
}

/// A key's tag, from its hash (the key's [`FlowKey::hash`], which every
/// caller passes): bits 26-31 and 63, which no window position uses (the
/// two windows take bits from 0 and from 32, 26 bits at most for the
/// largest table, 2^26 slots), never 0.
#[inline(always)]
fn tag_of(hash: u64) -> u8 {
    ((hash >> 26) & 0x3f) as u8 | ((hash >> 57) as u8 & 0x40) | 0x80
}

impl FlowTable {
    /// A table of at least `capacity` slots (rounded up to a power of two,
    /// at least 2·PROBE). Two slots per flow; keep it at most half full (at
    /// half, about one insert in a million finds both its windows full and
    /// fails).
    pub fn new(capacity: usize) -> FlowTable {
        let n = Self::slots_for(capacity);
        // With the DPDK layer, a table of a huge page or more lives in its
        // own 2 MiB-aligned mapping advised for huge pages: at a million
        // flows, random slots would otherwise cost a TLB miss each.
        #[cfg(feature = "dpdk")]
        if n * std::mem::size_of::<Slot>() >= 2 << 20 {
            if let Ok(m) = crate::dpdk::shm::SharedSlots::anonymous(n) {
                return FlowTable { storage: Storage::Mapped(m), tags: Self::no_tags(n), mask: n - 1 };
            }
        }
        FlowTable { storage: Storage::Heap((0..n).map(|_| Slot::default()).collect()), tags: Self::no_tags(n), mask: n - 1 }
    }

    fn no_tags(n: usize) -> Box<[AtomicU8]> {
        (0..n).map(|_| AtomicU8::new(0)).collect()
    }

    /// The slots a table asked for `capacity` has.
    pub fn slots_for(capacity: usize) -> usize {
        capacity.max(2 * PROBE).next_power_of_two()
    }

    /// A table over slots mapped from a file (their count a power of two,
    /// at least 2·PROBE), as a previous process may have left them. Call
    /// [`repair`](Self::repair) before any worker uses it.
    #[cfg(feature = "dpdk")]
    pub(crate) fn in_file(slots: crate::dpdk::shm::SharedSlots) -> Result<FlowTable, String> {
        let n = slots.slots().len();
        if n < 2 * PROBE || !n.is_power_of_two() {
            return Err(format!("{n} flow-table slots: want a power of two, at least {}", 2 * PROBE));
        }
        let t = FlowTable { storage: Storage::Mapped(slots), tags: Self::no_tags(n), mask: n - 1 };
        // The tags of what the file holds (a never-used slot keeps 0).
        for (i, s) in t.slots().iter().enumerate() {
            if s.seq.load(Ordering::Relaxed) != 0 {
                let key = FlowKey::from_words(s.key_a.load(Ordering::Relaxed), s.key_b.load(Ordering::Relaxed));
                let tag = tag_of(key.hash());
                t.tags[i].store(tag, Ordering::Relaxed);
            }
        }
        Ok(t)
    }

    #[inline(always)]
    fn slots(&self) -> &[Slot] {
        match &self.storage {
            Storage::Heap(s) => s,
            #[cfg(feature = "dpdk")]
            Storage::Mapped(s) => s.slots(),
        }
    }

    /// Empties the slots a writer left half-written (odd sequence: the
    /// process that wrote them died mid-write), so that no slot stays locked.
    /// Returns how many. Only while no worker runs.
    pub fn repair(&self) -> usize {
        let mut n = 0;
        for s in self.slots() {
            if s.seq.load(Ordering::Relaxed) & 1 == 1 {
                s.seq.store(0, Ordering::Relaxed);
                n += 1;
            }
        }
        n
    }

    /// Live entries (two per flow), counted without allocating.
    pub fn live_entries(&self, now_ms: u64) -> usize {
        (0..self.capacity()).filter(|&i| self.read(i).is_some_and(|r| !expired(r.seen, now_ms))).count()
    }

    pub fn capacity(&self) -> usize {
        self.slots().len()
    }

    /// The slots `key` may live in, in the order they are tried.
    #[inline]
    fn candidates(&self, h: u64) -> impl Iterator<Item = usize> + '_ {
        let (a, b) = (h as usize & self.mask, (h >> 32) as usize & self.mask);
        let half = PROBE / 2;
        (0..half).map(move |p| (a + p) & self.mask).chain((0..half).map(move |p| (b + p) & self.mask))
    }

    /// Reads slot `i` consistently: (key words, value words, seen), or None
    /// when it is empty or being written.
    #[inline(always)]
    fn read(&self, i: usize) -> Option<Raw> {
        let s = &self.slots()[i];
        for _ in 0..4 {
            let s1 = s.seq.load(Ordering::Acquire);
            if s1 == 0 {
                return None;
            }
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let ka = s.key_a.load(Ordering::Relaxed);
            let kb = s.key_b.load(Ordering::Relaxed);
            let va = s.val_a.load(Ordering::Relaxed);
            let vb = s.val_b.load(Ordering::Relaxed);
            let vc = s.val_c.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if s.seq.load(Ordering::Relaxed) == s1 {
                return Some(Raw { ka, kb, va, vb, vc, seen: s.seen.load(Ordering::Relaxed) });
            }
        }
        None
    }

    /// The live entry for `key`, and marks it seen at `now_ms`.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, now_ms: u64) -> Option<FlowEntry> {
        self.lookup_hashed(key, key.hash(), now_ms)
    }

    /// `lookup` with the key's hash (`FlowKey::hash`) already computed: a
    /// caller that also picks a backend with it hashes once.
    #[inline]
    pub fn lookup_hashed(&self, key: &FlowKey, hash: u64, now_ms: u64) -> Option<FlowEntry> {
        self.find(key, hash, now_ms, true)
    }

    /// The live entry for `key`, leaving it as it is (not marked seen): a
    /// look that changes nothing (`weirctl explain`).
    pub fn peek_hashed(&self, key: &FlowKey, hash: u64, now_ms: u64) -> Option<FlowEntry> {
        self.find(key, hash, now_ms, false)
    }

    /// `lookup_hashed`, also giving the slot the entry lives in (a key keeps
    /// its slot while it is live: a replace writes in place). The flow log
    /// keeps per-slot counters beside a table of its own with this.
    #[inline]
    pub fn lookup_at(&self, key: &FlowKey, hash: u64, now_ms: u64) -> Option<(usize, FlowEntry)> {
        self.find_at(key, hash, now_ms, true)
    }

    #[inline(always)]
    fn find(&self, key: &FlowKey, hash: u64, now_ms: u64, touch: bool) -> Option<FlowEntry> {
        self.find_at(key, hash, now_ms, touch).map(|(_, e)| e)
    }

    #[inline(always)]
    fn find_at(&self, key: &FlowKey, hash: u64, now_ms: u64, touch: bool) -> Option<(usize, FlowEntry)> {
        let (ka, kb) = key.words();
        debug_assert_eq!(hash, key.hash(), "a flow table is probed with the key's own hash");
        let tag = tag_of(hash);
        // The slots of `candidates`, in its order, as two plain loops (the
        // packet path: no chained iterator).
        let (a, b) = (hash as usize & self.mask, (hash >> 32) as usize & self.mask);
        for start in [a, b] {
            for p in 0..PROBE / 2 {
                let i = (start + p) & self.mask;
                if self.tags[i].load(Ordering::Relaxed) != tag {
                    continue;
                }
                let Some(r) = self.read(i) else { continue };
                if r.ka == ka && r.kb == kb {
                    if expired(r.seen, now_ms) {
                        return None;
                    }
                    // Refresh only when the clock moved: one store per ms, not per packet.
                    if touch && r.seen & SEEN_MASK != now_ms & SEEN_MASK {
                        self.slots()[i].seen.store(r.seen & !SEEN_MASK | now_ms & SEEN_MASK, Ordering::Relaxed);
                    }
                    return Some((i, FlowEntry::from_words(r.va, r.vb, r.vc, entry_timeout(r.seen))));
                }
            }
        }
        None
    }

    /// What the table holds for `key` at `now_ms`, expired or not, without
    /// marking it seen: the flow log's sweep asks this to tell a flow that
    /// is over from one that lives ([`Probe`]).
    pub fn probe(&self, key: &FlowKey, hash: u64, now_ms: u64) -> Probe {
        let (ka, kb) = key.words();
        let mut busy = false;
        for i in self.candidates(hash) {
            match self.read(i) {
                Some(r) if r.ka == ka && r.kb == kb => {
                    let timeout = entry_timeout(r.seen);
                    let idle_ms = (now_ms & SEEN_MASK).wrapping_sub(r.seen & SEEN_MASK) & SEEN_MASK;
                    return Probe::Found { entry: FlowEntry::from_words(r.va, r.vb, r.vc, timeout), idle_ms };
                }
                Some(_) => {}
                // Empty (sequence 0), or being written while we looked.
                None => busy |= self.slots()[i].seq.load(Ordering::Relaxed) != 0,
            }
        }
        if busy {
            Probe::Busy
        } else {
            Probe::Absent
        }
    }

    /// Slot `i` as it is: its key and entry, and whether the entry is live
    /// at `now_ms`; `None` when the slot is empty or being written. (The
    /// flow log's sweep walks its own table with this.)
    pub fn slot(&self, i: usize, now_ms: u64) -> Option<(FlowKey, FlowEntry, bool)> {
        if i >= self.slots().len() {
            return None;
        }
        let r = self.read(i)?;
        let timeout = entry_timeout(r.seen);
        let e = FlowEntry::from_words(r.va, r.vb, r.vc, timeout);
        Some((FlowKey::from_words(r.ka, r.kb), e, !expired(r.seen, now_ms)))
    }

    /// Inserts or replaces the entry for `key`.
    pub fn insert(&self, key: &FlowKey, entry: &FlowEntry, now_ms: u64) -> Result<(), InsertError> {
        self.insert_hashed(key, key.hash(), entry, now_ms)
    }

    /// `insert` with the key's hash already computed.
    pub fn insert_hashed(&self, key: &FlowKey, hash: u64, entry: &FlowEntry, now_ms: u64) -> Result<(), InsertError> {
        self.insert_inner(key, hash, entry, now_ms, true).map(|_| ())
    }

    /// `insert_hashed`, giving the slot the entry was written to.
    pub fn insert_at(&self, key: &FlowKey, hash: u64, entry: &FlowEntry, now_ms: u64) -> Result<usize, InsertError> {
        self.insert_inner(key, hash, entry, now_ms, true)
    }

    /// Inserts the entry for `key` unless `key` has a live entry already
    /// (`Exists`): claims a key, e.g. a source port for SNAT. Two writers
    /// claiming the same key at the same instant may both succeed; callers
    /// keep their candidate keys apart (per-worker port slices).
    pub fn insert_new(&self, key: &FlowKey, entry: &FlowEntry, now_ms: u64) -> Result<(), InsertError> {
        self.insert_inner(key, key.hash(), entry, now_ms, false).map(|_| ())
    }

    fn insert_inner(
        &self,
        key: &FlowKey,
        hash: u64,
        entry: &FlowEntry,
        now_ms: u64,
        replace: bool,
    ) -> Result<usize, InsertError> {
        let (ka, kb) = key.words();
        debug_assert_eq!(hash, key.hash(), "a flow table is probed with the key's own hash");
        let tag = tag_of(hash);
        // An existing entry of this key is replaced in place; otherwise the
        // first empty or expired slot is taken. Only slots with the key's tag
        // can hold it, and a never-used slot (tag 0) is empty: the others are
        // read only while no free slot is known.
        let mut free = None;
        let mut created = now_ms;
        for i in self.candidates(hash) {
            let t = self.tags[i].load(Ordering::Relaxed);
            if t == 0 {
                if free.is_none() && self.slots()[i].seq.load(Ordering::Relaxed) == 0 {
                    free = Some(i);
                }
                continue;
            }
            if t != tag && free.is_some() {
                continue;
            }
            match self.read(i) {
                Some(r) if r.ka == ka && r.kb == kb => {
                    if !expired(r.seen, now_ms) {
                        if !replace {
                            return Err(InsertError::Exists);
                        }
                        created = self.slots()[i].created.load(Ordering::Relaxed);
                    }
                    free = Some(i);
                    break;
                }
                Some(r) if expired(r.seen, now_ms) && free.is_none() => free = Some(i),
                None if free.is_none() && self.slots()[i].seq.load(Ordering::Relaxed) & 1 == 0 => free = Some(i),
                _ => {}
            }
        }
        let i = free.ok_or(InsertError::Full)?;
        let s = &self.slots()[i];
        let cur = s.seq.load(Ordering::Relaxed);
        if cur & 1 == 1 || s.seq.compare_exchange(cur, cur + 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            // Another writer took it between our read and now: try again from the start.
            return self.insert_slow(key, hash, entry, now_ms, replace);
        }
        self.tags[i].store(tag, Ordering::Relaxed);
        s.fill(cur, (ka, kb), entry, now_ms, created);
        Ok(i)
    }

    #[cold]
    fn insert_slow(
        &self,
        key: &FlowKey,
        hash: u64,
        entry: &FlowEntry,
        now_ms: u64,
        replace: bool,
    ) -> Result<usize, InsertError> {
        for _ in 0..8 {
            std::hint::spin_loop();
            let (ka, kb) = key.words();
            for i in self.candidates(hash) {
                let s = &self.slots()[i];
                let cur = s.seq.load(Ordering::Acquire);
                if cur & 1 == 1 {
                    continue;
                }
                let mut created = now_ms;
                let usable = match self.read(i) {
                    Some(r) if r.ka == ka && r.kb == kb && !replace && !expired(r.seen, now_ms) => {
                        return Err(InsertError::Exists)
                    }
                    Some(r) if r.ka == ka && r.kb == kb && !expired(r.seen, now_ms) => {
                        created = s.created.load(Ordering::Relaxed);
                        true
                    }
                    Some(r) => (r.ka == ka && r.kb == kb) || expired(r.seen, now_ms),
                    None => cur == s.seq.load(Ordering::Relaxed) && cur & 1 == 0,
                };
                if usable && s.seq.compare_exchange(cur, cur + 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    self.tags[i].store(tag_of(hash), Ordering::Relaxed);
                    s.fill(cur, (ka, kb), entry, now_ms, created);
                    return Ok(i);
                }
            }
        }
        Err(InsertError::Full)
    }

    /// Forgets the entry for `key` (by expiring it now).
    pub fn remove(&self, key: &FlowKey) -> bool {
        self.remove_hashed(key, key.hash())
    }

    /// `remove` with the key's hash already computed.
    pub fn remove_hashed(&self, key: &FlowKey, hash: u64) -> bool {
        let (ka, kb) = key.words();
        for i in self.candidates(hash) {
            if let Some(r) = self.read(i) {
                if r.ka == ka && r.kb == kb {
                    // Timeout 0, last seen long ago: expired for every `now`.
                    self.slots()[i].seen.store(pack_seen(0, 0), Ordering::Relaxed);
                    return true;
                }
            }
        }
        false
    }

    /// Live entries at `now_ms` (for weirctl; walks the whole table).
    /// Every live entry with its age (since the flow's entry was first
    /// written) and idle time (since its last packet), ms: `weirctl flows`.
    /// For the management thread: it walks the whole table.
    pub fn live_flows(&self, now_ms: u64) -> Vec<LiveFlow> {
        (0..self.slots().len())
            .filter_map(|i| Some((i, self.read(i)?)))
            .filter(|(_, r)| !expired(r.seen, now_ms))
            .map(|(i, r)| {
                let last = r.seen & SEEN_MASK;
                let created = self.slots()[i].created.load(Ordering::Relaxed);
                LiveFlow {
                    key: FlowKey::from_words(r.ka, r.kb),
                    entry: FlowEntry::from_words(r.va, r.vb, r.vc, entry_timeout(r.seen)),
                    age_ms: now_ms.saturating_sub(created),
                    idle_ms: (now_ms & SEEN_MASK).wrapping_sub(last) & SEEN_MASK,
                }
            })
            .collect()
    }

    pub fn entries(&self, now_ms: u64) -> Vec<(FlowKey, FlowEntry)> {
        (0..self.slots().len())
            .filter_map(|i| self.read(i))
            .filter(|r| !expired(r.seen, now_ms))
            .map(|r| (FlowKey::from_words(r.ka, r.kb), FlowEntry::from_words(r.va, r.vb, r.vc, entry_timeout(r.seen))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A crowded small table against a model: inserts, replaces, claims,
    /// removals and lookups of 400 keys over 128 slots, with time passing,
    /// give the model's answers (the tags only ever skip slots that cannot
    /// hold the key).
    #[test]
    fn a_crowded_table_agrees_with_a_model() {
        use std::collections::HashMap;
        let t = FlowTable::new(128);
        // key -> (entry, last seen)
        let mut model: HashMap<u32, (FlowEntry, u64)> = HashMap::new();
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut now = 0u64;
        let live = |m: &HashMap<u32, (FlowEntry, u64)>, k: u32, now: u64| {
            m.get(&k).filter(|(e, seen)| now - seen <= u64::from(e.timeout_ms)).map(|(e, _)| *e)
        };
        for step in 0..200_000u32 {
            now += next() % 3;
            let k = (next() % 400) as u32;
            let e = FlowEntry { timeout_ms: 50 + (next() % 200) as u32, generation: step, ..entry(k) };
            match next() % 5 {
                0 | 1 => {
                    if t.insert(&key(k), &e, now).is_ok() {
                        model.insert(k, (e, now));
                    } else {
                        assert_eq!(live(&model, k, now), None, "Full although {k} is live");
                    }
                }
                2 => match t.insert_new(&key(k), &e, now) {
                    Ok(()) => {
                        assert_eq!(live(&model, k, now), None, "claimed live {k}");
                        model.insert(k, (e, now));
                    }
                    Err(InsertError::Exists) => assert!(live(&model, k, now).is_some(), "{k} exists?"),
                    Err(InsertError::Full) => assert_eq!(live(&model, k, now), None),
                },
                3 => {
                    t.remove(&key(k));
                    model.remove(&k);
                }
                _ => {
                    let want = live(&model, k, now);
                    assert_eq!(t.lookup(&key(k), now), want, "key {k} at step {step}");
                    if want.is_some() {
                        if let Some(m) = model.get_mut(&k) {
                            m.1 = now;
                        }
                    }
                }
            }
        }
    }

    /// Keys that differ only in a source address's low bits and a
    /// destination port's high bits (SNAT reply keys: backend, node IP,
    /// target port, SNAT port) all hash apart.
    #[test]
    fn snat_reply_keys_do_not_share_hashes() {
        let mut seen = std::collections::HashSet::new();
        for backend in 0..128u32 {
            for port in (1024..65535u16).step_by(97) {
                let k = FlowKey {
                    src: Ipv4Addr::from(0x0a03_0000 + backend),
                    dst: Ipv4Addr::new(192, 168, 50, 1),
                    src_port: 8080,
                    dst_port: port,
                    proto: 17,
                };
                assert!(seen.insert(k.hash()), "{k:?} shares its hash");
            }
        }
    }

    /// Timeouts beyond the millisecond field's 2.3 hours (ClientIP affinity
    /// up to Kubernetes' 24 hours) are kept in seconds, not wrapped.
    #[test]
    fn long_timeouts_are_kept_in_seconds() {
        const H: u64 = 3_600_000;
        let t = FlowTable::new(256);
        for (i, timeout_ms) in [60_000u32, 7_200_000, 5 * 3_600_000, 86_400_000, 4_000_000_000].into_iter().enumerate()
        {
            let e = FlowEntry { timeout_ms, ..entry(i as u32) };
            t.insert(&key(i as u32), &e, 1_000).unwrap();
            let got = t.lookup(&key(i as u32), 1_000).unwrap();
            // Whole seconds above 2.3 h, rounded up: never shorter.
            assert!(got.timeout_ms >= timeout_ms && got.timeout_ms - timeout_ms < 1_000, "{got:?}");
            let t_ms = u64::from(got.timeout_ms);
            assert!(t.peek_hashed(&key(i as u32), key(i as u32).hash(), 1_000 + t_ms).is_some(), "{timeout_ms}");
            assert!(t.peek_hashed(&key(i as u32), key(i as u32).hash(), 1_001 + t_ms).is_none(), "{timeout_ms}");
        }
        // A day of affinity is a day, and a packet starts it again.
        let (day, h) = (key(1000), key(1000).hash());
        t.insert(&day, &FlowEntry { timeout_ms: 86_400_000, ..entry(1000) }, 0).unwrap();
        assert!(t.lookup(&day, 23 * H).is_some());
        assert!(t.peek_hashed(&day, h, 23 * H + 24 * H).is_some());
        assert_eq!(t.peek_hashed(&day, h, 23 * H + 24 * H + 1), None);
    }

    /// A slot its writer left odd (the process died mid-write) is emptied
    /// by `repair`, and inserts can use it again; whole entries stay.
    #[test]
    fn repair_empties_half_written_slots_only() {
        let t = FlowTable::new(256);
        let e = FlowEntry {
            nat_addr: Ipv4Addr::new(10, 1, 0, 3),
            nat_port: 80,
            rewrite_dst: true,
            service: 1,
            backend: 0,
            generation: 1,
            timeout_ms: 60_000,
            other: None,
            state: 0,
            plain: false,
        };
        for i in 0..20 {
            t.insert(&key(i), &e, 0).unwrap();
        }
        assert_eq!(t.live_entries(1), 20);
        let (i, _) = t.lookup_at(&key(3), key(3).hash(), 1).unwrap();
        let s = &t.slots()[i];
        s.seq.store(s.seq.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        assert_eq!(t.live_entries(1), 19, "a slot being written is not read");
        assert_eq!(t.repair(), 1);
        assert_eq!(t.repair(), 0);
        assert_eq!(t.lookup(&key(3), 1), None);
        t.insert(&key(3), &e, 2).unwrap();
        assert_eq!((t.lookup(&key(3), 3), t.live_entries(3)), (Some(e), 20));
    }

    fn key(i: u32) -> FlowKey {
        FlowKey {
            src: Ipv4Addr::from(0x0a01_0000 + i),
            dst: Ipv4Addr::new(10, 96, 0, 10),
            src_port: 30000 + (i % 30000) as u16,
            dst_port: 80,
            proto: 6,
        }
    }

    fn entry(i: u32) -> FlowEntry {
        FlowEntry {
            nat_addr: Ipv4Addr::from(0x0a02_0000 + i),
            nat_port: 8080,
            rewrite_dst: i.is_multiple_of(2),
            service: i,
            backend: (i % 7) as u16,
            generation: i.wrapping_mul(3),
            timeout_ms: 1000,
            other: i.is_multiple_of(3).then(|| (Ipv4Addr::from(i ^ 0x5a5a), i as u16)),
            state: (i % 16) as u8,
            plain: i.is_multiple_of(5),
        }
    }

    #[test]
    fn insert_lookup_replace_remove() {
        let t = FlowTable::new(1024);
        assert_eq!(t.lookup(&key(1), 0), None);
        t.insert(&key(1), &entry(1), 10).unwrap();
        assert_eq!(t.lookup(&key(1), 20), Some(entry(1)));
        assert_eq!(t.lookup(&key(1).reversed(), 20), None);
        t.insert(&key(1), &entry(2), 30).unwrap();
        assert_eq!(t.lookup(&key(1), 40), Some(entry(2)));
        assert_eq!(t.entries(40).len(), 1, "replaced in place");
        assert!(t.remove(&key(1)));
        assert_eq!(t.lookup(&key(1), 41), None);
        assert!(!t.remove(&key(9)));
    }

    /// Age counts from the flow's first entry, through replacements of a
    /// live entry (state, backend); a key reused after expiry starts again.
    #[test]
    fn a_slot_is_one_cache_line() {
        assert_eq!((std::mem::size_of::<Slot>(), std::mem::align_of::<Slot>()), (64, 64));
    }

    #[test]
    fn live_flows_report_age_and_idle_time() {
        let t = FlowTable::new(1024);
        t.insert(&key(1), &entry(1), 100).unwrap();
        t.lookup(&key(1), 150);
        t.insert(&key(1), &entry(2), 200).unwrap();
        let got = t.live_flows(260);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].key, got[0].entry, got[0].age_ms, got[0].idle_ms), (key(1), entry(2), 160, 60));
        // Expired (timeout 1000 ms), then the key comes back: a new flow.
        t.insert(&key(1), &entry(1), 5000).unwrap();
        let got = t.live_flows(5010);
        assert_eq!((got[0].age_ms, got[0].idle_ms), (10, 10));
        assert!(t.live_flows(7000).is_empty());
    }

    #[test]
    fn peek_does_not_keep_an_entry_alive() {
        let t = FlowTable::new(64);
        t.insert(&key(1), &entry(1), 0).unwrap();
        // A peek finds it but does not mark it seen: it still expires 1000 ms
        // after its insertion.
        assert_eq!(t.peek_hashed(&key(1), key(1).hash(), 900), Some(entry(1)));
        assert_eq!(t.peek_hashed(&key(1), key(1).hash(), 1001), None);
        assert_eq!(t.lookup(&key(1), 1001), None, "expired: the peek at 900 did not refresh it");
        assert_eq!(t.peek_hashed(&key(2), key(2).hash(), 0), None);
    }

    #[test]
    fn insert_new_claims_a_key_once() {
        let t = FlowTable::new(1024);
        t.insert_new(&key(1), &entry(1), 10).unwrap();
        assert_eq!(t.insert_new(&key(1), &entry(2), 20), Err(InsertError::Exists));
        assert_eq!(t.lookup(&key(1), 20), Some(entry(1)), "the first claim stands");
        // An expired entry is no claim.
        assert_eq!(t.insert_new(&key(1), &entry(3), 5000), Ok(()));
        assert_eq!(t.lookup(&key(1), 5001), Some(entry(3)));
        assert!(t.remove(&key(1)));
        assert_eq!(t.insert_new(&key(1), &entry(4), 5002), Ok(()));
    }

    #[test]
    fn entries_expire_unless_seen() {
        let t = FlowTable::new(64);
        t.insert(&key(1), &entry(1), 0).unwrap();
        // Seen within the timeout keeps it alive.
        assert!(t.lookup(&key(1), 900).is_some());
        assert!(t.lookup(&key(1), 1800).is_some());
        assert!(t.lookup(&key(1), 2801).is_none(), "1001 ms without packets");
        // Its slot can be reused.
        t.insert(&key(2), &entry(2), 3000).unwrap();
        assert!(t.lookup(&key(2), 3001).is_some());
    }

    #[test]
    fn full_is_an_error_not_a_panic() {
        let t = FlowTable::new(64);
        let mut ok = 0;
        let mut full = 0;
        for i in 0..200 {
            match t.insert(&key(i), &entry(i), 0) {
                Ok(()) => ok += 1,
                Err(InsertError::Full) => full += 1,
                Err(InsertError::Exists) => panic!("insert replaces"),
            }
        }
        assert!((32..=64).contains(&ok), "{ok} inserted");
        assert_eq!(ok + full, 200);
        // Everything inserted is found.
        let live = t.entries(1);
        assert_eq!(live.len(), ok);
        for (k, e) in live {
            assert_eq!(t.lookup(&k, 1), Some(e));
        }
    }

    #[test]
    fn keys_and_entries_round_trip() {
        for i in [0u32, 1, 0xffff, 0xdead_beef] {
            let k = FlowKey {
                src: Ipv4Addr::from(i),
                dst: Ipv4Addr::from(!i),
                src_port: i as u16,
                dst_port: !(i as u16),
                proto: 17,
            };
            let (a, b) = k.words();
            assert_eq!(FlowKey::from_words(a, b), k);
            let e = FlowEntry { timeout_ms: 5, ..entry(i) };
            let (a, b) = e.words();
            let c = e.other_word();
            assert_eq!(FlowEntry::from_words(a, b, c, 5), FlowEntry { generation: e.generation & 0x7fff_ffff, ..e });
        }
    }

    /// Writers on two threads insert and replace while readers look up: a
    /// reader never sees an entry that mixes two writes (each entry's fields
    /// are derived from one number), and every key a writer finished is found.
    /// (With the seqlock's checks taken out, this test fails on most runs.)
    #[test]
    fn concurrent_writers_and_readers_see_whole_entries() {
        let t = Arc::new(FlowTable::new(1 << 12));
        let mut handles = Vec::new();
        for w in 0..2u32 {
            let t = Arc::clone(&t);
            handles.push(std::thread::spawn(move || {
                for round in 0..200u32 {
                    for i in 0..500u32 {
                        let k = key(i);
                        let v = w * 1_000_000 + round * 1000 + i;
                        let e = FlowEntry { service: v, nat_addr: Ipv4Addr::from(v), backend: v as u16, ..entry(i) };
                        let _ = t.insert(&k, &e, 1);
                    }
                }
            }));
        }
        for _ in 0..2 {
            let t = Arc::clone(&t);
            handles.push(std::thread::spawn(move || {
                for _ in 0..400 {
                    for i in 0..500u32 {
                        if let Some(e) = t.lookup(&key(i), 1) {
                            assert_eq!(u32::from(e.nat_addr), e.service, "torn entry");
                            assert_eq!(e.backend, e.service as u16, "torn entry");
                        }
                    }
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        for i in 0..500 {
            let e = t.lookup(&key(i), 2).expect("every key present after the writers finished");
            assert_eq!(e.service % 1000, i);
        }
    }
}
