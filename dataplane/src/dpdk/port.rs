//! Ports: probe any kind by devargs (hot-plug, while workers run), set up rx
//! queues (with RSS when there are several and the driver can) and one tx
//! queue per worker, start, stop, read stats and link, and remove.

use std::ffi::{CStr, CString};

use super::{DpdkError, Mempool};
use crate::wire::MacAddr;

pub type PortId = u16;

/// Probes the device `devargs` names (e.g. `net_af_packet_a,iface=veth0` or a
/// PCI address) and returns its ethdev port id, looked up by `dev_name`.
pub fn attach(devargs: &str, dev_name: &str) -> Result<PortId, DpdkError> {
    let c = CString::new(devargs).map_err(|_| DpdkError {
        op: "rte_dev_probe".into(),
        code: 22,
        message: "devargs hold a NUL".into(),
    })?;
    // SAFETY: c is a valid C string; rte_dev_probe copies what it keeps.
    let ret = unsafe { dpdk_sys::rte_dev_probe(c.as_ptr()) };
    if ret < 0 {
        return Err(DpdkError::from_ret(format!("rte_dev_probe({devargs})"), ret));
    }
    port_by_name(dev_name).ok_or_else(|| DpdkError {
        op: format!("rte_eth_dev_get_port_by_name({dev_name})"),
        code: 19,
        message: "probed, but no ethdev port has that name".into(),
    })
}

pub fn port_by_name(dev_name: &str) -> Option<PortId> {
    let c = CString::new(dev_name).ok()?;
    let mut id: u16 = 0;
    // SAFETY: c is a valid C string and id a valid out-pointer.
    let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    (ret == 0).then_some(id)
}

/// What the driver can do.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub rss_offloads: u64,
}

pub fn info(port: PortId) -> Result<PortInfo, DpdkError> {
    let mut di = dpdk_sys::rte_eth_dev_info::default();
    // SAFETY: di is a valid out-pointer; an invalid port id returns an error.
    let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(port, &mut di) };
    if ret != 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_dev_info_get({port})"), ret));
    }
    let driver = if di.driver_name.is_null() {
        String::new()
    } else {
        // SAFETY: driver_name points at the driver's static name string.
        unsafe { CStr::from_ptr(di.driver_name).to_string_lossy().into_owned() }
    };
    Ok(PortInfo {
        driver,
        max_rx_queues: di.max_rx_queues,
        max_tx_queues: di.max_tx_queues,
        rss_offloads: di.flow_type_rss_offloads,
    })
}

/// Queue layout for `setup`.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
}

/// Configures and starts a probed port. Returns whether RSS is on.
pub fn setup(port: PortId, q: QueueConfig, pool: &Mempool) -> Result<bool, DpdkError> {
    let pi = info(port)?;
    if q.rx_queues > pi.max_rx_queues || q.tx_queues > pi.max_tx_queues {
        return Err(DpdkError {
            op: format!("configure port {port} ({})", pi.driver),
            code: 22,
            message: format!(
                "wants {} rx / {} tx queues, driver allows {} / {}",
                q.rx_queues, q.tx_queues, pi.max_rx_queues, pi.max_tx_queues
            ),
        });
    }
    let mut conf = dpdk_sys::rte_eth_conf::default();
    // SAFETY: a pure function returning a constant.
    let want = unsafe { dpdk_sys::weir_rss_hf_default() } & pi.rss_offloads;
    let rss = q.rx_queues > 1 && want != 0;
    if rss {
        conf.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = want;
    }
    // SAFETY: conf is a valid, fully initialised rte_eth_conf; the port is
    // probed and stopped.
    let ret = unsafe { dpdk_sys::rte_eth_dev_configure(port, q.rx_queues, q.tx_queues, &conf) };
    if ret != 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_dev_configure({port})"), ret));
    }
    let (mut nrx, mut ntx) = (q.rx_descriptors, q.tx_descriptors);
    // SAFETY: valid out-pointers; the driver clamps to what it supports.
    let ret = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut nrx, &mut ntx) };
    if ret != 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_dev_adjust_nb_rx_tx_desc({port})"), ret));
    }
    // SAFETY: reads the port's NUMA socket; -1 (unknown) is accepted below.
    let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(port) };
    let socket = if socket < 0 { 0 } else { socket as u32 };
    for rxq in 0..q.rx_queues {
        // SAFETY: the port is configured with rx_queues queues; NULL conf
        // means the driver's defaults; the pool outlives the port (the binary
        // keeps it until after every port is removed).
        let ret = unsafe { dpdk_sys::rte_eth_rx_queue_setup(port, rxq, nrx, socket, std::ptr::null(), pool.as_ptr()) };
        if ret != 0 {
            return Err(DpdkError::from_ret(format!("rte_eth_rx_queue_setup({port}, {rxq})"), ret));
        }
    }
    for txq in 0..q.tx_queues {
        // SAFETY: as above, for tx.
        let ret = unsafe { dpdk_sys::rte_eth_tx_queue_setup(port, txq, ntx, socket, std::ptr::null()) };
        if ret != 0 {
            return Err(DpdkError::from_ret(format!("rte_eth_tx_queue_setup({port}, {txq})"), ret));
        }
    }
    // SAFETY: every queue is set up.
    let ret = unsafe { dpdk_sys::rte_eth_dev_start(port) };
    if ret != 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_dev_start({port})"), ret));
    }
    // Frames for the gateway MAC must reach us whatever the port's own MAC is.
    // Some drivers cannot (and need not); that is not an error.
    // SAFETY: the port is started.
    unsafe {
        dpdk_sys::rte_eth_promiscuous_enable(port);
    }
    Ok(rss)
}

/// Stops the port and removes its device. The caller must have made sure no
/// worker polls or sends on it any more (`Snapshot::synchronize`).
pub fn remove(port: PortId) -> Result<(), DpdkError> {
    let mut di = dpdk_sys::rte_eth_dev_info::default();
    // SAFETY: valid out-pointer.
    let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(port, &mut di) };
    if ret != 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_dev_info_get({port})"), ret));
    }
    // SAFETY: no worker uses the port (caller's promise); stopping an already
    // stopped port is harmless.
    let ret = unsafe { dpdk_sys::rte_eth_dev_stop(port) };
    if ret != 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_dev_stop({port})"), ret));
    }
    // SAFETY: di.device is the port's rte_device, valid until removed here;
    // removal closes the ethdev and frees its queues.
    let ret = unsafe { dpdk_sys::rte_dev_remove(di.device) };
    if ret != 0 {
        return Err(DpdkError::from_ret(format!("rte_dev_remove(port {port})"), ret));
    }
    Ok(())
}

pub fn mac_addr(port: PortId) -> Result<MacAddr, DpdkError> {
    let mut a = dpdk_sys::rte_ether_addr::default();
    // SAFETY: valid out-pointer.
    let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(port, &mut a) };
    if ret != 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_macaddr_get({port})"), ret));
    }
    Ok(MacAddr(a.addr_bytes))
}

/// The port's MTU (IP MTU, bytes).
pub fn mtu(port: PortId) -> Result<u16, DpdkError> {
    let mut m: u16 = 0;
    // SAFETY: valid out-pointer.
    let ret = unsafe { dpdk_sys::rte_eth_dev_get_mtu(port, &mut m) };
    if ret != 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_dev_get_mtu({port})"), ret));
    }
    Ok(m)
}

/// The driver's own counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct NicStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_nombuf: u64,
}

pub fn stats(port: PortId) -> Result<NicStats, DpdkError> {
    let mut s = dpdk_sys::rte_eth_stats::default();
    // SAFETY: valid out-pointer; stats reads are safe alongside the datapath.
    let ret = unsafe { dpdk_sys::rte_eth_stats_get(port, &mut s) };
    if ret != 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_stats_get({port})"), ret));
    }
    Ok(NicStats {
        rx_packets: s.ipackets,
        tx_packets: s.opackets,
        rx_bytes: s.ibytes,
        tx_bytes: s.obytes,
        rx_missed: s.imissed,
        rx_errors: s.ierrors,
        tx_errors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
    })
}

/// Link up?, speed in Mbit/s.
pub fn link(port: PortId) -> (bool, u32) {
    let mut l = dpdk_sys::rte_eth_link::default();
    // SAFETY: valid out-pointer; the nowait variant does not block.
    let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(port, &mut l) };
    if ret != 0 {
        return (false, 0);
    }
    (l.link_status() != 0, l.link_speed)
}
