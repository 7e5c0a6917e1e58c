//! `dpdk-testpmd --forward-mode=io` as the device under test: the ceiling of
//! the port. Two vhost-user (server) or memif (server) ports forwarded to
//! each other untouched by one forwarding lcore on the DUT core, whatever
//! the scenario: it does none of the work, only the port's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{DutError, GenSide, Link, RunningDut, Setup};
use crate::proc::DpdkPrefix;
use crate::testpmd::{Session, EXIT_TIMEOUT, PROMPT, READY_TIMEOUT};

/// testpmd's arguments for two ports of `link` at `paths`.
pub fn args(setup: &Setup, prefix: &str, paths: &[PathBuf; 2]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-l".into(),
        format!("{},{}", setup.main_core, setup.dut_core),
        "--file-prefix".into(),
        prefix.into(),
        "--no-pci".into(),
        "--huge-unlink".into(),
        "-m".into(),
        setup.dut_memory_mb.to_string(),
    ];
    for (i, p) in paths.iter().enumerate() {
        a.push("--vdev".into());
        a.push(match setup.link {
            Link::Vhost => format!("net_vhost{i},iface={},queues=1", p.display()),
            Link::Memif => format!("net_memif{i},role=server,socket={},socket-abstract=no", p.display()),
        });
    }
    a.extend([
        "--".into(),
        "-i".into(),
        "--forward-mode=io".into(),
        format!("--burst={}", setup.burst),
        "--nb-cores=1".into(),
    ]);
    a
}

pub struct TestpmdDut {
    s: Session,
    gen: GenSide,
    _prefix: DpdkPrefix,
}

pub fn start(setup: &Setup, dir: &Path, tag: &str) -> Result<TestpmdDut, DutError> {
    let prefix = DpdkPrefix::new(tag);
    let paths = [dir.join(format!("{tag}-a.sock")), dir.join(format!("{tag}-b.sock"))];
    let mut s = Session::spawn(&setup.testpmd, &args(setup, prefix.name(), &paths)).map_err(|e| {
        if e.contains("No such file") {
            DutError::Unavailable(format!("{} not found (Debian package dpdk-dev)", setup.testpmd.display()))
        } else {
            DutError::Failed(e)
        }
    })?;
    let ready = s.wait_for(0, "prompt", READY_TIMEOUT, |t| t.contains(PROMPT).then_some(()));
    let started = ready.and_then(|_| s.command("start"));
    match started {
        Ok(out) if out.contains("packet forwarding") => {}
        Ok(out) => return Err(DutError::Failed(format!("testpmd did not start forwarding: {}", out.trim()))),
        Err(e) => return Err(DutError::Failed(format!("testpmd: {e}\n{}", s.output_tail()))),
    }
    let gen = GenSide {
        ports: paths.iter().enumerate().map(|(i, p)| setup.link.gen_devargs(i, p, false, 1)).collect(),
        tx_port: 0,
        rx_port: 1,
        dst_mac: None,
        arp_reply: Vec::new(),
        queues: 1,
    };
    Ok(TestpmdDut { s, gen, _prefix: prefix })
}

impl RunningDut for TestpmdDut {
    fn gen_side(&self) -> &GenSide {
        &self.gen
    }

    fn alive(&mut self) -> Result<(), String> {
        match self.s.proc.try_status() {
            Some(st) => Err(format!("testpmd exited with {st}\n{}", self.s.output_tail())),
            None => Ok(()),
        }
    }

    fn notes(&mut self) -> Vec<String> {
        match self.s.command("show port stats all") {
            Ok(out) => {
                let ports = crate::testpmd::parse_port_stats(&out);
                let p: Vec<String> = ports.iter().map(|(p, tx)| format!("port {p} tx {tx}")).collect();
                vec![format!("testpmd counters: {}", p.join(", "))]
            }
            Err(e) => vec![format!("testpmd stats unavailable: {e}")],
        }
    }

    fn stop(mut self: Box<Self>) -> Result<(), String> {
        let clean = self.s.command("stop").is_ok() && self.s.send("quit").is_ok();
        self.s.stdin = None;
        let status = if clean { self.s.proc.finish(EXIT_TIMEOUT) } else { None };
        self.s.proc.kill();
        self.s.out.join(Duration::from_secs(1));
        self.s.err.join(Duration::from_secs(1));
        match status {
            Some(st) if st.success() => Ok(()),
            Some(st) => Err(format!("testpmd exited with {st}")),
            None => Err("testpmd did not stop and quit cleanly; killed it".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testpmd_args() {
        let paths = [PathBuf::from("/t/a.sock"), PathBuf::from("/t/b.sock")];
        let s = Setup::for_tests();
        assert_eq!(
            args(&s, "pfx", &paths).join(" "),
            "-l 0,1 --file-prefix pfx --no-pci --huge-unlink -m 1024 --vdev net_vhost0,iface=/t/a.sock,queues=1 \
             --vdev net_vhost1,iface=/t/b.sock,queues=1 -- -i --forward-mode=io --burst=32 --nb-cores=1"
        );
        let m = Setup { link: Link::Memif, ..Setup::for_tests() };
        assert!(args(&m, "pfx", &paths)
            .join(" ")
            .contains("--vdev net_memif1,role=server,socket=/t/b.sock,socket-abstract=no"));
    }
}
