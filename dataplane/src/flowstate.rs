//! The flow table in a file, so that no flow is lost when weir-dataplane
//! restarts (a crash, an upgrade, `kill -9`).
//!
//! The file is a header (2 MiB, one page used) and then the table's slots, mapped shared
//! (`dpdk::shm`): every worker write is in the file as it happens, so a
//! process that dies leaves its flows behind, and the next one maps them
//! again. Answers of a translated connection that arrive before weir-control
//! has pushed the Services again are still translated back; a connection
//! whose client was given an SNAT port keeps that port.
//!
//! The header (little-endian u64 words) says whether the slots can be
//! taken over: the layout (magic, version, slot size, probe length, slot
//! count) must be this build's, and the machine must not have rebooted
//! since (the kernel's boot id), because flows keep time in milliseconds of
//! the time-stamp counter, which starts again at boot. The header also
//! keeps:
//! - the counter's ticks per millisecond the file was made with: a later
//!   process measures the counter's rate a little differently, and would
//!   otherwise see every flow older or younger than it is;
//! - the last tables generation published: the next process counts on
//!   from there, so every kept flow is checked once against the new tables
//!   (its backend still one of the Service's, policy still allowing it),
//!   exactly as after any table update.
//!
//! Slots a writer left half-written (odd sequence) are emptied before the
//! workers start. Anything else is a new, empty table (the file is
//! truncated), with the reason logged. The file is locked (`flock`) while
//! a process uses it: a second dataplane of the same node is refused the
//! file and runs on its own memory.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::dpdk::shm::SharedSlots;
use crate::flow::{FlowTable, PROBE};

const MAGIC: u64 = u64::from_le_bytes(*b"weirflw1");
const VERSION: u64 = 1;
/// The header's room; the slots start after it, at a huge-page boundary
/// of the file (a tmpfs can then back them with huge pages). Only the first
/// page of it is ever written.
const HEADER_BYTES: u64 = 2 << 20;
const SLOT_BYTES: u64 = 64;

// Header words.
const W_MAGIC: usize = 0;
const W_VERSION: usize = 1;
const W_SLOT_BYTES: usize = 2;
const W_PROBE: usize = 3;
const W_SLOTS: usize = 4;
const W_BOOT_HI: usize = 5;
const W_BOOT_LO: usize = 6;
const W_TSC_PER_MS: usize = 7;
const W_GENERATION: usize = 8;
const WORDS: usize = 9;

/// A flow table kept in a file, and what was found there.
pub struct FlowFile {
    file: File,
    path: PathBuf,
}

/// What opening the file gave.
pub struct Opened {
    pub table: FlowTable,
    pub file: FlowFile,
    /// The clock the table's times are in (TSC ticks per millisecond).
    pub tsc_per_ms: u64,
    /// The last generation the previous process published (0: a new table).
    pub generation: u64,
    /// `None`: the previous process's table was taken over (and `repaired`
    /// half-written slots emptied); else a new table, for this reason.
    pub new_because: Option<String>,
    pub repaired: usize,
}

/// The kernel's id of this boot (a UUID), as two words; zeros when unknown.
fn boot_id() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    match (hex.len(), u128::from_str_radix(&hex, 16)) {
        (32, Ok(v)) => ((v >> 64) as u64, v as u64),
        _ => (0, 0),
    }
}

fn read_header(file: &File) -> Option<[u64; WORDS]> {
    let mut buf = [0u8; WORDS * 8];
    file.read_exact_at(&mut buf, 0).ok()?;
    let mut w = [0u64; WORDS];
    for (i, c) in buf.chunks_exact(8).enumerate() {
        w[i] = u64::from_le_bytes(c.try_into().ok()?);
    }
    Some(w)
}

fn write_header(file: &File, w: &[u64; WORDS]) -> std::io::Result<()> {
    let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
    file.write_all_at(&bytes, 0)
}

/// Why `h` cannot be taken over for a table of `slots` slots, or None.
fn mismatch(h: &[u64; WORDS], slots: u64, boot: (u64, u64)) -> Option<String> {
    if h[W_MAGIC] != MAGIC || h[W_VERSION] != VERSION {
        return Some("not a flow table of this version".into());
    }
    if h[W_SLOT_BYTES] != SLOT_BYTES || h[W_PROBE] != PROBE as u64 {
        return Some("another layout of the flow table".into());
    }
    if h[W_SLOTS] != slots {
        return Some(format!("{} slots, this table wants {slots} (dpdk.max_flows changed)", h[W_SLOTS]));
    }
    if boot == (0, 0) || (h[W_BOOT_HI], h[W_BOOT_LO]) != boot {
        return Some("written before the machine last booted".into());
    }
    if h[W_TSC_PER_MS] == 0 {
        return Some("no clock rate recorded".into());
    }
    None
}

impl FlowFile {
    /// Opens (or creates) the flow table at `path` with room for
    /// `capacity` slots (rounded as `FlowTable::new` rounds), taking over
    /// what a previous process left when it can. `tsc_per_ms` is this
    /// process's clock rate, used for a new table.
    pub fn open(path: &Path, capacity: usize, tsc_per_ms: u64) -> Result<Opened, String> {
        let at = |e: std::io::Error| format!("flow state {}: {e}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(at)?;
        }
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(at)?;
        file.try_lock().map_err(|e| format!("flow state {}: in use by another process ({e})", path.display()))?;
        let slots = FlowTable::slots_for(capacity) as u64;
        let boot = boot_id();
        let len = HEADER_BYTES + slots * SLOT_BYTES;
        let found = file.metadata().map_err(at)?.len();
        let old = if found == len { read_header(&file) } else { None };
        let why_new = match &old {
            None if found == 0 => Some("no table yet".to_string()),
            None => Some(format!("{found} bytes, a table of {slots} slots has {len}")),
            Some(h) => mismatch(h, slots, boot),
        };
        let (tsc_per_ms, generation) = match (&old, &why_new) {
            (Some(h), None) => (h[W_TSC_PER_MS], h[W_GENERATION]),
            _ => {
                // A new table: every slot zero (empty).
                file.set_len(0).map_err(at)?;
                file.set_len(len).map_err(at)?;
                let mut h = [0u64; WORDS];
                h[W_MAGIC] = MAGIC;
                h[W_VERSION] = VERSION;
                h[W_SLOT_BYTES] = SLOT_BYTES;
                h[W_PROBE] = PROBE as u64;
                h[W_SLOTS] = slots;
                (h[W_BOOT_HI], h[W_BOOT_LO]) = boot;
                h[W_TSC_PER_MS] = tsc_per_ms.max(1);
                write_header(&file, &h).map_err(at)?;
                (h[W_TSC_PER_MS], 0)
            }
        };
        let mapped = SharedSlots::map(&file, HEADER_BYTES, slots as usize).map_err(at)?;
        let table = FlowTable::in_file(mapped)?;
        let repaired = if why_new.is_none() { table.repair() } else { 0 };
        Ok(Opened {
            table,
            file: FlowFile { file, path: path.to_path_buf() },
            tsc_per_ms,
            generation,
            new_because: why_new,
            repaired,
        })
    }

    /// Records the tables generation just published, for the next process.
    pub fn set_generation(&self, generation: u64) -> std::io::Result<()> {
        self.file.write_all_at(&generation.to_le_bytes(), (W_GENERATION * 8) as u64)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FlowEntry, FlowKey};
    use std::net::Ipv4Addr;

    fn entry() -> FlowEntry {
        FlowEntry {
            nat_addr: Ipv4Addr::new(10, 1, 0, 3),
            nat_port: 8080,
            rewrite_dst: true,
            service: 4,
            backend: 1,
            generation: 7,
            timeout_ms: 60_000,
            other: Some((Ipv4Addr::new(192, 168, 50, 1), 61_234)),
            state: 1,
            plain: false,
        }
    }

    fn key(port: u16) -> FlowKey {
        FlowKey {
            src: Ipv4Addr::new(192, 168, 50, 9),
            dst: Ipv4Addr::new(192, 168, 50, 1),
            src_port: port,
            dst_port: 30080,
            proto: 6,
        }
    }

    #[test]
    fn a_second_process_finds_the_flows_and_the_generation() {
        let dir = std::env::temp_dir().join(format!("weir-flowstate-{}", std::process::id()));
        let path = dir.join("flows");
        let _ = std::fs::remove_dir_all(&dir);
        let first = FlowFile::open(&path, 1 << 12, 2_000_000).unwrap();
        assert_eq!((first.generation, first.tsc_per_ms), (0, 2_000_000));
        assert_eq!(first.new_because.as_deref(), Some("no table yet"));
        for p in 0..100 {
            first.table.insert(&key(40_000 + p), &entry(), 1_000).unwrap();
        }
        first.file.set_generation(42).unwrap();
        drop(first);

        // The next process, with another clock estimate: the file's wins.
        let second = FlowFile::open(&path, 1 << 12, 2_100_000).unwrap();
        assert_eq!((second.new_because.as_deref(), second.generation, second.tsc_per_ms), (None, 42, 2_000_000));
        for p in 0..100 {
            assert_eq!(second.table.lookup(&key(40_000 + p), 2_000), Some(entry()), "flow {p} kept");
        }
        assert_eq!(second.table.live_entries(2_000), 100);
        // Held by `second`: a third opener is refused.
        assert!(FlowFile::open(&path, 1 << 12, 2_000_000).err().unwrap().contains("in use"));
        drop(second);

        // Another size: a new, empty table.
        let third = FlowFile::open(&path, 1 << 13, 2_000_000).unwrap();
        assert!(third.new_because.as_ref().is_some_and(|w| w.contains("slots")), "{:?}", third.new_because);
        assert_eq!(third.table.live_entries(2_000), 0);
        drop(third);

        // A header that is not ours: a new table, never a crash.
        std::fs::write(&path, vec![0xa5u8; HEADER_BYTES as usize + 64 * 128]).unwrap();
        let fourth = FlowFile::open(&path, 128, 2_000_000).unwrap();
        assert!(fourth.new_because.as_ref().is_some_and(|w| w.contains("version")), "{:?}", fourth.new_because);
        assert_eq!(fourth.table.live_entries(2_000), 0);
        drop(fourth);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn boot_id_is_read() {
        assert_ne!(boot_id(), (0, 0), "/proc/sys/kernel/random/boot_id");
    }
}
