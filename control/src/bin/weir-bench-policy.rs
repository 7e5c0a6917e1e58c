//! weir-bench-policy: how policy scales. Builds a cluster of `--pods` pods
//! in 10 namespaces, each pod selected by its own NetworkPolicy with
//! `--rules-per-pod` ingress rules (pod selectors, namespace selectors,
//! ipBlocks with excepts, ports and port ranges), and prints:
//! - compile time (NetworkPolicy objects → per-pod rules, weir-control's
//!   compiler) and build time (rules → the dataplane's classifier);
//! - the classifier's memory;
//! - classifications per second on one core, for random pod-to-pod packets
//!   (each one an ingress and an egress lookup).
//!
//! A benchmark, not a test: it prints figures and judges nothing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec, PodStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use weir_control::policy::{compile, ContivModel, PolicyInput};
use weir_dataplane::tables::acl::{AclTable, Verdict};

#[derive(Parser)]
#[command(name = "weir-bench-policy", about = "compile time, memory and classification rate of policy")]
struct Cli {
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    #[arg(long, default_value_t = 10)]
    rules_per_pod: usize,
    /// Packets classified for the rate.
    #[arg(long, default_value_t = 5_000_000)]
    packets: u64,
    /// Print the compiled table too.
    #[arg(long)]
    dump: bool,
}

fn meta(name: &str, ns: Option<&str>, labels: &[(&str, String)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(String::from),
        labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>()),
        ..Default::default()
    }
}

fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + 2 + i as u32)
}

/// xorshift64*: the same packets every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn main() {
    let cli = Cli::parse();
    let namespaces: Vec<Namespace> = (0..10)
        .map(|n| Namespace {
            metadata: meta(&format!("ns{n}"), None, &[("team", format!("t{}", n % 3))]),
            ..Default::default()
        })
        .collect();
    let pods: Vec<Pod> = (0..cli.pods)
        .map(|i| Pod {
            metadata: meta(
                &format!("p{i}"),
                Some(&format!("ns{}", i % 10)),
                &[("app", format!("a{}", i % 50)), ("id", format!("p{i}"))],
            ),
            spec: Some(PodSpec { node_name: Some("n1".into()), ..Default::default() }),
            status: Some(PodStatus { pod_ip: Some(pod_ip(i).to_string()), ..Default::default() }),
        })
        .collect();
    let mut policies = Vec::new();
    for i in 0..cli.pods {
        let rules: Vec<String> = (0..cli.rules_per_pod)
            .map(|r| match r % 4 {
                // Pod selectors alone select in the policy's own namespace:
                // pick labels of pods there (j ≡ i mod 10), so every rule
                // selects someone.
                0 => format!(
                    "{{from: [{{podSelector: {{matchLabels: {{app: a{}}}}}}}], ports: [{{protocol: TCP, port: {}}}]}}",
                    ((i + 10 * (r + 1)) % cli.pods) % 50,
                    8000 + r
                ),
                1 => {
                    // A namespace and an app that some pod (j) has together.
                    let j = (i * 7 + r) % cli.pods;
                    format!(
                        "{{from: [{{namespaceSelector: {{matchLabels: {{team: t{}}}}}, podSelector: {{matchLabels: {{app: a{}}}}}}}], ports: [{{protocol: UDP, port: {}, endPort: {}}}]}}",
                        (j % 10) % 3,
                        j % 50,
                        5000 + r,
                        5100 + r
                    )
                }
                2 => format!(
                    "{{from: [{{ipBlock: {{cidr: 172.{}.0.0/16, except: [172.{}.{}.0/24]}}}}]}}",
                    16 + r % 16,
                    16 + r % 16,
                    i % 256
                ),
                _ => format!("{{from: [{{podSelector: {{matchLabels: {{id: p{}}}}}}}]}}", (i + 10 * (r + 1)) % cli.pods),
            })
            .collect();
        let yaml = format!(
            "metadata: {{name: np{i}, namespace: ns{}}}\nspec:\n  podSelector: {{matchLabels: {{id: p{i}}}}}\n  policyTypes: [Ingress]\n  ingress: [{}]\n",
            i % 10,
            rules.join(", ")
        );
        let np: NetworkPolicy = serde_yaml::from_str(&yaml).expect("generated NetworkPolicy");
        policies.push(np);
    }
    let source_rules = cli.pods * cli.rules_per_pod;
    let contiv = ContivModel::default();

    let t0 = Instant::now();
    let compiled = compile(&PolicyInput {
        pods: &pods,
        namespaces: &namespaces,
        network_policies: &policies,
        contiv: &contiv,
        node_pods: None,
    })
    .expect("compile");
    let compile_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let table = AclTable::build(&compiled.acl, &[Ipv4Addr::new(10, 1, 0, 1)]).expect("build");
    let build_s = t1.elapsed().as_secs_f64();

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let n = cli.pods as u64;
    let packets: Vec<(Ipv4Addr, Ipv4Addr, u8, u16)> = (0..4096)
        .map(|_| {
            let r = rng.next();
            let proto = if r & 1 == 0 { 6 } else { 17 };
            (pod_ip((r % n) as usize), pod_ip(((r >> 20) % n) as usize), proto, 5000 + ((r >> 40) % 3100) as u16)
        })
        .collect();
    let t2 = Instant::now();
    let mut allowed = 0u64;
    for k in 0..cli.packets {
        let (s, d, p, port) = packets[(k % 4096) as usize];
        if table.evaluate(s, d, p, 40000, port).verdict == Verdict::Allow {
            allowed += 1;
        }
    }
    let class_s = t2.elapsed().as_secs_f64();

    println!("weir-bench-policy: {} pods, {} NetworkPolicies, {source_rules} source rules", cli.pods, policies.len());
    println!("  compiled rules          {:>12}", table.len());
    println!("  compile (objects→rules) {:>12.1} ms", compile_s * 1e3);
    println!("  build (rules→table)     {:>12.1} ms", build_s * 1e3);
    println!("  classifier memory       {:>12.2} MiB", table.memory_bytes() as f64 / (1 << 20) as f64);
    println!(
        "  classification          {:>12.2} M/s on one core ({} packets, {:.1}% allowed)",
        cli.packets as f64 / class_s / 1e6,
        cli.packets,
        allowed as f64 * 100.0 / cli.packets as f64
    );
    if cli.dump {
        print!("{}", table.dump());
    }
    if !compiled.warnings.is_empty() {
        println!("  warnings                {:>12}", compiled.warnings.len());
    }
}
