//! File-backed shared memory for the flow table's slots, so that the flows
//! outlive the process: a restarted weir-dataplane maps the same file and
//! finds every flow where the last one left it (see `flow::FlowTable::in_file`).
//!
//! The file lies on a memory file system (`/run` is tmpfs): its pages are the
//! table's memory, allocated as they are first touched, and gone at reboot.
//! A mapping is `MAP_SHARED`, so every write of a worker is in the file the
//! moment it is made; a crash loses nothing that was written.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;

use crate::flow::Slot;

/// `len` flow-table slots mapped from `file` at byte `offset` (a multiple of
/// the page size), read and written in place.
pub(crate) struct SharedSlots {
    ptr: NonNull<Slot>,
    len: usize,
    bytes: usize,
}

// SAFETY: the mapping is plain shared memory whose only users are `&Slot`
// references; a Slot is made of atomics, so sharing it between threads is
// what it is for, and the mapping may be unmapped by any thread.
unsafe impl Send for SharedSlots {}
// SAFETY: as above: only `&[Slot]` is handed out, and Slot is Sync.
unsafe impl Sync for SharedSlots {}

impl SharedSlots {
    /// Maps `len` slots of `file` (which must be at least `offset + len *
    /// size_of::<Slot>()` bytes long) read-write and shared.
    pub(crate) fn map(file: &File, offset: u64, len: usize) -> std::io::Result<SharedSlots> {
        let bytes = len
            .checked_mul(std::mem::size_of::<Slot>())
            .filter(|b| *b > 0)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "flow table size"))?;
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "offset too large"))?;
        // SAFETY: a fresh mapping chosen by the kernel (no address given), of
        // a file we hold open; nothing else in this process aliases it. Its
        // result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<Slot>()).ok_or_else(|| std::io::Error::other("mmap gave a null mapping"))?;
        Ok(SharedSlots { ptr, len, bytes })
    }

    #[inline(always)]
    pub(crate) fn slots(&self) -> &[Slot] {
        // SAFETY: `ptr` is a live mapping of `len * size_of::<Slot>()`
        // bytes, page-aligned (so aligned for Slot's 64 bytes), until `drop`.
        // Slot is `repr(C)` and made only of AtomicU64 words, for which every
        // bit pattern (whatever the file held) is a valid value, and all
        // access goes through atomics, so threads and other processes that
        // map the file may read and write it at the same time.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SharedSlots {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `map` mapped; no `&Slot` borrowed
        // from `slots()` outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.bytes);
        }
    }
}

/// Whether `dir` is on a file system that lives in memory (tmpfs, ramfs,
/// hugetlbfs): a flow table there costs no disk writes and ends at reboot.
pub fn on_memory_fs(dir: &Path) -> bool {
    const TMPFS: i64 = 0x0102_1994;
    const RAMFS: i64 = 0x8584_58f6;
    const HUGETLBFS: i64 = 0x9584_58f6;
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: statfs writes only into `st`, a zeroed struct of the right
    // type we own; `c` is a NUL-terminated path that outlives the call.
    let (rc, st) = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut st), st)
    };
    // f_type's integer type differs between targets.
    #[allow(clippy::unnecessary_cast)]
    let kind = st.f_type as i64;
    rc == 0 && matches!(kind, TMPFS | RAMFS | HUGETLBFS)
}
