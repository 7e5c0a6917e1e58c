use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn cidr(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

fn peer(c: &str, except: &[&str]) -> PeerConfig {
    PeerConfig { cidr: cidr(c), except: except.iter().map(|e| cidr(e)).collect() }
}

fn rule(id: &str, priority: u32, action: Verdict) -> RuleConfig {
    RuleConfig { id: id.into(), priority, peers: vec![], protocol: None, ports: vec![], action }
}

fn pod(addr: &str, ingress: Option<DirectionConfig>, egress: Option<DirectionConfig>) -> PodAclConfig {
    PodAclConfig { ip: ip(addr), name: format!("ns/{addr}"), ingress, egress }
}

fn dir(rules: Vec<RuleConfig>, default: Verdict) -> Option<DirectionConfig> {
    Some(DirectionConfig { rules, default })
}

use Verdict::{Allow, Deny};

/// One table exercising every field; each case is one packet.
#[test]
fn classifies_every_field() {
    let web = pod(
        "10.1.0.10",
        dir(
            vec![
                // Contiv-style deny of ICMP first.
                RuleConfig { protocol: Some(PROTO_ICMP), ..rule("deny-icmp", 1, Deny) },
                // TCP 80 and 8000-8010 from 10.1.0.0/24 less 10.1.0.128/25.
                RuleConfig {
                    peers: vec![peer("10.1.0.0/24", &["10.1.0.128/25"])],
                    protocol: Some(PROTO_TCP),
                    ports: vec![PortRange::single(80), PortRange { from: 8000, to: 8010 }],
                    ..rule("web", 10, Allow)
                },
                // Any protocol with ports, port 53, from anywhere.
                RuleConfig { ports: vec![PortRange::single(53)], ..rule("dns", 10, Allow) },
                // Protocol 47 (GRE) from one host.
                RuleConfig { peers: vec![peer("192.168.0.7/32", &[])], protocol: Some(47), ..rule("gre", 20, Allow) },
            ],
            Deny,
        ),
        dir(vec![RuleConfig { peers: vec![peer("10.9.0.0/16", &[])], ..rule("no-10.9", 0, Deny) }], Allow),
    );
    let t = AclTable::build(&AclConfig { pods: vec![web] }, &[ip("10.0.0.1")]).unwrap();
    let w = "10.1.0.10";
    // (name, src, dst, protocol, dst port, verdict, deciding rule, denying side)
    type Case<'a> = (&'a str, &'a str, &'a str, u8, u16, Verdict, Option<&'a str>, Option<Direction>);
    let cases: &[Case] = &[
        ("icmp denied by rule", "10.1.0.5", w, PROTO_ICMP, 0, Deny, Some("deny-icmp"), Some(Direction::Ingress)),
        ("tcp 80 from peer", "10.1.0.5", w, PROTO_TCP, 80, Allow, Some("web"), None),
        ("tcp 8005 in range", "10.1.0.5", w, PROTO_TCP, 8005, Allow, Some("web"), None),
        ("tcp 8011 past range", "10.1.0.5", w, PROTO_TCP, 8011, Deny, None, Some(Direction::Ingress)),
        ("tcp 80 from except", "10.1.0.200", w, PROTO_TCP, 80, Deny, None, Some(Direction::Ingress)),
        ("tcp 80 outside cidr", "10.2.0.5", w, PROTO_TCP, 80, Deny, None, Some(Direction::Ingress)),
        ("udp 80: wrong protocol", "10.1.0.5", w, PROTO_UDP, 80, Deny, None, Some(Direction::Ingress)),
        ("udp 53 any protocol rule", "8.8.8.8", w, PROTO_UDP, 53, Allow, Some("dns"), None),
        ("sctp 53 any protocol rule", "8.8.8.8", w, PROTO_SCTP, 53, Allow, Some("dns"), None),
        ("gre from host", "192.168.0.7", w, 47, 53, Allow, Some("gre"), None),
        ("gre from other", "192.168.0.8", w, 47, 0, Deny, None, Some(Direction::Ingress)),
        ("proto 47 port ignored for dns rule", "8.8.8.8", w, 47, 53, Deny, None, Some(Direction::Ingress)),
        ("node address always allowed", "10.0.0.1", w, PROTO_ICMP, 0, Allow, None, None),
        ("egress denied to 10.9", w, "10.9.3.3", PROTO_TCP, 80, Deny, Some("no-10.9"), Some(Direction::Egress)),
        ("egress default allow", w, "10.8.3.3", PROTO_TCP, 80, Allow, None, None),
        ("neither side has policy", "1.1.1.1", "2.2.2.2", PROTO_TCP, 1, Allow, None, None),
    ];
    for (name, src, dst, proto, port, verdict, rule_id, direction) in cases {
        let d = t.evaluate(ip(src), ip(dst), *proto, 1234, *port);
        assert_eq!(d.verdict, *verdict, "{name}");
        assert_eq!(d.rule.and_then(|i| t.rule(i)).map(|r| r.id), *rule_id, "{name}");
        assert_eq!(d.direction, *direction, "{name}");
    }
    // evaluate never counts.
    assert!(t.rules().all(|r| r.hits == 0));
}

#[test]
fn both_sides_must_allow_and_hits_are_counted() {
    let a = pod("10.1.0.1", None, dir(vec![RuleConfig { ..rule("a-out-tcp", 0, Allow) }], Deny));
    let b =
        pod("10.1.0.2", dir(vec![RuleConfig { protocol: Some(PROTO_TCP), ..rule("b-in-tcp", 0, Allow) }], Deny), None);
    let t = AclTable::build(&AclConfig { pods: vec![b, a] }, &[]).unwrap();
    let (a, b) = (ip("10.1.0.1"), ip("10.1.0.2"));
    let d = t.classify(a, b, PROTO_TCP, 1, 2);
    assert_eq!(d.verdict, Allow);
    assert_eq!(t.rule(d.rule.unwrap()).unwrap().id, "b-in-tcp");
    let d = t.classify(a, b, PROTO_UDP, 1, 2);
    assert_eq!((d.verdict, d.direction, d.rule), (Deny, Some(Direction::Ingress), None));
    let counts: Vec<(&str, u64)> = t.rules().map(|r| (r.id, r.hits)).collect();
    // Pods in address order: a (egress) then b (ingress).
    assert_eq!(counts, vec![("a-out-tcp", 2), ("b-in-tcp", 1)]);
    assert_eq!(t.default_hits(b, Direction::Ingress), 1);
    assert_eq!(t.default_hits(a, Direction::Egress), 0);
}

#[test]
fn priority_then_config_order() {
    let p = pod(
        "10.1.0.1",
        dir(vec![rule("late-allow", 5, Allow), rule("first-deny", 1, Deny), rule("tie-allow", 1, Allow)], Allow),
        None,
    );
    let t = AclTable::build(&AclConfig { pods: vec![p] }, &[]).unwrap();
    let ids: Vec<&str> = t.rules().map(|r| r.id).collect();
    assert_eq!(ids, vec!["first-deny", "tie-allow", "late-allow"]);
    assert_eq!(t.evaluate(ip("1.2.3.4"), ip("10.1.0.1"), PROTO_TCP, 1, 1).verdict, Deny);
}

#[test]
fn refuses_bad_configs() {
    let ok_rule = || rule("r", 0, Allow);
    let with = |r: RuleConfig| AclConfig { pods: vec![pod("10.1.0.1", dir(vec![r], Deny), None)] };
    let cases: Vec<(&str, AclConfig, &str)> = vec![
        (
            "duplicate pod",
            AclConfig { pods: vec![pod("10.1.0.1", None, None), pod("10.1.0.1", None, None)] },
            "given twice",
        ),
        ("from > to", with(RuleConfig { ports: vec![PortRange { from: 9, to: 8 }], ..ok_rule() }), "from > to"),
        (
            "ports for icmp",
            with(RuleConfig { protocol: Some(PROTO_ICMP), ports: vec![PortRange::single(1)], ..ok_rule() }),
            "which has none",
        ),
        (
            "except outside",
            with(RuleConfig { peers: vec![peer("10.0.0.0/24", &["10.0.1.0/28"])], ..ok_rule() }),
            "not inside",
        ),
        (
            "except wider",
            with(RuleConfig { peers: vec![peer("10.0.0.0/24", &["10.0.0.0/16"])], ..ok_rule() }),
            "not inside",
        ),
        ("empty id", with(rule("", 0, Allow)), "empty rule id"),
        (
            "duplicate id",
            AclConfig { pods: vec![pod("10.1.0.1", None, dir(vec![ok_rule(), ok_rule()], Deny))] },
            "used twice",
        ),
        (
            "too many rules",
            AclConfig {
                pods: vec![pod(
                    "10.1.0.1",
                    dir((0..=MAX_RULES_PER_DIRECTION).map(|i| rule(&i.to_string(), 0, Allow)).collect(), Deny),
                    None,
                )],
            },
            "per pod and direction",
        ),
    ];
    for (name, cfg, want) in cases {
        let err = AclTable::build(&cfg, &[]).unwrap_err();
        assert!(err.contains(want), "{name}: {err}");
        if name != "duplicate pod" && name != "too many rules" {
            assert!(err.contains("10.1.0.1") && err.contains("rule \""), "{name} names pod and rule: {err}");
        }
    }
}

#[test]
fn config_round_trips_through_json() {
    let json = r#"{"pods":[{"ip":"10.1.0.1","name":"default/web","ingress":{"default":"deny","rules":[
        {"id":"np:default/web/ingress/0/tcp","priority":1000,"protocol":6,
         "peers":[{"cidr":"10.0.0.0/8","except":["10.9.0.0/16"]}],
         "ports":[{"from":80,"to":80}],"action":"allow"}]}}]}"#;
    let cfg: AclConfig = serde_json::from_str(json).unwrap();
    let back: AclConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(cfg, back);
    assert!(serde_json::from_str::<AclConfig>(r#"{"pods":[],"extra":1}"#).is_err());
    assert!(serde_json::from_str::<RuleConfig>(r#"{"id":"x","action":"maybe"}"#).is_err());
}

#[test]
fn dump_is_stable() {
    let cfg = AclConfig {
        pods: vec![
            pod(
                "10.1.0.2",
                dir(
                    vec![RuleConfig {
                        peers: vec![peer("10.1.0.0/24", &["10.1.0.128/25", "10.1.0.0/30"]), peer("10.3.0.1/32", &[])],
                        protocol: Some(PROTO_TCP),
                        ports: vec![PortRange { from: 8000, to: 8080 }, PortRange::single(80)],
                        ..rule("np:a", 1000, Allow)
                    }],
                    Deny,
                ),
                None,
            ),
            pod(
                "10.1.0.1",
                None,
                dir(
                    vec![RuleConfig {
                        peers: vec![peer("10.2.0.0/24", &["10.2.0.0/24"])],
                        ..rule("contiv:p/1", 0, Deny)
                    }],
                    Allow,
                ),
            ),
        ],
    };
    let t = AclTable::build(&cfg, &[ip("10.0.0.1")]).unwrap();
    t.classify(ip("10.1.0.5"), ip("10.1.0.2"), PROTO_TCP, 1, 80);
    t.classify(ip("10.1.0.5"), ip("10.1.0.2"), PROTO_TCP, 1, 81);
    let want = "\
node addresses (ingress always allowed): 10.0.0.1
pod 10.1.0.1 ns/10.1.0.1
  ingress: no policy
  egress: default allow hits=0
    [0] deny contiv:p/1 prio=0 proto=any ports=any peers=none hits=0
pod 10.1.0.2 ns/10.1.0.2
  ingress: default deny hits=1
    [1] allow np:a prio=1000 proto=tcp ports=80,8000-8080 peers=10.1.0.4/30,10.1.0.8/29,10.1.0.16/28,10.1.0.32/27,10.1.0.64/26,10.3.0.1/32 hits=1
  egress: no policy
";
    assert_eq!(t.dump(), want);
}

#[test]
fn counters_follow_rule_ids() {
    let cfg = |ids: &[&str]| AclConfig {
        pods: vec![pod("10.1.0.1", dir(ids.iter().map(|i| rule(i, 0, Deny)).collect(), Deny), None)],
    };
    let old = AclTable::build(&cfg(&["keep", "gone"]), &[]).unwrap();
    for _ in 0..3 {
        old.classify(ip("1.1.1.1"), ip("10.1.0.1"), PROTO_TCP, 1, 1);
    }
    let mut new = AclTable::build(&cfg(&["new", "keep"]), &[]).unwrap();
    new.carry_counters_from(&old);
    let counts: Vec<(&str, u64)> = new.rules().map(|r| (r.id, r.hits)).collect();
    assert_eq!(counts, vec![("new", 0), ("keep", 3)]);
    // Defaults carry too.
    let empty = || AclConfig { pods: vec![pod("10.1.0.1", dir(vec![], Deny), None)] };
    let old = AclTable::build(&empty(), &[]).unwrap();
    old.classify(ip("1.1.1.1"), ip("10.1.0.1"), PROTO_TCP, 1, 1);
    let mut new = AclTable::build(&empty(), &[]).unwrap();
    new.carry_counters_from(&old);
    assert_eq!(new.default_hits(ip("10.1.0.1"), Direction::Ingress), 1);
}

#[test]
fn empty_table_and_odd_inputs_do_not_panic() {
    let t = AclTable::build(&AclConfig::default(), &[]).unwrap();
    assert!(t.is_empty());
    assert_eq!(t.classify(ip("0.0.0.0"), ip("255.255.255.255"), 255, 65535, 65535), Decision::ALLOW);
    assert!(t.rule(0).is_none());
    let all = AclConfig {
        pods: vec![pod(
            "255.255.255.255",
            dir(
                vec![RuleConfig {
                    peers: vec![peer("0.0.0.0/0", &["255.255.255.255/32", "0.0.0.0/32"])],
                    ports: vec![PortRange { from: 0, to: 65535 }],
                    ..rule("edges", 0, Allow)
                }],
                Deny,
            ),
            None,
        )],
    };
    let t = AclTable::build(&all, &[]).unwrap();
    let top = ip("255.255.255.255");
    assert_eq!(t.classify(ip("0.0.0.1"), top, PROTO_TCP, 0, 65535).verdict, Allow);
    assert_eq!(t.classify(ip("255.255.255.254"), top, PROTO_UDP, 0, 0).verdict, Allow);
    assert_eq!(t.classify(ip("0.0.0.0"), top, PROTO_TCP, 0, 1).verdict, Deny);
    assert_eq!(t.classify(top, top, PROTO_TCP, 0, 1).verdict, Deny);
    assert_eq!(t.classify(ip("0.0.0.1"), top, PROTO_ICMP, 0, 1).verdict, Deny);
    assert!(t.dump().contains("peers=0.0.0.1/32,0.0.0.2/31"));
}

#[test]
fn range_to_cidrs() {
    let mut v = Vec::new();
    range_cidrs(0, u32::MAX, &mut v);
    assert_eq!(v, vec![cidr("0.0.0.0/0")]);
    v.clear();
    range_cidrs(u32::from(ip("10.0.0.1")), u32::from(ip("10.0.0.6")), &mut v);
    let s: Vec<String> = v.iter().map(|c| c.to_string()).collect();
    assert_eq!(s, vec!["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]);
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// An address in a small space (so rules and packets meet often), now and
/// then anywhere.
fn rand_addr(rng: &mut Rng) -> Ipv4Addr {
    if rng.chance(10) {
        Ipv4Addr::from(rng.next() as u32)
    } else {
        Ipv4Addr::new(10, 0, rng.below(2) as u8, rng.below(64) as u8)
    }
}

fn rand_cidr(rng: &mut Rng, within: Option<Ipv4Cidr>) -> Ipv4Cidr {
    let (base, min) = within.map_or((rand_addr(rng), 20), |c| (c.addr(), c.len()));
    let len = (min + rng.below(u64::from(33 - min)) as u8).max(min);
    let bits = u32::from(base) | (rng.next() as u32 & !within.map_or(0, |c| c.mask()));
    Ipv4Cidr::new(Ipv4Addr::from(bits), len).unwrap()
}

fn rand_rule(rng: &mut Rng, id: usize) -> RuleConfig {
    let protocol = [None, Some(PROTO_ICMP), Some(PROTO_TCP), Some(PROTO_UDP)][rng.below(4) as usize];
    let peers = (0..rng.below(3))
        .map(|_| {
            let c = rand_cidr(rng, None);
            PeerConfig { cidr: c, except: (0..rng.below(3)).map(|_| rand_cidr(rng, Some(c))).collect() }
        })
        .collect();
    let ports = if protocol == Some(PROTO_ICMP) {
        vec![]
    } else {
        (0..rng.below(3))
            .map(|_| {
                let from = rng.below(20) as u16;
                PortRange { from, to: from + rng.below(5) as u16 }
            })
            .collect()
    };
    let action = if rng.chance(50) { Allow } else { Deny };
    RuleConfig { id: format!("r{id}"), priority: rng.below(4) as u32, peers, protocol, ports, action }
}

/// The semantics, written the slow and obvious way.
fn reference(cfg: &AclConfig, node: &[Ipv4Addr], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, port: u16) -> Verdict {
    let side = |d: &DirectionConfig, peer: Ipv4Addr| {
        let mut rules: Vec<&RuleConfig> = d.rules.iter().collect();
        rules.sort_by_key(|r| r.priority);
        for r in rules {
            let proto_ok = match r.protocol {
                Some(p) => p == proto,
                None => true,
            };
            let port_ok =
                r.ports.is_empty() || (has_ports(proto) && r.ports.iter().any(|p| p.from <= port && port <= p.to));
            let peer_ok = r.peers.is_empty()
                || r.peers.iter().any(|p| p.cidr.contains(peer) && !p.except.iter().any(|x| x.contains(peer)));
            if proto_ok && port_ok && peer_ok {
                return r.action;
            }
        }
        d.default
    };
    if let Some(e) = cfg.pods.iter().find(|p| p.ip == src).and_then(|p| p.egress.as_ref()) {
        if side(e, dst) == Deny {
            return Deny;
        }
    }
    if let Some(i) = cfg.pods.iter().find(|p| p.ip == dst).and_then(|p| p.ingress.as_ref()) {
        if !node.contains(&src) && side(i, src) == Deny {
            return Deny;
        }
    }
    Allow
}

#[test]
fn matches_reference_on_random_tables() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let node = [Ipv4Addr::new(10, 0, 0, 1)];
    // (allowed by a rule, denied by a rule, decided by defaults or no policy)
    let mut seen = [0u32; 3];
    for round in 0..200 {
        let mut cfg = AclConfig::default();
        let mut used = HashSet::new();
        let mut id = 0;
        for _ in 0..rng.below(6) {
            let addr = rand_addr(&mut rng);
            if !used.insert(addr) {
                continue;
            }
            let mut side = |rng: &mut Rng| {
                rng.chance(70).then(|| DirectionConfig {
                    rules: (0..rng.below(8))
                        .map(|_| {
                            id += 1;
                            rand_rule(rng, id)
                        })
                        .collect(),
                    default: if rng.chance(50) { Allow } else { Deny },
                })
            };
            let ingress = side(&mut rng);
            let egress = side(&mut rng);
            cfg.pods.push(PodAclConfig { ip: addr, name: format!("p{round}"), ingress, egress });
        }
        let t = AclTable::build(&cfg, &node).unwrap();
        // Every direction indexed, even the empty ones: same decisions.
        let ix = with_index(&cfg, &node, 0);
        for _ in 0..300 {
            let src = if rng.chance(10) { node[0] } else { rand_addr(&mut rng) };
            let dst = if !cfg.pods.is_empty() && rng.chance(60) {
                cfg.pods[rng.below(cfg.pods.len() as u64) as usize].ip
            } else {
                rand_addr(&mut rng)
            };
            let src = if !cfg.pods.is_empty() && rng.chance(50) {
                cfg.pods[rng.below(cfg.pods.len() as u64) as usize].ip
            } else {
                src
            };
            let proto = [PROTO_ICMP, PROTO_TCP, PROTO_UDP, 47][rng.below(4) as usize];
            let port = rng.below(26) as u16;
            let want = reference(&cfg, &node, src, dst, proto, port);
            let got = t.classify(src, dst, proto, 9, port);
            assert_eq!(
                ix.classify(src, dst, proto, 9, port),
                got,
                "indexed, round {round}: {src} -> {dst} {proto} {port}"
            );
            assert_eq!(got.verdict, want, "round {round}: {src} -> {dst} proto {proto} port {port}\n{cfg:#?}");
            seen[match (got.rule, got.verdict) {
                (Some(_), Allow) => 0,
                (Some(_), Deny) => 1,
                (None, _) => 2,
            }] += 1;
            if let Some(r) = got.rule {
                let info = t.rule(r).unwrap();
                if got.verdict == Deny {
                    assert_eq!(info.action, Deny);
                    assert_eq!(Some(info.direction), got.direction);
                }
            }
        }
        assert_same_counters(&t, &ix);
    }
    // The random tables reach every kind of outcome often.
    assert!(seen.iter().all(|n| *n > 2_000), "{seen:?}");
}

/// `cfg` built with the index on every direction of at least `min_rules`
/// rules (`usize::MAX`: on none).
fn with_index(cfg: &AclConfig, node: &[Ipv4Addr], min_rules: usize) -> AclTable {
    AclTable::build_with(cfg, node, IndexLimits { min_rules, ..IndexLimits::default() }).unwrap()
}

fn lookups(t: &AclTable) -> Vec<Lookup> {
    t.pods.iter().flat_map(|p| [p.ingress, p.egress]).flatten().map(|d| d.lookup).collect()
}

fn indexed_directions(t: &AclTable) -> usize {
    lookups(t).iter().filter(|l| matches!(l, Lookup::Index(_))).count()
}

/// Same rule and default hit counts in both tables (built from one config).
fn assert_same_counters(a: &AclTable, b: &AclTable) {
    let hits = |t: &AclTable| t.rules().map(|r| (r.index, r.hits)).collect::<Vec<_>>();
    assert_eq!(hits(a), hits(b));
    for p in &a.pods {
        for d in [Direction::Ingress, Direction::Egress] {
            assert_eq!(a.default_hits(p.ip, d), b.default_hits(p.ip, d), "{} {d}", p.ip);
        }
    }
}

/// A rule over the whole of each field: edge addresses and ports, wide and
/// nested blocks with excepts, adjacent ranges, any protocol with ports.
fn rand_wide_rule(rng: &mut Rng, id: usize) -> RuleConfig {
    let protocol = [None, None, Some(PROTO_ICMP), Some(PROTO_TCP), Some(PROTO_UDP), Some(PROTO_SCTP), Some(47)]
        [rng.below(7) as usize];
    let peers = (0..rng.below(4))
        .map(|_| {
            let c = match rng.below(6) {
                0 => cidr(
                    ["0.0.0.0/0", "0.0.0.0/32", "255.255.255.255/32", "255.255.255.0/24", "0.0.0.0/24"]
                        [rng.below(5) as usize],
                ),
                1 => {
                    let len = rng.below(9) as u8;
                    Ipv4Cidr::new(Ipv4Addr::from((rng.next() as u32) & !(u32::MAX >> len.max(1))), len).unwrap()
                }
                _ => rand_cidr(rng, None),
            };
            PeerConfig { cidr: c, except: (0..rng.below(3)).map(|_| rand_cidr(rng, Some(c))).collect() }
        })
        .collect();
    let ports = if protocol.is_some_and(|p| !has_ports(p)) {
        vec![]
    } else {
        (0..rng.below(4))
            .map(|_| match rng.below(5) {
                0 => PortRange { from: 0, to: rng.below(3) as u16 },
                1 => PortRange { from: 65535 - rng.below(3) as u16, to: 65535 },
                2 => {
                    let from = rng.next() as u16;
                    PortRange { from, to: from.saturating_add(rng.below(5000) as u16) }
                }
                _ => {
                    let from = rng.below(20) as u16;
                    PortRange { from, to: from + rng.below(5) as u16 }
                }
            })
            .collect()
    };
    let action = if rng.chance(50) { Allow } else { Deny };
    RuleConfig { id: format!("w{id}"), priority: rng.below(8) as u32, peers, protocol, ports, action }
}

/// A packet field near the bounds of some rule of `cfg`, or an edge, or random.
fn rand_peer(rng: &mut Rng, cfg: &AclConfig) -> Ipv4Addr {
    let rules: Vec<&RuleConfig> =
        cfg.pods.iter().flat_map(|p| p.ingress.iter().chain(p.egress.iter())).flat_map(|d| &d.rules).collect();
    let blocks: Vec<Ipv4Cidr> = rules
        .iter()
        .flat_map(|r| &r.peers)
        .flat_map(|p| std::iter::once(p.cidr).chain(p.except.iter().copied()))
        .collect();
    match rng.below(4) {
        0 if !blocks.is_empty() => {
            let (s, e) = cidr_range(&blocks[rng.below(blocks.len() as u64) as usize]);
            let a = [s.wrapping_sub(1), s, e, e + 1][rng.below(4) as usize];
            Ipv4Addr::from(a as u32)
        }
        1 => [Ipv4Addr::new(0, 0, 0, 0), Ipv4Addr::new(255, 255, 255, 255)][rng.below(2) as usize],
        _ => rand_addr(rng),
    }
}

fn rand_port(rng: &mut Rng, cfg: &AclConfig) -> u16 {
    let bounds: Vec<u16> = cfg
        .pods
        .iter()
        .flat_map(|p| p.ingress.iter().chain(p.egress.iter()))
        .flat_map(|d| &d.rules)
        .flat_map(|r| &r.ports)
        .flat_map(|p| [p.from.wrapping_sub(1), p.from, p.to, p.to.wrapping_add(1)])
        .collect();
    match rng.below(4) {
        0 if !bounds.is_empty() => bounds[rng.below(bounds.len() as u64) as usize],
        1 => [0, 65535][rng.below(2) as usize],
        _ => rng.below(26) as u16,
    }
}

/// Large directions (several 64-rule words) under the real threshold: the
/// index decides exactly as the scan does (rule, direction, counters) and
/// as the reference says.
#[test]
fn index_agrees_with_scan_on_large_random_directions() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let node = [Ipv4Addr::new(10, 0, 0, 1)];
    let mut by_rule = 0;
    let mut packets = 0;
    for round in 0..12 {
        let mut cfg = AclConfig::default();
        let mut id = 0;
        let mut used = HashSet::new();
        for _ in 0..1 + rng.below(3) {
            let addr = rand_addr(&mut rng);
            if !used.insert(addr) {
                continue;
            }
            let mut side = |rng: &mut Rng| {
                rng.chance(80).then(|| DirectionConfig {
                    rules: (0..rng.below(300))
                        .map(|_| {
                            id += 1;
                            rand_wide_rule(rng, id)
                        })
                        .collect(),
                    default: if rng.chance(50) { Allow } else { Deny },
                })
            };
            let ingress = side(&mut rng);
            let egress = side(&mut rng);
            cfg.pods.push(PodAclConfig { ip: addr, name: format!("p{round}"), ingress, egress });
        }
        let scan = with_index(&cfg, &node, usize::MAX);
        let ix = AclTable::build(&cfg, &node).unwrap();
        assert_eq!(indexed_directions(&scan), 0);
        let big = lookups(&scan).len()
            - cfg
                .pods
                .iter()
                .flat_map(|p| p.ingress.iter().chain(p.egress.iter()))
                .filter(|d| d.rules.len() < INDEX_MIN_RULES)
                .count();
        assert_eq!(indexed_directions(&ix), big, "round {round}");
        assert!(ix.memory_bytes() > scan.memory_bytes() || big == 0);
        for _ in 0..4000 {
            let pod = |rng: &mut Rng| cfg.pods[rng.below(cfg.pods.len() as u64) as usize].ip;
            let (src, dst) = match rng.below(3) {
                0 => (rand_peer(&mut rng, &cfg), pod(&mut rng)),
                1 => (pod(&mut rng), rand_peer(&mut rng, &cfg)),
                _ => (if rng.chance(10) { node[0] } else { pod(&mut rng) }, pod(&mut rng)),
            };
            let proto = [PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_SCTP, 47, 0, 255][rng.below(7) as usize];
            let port = rand_port(&mut rng, &cfg);
            let want = scan.classify(src, dst, proto, 9, port);
            let got = ix.classify(src, dst, proto, 9, port);
            assert_eq!(got, want, "round {round}: {src} -> {dst} proto {proto} port {port}");
            assert_eq!(got.verdict, reference(&cfg, &node, src, dst, proto, port));
            assert_eq!(ix.evaluate(src, dst, proto, 9, port), want);
            by_rule += usize::from(got.rule.is_some());
            packets += 1;
        }
        assert_same_counters(&scan, &ix);
    }
    assert!(packets >= 40_000 && by_rule > packets / 4, "{by_rule} of {packets} decided by a rule");
}

/// Each field's edges, adjacent ranges, ICMP against rules with ports, and
/// the node address, through the index.
#[test]
fn index_handles_edges() {
    let rules = vec![
        RuleConfig {
            peers: vec![peer("255.255.255.255/32", &[])],
            protocol: Some(PROTO_TCP),
            ports: vec![PortRange::single(65535)],
            ..rule("top", 0, Deny)
        },
        RuleConfig {
            peers: vec![peer("0.0.0.0/32", &[])],
            protocol: Some(PROTO_UDP),
            ports: vec![PortRange::single(0)],
            ..rule("bottom", 1, Deny)
        },
        RuleConfig { ports: vec![PortRange::single(53)], ..rule("any-53", 2, Allow) },
        RuleConfig {
            peers: vec![peer("10.0.0.0/25", &[])],
            ports: vec![PortRange { from: 100, to: 199 }],
            ..rule("low-half", 3, Allow)
        },
        RuleConfig {
            peers: vec![peer("10.0.0.128/25", &[])],
            ports: vec![PortRange { from: 200, to: 299 }],
            ..rule("high-half", 3, Deny)
        },
        RuleConfig { protocol: Some(PROTO_ICMP), ..rule("icmp", 4, Allow) },
        RuleConfig { peers: vec![peer("0.0.0.0/0", &["10.0.0.0/24"])], ..rule("not-10", 5, Deny) },
    ];
    let cfg = AclConfig { pods: vec![pod("10.1.0.1", dir(rules, Allow), None)] };
    let node = [ip("10.0.0.1")];
    let t = with_index(&cfg, &node, 0);
    assert_eq!(indexed_directions(&t), 1);
    assert!(t.dump().contains("    index: "), "{}", t.dump());
    let w = "10.1.0.1";
    let cases: &[(&str, u8, u16, Option<&str>)] = &[
        ("255.255.255.255", PROTO_TCP, 65535, Some("top")),
        ("255.255.255.255", PROTO_TCP, 65534, Some("not-10")),
        ("255.255.255.254", PROTO_TCP, 65535, Some("not-10")),
        ("255.255.255.255", PROTO_UDP, 65535, Some("not-10")),
        ("0.0.0.0", PROTO_UDP, 0, Some("bottom")),
        ("0.0.0.0", PROTO_UDP, 1, Some("not-10")),
        ("0.0.0.0", PROTO_SCTP, 0, Some("not-10")),
        ("0.0.0.1", PROTO_UDP, 0, Some("not-10")),
        ("10.0.0.5", PROTO_UDP, 53, Some("any-53")),
        // ICMP (and other protocols without ports) never match a rule with ports.
        ("10.0.0.5", PROTO_ICMP, 53, Some("icmp")),
        ("10.0.0.5", 47, 53, None),
        ("10.0.0.127", PROTO_TCP, 199, Some("low-half")),
        ("10.0.0.128", PROTO_TCP, 199, None),
        ("10.0.0.127", PROTO_TCP, 200, None),
        ("10.0.0.128", PROTO_TCP, 200, Some("high-half")),
        ("10.0.0.255", PROTO_SCTP, 299, Some("high-half")),
        ("10.0.0.255", PROTO_SCTP, 300, None),
        ("10.0.1.0", PROTO_SCTP, 300, Some("not-10")),
        ("9.255.255.255", PROTO_TCP, 100, Some("not-10")),
        // The node's address passes ingress before any rule.
        ("10.0.0.1", 47, 0, None),
    ];
    let scan = with_index(&cfg, &node, usize::MAX);
    for &(src, proto, port, want) in cases {
        let d = t.classify(ip(src), ip(w), proto, 1, port);
        assert_eq!(d.rule.and_then(|i| t.rule(i)).map(|r| r.id), want, "{src} {proto} {port}");
        assert_eq!(d, scan.classify(ip(src), ip(w), proto, 1, port), "{src} {proto} {port}");
        assert_eq!(d.verdict, reference(&cfg, &node, ip(src), ip(w), proto, port), "{src} {proto} {port}");
    }
    assert_same_counters(&t, &scan);
}

fn decoys(n: usize, peer_of: impl Fn(usize) -> PeerConfig) -> AclConfig {
    let mut rules: Vec<RuleConfig> = (0..n - 1)
        .map(|k| RuleConfig {
            peers: vec![peer_of(k)],
            protocol: Some(PROTO_TCP),
            ports: vec![PortRange::single(80)],
            ..rule(&format!("d{k}"), 0, if k % 4 == 3 { Deny } else { Allow })
        })
        .collect();
    rules.push(RuleConfig { peers: vec![peer("10.0.0.0/8", &[])], ..rule("allow", 0, Allow) });
    AclConfig { pods: vec![pod("10.1.0.1", dir(rules.clone(), Deny), dir(rules, Deny))] }
}

/// The largest direction the limits allow, of /32 peers (the benchmarks'
/// shape), fits the default budgets; the same count of rules whose peers
/// are everything less one address does not, keeps the scan and decides
/// the same.
#[test]
fn largest_directions_index_or_fall_back() {
    let n = MAX_RULES_PER_DIRECTION;
    let host = |k: usize| Ipv4Addr::from(u32::from(ip("172.16.0.0")) + k as u32);
    let cfg = decoys(n, |k| PeerConfig { cidr: Ipv4Cidr::host(host(k)), except: vec![] });
    let t = AclTable::build(&cfg, &[]).unwrap();
    assert_eq!(indexed_directions(&t), 2);
    assert!(t.memory_bytes() < 2 * MAX_INDEX_BYTES_PER_DIRECTION, "{}", t.memory_bytes());
    let w = ip("10.1.0.1");
    let d = t.classify(ip("10.2.3.4"), w, PROTO_TCP, 1, 80);
    assert_eq!(t.rule(d.rule.unwrap()).unwrap().id, "allow");
    let d = t.classify(host(7), w, PROTO_TCP, 1, 80);
    assert_eq!((d.verdict, t.rule(d.rule.unwrap()).unwrap().id), (Deny, "d7"));
    assert_eq!(t.classify(host(7), w, PROTO_TCP, 1, 81).verdict, Deny);
    assert_eq!(
        t.classify(w, host(n - 2), PROTO_TCP, 1, 80).rule.map(|r| t.rule(r).unwrap().id),
        Some(format!("d{}", n - 2)).as_deref()
    );

    // Every rule its own port too.
    let mut cfg = decoys(n, |k| PeerConfig { cidr: Ipv4Cidr::host(host(k)), except: vec![] });
    for (k, r) in cfg.pods[0].ingress.as_mut().unwrap().rules.iter_mut().enumerate() {
        r.ports = vec![PortRange { from: k as u16, to: k as u16 + 1 }];
    }
    let t = AclTable::build(&cfg, &[]).unwrap();
    assert_eq!(indexed_directions(&t), 2);
    let d = t.classify(host(7), w, PROTO_TCP, 1, 8);
    assert_eq!(t.rule(d.rule.unwrap()).unwrap().id, "d7");
    assert_eq!(t.classify(host(7), w, PROTO_TCP, 1, 9).rule, None);
    assert_eq!(t.classify(host(8), w, PROTO_TCP, 1, 9).rule.map(|r| t.rule(r).unwrap().id), Some("d8"));

    let all_but = |k: usize| PeerConfig { cidr: cidr("0.0.0.0/0"), except: vec![Ipv4Cidr::host(host(k))] };
    let cfg = decoys(n, all_but);
    let t = AclTable::build(&cfg, &[]).unwrap();
    assert_eq!(lookups(&t), vec![Lookup::OverBudget(OverBudget::Bytes); 2]);
    assert!(t
        .dump()
        .contains("  ingress: default deny hits=0\n    linear scan: an index would pass its memory budget\n"));
    assert!(t.memory_bytes() < MAX_INDEX_BYTES_PER_DIRECTION);
    // Rule d0 matches everything but host(0).
    assert_eq!(t.classify(host(0), w, PROTO_TCP, 1, 80).rule.map(|r| t.rule(r).unwrap().id), Some("d1"));
    assert_eq!(t.classify(host(5), w, PROTO_TCP, 1, 80).rule.map(|r| t.rule(r).unwrap().id), Some("d0"));
}

/// Small budgets: the directions that pass them keep the scan (and say so),
/// the rest are indexed, and all decide alike.
#[test]
fn budgets_bound_the_indexes() {
    let mut rng = Rng(7);
    let dirs = |rng: &mut Rng, base: usize| {
        dir((0..100).map(|k| rand_wide_rule(rng, base + k)).collect(), if rng.chance(50) { Allow } else { Deny })
    };
    let cfg = AclConfig {
        pods: (0..3u8)
            .map(|i| PodAclConfig {
                ip: Ipv4Addr::new(10, 0, 1, i),
                name: format!("p{i}"),
                ingress: dirs(&mut rng, 1000 * usize::from(i)),
                egress: dirs(&mut rng, 1000 * usize::from(i) + 500),
            })
            .collect(),
    };
    let full = AclTable::build(&cfg, &[]).unwrap();
    assert_eq!(indexed_directions(&full), 6);
    let sizes: Vec<usize> = full.indexes.iter().map(DirIndex::bytes).collect();
    let build = |limits: IndexLimits| AclTable::build_with(&cfg, &[], limits).unwrap();
    let base = IndexLimits::default();
    let tables = [
        // No direction fits.
        (build(IndexLimits { direction_bytes: 64, ..base }), 0, "memory"),
        // The table holds the first two directions' indexes.
        (build(IndexLimits { table_bytes: sizes[0] + sizes[1], ..base }), 2, "memory"),
        // Too little build work for any.
        (build(IndexLimits { direction_work: 50, ..base }), 0, "build work"),
        (build(IndexLimits { table_work: 1, ..base }), 0, "build work"),
    ];
    for (t, indexed, why) in &tables {
        assert_eq!(indexed_directions(t), *indexed);
        let scans = t.dump().matches(&format!("linear scan: an index would pass its {why} budget")).count();
        assert_eq!(scans, 6 - indexed);
        assert!(t.memory_bytes() < full.memory_bytes());
    }
    for _ in 0..20_000 {
        let a = Ipv4Addr::new(10, 0, 1, rng.below(3) as u8);
        let (src, dst) = if rng.chance(50) { (a, rand_peer(&mut rng, &cfg)) } else { (rand_peer(&mut rng, &cfg), a) };
        let proto = [PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_SCTP, 47][rng.below(5) as usize];
        let port = rand_port(&mut rng, &cfg);
        let want = full.evaluate(src, dst, proto, 1, port);
        for (t, _, _) in &tables {
            assert_eq!(t.evaluate(src, dst, proto, 1, port), want, "{src} -> {dst} {proto} {port}");
        }
    }
}

/// Carrying counters, `rule` and `rules` see through the index.
#[test]
fn indexed_tables_carry_counters() {
    let cfg = decoys(40, |k| PeerConfig { cidr: Ipv4Cidr::host(Ipv4Addr::new(172, 16, 0, k as u8)), except: vec![] });
    let old = AclTable::build(&cfg, &[]).unwrap();
    assert_eq!(indexed_directions(&old), 2);
    let w = ip("10.1.0.1");
    old.classify(ip("172.16.0.5"), w, PROTO_TCP, 1, 80);
    old.classify(ip("172.16.0.5"), w, PROTO_TCP, 1, 80);
    old.classify(ip("172.16.0.5"), w, PROTO_UDP, 1, 80);
    let mut new = AclTable::build(&cfg, &[]).unwrap();
    new.carry_counters_from(&old);
    let hit: Vec<(&str, u64)> = new.rules().filter(|r| r.hits > 0).map(|r| (r.id, r.hits)).collect();
    assert_eq!(hit, vec![("d5", 2)]);
    assert_eq!(new.default_hits(w, Direction::Ingress), 1);
}
