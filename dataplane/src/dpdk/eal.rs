//! EAL init/cleanup and the mbuf pool.

use std::ffi::{c_char, CString};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use super::DpdkError;
use crate::config::MAX_BURST;

static EAL_UP: AtomicBool = AtomicBool::new(false);

/// The initialised EAL. Only one may exist per process, and DPDK cannot be
/// initialised again after it is dropped (that is DPDK's rule).
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Runs `rte_eal_init` with `args` (the first is the program name).
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if EAL_UP.swap(true, Ordering::SeqCst) {
            return Err(DpdkError {
                op: "rte_eal_init".into(),
                code: 114,
                message: "EAL already initialised in this process".into(),
            });
        }
        let cargs: Vec<CString> = args
            .iter()
            .map(|a| {
                CString::new(a.as_str()).map_err(|_| DpdkError {
                    op: "rte_eal_init".into(),
                    code: 22,
                    message: format!("argument {a:?} holds a NUL"),
                })
            })
            .collect::<Result<_, _>>()?;
        // rte_eal_init may permute argv; give it its own array of pointers, and
        // keep the strings alive for the life of the process (EAL keeps some).
        let mut argv: Vec<*mut c_char> = cargs.iter().map(|c| c.as_ptr() as *mut c_char).collect();
        std::mem::forget(cargs);
        let argc = argv.len() as i32;
        // SAFETY: argv holds argc valid NUL-terminated strings that are never
        // freed; rte_eal_init is called once per process (checked above).
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        std::mem::forget(argv);
        if ret < 0 {
            return Err(DpdkError::from_errno("rte_eal_init"));
        }
        Ok(Eal { _private: () })
    }

    /// Registers the calling (non-EAL) thread with DPDK so it gets an lcore id
    /// and a mempool cache. Call once at the start of each worker thread.
    pub fn register_thread(&self) -> Result<u32, DpdkError> {
        // SAFETY: EAL is initialised (we hold an Eal); registration is per thread.
        let ret = unsafe { dpdk_sys::rte_thread_register() };
        if ret < 0 {
            return Err(DpdkError::from_errno("rte_thread_register"));
        }
        Ok(lcore_id())
    }

    /// Undoes `register_thread` for the calling thread.
    pub fn unregister_thread(&self) {
        // SAFETY: releases the calling thread's lcore id; a no-op if it has none.
        unsafe { dpdk_sys::rte_thread_unregister() }
    }

    /// EAL's runtime directory for this process's file prefix
    /// (`/var/run/dpdk/<prefix>` for root).
    pub fn runtime_dir(&self) -> std::path::PathBuf {
        // SAFETY: returns a pointer to a static buffer EAL filled at init.
        let p = unsafe { std::ffi::CStr::from_ptr(dpdk_sys::rte_eal_get_runtime_dir()) };
        std::path::PathBuf::from(p.to_string_lossy().into_owned())
    }

    pub fn version() -> String {
        // SAFETY: rte_version returns a pointer to a static string.
        unsafe { std::ffi::CStr::from_ptr(dpdk_sys::rte_version()).to_string_lossy().into_owned() }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: every port was closed and every worker joined before the
        // owner drops the Eal (the binary's shutdown order).
        unsafe {
            dpdk_sys::rte_eal_cleanup();
        }
    }
}

/// The lcore id of the calling thread (u32::MAX when it has none).
pub fn lcore_id() -> u32 {
    // SAFETY: reads a thread-local variable.
    unsafe { dpdk_sys::rte_lcore_id() }
}

/// A pool of packet buffers (`rte_pktmbuf_pool_create`).
pub struct Mempool {
    ptr: NonNull<dpdk_sys::rte_mempool>,
}

// SAFETY: a DPDK mempool is built for concurrent use from many lcores
// (per-lcore caches over a lock-free ring).
unsafe impl Send for Mempool {}
// SAFETY: as above; all operations through &Mempool are thread-safe in DPDK.
unsafe impl Sync for Mempool {}

impl Mempool {
    pub fn new(_eal: &Eal, name: &str, mbufs: u32, cache: u32) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError {
            op: "rte_pktmbuf_pool_create".into(),
            code: 22,
            message: "name holds a NUL".into(),
        })?;
        // SAFETY: EAL is up (we were given &Eal); cname is a valid C string
        // that DPDK copies. SOCKET_ID_ANY lets DPDK pick memory.
        let p = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                mbufs,
                cache,
                0,
                dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                dpdk_sys::SOCKET_ID_ANY,
            )
        };
        NonNull::new(p)
            .map(|ptr| Mempool { ptr })
            .ok_or_else(|| DpdkError::from_errno(format!("rte_pktmbuf_pool_create({name}, {mbufs} mbufs)")))
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.ptr.as_ptr()
    }

    /// Mbufs currently free in the pool (and its caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid for our lifetime; the count is advisory.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// A fresh packet buffer, or None when the pool is empty.
    pub fn alloc(&self) -> Option<super::Mbuf> {
        // SAFETY: the pool is valid; a non-null result is a fresh mbuf we own.
        let m = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.ptr.as_ptr()) };
        // SAFETY: m is null or an mbuf now owned by us alone.
        unsafe { super::Mbuf::from_raw(m) }
    }

    /// `n` fresh packet buffers (at most `MAX_BURST`) appended to `out` in one
    /// `rte_pktmbuf_alloc_bulk`, or none at all (false) when the pool has
    /// fewer free. `out` should have room reserved: pushing then allocates
    /// nothing.
    pub fn alloc_bulk(&self, out: &mut Vec<super::Mbuf>, n: usize) -> bool {
        let n = n.min(MAX_BURST);
        let mut raw = [std::ptr::null_mut::<dpdk_sys::rte_mbuf>(); MAX_BURST];
        // SAFETY: the pool is valid; raw has room for n pointers, and on
        // success DPDK fills all n of them with fresh, reset mbufs (on
        // failure it fills none).
        let ret = unsafe { dpdk_sys::rte_pktmbuf_alloc_bulk(self.ptr.as_ptr(), raw.as_mut_ptr(), n as u32) };
        if ret != 0 {
            return false;
        }
        for m in &raw[..n] {
            // SAFETY: each pointer is a fresh mbuf owned by us alone, wrapped once.
            if let Some(m) = unsafe { super::Mbuf::from_raw(*m) } {
                out.push(m);
            }
        }
        true
    }
}
