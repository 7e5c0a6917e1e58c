//! The safe layer over DPDK, and the only module of weir-dataplane with `unsafe`.
//!
//! - [`Eal`]: EAL init and cleanup, thread registration, lcore ids.
//! - [`Mempool`]: the mbuf pool; one buffer or a bulk of them at a time.
//! - [`Mbuf`], [`RxBurst`], [`TxBuffer`]: packets that free themselves when
//!   dropped; bursts that own what they hold (and can be read in place and
//!   freed in bulk).
//! - [`port`]: probe (hot-plug) any kind of port by devargs, configure its
//!   queues (RSS where the driver can), start, stop, stats, remove.
//! - [`shm`]: the flow table's slots mapped from a file, shared with the
//!   next process.
//!
//! Every `unsafe` block says why it is sound in a `// SAFETY:` comment.
#![allow(unsafe_code)]

mod eal;
mod mbuf;
pub mod port;
pub mod shm;

pub use eal::{Eal, Mempool};
pub use mbuf::{Flushed, Mbuf, RxBurst, TxBuffer};

use std::ffi::CStr;
use std::fmt;

/// A DPDK call that failed: which call, on what, and DPDK's own words.
#[derive(Debug, Clone)]
pub struct DpdkError {
    pub op: String,
    pub code: i32,
    pub message: String,
}

impl DpdkError {
    /// From a negative-errno return value.
    pub(crate) fn from_ret(op: impl Into<String>, ret: i32) -> Self {
        let code = ret.abs();
        DpdkError { op: op.into(), code, message: strerror(code) }
    }

    /// From `rte_errno`, for calls that return NULL or -1.
    pub(crate) fn from_errno(op: impl Into<String>) -> Self {
        // SAFETY: reads the calling thread's rte_errno; no preconditions.
        let code = unsafe { dpdk_sys::weir_errno() };
        DpdkError { op: op.into(), code, message: strerror(code) }
    }
}

fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string that stays valid until the next call on this
    // thread; we copy it out at once.
    unsafe {
        let p = dpdk_sys::rte_strerror(code);
        if p.is_null() {
            return format!("error {code}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {} (errno {})", self.op, self.message, self.code)
    }
}

impl std::error::Error for DpdkError {}

/// TSC cycles since an arbitrary point, and their frequency ([`tsc_hz`]).
pub fn tsc() -> u64 {
    // SAFETY: reads the time-stamp counter; no memory is touched.
    unsafe { dpdk_sys::rte_rdtsc() }
}

pub fn tsc_hz() -> u64 {
    // SAFETY: returns a value computed at EAL init (0 before it).
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}
