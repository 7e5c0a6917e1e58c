//! One io-forwarding measurement of `dpdk-testpmd`, driven over its
//! interactive prompt: `start`, warm-up, `show port stats all`, `seconds`,
//! `show port stats all`, `stop`, `quit`.
//!
//! testpmd prints its prompt (`testpmd> `, no newline) straight to the file
//! descriptor but everything else through stdio, which a pipe makes fully
//! buffered: the stats would only arrive with the next 4 KiB. It is therefore
//! started under `stdbuf -oL`, and its output is collected on a thread into a
//! buffer that the driver searches for the text it waits for.

use std::io::Write;
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::proc::{self, Collector, DpdkPrefix, Proc};
use crate::{Measurement, PortType, RunSpec};

pub const PROMPT: &str = "testpmd> ";
/// Ports testpmd gets (two vdevs, forwarded to each other).
pub const PORTS: usize = 2;
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// testpmd's arguments (after the program name) for a run.
pub fn args(spec: &RunSpec, file_prefix: &str) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-l".into(),
        format!("{},{}", spec.main_core, spec.fwd_core),
        "--file-prefix".into(),
        file_prefix.into(),
        "--no-pci".into(),
        "--huge-unlink".into(),
        "-m".into(),
        spec.memory_mb.to_string(),
    ];
    for i in 0..PORTS {
        a.push("--vdev".into());
        a.push(format!("{}{i}", spec.port_type.driver()));
    }
    a.extend([
        "--".into(),
        "-i".into(),
        "--forward-mode=io".into(),
        format!("--burst={}", spec.burst),
        "--nb-cores=1".into(),
    ]);
    a
}

/// The command that starts forwarding (null ports need no first burst).
pub fn start_command(port_type: PortType) -> &'static str {
    match port_type {
        PortType::Null => "start",
    }
}

/// `(port, TX-packets)` of every complete "NIC statistics for port N" block
/// of `show port stats` output.
pub fn parse_port_stats(text: &str) -> Vec<(u16, u64)> {
    const BLOCK: &str = "NIC statistics for port";
    const TX: &str = "TX-packets:";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(BLOCK) {
        rest = &rest[i + BLOCK.len()..];
        let block_end = rest.find(BLOCK).unwrap_or(rest.len());
        let block = &rest[..block_end];
        let port = block.split_whitespace().next().and_then(|s| s.parse::<u16>().ok());
        let tx = block
            .find(TX)
            .and_then(|j| block[j + TX.len()..].split_whitespace().next())
            .and_then(|s| s.parse::<u64>().ok());
        // A block is complete once the line after TX-packets has arrived.
        let complete = block.find(TX).is_some_and(|j| block[j..].contains('\n'));
        if let (Some(p), Some(t), true) = (port, tx, complete) {
            out.push((p, t));
        }
    }
    out
}

/// A running testpmd and its output.
pub(crate) struct Session {
    pub(crate) proc: Proc,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) out: Collector,
    pub(crate) err: Collector,
}

impl Session {
    /// Starts `testpmd` with `args` under `stdbuf -oL`, its output collected.
    pub(crate) fn spawn(testpmd: &Path, args: &[String]) -> Result<Session, String> {
        let mut cmd = Command::new("stdbuf");
        cmd.arg("-oL").arg(testpmd).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut p = Proc::spawn("dpdk-testpmd", &mut cmd)?;
        let c = p.child_mut();
        let (stdin, stdout, stderr) = (c.stdin.take(), c.stdout.take(), c.stderr.take());
        let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
            return Err("testpmd's output pipes are missing".into());
        };
        Ok(Session {
            proc: p,
            stdin,
            out: Collector::start("testpmd-out", stdout),
            err: Collector::start("testpmd-err", stderr),
        })
    }

    pub(crate) fn send(&mut self, line: &str) -> Result<usize, String> {
        let from = self.out.len();
        let stdin = self.stdin.as_mut().ok_or("testpmd's stdin is closed")?;
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("cannot send {line:?} to testpmd: {e}"))?;
        Ok(from)
    }

    /// Waits until the output from `from` on satisfies `done`.
    pub(crate) fn wait_for<T>(
        &mut self,
        from: usize,
        what: &str,
        timeout: Duration,
        done: impl Fn(&str) -> Option<T>,
    ) -> Result<T, String> {
        let start = Instant::now();
        loop {
            if let Some(v) = done(&self.out.since(from)) {
                return Ok(v);
            }
            proc::check_interrupted()?;
            if let Some(s) = self.proc.try_status() {
                // Let the readers catch the last output.
                std::thread::sleep(Duration::from_millis(100));
                if let Some(v) = done(&self.out.since(from)) {
                    return Ok(v);
                }
                return Err(format!("testpmd (pid {}) exited with {s} while waiting for {what}", self.proc.pid()));
            }
            if start.elapsed() >= timeout {
                return Err(format!("testpmd gave no {what} within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub(crate) fn command(&mut self, line: &str) -> Result<String, String> {
        let from = self.send(line)?;
        self.wait_for(from, &format!("prompt after {line:?}"), COMMAND_TIMEOUT, |t| {
            // The echoed command is followed by its output, then the prompt.
            t.find(PROMPT).map(|_| t.to_string())
        })
    }

    /// `show port stats all`: the sum of TX-packets, stamped with the middle
    /// of the command.
    fn tx_total(&mut self) -> Result<(Instant, u64), String> {
        let before = Instant::now();
        let from = self.send("show port stats all")?;
        let stats = self.wait_for(from, "port statistics", COMMAND_TIMEOUT, |t| {
            let s = parse_port_stats(t);
            let after_last = t.rfind("TX-packets:").map(|i| &t[i..]).unwrap_or("");
            (s.len() >= PORTS && after_last.contains(PROMPT)).then_some(s)
        })?;
        let after = Instant::now();
        if stats.len() != PORTS {
            return Err(format!("testpmd showed {} ports, expected {PORTS}: {stats:?}", stats.len()));
        }
        Ok((before + (after - before) / 2, stats.iter().map(|(_, t)| t).sum()))
    }

    pub(crate) fn output_tail(&self) -> String {
        let mut s = format!("  stdout:\n{}", self.out.tail(25));
        if !self.err.is_empty() {
            s.push_str(&format!("\n  stderr:\n{}", self.err.tail(15)));
        }
        s
    }
}

/// Runs testpmd once and measures it. `tag` makes its file prefix unique.
pub fn run(testpmd: &Path, spec: &RunSpec, tag: &str) -> Result<Measurement, String> {
    let prefix = DpdkPrefix::new(tag);
    let mut s = Session::spawn(testpmd, &args(spec, prefix.name()))?;

    let result = measure(&mut s, spec);
    let clean = result.is_ok() && s.command("stop").is_ok() && s.send("quit").is_ok();
    s.stdin = None; // EOF: testpmd quits at the end of its input too
    let status = if clean { s.proc.finish(EXIT_TIMEOUT) } else { None };
    s.proc.kill();
    s.out.join(Duration::from_secs(1));
    s.err.join(Duration::from_secs(1));
    let tail = s.output_tail();
    drop(s);
    drop(prefix);
    match result {
        Err(_) if proc::interrupted() => Err("interrupted".into()),
        Err(e) => Err(format!("dpdk-testpmd run failed: {e}\n  {} output:\n{tail}", testpmd.display())),
        Ok(m) => {
            match status {
                None => eprintln!("weir-bench-fwd: warning: testpmd did not stop and quit cleanly; killed it"),
                Some(st) if !st.success() => {
                    eprintln!("weir-bench-fwd: warning: testpmd exited with {st}:\n{tail}")
                }
                _ => {}
            }
            Ok(m)
        }
    }
}

fn measure(s: &mut Session, spec: &RunSpec) -> Result<Measurement, String> {
    s.wait_for(0, "prompt", READY_TIMEOUT, |t| t.contains(PROMPT).then_some(()))?;
    let out = s.command(start_command(spec.port_type))?;
    if !out.contains("packet forwarding") {
        return Err(format!("`{}` did not start forwarding: {}", start_command(spec.port_type), out.trim()));
    }
    proc::sleep(spec.warmup)?;
    let (t0, a) = s.tx_total()?;
    proc::sleep(spec.seconds)?;
    let (t1, b) = s.tx_total()?;
    let m = Measurement { tx_packets: b.saturating_sub(a), elapsed: t1 - t0 };
    if m.tx_packets == 0 {
        return Err(format!("no packets forwarded in {:.1} s", m.elapsed.as_secs_f64()));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "show port stats all\r\n
  ######################## NIC statistics for port 0  ########################
  RX-packets: 77821856   RX-missed: 0          RX-bytes:  0
  RX-errors: 0
  RX-nombuf:  0         
  TX-packets: 77387680   TX-errors: 0          TX-bytes:  0

  Throughput (since last show)
  Rx-pps:            0          Rx-bps:            0
  Tx-pps:            0          Tx-bps:            0
  ############################################################################

  ######################## NIC statistics for port 1  ########################
  RX-packets: 105800320  RX-missed: 0          RX-bytes:  0
  RX-errors: 0
  RX-nombuf:  0         
  TX-packets: 105320064  TX-errors: 0          TX-bytes:  0

  Throughput (since last show)
  Rx-pps:            0          Rx-bps:            0
  Tx-pps:            0          Tx-bps:            0
  ############################################################################
testpmd> ";

    #[test]
    fn parses_both_ports() {
        assert_eq!(parse_port_stats(SHOW), vec![(0, 77387680), (1, 105320064)]);
    }

    #[test]
    fn incomplete_block_is_not_counted() {
        let cut = SHOW.find("TX-packets: 105320064").unwrap() + "TX-packets: 1053".len();
        assert_eq!(parse_port_stats(&SHOW[..cut]), vec![(0, 77387680)]);
        assert_eq!(parse_port_stats("testpmd> "), vec![]);
    }

    #[test]
    fn testpmd_args() {
        let spec = RunSpec {
            port_type: PortType::Null,
            burst: 32,
            warmup: Duration::from_secs(1),
            seconds: Duration::from_secs(5),
            main_core: 0,
            fwd_core: 1,
            memory_mb: 512,
        };
        assert_eq!(
            args(&spec, "pfx").join(" "),
            "-l 0,1 --file-prefix pfx --no-pci --huge-unlink -m 512 --vdev net_null0 --vdev net_null1 -- -i --forward-mode=io --burst=32 --nb-cores=1"
        );
        assert_eq!(start_command(PortType::Null), "start");
    }
}
