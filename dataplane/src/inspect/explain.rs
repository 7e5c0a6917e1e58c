//! `weirctl explain`: the path a described packet would take, computed by
//! the workers' own pipeline code against the live tables, as a dry run;
//! and the rendering of recorded steps that `trace` shares.

use std::net::Ipv4Addr;

use serde_json::json;

use super::packet::{build, describe, proto_name, spec_line};
use super::{ActionReport, Explanation, PacketSpec, StepReport};
use crate::flow::{FlowEntry, FlowKey, FlowTable};
use crate::pipeline::nat::{DryRun, Nat};
use crate::pipeline::{self, Action, NoEvents, Recorder, Step, TestBuf};
use crate::tables::acl::{Decision, Direction, Verdict};
use crate::tables::{Hop, PortId, Tables};

/// Explains `spec` against tables `t` and the live flow table `flows` at
/// `now_ms` (the workers' clock). Changes nothing: see
/// [`crate::pipeline::nat::Nat`] for how the dry run keeps the flow table,
/// the policy counters and the SNAT ports as they are; nothing is sent and
/// no worker counter moves (the frame never reaches a worker).
pub fn explain(t: &Tables, flows: &FlowTable, now_ms: u64, spec: &PacketSpec) -> Result<Explanation, String> {
    let (port, frame) = build(t, spec)?;
    let dry = DryRun::default();
    let nat = Nat::dry_run(flows, &dry, now_ms);
    let mut buf = TestBuf::new(&frame);
    let mut rec = Recorder::default();
    let action = pipeline::process_traced(t, Some(&nat), port, &mut buf, &mut NoEvents, &mut rec);
    let vxlan_port = t.overlay.as_ref().map_or(crate::wire::vxlan::DEFAULT_PORT, |o| o.vxlan_port);
    let leaves = matches!(action, Action::Forward(_) | Action::Reply(_) | Action::Resolve { .. });
    Ok(Explanation {
        packet: format!("{} ({})", spec_line(spec), describe(&frame, vxlan_port)),
        in_port: spec.in_port.clone(),
        generation: t.generation,
        steps: render_steps(t, rec.steps()),
        action: render_action(t, port, action),
        output: leaves.then(|| describe(pipeline::PacketBuf::data(&buf), vxlan_port)),
        flows_created: dry.written(now_ms).iter().map(|(k, e)| flow_line(k, e)).collect(),
        flows_removed: dry.removed(now_ms).iter().map(key_line).collect(),
    })
}

/// A port's name, or its number when the tables have no such port.
pub fn port_name(t: &Tables, p: PortId) -> String {
    t.port(p).map_or_else(|| format!("port {p}"), |e| e.name.clone())
}

fn net_name(t: &Tables, vni: u32) -> String {
    t.vni_index.get(&vni).and_then(|n| t.network(*n)).map_or_else(|| format!("vni {vni}"), |n| n.name.clone())
}

pub fn key_line(k: &FlowKey) -> String {
    if k.proto == 0 {
        return format!("{} > {}:{} (ClientIP affinity)", k.src, k.dst, k.dst_port);
    }
    format!("{}:{} > {}:{} {}", k.src, k.src_port, k.dst, k.dst_port, proto_name(k.proto))
}

fn flow_line(k: &FlowKey, e: &FlowEntry) -> String {
    let what = if e.plain {
        "tracked (policy only)".to_string()
    } else {
        let side = if e.rewrite_dst { "dst" } else { "src" };
        let other = e.other.map(|(a, p)| format!(", other side {a}:{p}")).unwrap_or_default();
        format!("{side} to {}:{}{other}", e.nat_addr, e.nat_port)
    };
    format!("{}: {what}, timeout {} s", key_line(k), e.timeout_ms / 1000)
}

fn state_name(s: u8) -> &'static str {
    use crate::flow::state::*;
    if s & CLOSING != 0 {
        "closing"
    } else if s & REPLIED != 0 {
        "established (answered)"
    } else {
        "new (not answered yet)"
    }
}

fn step(stage: &str, text: String, detail: serde_json::Value) -> StepReport {
    StepReport { stage: stage.into(), text, detail }
}

/// Every step but the final `Done` as text and fields.
pub fn render_steps(t: &Tables, steps: &[Step]) -> Vec<StepReport> {
    steps.iter().filter_map(|s| render_step(t, s)).collect()
}

fn render_step(t: &Tables, s: &Step) -> Option<StepReport> {
    Some(match *s {
        Step::Input { port, len, ethertype } => {
            let name = port_name(t, port);
            let what = match t.port(port) {
                Some(e) if e.uplink => "the uplink".to_string(),
                Some(e) if e.host => "the host port".to_string(),
                Some(e) => e.pod.map_or("a port".into(), |p| format!("pod {}", p.ip)),
                None => "a port the tables do not have".into(),
            };
            step(
                "input",
                format!("in on {name} ({what}), {len} bytes, ethertype {ethertype:#06x}"),
                json!({ "port": name, "len": len, "ethertype": ethertype }),
            )
        }
        Step::Ipv4 { src, dst, proto, ttl } => step(
            "ipv4",
            format!("IPv4 checks passed: {src} > {dst} {}, ttl {ttl}", proto_name(proto)),
            json!({ "src": src, "dst": dst, "proto": proto, "ttl": ttl }),
        ),
        Step::Decap { vtep, vni } => {
            let net = net_name(t, vni);
            step(
                "decap",
                format!("VXLAN from VTEP {vtep}, VNI {vni} (network {net}): decapsulated"),
                json!({ "vtep": vtep, "vni": vni, "network": net }),
            )
        }
        Step::FlowHit { key, entry } => {
            let rewrite = if entry.plain {
                "tracked for policy, nothing rewritten".to_string()
            } else {
                let side = if entry.rewrite_dst { "destination" } else { "source" };
                let svc = t.services.get(entry.service).map(|p| format!(", Service {}", p.name)).unwrap_or_default();
                format!("{side} to {}:{}{svc}", entry.nat_addr, entry.nat_port)
            };
            step(
                "flow",
                format!(
                    "flow hit: {}: {rewrite}; {}, decided under tables generation {}",
                    key_line(&key),
                    state_name(entry.state),
                    entry.generation
                ),
                json!({
                    "hit": true,
                    "key": key_line(&key),
                    "plain": entry.plain,
                    "rewrite_dst": entry.rewrite_dst,
                    "nat": format!("{}:{}", entry.nat_addr, entry.nat_port),
                    "other": entry.other.map(|(a, p)| format!("{a}:{p}")),
                    "state": state_name(entry.state),
                    "generation": entry.generation,
                }),
            )
        }
        Step::FlowMiss { key } => step(
            "flow",
            format!("flow miss: {} has no entry", key_line(&key)),
            json!({ "hit": false, "key": key_line(&key) }),
        ),
        Step::FlowEnded { key, why } => step(
            "flow",
            format!("the flow {} ends: {why}", key_line(&key)),
            json!({ "ended": true, "key": key_line(&key), "why": why }),
        ),
        Step::Service { frontend, kind, id } => {
            let name = t.services.get(id).map_or_else(|| format!("#{id}"), |p| p.name.clone());
            let f = format!("{}:{}/{}", frontend.vip, frontend.port, proto_name(frontend.proto));
            step(
                "service",
                format!("Service {name}: {} frontend {f}", kind.name()),
                json!({ "service": name, "frontend": f, "kind": kind.name() }),
            )
        }
        Step::Backend { id, index, addr, port, sticky } => {
            let of = t.services.get(id).map_or(0, |p| p.cluster.backends.len());
            let how = if sticky { "ClientIP affinity" } else { "Maglev over the flow hash" };
            step(
                "backend",
                format!(
                    "backend {addr}:{port}, picked by {how} (index {index}; the Service has {of} usable endpoints)"
                ),
                json!({ "backend": format!("{addr}:{port}"), "addr": addr, "port": port, "index": index, "by": how }),
            )
        }
        Step::Acl { src, dst, proto, dport, decision } => render_acl(t, src, dst, proto, dport, decision),
        Step::Nat { before, after } => step(
            "nat",
            format!("rewritten: {} becomes {}", key_line(&before), key_line(&after)),
            json!({ "before": key_line(&before), "after": key_line(&after) }),
        ),
        Step::Route { vni, dst, hop } => {
            let net = net_name(t, vni);
            let (to, detail) = match hop {
                Some(Hop::Local { port, mac }) => {
                    let p = port_name(t, port);
                    (format!("port {p} (MAC {mac})"), json!({ "hop": "local", "port": p, "mac": mac.to_string() }))
                }
                Some(Hop::Remote { vtep, net: to, .. }) => {
                    let tn = t.network(to).map_or(String::new(), |n| n.name.clone());
                    (
                        format!("another node: VTEP {vtep} (network {tn})"),
                        json!({ "hop": "remote", "vtep": vtep, "network": tn }),
                    )
                }
                Some(Hop::Host) => ("the node's kernel (host port)".into(), json!({ "hop": "host" })),
                None => ("no route in this network".into(), json!({ "hop": null })),
            };
            let mut d = detail;
            d["network"] = json!(net);
            d["dst"] = json!(dst);
            step("route", format!("route to {dst} in network {net}: {to}"), d)
        }
        Step::Encap { vtep, vni, next_hop, sport } => {
            let via = if next_hop == vtep { String::new() } else { format!(" via {next_hop}") };
            let known = if t.neighbours.contains_key(&next_hop) { "" } else { " (next hop MAC not known yet)" };
            step(
                "encap",
                format!("VXLAN VNI {vni} to VTEP {vtep}{via}, UDP source port {sport}{known}"),
                json!({ "vtep": vtep, "vni": vni, "next_hop": next_hop, "sport": sport }),
            )
        }
        Step::Underlay { next_hop } => step(
            "underlay",
            format!("out of the uplink to {next_hop} on the underlay, not encapsulated"),
            json!({ "next_hop": next_hop }),
        ),
        Step::Note(text) => step("note", text.to_string(), serde_json::Value::Null),
        Step::Done(_) => return None,
    })
}

fn render_acl(t: &Tables, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, dport: u16, d: Decision) -> StepReport {
    let flow = if crate::tables::acl::has_ports(proto) {
        format!("{src} > {dst}:{dport} {}", proto_name(proto))
    } else {
        format!("{src} > {dst} {}", proto_name(proto))
    };
    let rule = d.rule.and_then(|i| t.acl.rule(i));
    let (by, rule_id, pod, dir) = match (&rule, d.verdict, d.direction) {
        (Some(r), _, _) => (
            format!("rule {} ({} of {} {})", r.id, r.direction, r.pod_name, r.pod),
            Some(r.id.to_string()),
            Some(r.pod),
            Some(r.direction),
        ),
        (None, Verdict::Deny, Some(dir)) => {
            let pod = if dir == Direction::Ingress { dst } else { src };
            (format!("the default of {pod}'s {dir} policy"), None, Some(pod), Some(dir))
        }
        (None, _, _) => ("(no rule: no policy applies, or a default allows it)".to_string(), None, None, None),
    };
    let how = if rule.is_some() || d.verdict == Verdict::Deny { format!("by {by}") } else { by };
    step(
        "acl",
        format!("policy for {flow}: {} {how}", d.verdict),
        json!({
            "verdict": d.verdict,
            "rule": rule_id,
            "rule_index": d.rule,
            "pod": pod,
            "direction": dir,
            "flow": flow,
        }),
    )
}

/// What became of the packet, in words.
pub fn render_action(t: &Tables, in_port: PortId, a: Action) -> ActionReport {
    let tunnel = |p: PortId| t.overlay.as_ref().is_some_and(|o| o.uplink == p);
    match a {
        Action::Forward(p) => {
            let name = port_name(t, p);
            let how = if tunnel(p) && name != "uplink" { " (the uplink)" } else { "" };
            ActionReport {
                action: "forward".into(),
                port: Some(name.clone()),
                reason: None,
                text: format!("forward out of {name}{how}"),
            }
        }
        Action::Reply(k) => {
            let name = port_name(t, in_port);
            ActionReport {
                action: "reply".into(),
                port: Some(name.clone()),
                reason: Some(k.name().into()),
                text: format!("answered by weir ({}), back out of {name}", k.name()),
            }
        }
        Action::Drop(r) => ActionReport {
            action: "drop".into(),
            port: None,
            reason: Some(r.name().into()),
            text: format!("dropped: {} (counted under drops.{})", r.name(), r.name()),
        },
        Action::Consumed(k) => ActionReport {
            action: "consumed".into(),
            port: None,
            reason: Some(k.name().into()),
            text: format!("used up by weir ({})", k.name()),
        },
        Action::Resolve { port, next_hop } => {
            let name = port_name(t, port);
            ActionReport {
                action: "resolve".into(),
                port: Some(name.clone()),
                reason: None,
                text: format!("held until ARP resolves {next_hop}, then out of {name}"),
            }
        }
    }
}
