#ifndef WEIR_DPDK_WRAPPER_H
#define WEIR_DPDK_WRAPPER_H
/* The DPDK headers weir binds to, plus helpers for what bindgen cannot reach:
 * macros (rte_errno, rte_pktmbuf_mtod) become static inline functions here and
 * are wrapped like DPDK's own static inline functions. */
#include <rte_config.h>
#include <rte_common.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_dev.h>
#include <rte_bus.h>
#include <rte_version.h>

static inline int weir_errno(void) { return rte_errno; }
static inline void *weir_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
static inline const char *weir_strerror_last(void) { return rte_strerror(rte_errno); }
/* The RSS hash types weir asks for: IP, TCP and UDP over IPv4 and IPv6. */
static inline uint64_t weir_rss_hf_default(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP; }
#endif
