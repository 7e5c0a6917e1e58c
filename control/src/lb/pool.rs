//! The LoadBalancer address allocator: which IPv4 addresses of the
//! [`LoadBalancerPool`]s each Service of type LoadBalancer gets. A pure
//! function of the objects ([`allocate`]), so every node that computes it
//! from the same objects gets the same answer, and a restarted leader
//! arrives where the last one left off: the Services' own
//! `status.loadBalancer.ingress` is the only state (a Service keeps what
//! it holds there while it may).
//!
//! The order of claims, strongest first:
//! 1. addresses a Service already holds in its status, if still valid for
//!    it (in a pool eligible for it; the requested ones if it requests
//!    any; from a pool with `autoAssign` if it requests none), oldest
//!    Service first (creationTimestamp, then namespace/name);
//! 2. requested addresses (`weir.dev/load-balancer-ips`, else
//!    `metallb.universe.tf/loadBalancerIPs`, else `spec.loadBalancerIP`),
//!    oldest Service first: all of a Service's or none of them;
//! 3. one address for each remaining Service: with a sharing key, the
//!    lowest address it may share in its pools; else the lowest free
//!    address of the first eligible pool with `autoAssign` (pools in name
//!    order).
//!
//! Services of another `loadBalancerClass` that no pool names (and another
//! proxy's) are not weir's: it writes nothing of theirs, and gives nobody
//! the addresses their status shows.
//!
//! An address goes to one Service, unless every Service holding it and the
//! newcomer carry the same `weir.dev/allow-shared-ip` (or
//! `metallb.universe.tf/allow-shared-ip`) value and no two of them have a
//! (port, protocol) in common. A Service that gets nothing has a problem
//! saying why (naming the holder of a contested address).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service, ServiceStatus};
use k8s_openapi::jiff::Timestamp;
use weir_dataplane::tables::cidr::Ipv4Cidr;

use crate::crd::LoadBalancerPool;
use crate::model::{ClusterObjects, SERVICE_PROXY_NAME};

/// weir's `spec.loadBalancerClass`: Services with it, or with none, are
/// weir's; Services of another class only if a pool names that class.
pub const LB_CLASS: &str = "weir.dev/lb";
/// Requested addresses, comma-separated (first choice).
pub const IPS_ANNOTATION: &str = "weir.dev/load-balancer-ips";
/// Requested addresses as MetalLB reads them (second choice).
pub const METALLB_IPS_ANNOTATION: &str = "metallb.universe.tf/loadBalancerIPs";
/// Services with the same value may share an address (no common port).
pub const SHARED_IP_ANNOTATION: &str = "weir.dev/allow-shared-ip";
/// The same, as MetalLB reads it (when the weir one is absent).
pub const METALLB_SHARED_IP_ANNOTATION: &str = "metallb.universe.tf/allow-shared-ip";

/// What [`allocate`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Every Service weir handles (`namespace/name`), with its addresses:
    /// empty when it has a problem.
    pub ips: BTreeMap<String, Vec<Ipv4Addr>>,
    /// Why a Service got no address.
    pub problems: BTreeMap<String, String>,
    /// Services no longer of type LoadBalancer whose status still holds an
    /// address of a pool: their ingress is to be cleared.
    pub released: BTreeSet<String>,
    /// Pool entries that do not parse (skipped; the rest of the pool
    /// serves).
    pub pool_warnings: Vec<String>,
}

/// A pool's usable addresses, as inclusive ranges of `u32`.
#[derive(Debug, Clone)]
struct Pool {
    name: String,
    ranges: Vec<(u32, u32)>,
    namespaces: Vec<String>,
    class: String,
    auto_assign: bool,
}

impl Pool {
    fn contains(&self, ip: u32) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= ip && ip <= hi)
    }

    fn eligible(&self, c: &Candidate) -> bool {
        self.class == c.class && (self.namespaces.is_empty() || self.namespaces.contains(&c.namespace))
    }
}

/// One pool entry: a prefix (without its network and broadcast addresses
/// below /31, which hosts on the segment would take for their own), a
/// range `first-last`, or one address.
fn parse_entry(text: &str) -> Result<(u32, u32), String> {
    let text = text.trim();
    let v4 = |a: &str| -> Result<u32, String> {
        match a.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => Ok(u32::from(ip)),
            Ok(IpAddr::V6(_)) => Err(format!("{a:?} is IPv6; weir gives IPv4 addresses only")),
            Err(_) => Err(format!("{a:?} is not an IPv4 address")),
        }
    };
    if text.contains('/') {
        let cidr: Ipv4Cidr = text.parse().map_err(|e| {
            if text.contains(':') {
                format!("{text:?} is IPv6; weir gives IPv4 addresses only")
            } else {
                e
            }
        })?;
        let net = u32::from(cidr.addr());
        let last = net | !cidr.mask();
        return Ok(if cidr.len() < 31 { (net + 1, last - 1) } else { (net, last) });
    }
    if let Some((a, b)) = text.split_once('-') {
        let (lo, hi) = (v4(a)?, v4(b)?);
        if lo > hi {
            return Err(format!("range {text:?} ends before it starts"));
        }
        return Ok((lo, hi));
    }
    let ip = v4(text)?;
    Ok((ip, ip))
}

fn class_or_weir(class: Option<&str>) -> String {
    class.filter(|c| !c.is_empty()).unwrap_or(LB_CLASS).to_string()
}

fn parse_pools(pools: &[LoadBalancerPool], warnings: &mut Vec<String>) -> Vec<Pool> {
    let mut out: Vec<Pool> = pools
        .iter()
        .map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let mut ranges = Vec::new();
            for entry in &p.spec.addresses {
                match parse_entry(entry) {
                    Ok(r) => ranges.push(r),
                    Err(e) => warnings.push(format!("LoadBalancerPool {name}: address {entry:?} skipped: {e}")),
                }
            }
            Pool {
                name,
                ranges,
                namespaces: p.spec.namespaces.clone(),
                class: class_or_weir(p.spec.load_balancer_class.as_deref()),
                auto_assign: p.spec.auto_assign,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `namespace/name` of a Service (namespace `default` when it names none,
/// as the API server would).
pub fn service_key(svc: &Service) -> String {
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    format!("{ns}/{}", svc.metadata.name.as_deref().unwrap_or(""))
}

/// The IPv4 addresses of a Service's `status.loadBalancer.ingress`.
pub fn ingress_ips(svc: &Service) -> Vec<Ipv4Addr> {
    let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    ingress.into_iter().flatten().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect()
}

fn is_load_balancer(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

/// Another proxy's Service (kube-proxy's label): never weir's to touch.
fn other_proxy(svc: &Service) -> bool {
    svc.metadata.labels.as_ref().is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME))
}

/// A LoadBalancer Service weir allocates for.
struct Candidate {
    key: String,
    namespace: String,
    class: String,
    created: Option<Timestamp>,
    /// The requested addresses (empty: none requested), or why they are
    /// unusable.
    requested: Result<Vec<Ipv4Addr>, String>,
    held: Vec<Ipv4Addr>,
    share: Option<String>,
    ports: BTreeSet<(i32, String)>,
    /// Another load balancer's Service (or another proxy's): weir gives it
    /// nothing, but gives nobody what its status shows either.
    foreign: bool,
}

fn annotation<'a>(svc: &'a Service, key: &str) -> Option<&'a str> {
    svc.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The addresses a Service asks for: the first of the weir annotation,
/// MetalLB's and `spec.loadBalancerIP` that is set, all IPv4.
fn requested(svc: &Service) -> Result<Vec<Ipv4Addr>, String> {
    let spec_ip = svc.spec.as_ref().and_then(|s| s.load_balancer_ip.as_deref()).filter(|s| !s.trim().is_empty());
    let (source, text) = if let Some(t) = annotation(svc, IPS_ANNOTATION) {
        (format!("annotation {IPS_ANNOTATION}"), t)
    } else if let Some(t) = annotation(svc, METALLB_IPS_ANNOTATION) {
        (format!("annotation {METALLB_IPS_ANNOTATION}"), t)
    } else if let Some(t) = spec_ip {
        ("spec.loadBalancerIP".to_string(), t)
    } else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
            Ok(IpAddr::V6(_)) => return Err(format!("{source}: {part} is IPv6; weir gives IPv4 addresses only")),
            Err(_) => return Err(format!("{source}: {part:?} is not an IPv4 address")),
        }
    }
    if out.is_empty() {
        return Err(format!("{source} names no address"));
    }
    Ok(out)
}

fn candidate(svc: &Service) -> Candidate {
    let spec = svc.spec.as_ref();
    let share = annotation(svc, SHARED_IP_ANNOTATION).or_else(|| annotation(svc, METALLB_SHARED_IP_ANNOTATION));
    let ports = spec
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
        .collect();
    Candidate {
        key: service_key(svc),
        namespace: svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        class: class_or_weir(spec.and_then(|s| s.load_balancer_class.as_deref())),
        created: svc.metadata.creation_timestamp.as_ref().map(|t| t.0),
        requested: requested(svc),
        held: ingress_ips(svc),
        share: share.filter(|s| !s.is_empty()).map(str::to_string),
        ports,
        foreign: false,
    }
}

/// Who holds which address (indices into the candidates).
#[derive(Default)]
struct Claims {
    by_ip: BTreeMap<u32, Vec<usize>>,
}

impl Claims {
    /// Whether candidate `c` may take `ip` next to its holders: Ok, or the
    /// holder that stands in the way and why.
    fn may_take(&self, cands: &[Candidate], c: usize, ip: u32) -> Result<(), String> {
        let Some(holders) = self.by_ip.get(&ip) else { return Ok(()) };
        let me = &cands[c];
        for &h in holders {
            let other = &cands[h];
            if other.foreign {
                let why = format!("of loadBalancerClass {}, not weir's", other.class);
                return Err(format!("{} is held by {} ({why})", Ipv4Addr::from(ip), other.key));
            }
            let why = match (&me.share, &other.share) {
                (None, _) | (_, None) => {
                    format!("both would need the annotation {SHARED_IP_ANNOTATION} with the same value to share it")
                }
                (Some(a), Some(b)) if a != b => format!("their {SHARED_IP_ANNOTATION} values differ ({a:?}, {b:?})"),
                _ => match me.ports.intersection(&other.ports).next() {
                    Some((port, proto)) => format!("both use port {port}/{proto}"),
                    None => continue,
                },
            };
            return Err(format!("{} is held by {} ({why})", Ipv4Addr::from(ip), other.key));
        }
        Ok(())
    }

    fn take(&mut self, c: usize, ip: u32) {
        self.by_ip.entry(ip).or_default().push(c);
    }

    /// The lowest address of `lo..=hi` candidate `c` may take.
    fn lowest(&self, cands: &[Candidate], c: usize, lo: u32, hi: u32) -> Option<u32> {
        let mut next = u64::from(lo);
        for (&ip, _) in self.by_ip.range(lo..=hi) {
            if u64::from(ip) > next {
                break; // a free address before this claimed one
            }
            if self.may_take(cands, c, ip).is_ok() {
                return Some(ip);
            }
            next = u64::from(ip) + 1;
        }
        u32::try_from(next).ok().filter(|&n| n <= hi)
    }
}

/// The allocation for `objs` (see the module doc). Pure and
/// deterministic: no I/O, no clock.
pub fn allocate(objs: &ClusterObjects) -> Allocation {
    let mut a = Allocation::default();
    let pools = parse_pools(&objs.lb_pools, &mut a.pool_warnings);
    let named_classes: BTreeSet<&str> = pools.iter().map(|p| p.class.as_str()).collect();
    let mut cands: Vec<Candidate> = Vec::new();
    for svc in &objs.services {
        if other_proxy(svc) {
            if is_load_balancer(svc) {
                cands.push(Candidate { foreign: true, ..candidate(svc) });
            }
            continue;
        }
        if !is_load_balancer(svc) {
            // Released: what it still shows of a pool is cleared.
            let ips = ingress_ips(svc);
            if ips.iter().any(|ip| pools.iter().any(|p| p.contains(u32::from(*ip)))) {
                a.released.insert(service_key(svc));
            }
            continue;
        }
        let mut c = candidate(svc);
        // Another implementation's class, that no pool names: not weir's.
        c.foreign = c.class != LB_CLASS && !named_classes.contains(c.class.as_str());
        cands.push(c);
    }
    cands.sort_by(|x, y| (x.created, &x.key).cmp(&(y.created, &y.key)));
    let eligible = |c: &Candidate, ip: u32, auto: bool| {
        pools.iter().any(|p| p.eligible(c) && (p.auto_assign || !auto) && p.contains(ip))
    };
    let mut claims = Claims::default();
    let mut got: Vec<Option<Vec<Ipv4Addr>>> = vec![None; cands.len()];
    // What other load balancers' Services show is theirs, first.
    for (i, c) in cands.iter().enumerate().filter(|(_, c)| c.foreign) {
        c.held.iter().for_each(|ip| claims.take(i, u32::from(*ip)));
        got[i] = Some(Vec::new());
    }

    // 1. What Services hold and may keep.
    for (i, c) in cands.iter().enumerate() {
        if got[i].is_some() {
            continue;
        }
        match &c.requested {
            Err(_) => {}
            Ok(req) if !req.is_empty() => {
                let ok = req.iter().all(|ip| {
                    let n = u32::from(*ip);
                    c.held.contains(ip) && eligible(c, n, false) && claims.may_take(&cands, i, n).is_ok()
                });
                if ok {
                    req.iter().for_each(|ip| claims.take(i, u32::from(*ip)));
                    got[i] = Some(req.clone());
                }
            }
            Ok(_) => {
                let keep = c.held.iter().find(|ip| {
                    let n = u32::from(**ip);
                    eligible(c, n, true) && claims.may_take(&cands, i, n).is_ok()
                });
                if let Some(ip) = keep {
                    claims.take(i, u32::from(*ip));
                    got[i] = Some(vec![*ip]);
                }
            }
        }
    }

    // 2. Requested addresses, all or none.
    for (i, c) in cands.iter().enumerate() {
        if got[i].is_some() {
            continue;
        }
        let req = match &c.requested {
            Err(e) => {
                a.problems.insert(c.key.clone(), e.clone());
                continue;
            }
            Ok(req) if req.is_empty() => continue,
            Ok(req) => req,
        };
        let refusal = req.iter().find_map(|ip| {
            let n = u32::from(*ip);
            if !eligible(c, n, false) {
                return Some(format!("requested {ip} is in no LoadBalancerPool for this Service{}", scope(c)));
            }
            claims.may_take(&cands, i, n).err()
        });
        match refusal {
            Some(why) => {
                a.problems.insert(c.key.clone(), why);
            }
            None => {
                req.iter().for_each(|ip| claims.take(i, u32::from(*ip)));
                got[i] = Some(req.clone());
            }
        }
    }

    // 3. One address for each of the others.
    for (i, c) in cands.iter().enumerate() {
        if got[i].is_some() || !matches!(&c.requested, Ok(r) if r.is_empty()) {
            continue;
        }
        let mine: Vec<&Pool> = pools.iter().filter(|p| p.eligible(c)).collect();
        let auto: Vec<&Pool> = mine.iter().copied().filter(|p| p.auto_assign).collect();
        // With a sharing key, an address already shared under it comes
        // first: that is what the key asks for.
        let shared = c.share.as_ref().and_then(|key| {
            claims.by_ip.iter().find_map(|(&ip, holders)| {
                let same = holders.iter().all(|&h| cands[h].share.as_ref() == Some(key));
                let ok = same && auto.iter().any(|p| p.contains(ip)) && claims.may_take(&cands, i, ip).is_ok();
                ok.then_some(ip)
            })
        });
        let pick = shared.or_else(|| {
            auto.iter().find_map(|p| p.ranges.iter().find_map(|&(lo, hi)| claims.lowest(&cands, i, lo, hi)))
        });
        match pick {
            Some(ip) => {
                claims.take(i, ip);
                got[i] = Some(vec![Ipv4Addr::from(ip)]);
            }
            None => {
                let names = |v: &[&Pool]| v.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ");
                let why = if mine.is_empty() {
                    format!("no LoadBalancerPool is for this Service{}", scope(c))
                } else if auto.is_empty() {
                    format!(
                        "its LoadBalancerPools ({}) give only requested addresses (autoAssign: false); request one with {IPS_ANNOTATION}",
                        names(&mine)
                    )
                } else {
                    format!("no free address in LoadBalancerPools {}", names(&auto))
                };
                a.problems.insert(c.key.clone(), why);
            }
        }
    }

    for (c, ips) in cands.iter().zip(got).filter(|(c, _)| !c.foreign) {
        a.ips.insert(c.key.clone(), ips.unwrap_or_default());
    }
    a
}

/// ` (namespace N, class C)`: what decides which pools are a Service's.
fn scope(c: &Candidate) -> String {
    format!(" (namespace {}, loadBalancerClass {})", c.namespace, c.class)
}

/// Writes `a` into the Services' `status.loadBalancer.ingress` (in
/// memory): each handled Service gets exactly its addresses (none when it
/// has a problem), each released one an empty list; other Services are
/// left as they are.
pub fn apply(objs: &mut ClusterObjects, a: &Allocation) {
    for svc in &mut objs.services {
        let key = service_key(svc);
        let ips = match a.ips.get(&key) {
            Some(ips) => ips.as_slice(),
            None if a.released.contains(&key) => &[],
            None => continue,
        };
        let status = svc.status.get_or_insert_with(ServiceStatus::default);
        let lb = status.load_balancer.get_or_insert_with(LoadBalancerStatus::default);
        lb.ingress =
            Some(ips.iter().map(|ip| LoadBalancerIngress { ip: Some(ip.to_string()), ..Default::default() }).collect());
    }
}
