//! Classic libpcap files (the format tcpreplay, TRex and pktgen-dpdk replay):
//! a 24-byte global header (magic 0xa1b2c3d4 in the writer's byte order,
//! version 2.4, microsecond timestamps, link type 1 = Ethernet), then per
//! frame a 16-byte record header (seconds, microseconds, captured length,
//! original length) and the frame without its FCS.
//!
//! [`write_scenario`] writes a scenario's frames as weir-pktgen would send
//! them: flow by flow, each stamped with its sequence number (trial 0, TSC 0),
//! timestamped as if sent at a fixed rate.

use std::io::{self, Write};
use std::path::Path;

use crate::traffic::{Scenario, Stamp};

pub use weir_dataplane::inspect::pcap::{
    FILE_HEADER_LEN as GLOBAL_HEADER_LEN, LINKTYPE_ETHERNET, MAGIC_MICROS, RECORD_HEADER_LEN,
};
pub const SNAPLEN: u32 = 65535;

/// Writes whole frames into a classic (microsecond) pcap stream: weirctl
/// capture's writer, refusing what it would have to cut.
pub struct PcapWriter<W: Write> {
    out: weir_dataplane::inspect::pcap::PcapWriter<W>,
    frames: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(out: W) -> io::Result<PcapWriter<W>> {
        Ok(PcapWriter { out: weir_dataplane::inspect::pcap::PcapWriter::micros(out, SNAPLEN)?, frames: 0 })
    }

    /// Appends one frame with a timestamp in nanoseconds since the epoch of
    /// the capture (stored as seconds and microseconds).
    pub fn write_frame(&mut self, ts_ns: u64, frame: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|l| *l <= SNAPLEN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame longer than the snap length"))?;
        self.out.write(ts_ns, len, frame)?;
        self.frames += 1;
        Ok(())
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flushes and returns the stream.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out.into_inner())
    }
}

/// Packet `n` of a scenario, as weir-pktgen would send it first (flow
/// `flow_of(n)`, trial 0, sequence number `n`, TSC 0).
pub fn frame(scenario: &Scenario, template: &crate::traffic::Template, n: u64, out: &mut [u8]) {
    template.write(out, scenario.flow_of(n), &Stamp { trial: 0, seq: n as u32, tsc: 0 });
}

/// Writes `count` frames of `scenario` to `path`, timestamped `1/rate_pps`
/// apart (so a replay at recorded speed offers that rate). Returns the bytes
/// written.
pub fn write_scenario(
    path: &Path,
    scenario: &Scenario,
    dst_mac: Option<weir_dataplane::wire::MacAddr>,
    count: u64,
    rate_pps: f64,
) -> Result<u64, String> {
    if !(rate_pps.is_finite() && rate_pps > 0.0) {
        return Err(format!("rate {rate_pps}: want a positive number of packets per second"));
    }
    let file = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut w = PcapWriter::new(io::BufWriter::with_capacity(1 << 20, file))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let t = scenario.template(dst_mac);
    let mut buf = vec![0u8; t.len()];
    let gap_ns = 1e9 / rate_pps;
    for n in 0..count {
        frame(scenario, &t, n, &mut buf);
        w.write_frame((n as f64 * gap_ns) as u64, &buf).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    w.finish().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(GLOBAL_HEADER_LEN as u64 + count * (RECORD_HEADER_LEN + t.len()) as u64)
}

#[cfg(test)]
mod tests {
    //! The files are read back by an independent reader: tshark when it is
    //! installed, else a small pure-Python pcap and header decoder (python3),
    //! which recomputes every checksum itself. With neither, the test says
    //! so and checks the bytes with the Rust reader below only.

    use super::*;
    use crate::traffic::Kind;
    use std::process::Command;

    /// The global header and records, read back in Rust.
    fn read_back(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
        assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()), MAGIC_MICROS);
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 2);
        assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), 4);
        assert_eq!(u32::from_le_bytes(bytes[20..24].try_into().unwrap()), LINKTYPE_ETHERNET);
        let mut at = GLOBAL_HEADER_LEN;
        let mut out = Vec::new();
        while at < bytes.len() {
            let r = &bytes[at..at + RECORD_HEADER_LEN];
            let word = |i: usize| u32::from_le_bytes(r[i..i + 4].try_into().unwrap());
            let (sec, usec, incl, orig) = (word(0), word(4), word(8) as usize, word(12) as usize);
            assert_eq!(incl, orig);
            at += RECORD_HEADER_LEN;
            out.push((u64::from(sec) * 1_000_000 + u64::from(usec), bytes[at..at + incl].to_vec()));
            at += incl;
        }
        assert_eq!(at, bytes.len());
        out
    }

    /// A pcap reader and IPv4/UDP/VXLAN decoder written from the formats'
    /// definitions, not from the Rust code: one JSON line per frame.
    const PY_READER: &str = r#"
import json, struct, sys

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return s

def decode(f, depth=0):
    eth_dst, eth_src, et = f[0:6], f[6:12], struct.unpack("!H", f[12:14])[0]
    assert et == 0x0800, "ethertype %x" % et
    ip = f[14:]
    ver_ihl = ip[0]
    assert ver_ihl >> 4 == 4
    ihl = (ver_ihl & 15) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    assert total == len(ip), "ip total %d, frame has %d" % (total, len(ip))
    ip_ok = csum(ip[:ihl]) == 0xffff
    src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
    assert ip[9] == 17, "protocol %d" % ip[9]
    u = ip[ihl:total]
    sport, dport, ulen, uck = struct.unpack("!HHHH", u[:8])
    assert ulen == len(u)
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, ulen)
    udp_ok = uck == 0 or csum(pseudo + u) == 0xffff
    d = {"dst_mac": eth_dst.hex(), "src": src, "dst": dst, "sport": sport, "dport": dport,
         "ttl": ip[8], "ip_ok": ip_ok, "udp_ok": udp_ok, "udp_csum_zero": uck == 0}
    if dport == 4789:
        flags, vni = u[8], struct.unpack("!I", u[12:16])[0] >> 8
        assert flags & 0x08
        d["vni"] = vni
        d["inner"] = decode(u[16:], depth + 1)
    else:
        p = u[8:]
        magic, trial, seq, tsc, fix = struct.unpack("!HHIQH", p[:18])
        d.update({"magic": magic, "trial": trial, "seq": seq, "tsc": tsc})
    return d

data = open(sys.argv[1], "rb").read()
magic, vmaj, vmin, zone, sigfigs, snaplen, linktype = struct.unpack("<IHHiIII", data[:24])
assert magic == 0xa1b2c3d4 and (vmaj, vmin) == (2, 4) and linktype == 1
at = 24
while at < len(data):
    sec, usec, incl, orig = struct.unpack("<IIII", data[at:at + 16])
    at += 16
    f = data[at:at + incl]
    at += incl
    d = decode(f)
    d.update({"ts_us": sec * 1000000 + usec, "len": incl, "orig": orig})
    print(json.dumps(d))
"#;

    fn have(cmd: &str) -> bool {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {cmd} >/dev/null 2>&1"))
            .status()
            .is_ok_and(|s| s.success())
    }

    fn innermost(v: &serde_json::Value) -> &serde_json::Value {
        match v.get("inner") {
            Some(i) => innermost(i),
            None => v,
        }
    }

    /// Writes each scenario and checks it with an independent reader.
    #[test]
    fn every_scenario_reads_back() {
        let dir = crate::proc::TempDir::new("weir-pcap-test").unwrap();
        let use_tshark = have("tshark");
        let use_python = !use_tshark && have("python3");
        if !use_tshark && !use_python {
            eprintln!("pcap test: neither tshark nor python3 installed; checking with the Rust reader only");
        }
        for kind in Kind::ALL {
            let count = 40u64;
            let s = Scenario::new(kind, Some(7), 128, 3).unwrap();
            let path = dir.path().join(format!("{kind}.pcap"));
            let bytes = write_scenario(&path, &s, None, count, 1e6).unwrap();
            let data = std::fs::read(&path).unwrap();
            assert_eq!(data.len() as u64, bytes);
            let frames = read_back(&data);
            assert_eq!(frames.len() as u64, count);
            let t = s.template(None);
            let mut want = vec![0u8; t.len()];
            for (n, (ts_us, f)) in frames.iter().enumerate() {
                frame(&s, &t, n as u64, &mut want);
                assert_eq!(f, &want, "{kind} frame {n}");
                assert_eq!(*ts_us, n as u64, "{kind} frame {n}: 1 us apart at 1 Mpps");
                assert_eq!(f.len() + 4, 128.max(kind.min_frame_size()));
            }
            if use_python {
                check_with_python(&path, &s, count);
            }
            if use_tshark {
                check_with_tshark(&path, &s, count);
            }
        }
    }

    fn check_with_python(path: &Path, s: &Scenario, count: u64) {
        let out = Command::new("python3").arg("-c").arg(PY_READER).arg(path).output().expect("python3 runs");
        assert!(out.status.success(), "python reader failed: {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<serde_json::Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len() as u64, count);
        let mut tuples = std::collections::HashSet::new();
        for (n, v) in lines.iter().enumerate() {
            let label = format!("{} frame {n}: {v}", s.kind);
            assert_eq!(v["len"].as_u64().unwrap() as usize, s.frame_len(), "{label}");
            assert_eq!(v["ts_us"].as_u64().unwrap(), n as u64, "{label}");
            let i = innermost(v);
            for layer in [v, i] {
                assert_eq!(layer["ip_ok"], true, "{label}");
                assert_eq!(layer["udp_ok"], true, "{label}");
            }
            assert_eq!(i["magic"].as_u64().unwrap(), 0x5745, "{label}");
            assert_eq!(i["seq"].as_u64().unwrap(), n as u64, "{label}");
            assert_eq!(i["udp_csum_zero"], false, "{label}: the inner UDP checksum is filled");
            if s.kind.vxlan() {
                assert_eq!(v["vni"].as_u64().unwrap(), 1, "{label}");
                assert_eq!(v["udp_csum_zero"], true, "{label}: VTEPs send outer checksum 0");
                assert_eq!(v["src"], "192.168.50.2", "{label}");
                assert_eq!(v["dst"], "192.168.50.1", "{label}");
            }
            match s.kind {
                Kind::Pod2Pod | Kind::Acl | Kind::AclNew | Kind::VxlanDecap => {
                    assert_eq!(i["dst"], "10.1.0.3", "{label}")
                }
                Kind::ClusteripEst | Kind::ClusteripNew => assert_eq!(i["dst"], "10.96.0.10", "{label}"),
                Kind::Nodeport | Kind::Full | Kind::FullNew => {
                    assert_eq!(i["dst"], "192.168.50.1", "{label}");
                    assert_eq!(i["dport"].as_u64().unwrap(), 30080, "{label}");
                }
            }
            tuples.insert((i["src"].to_string(), i["dst"].to_string(), i["sport"].as_u64(), i["dport"].as_u64()));
        }
        // 7 flows, cycled.
        assert_eq!(tuples.len(), 7, "{}", s.kind);
    }

    fn check_with_tshark(path: &Path, s: &Scenario, count: u64) {
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(path)
            .args(["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"])
            .args(["-T", "fields", "-E", "separator=|", "-e", "frame.len", "-e", "ip.dst", "-e", "udp.dstport"])
            .args(["-e", "ip.checksum.status", "-e", "udp.checksum.status"])
            .output()
            .expect("tshark runs");
        assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, count);
        for l in lines {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!(f[0].parse::<usize>().unwrap(), s.frame_len(), "{l}");
            // Status 0 is "bad", 1 "good", 2 "unverified" (VXLAN's zero outer checksum).
            assert!(!f[3].split(',').any(|x| x == "0"), "bad IPv4 checksum: {l}");
            assert!(!f[4].split(',').any(|x| x == "0"), "bad UDP checksum: {l}");
        }
    }

    #[test]
    fn writer_refuses_giant_frames() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        assert!(w.write_frame(0, &vec![0u8; SNAPLEN as usize + 1]).is_err());
        w.write_frame(1_500_000_000, &[1, 2, 3]).unwrap();
        assert_eq!(w.frames(), 1);
        let bytes = w.finish().unwrap();
        assert_eq!(read_back(&bytes), vec![(1_500_000, vec![1, 2, 3])]);
    }
}
