//! Packets that free themselves: [`Mbuf`] owns one `rte_mbuf`; [`RxBurst`]
//! fills from an rx queue and hands out `Mbuf`s; [`TxBuffer`] collects them
//! per port and sends them in one `rte_eth_tx_burst`, freeing what the queue
//! refused.

use std::ptr::NonNull;

use crate::config::MAX_BURST;
use crate::pipeline::{NoRoom, PacketBuf};

/// One owned packet buffer. Dropping it returns it to its pool.
pub struct Mbuf {
    ptr: NonNull<dpdk_sys::rte_mbuf>,
}

// SAFETY: an mbuf is owned by exactly one Mbuf; moving ownership across
// threads is how DPDK pipelines hand packets over.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// # Safety
    /// `m` must be null or an mbuf that nobody else owns or will free.
    pub(crate) unsafe fn from_raw(m: *mut dpdk_sys::rte_mbuf) -> Option<Mbuf> {
        NonNull::new(m).map(|ptr| Mbuf { ptr })
    }

    /// Gives up ownership (to a tx queue).
    fn into_raw(self) -> *mut dpdk_sys::rte_mbuf {
        let p = self.ptr.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Sets the data length of a fresh (single-segment) mbuf, e.g. one from
    /// `Mempool::alloc`, before writing a packet into it.
    pub fn set_len(&mut self, len: usize) -> Result<(), NoRoom> {
        let cur = self.len();
        if len >= cur {
            self.append(len - cur)
        } else {
            self.trim(cur - len)
        }
    }

    fn raw(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: ptr is a valid mbuf that we own for our whole lifetime.
        unsafe { self.ptr.as_ref() }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (chain) and nobody uses it after this.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.ptr.as_ptr()) }
    }
}

impl PacketBuf for Mbuf {
    /// The first segment's bytes. weir's ports use one segment per packet
    /// (2 KiB buffers, MTU below that); a longer chain shows its first segment.
    #[inline]
    fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off is the start of data_len initialised
        // bytes inside this mbuf's buffer, which we own.
        unsafe {
            std::slice::from_raw_parts((m.buf_addr as *const u8).add(usize::from(m.data_off)), usize::from(m.data_len))
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw();
        let (addr, off, len) = (m.buf_addr as *mut u8, usize::from(m.data_off), usize::from(m.data_len));
        // SAFETY: as in `data`; &mut self makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(addr.add(off), len) }
    }

    fn prepend(&mut self, n: usize) -> Result<(), NoRoom> {
        let n = u16::try_from(n).map_err(|_| NoRoom)?;
        // SAFETY: we own the mbuf; rte_pktmbuf_prepend checks the headroom and
        // returns NULL (changing nothing) when there is too little.
        let p = unsafe { dpdk_sys::rte_pktmbuf_prepend(self.ptr.as_ptr(), n) };
        if p.is_null() {
            Err(NoRoom)
        } else {
            Ok(())
        }
    }

    fn adj(&mut self, n: usize) -> Result<(), NoRoom> {
        let n = u16::try_from(n).map_err(|_| NoRoom)?;
        // SAFETY: we own the mbuf; rte_pktmbuf_adj checks the length.
        let p = unsafe { dpdk_sys::rte_pktmbuf_adj(self.ptr.as_ptr(), n) };
        if p.is_null() {
            Err(NoRoom)
        } else {
            Ok(())
        }
    }

    fn trim(&mut self, n: usize) -> Result<(), NoRoom> {
        let n = u16::try_from(n).map_err(|_| NoRoom)?;
        // SAFETY: we own the mbuf; rte_pktmbuf_trim checks the length.
        let r = unsafe { dpdk_sys::rte_pktmbuf_trim(self.ptr.as_ptr(), n) };
        if r != 0 {
            Err(NoRoom)
        } else {
            Ok(())
        }
    }

    fn append(&mut self, n: usize) -> Result<(), NoRoom> {
        let n = u16::try_from(n).map_err(|_| NoRoom)?;
        // SAFETY: we own the mbuf; rte_pktmbuf_append checks the tailroom.
        let p = unsafe { dpdk_sys::rte_pktmbuf_append(self.ptr.as_ptr(), n) };
        if p.is_null() {
            Err(NoRoom)
        } else {
            Ok(())
        }
    }
}

/// Up to `MAX_BURST` received packets. Packets not taken are freed on drop.
pub struct RxBurst {
    pkts: [*mut dpdk_sys::rte_mbuf; MAX_BURST],
    next: usize,
    len: usize,
}

impl Default for RxBurst {
    fn default() -> Self {
        RxBurst { pkts: [std::ptr::null_mut(); MAX_BURST], next: 0, len: 0 }
    }
}

impl RxBurst {
    /// Receives up to `max` (≤ MAX_BURST) packets from a started port's queue.
    /// Packets still held from a previous fill are freed first.
    #[inline]
    pub fn fill(&mut self, port: u16, queue: u16, max: usize) -> usize {
        self.release();
        // DPDK indexes fixed-size arrays with these ids and checks them only
        // in debug builds of DPDK; never let a stray id index past them.
        if usize::from(port) >= dpdk_sys::RTE_MAX_ETHPORTS as usize
            || u32::from(queue) >= dpdk_sys::RTE_MAX_QUEUES_PER_PORT
        {
            return 0;
        }
        let max = max.min(MAX_BURST) as u16;
        // SAFETY: pkts has room for `max` pointers; the port/queue pair is
        // started and polled by this thread only (the worker's rx plan gives
        // each queue to one worker). DPDK checks port/queue ids in debug builds
        // only, so callers pass ids from the published plan.
        let n = unsafe { dpdk_sys::rte_eth_rx_burst(port, queue, self.pkts.as_mut_ptr(), max) };
        self.next = 0;
        self.len = usize::from(n);
        self.len
    }

    /// Total bytes of the packets received by the last `fill`.
    #[inline]
    pub fn bytes(&self) -> u64 {
        self.pkts[self.next..self.len]
            .iter()
            // SAFETY: every pointer in next..len is an mbuf we own.
            .map(|m| u64::from(unsafe { (**m).pkt_len }))
            .sum()
    }

    /// Sends every packet still held straight out of (port, queue) in one
    /// tx burst, untouched, and frees what the queue refuses: the io
    /// forwarding path, with no per-packet work at all.
    #[inline]
    pub fn send_all(&mut self, port: u16, queue: u16) -> Flushed {
        let n = self.len - self.next;
        if n == 0 {
            return Flushed::default();
        }
        if usize::from(port) >= dpdk_sys::RTE_MAX_ETHPORTS as usize
            || u32::from(queue) >= dpdk_sys::RTE_MAX_QUEUES_PER_PORT
        {
            self.release();
            return Flushed { sent: 0, bytes: 0, dropped: n as u64 };
        }
        // SAFETY: pkts[next..len] are mbufs we own; the tx queue belongs to
        // this worker alone; tx_burst takes ownership of the first `sent`.
        let sent = usize::from(unsafe {
            dpdk_sys::rte_eth_tx_burst(port, queue, self.pkts.as_mut_ptr().add(self.next), n as u16)
        });
        self.next += sent;
        self.release();
        Flushed { sent: sent as u64, bytes: 0, dropped: (n - sent) as u64 }
    }

    /// The bytes of every packet still held (first segment each), without
    /// taking them: a receiver that only reads what arrived looks at them
    /// here and then frees the whole burst with [`RxBurst::free_all`].
    #[inline]
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.pkts[self.next..self.len].iter().map(|m| {
            // SAFETY: every pointer in next..len is an mbuf we own; buf_addr +
            // data_off is the start of data_len initialised bytes inside its
            // buffer, which lives until we free it (which needs &mut self).
            unsafe {
                let m = &**m;
                std::slice::from_raw_parts(
                    (m.buf_addr as *const u8).add(usize::from(m.data_off)),
                    usize::from(m.data_len),
                )
            }
        })
    }

    /// Frees every packet still held, in one `rte_pktmbuf_free_bulk`.
    #[inline]
    pub fn free_all(&mut self) {
        let n = self.len - self.next;
        if n > 0 {
            // SAFETY: pkts[next..len] are n mbufs we own and never handed out;
            // nobody uses them after this.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(self.pkts.as_mut_ptr().add(self.next), n as u32) }
        }
        self.next = 0;
        self.len = 0;
    }

    fn release(&mut self) {
        for m in &self.pkts[self.next..self.len] {
            // SAFETY: pointers in next..len are mbufs we own and never handed out.
            unsafe { dpdk_sys::rte_pktmbuf_free(*m) }
        }
        self.next = 0;
        self.len = 0;
    }
}

impl Iterator for RxBurst {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next >= self.len {
            return None;
        }
        let m = self.pkts[self.next];
        self.next += 1;
        // SAFETY: the pointer came from rx_burst and is handed out once.
        unsafe { Mbuf::from_raw(m) }
    }
}

impl Drop for RxBurst {
    fn drop(&mut self) {
        self.release();
    }
}

/// Packets waiting to go out of one (port, tx queue).
pub struct TxBuffer {
    pkts: [*mut dpdk_sys::rte_mbuf; MAX_BURST],
    len: usize,
    bytes: u64,
}

impl Default for TxBuffer {
    fn default() -> Self {
        TxBuffer { pkts: [std::ptr::null_mut(); MAX_BURST], len: 0, bytes: 0 }
    }
}

/// What a flush did: packets and bytes sent, packets the queue refused (freed).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub sent: u64,
    pub bytes: u64,
    pub dropped: u64,
}

impl TxBuffer {
    pub fn is_full(&self) -> bool {
        self.len == MAX_BURST
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a packet; the caller flushes first when `is_full`.
    /// Returns the packet back if the buffer is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == MAX_BURST {
            return Err(m);
        }
        self.bytes += u64::from(m.raw().pkt_len);
        self.pkts[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Sends everything queued out of (port, queue); frees what is refused.
    #[inline]
    pub fn flush(&mut self, port: u16, queue: u16) -> Flushed {
        if self.len == 0 {
            return Flushed::default();
        }
        if usize::from(port) >= dpdk_sys::RTE_MAX_ETHPORTS as usize
            || u32::from(queue) >= dpdk_sys::RTE_MAX_QUEUES_PER_PORT
        {
            let dropped = self.discard();
            return Flushed { sent: 0, bytes: 0, dropped };
        }
        // SAFETY: pkts[..len] are mbufs we own; the tx queue belongs to this
        // worker alone (one tx queue per worker per port). rte_eth_tx_burst
        // takes ownership of the first `sent` of them.
        let sent =
            usize::from(unsafe { dpdk_sys::rte_eth_tx_burst(port, queue, self.pkts.as_mut_ptr(), self.len as u16) });
        let mut bytes = self.bytes;
        for m in &self.pkts[sent..self.len] {
            // SAFETY: the queue refused these; we still own them.
            unsafe {
                bytes -= u64::from((**m).pkt_len);
                dpdk_sys::rte_pktmbuf_free(*m);
            }
        }
        let out = Flushed { sent: sent as u64, bytes, dropped: (self.len - sent) as u64 };
        self.len = 0;
        self.bytes = 0;
        out
    }

    /// The bytes of every packet queued (first segment each), in the order
    /// they will be sent: what a tx capture copies just before the burst.
    #[inline]
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.pkts[..self.len].iter().map(|m| {
            // SAFETY: pkts[..len] are mbufs we own until the flush hands them
            // to the driver (which needs &mut self); buf_addr + data_off is
            // the start of data_len initialised bytes inside each buffer.
            unsafe {
                let m = &**m;
                std::slice::from_raw_parts(
                    (m.buf_addr as *const u8).add(usize::from(m.data_off)),
                    usize::from(m.data_len),
                )
            }
        })
    }

    /// Frees everything queued without sending (a port that went away).
    pub fn discard(&mut self) -> u64 {
        for m in &self.pkts[..self.len] {
            // SAFETY: pkts[..len] are mbufs we own.
            unsafe { dpdk_sys::rte_pktmbuf_free(*m) }
        }
        let n = self.len as u64;
        self.len = 0;
        self.bytes = 0;
        n
    }
}

impl Drop for TxBuffer {
    fn drop(&mut self) {
        self.discard();
    }
}
