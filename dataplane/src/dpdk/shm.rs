//! The flow table's slots in mapped memory: file-backed and shared, so that
//! the flows outlive the process (a restarted weir-dataplane maps the same
//! file and finds every flow where the last one left it; see `flowstate`),
//! or anonymous; either way 2 MiB-aligned and advised for huge pages, so
//! that a random slot of a big table rarely costs a TLB miss.
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

/// Transparent huge pages are this big and this aligned (x86-64, arm64 with
/// 4 KiB pages): a table of many slots aligned to it can sit in huge pages,
/// so a random slot costs a cache miss but rarely a TLB miss too.
const HUGE: usize = 2 << 20;

impl SharedSlots {
    /// Maps `len` slots of `file` (which must be at least `offset + len *
    /// size_of::<Slot>()` bytes long; `offset` a multiple of 2 MiB) read-write
    /// and shared, at a 2 MiB-aligned address, and asks for huge pages
    /// (which a tmpfs gives when its `shmem_enabled` allows it).
    pub(crate) fn map(file: &File, offset: u64, len: usize) -> std::io::Result<SharedSlots> {
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "offset too large"))?;
        Self::mapped(len, libc::MAP_SHARED | libc::MAP_FIXED, file.as_raw_fd(), offset)
    }

    /// `len` zeroed (empty) slots of this process's own memory, 2 MiB-aligned
    /// and advised for transparent huge pages.
    pub(crate) fn anonymous(len: usize) -> std::io::Result<SharedSlots> {
        Self::mapped(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED, -1, 0)
    }

    fn mapped(len: usize, flags: libc::c_int, fd: libc::c_int, offset: libc::off_t) -> std::io::Result<SharedSlots> {
        let bytes = len
            .checked_mul(std::mem::size_of::<Slot>())
            .filter(|b| *b > 0)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "flow table size"))?;
        let reserve = bytes
            .checked_add(HUGE)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "flow table size"))?;
        // SAFETY: reserves address space only (no access, no memory behind
        // it), at an address the kernel chooses; the result is checked.
        let r = unsafe {
            libc::mmap(std::ptr::null_mut(), reserve, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if r == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = r as usize;
        let start = base.next_multiple_of(HUGE);
        // SAFETY: `start..start + bytes` lies inside the reservation just
        // made, which nothing else uses: MAP_FIXED replaces exactly that
        // part of it with the real mapping.
        let p = unsafe {
            libc::mmap(start as *mut libc::c_void, bytes, libc::PROT_READ | libc::PROT_WRITE, flags, fd, offset)
        };
        // SAFETY: each call unmaps a part of our own reservation that no
        // reference points into: the slack before `start` and after the
        // mapping (or, when mapping failed, all of it).
        unsafe {
            if p == libc::MAP_FAILED {
                let e = std::io::Error::last_os_error();
                libc::munmap(r, reserve);
                return Err(e);
            }
            if start > base {
                libc::munmap(r, start - base);
            }
            let tail = base + reserve - (start + bytes);
            if tail > 0 {
                libc::munmap((start + bytes) as *mut libc::c_void, tail);
            }
            // Advice only: without huge pages the table works the same.
            libc::madvise(p, bytes, libc::MADV_HUGEPAGE);
        }
        let ptr = NonNull::new(p.cast::<Slot>()).ok_or_else(|| std::io::Error::other("mmap gave a null mapping"))?;
        Ok(SharedSlots { ptr, len, bytes })
    }

    #[inline(always)]
    pub(crate) fn slots(&self) -> &[Slot] {
        // SAFETY: `ptr` is a live mapping of `len * size_of::<Slot>()`
        // bytes, 2 MiB-aligned (so aligned for Slot's 64 bytes), until
        // `drop`. Slot is `repr(C)` and made only of AtomicU64 words, for
        // which every bit pattern (whatever the file held, or the zeros of
        // an anonymous mapping) is a valid value, and all access goes through
        // atomics, so threads and other processes that map the file may read
        // and write it at the same time.
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

/// Whether `dir` is on a file system that lives in memory (tmpfs, ramfs):
/// a flow table there costs no disk writes and ends at reboot. (hugetlbfs
/// files cannot be written with `write`, which the header needs.)
pub fn on_memory_fs(dir: &Path) -> bool {
    const TMPFS: i64 = 0x0102_1994;
    const RAMFS: i64 = 0x8584_58f6;
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
    rc == 0 && matches!(kind, TMPFS | RAMFS)
}
