//! Guards for what a benchmark creates: child processes (killed by PID when
//! dropped), a temp dir, and a DPDK `--file-prefix` (its runtime dir and
//! hugepage files removed when dropped), plus a sleep that Ctrl-C cuts short.
//!
//! The release profile aborts on panic, so the benchmark code never panics:
//! errors travel as `Result`s and the guards clean up on the way out.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// SIGINT and SIGTERM set a flag that [`sleep`] and the wait loops check, so
/// the benchmark stops at the next check and its guards clean up.
pub fn install_signal_handlers() -> Result<(), String> {
    let flag = INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(flag)).map_err(|e| format!("signal handler: {e}"))?;
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

pub fn check_interrupted() -> Result<(), String> {
    if interrupted() {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// Sleeps `d`, in slices, returning early with an error on SIGINT/SIGTERM.
pub fn sleep(d: Duration) -> Result<(), String> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// A child process that is killed (SIGKILL, by PID) and reaped when dropped
/// unless it has already exited.
pub struct Proc {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Proc, String> {
        let child = cmd.spawn().map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(Proc { name: name.to_string(), child, status: None })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
            }
        }
        self.status
    }

    /// Waits up to `d` for it to exit.
    pub fn wait_timeout(&mut self, d: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + d;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL by PID, then reap.
    pub fn kill(&mut self) {
        if self.try_status().is_some() {
            return;
        }
        let _ = self.child.kill();
        if let Ok(s) = self.child.wait() {
            self.status = Some(s);
        }
    }

    /// Waits `grace` for a requested exit, then kills it. Returns the exit
    /// status, or `None` when it had to be killed.
    pub fn finish(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.wait_timeout(grace) {
            return Some(s);
        }
        eprintln!("weir-perf: {} (pid {}) did not exit within {grace:?}; killing it", self.name, self.pid());
        self.kill();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Collects everything a pipe yields into a shared string, on a thread.
pub struct Collector {
    buf: Arc<Mutex<String>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    pub fn start(name: &str, mut src: impl Read + Send + 'static) -> Collector {
        let buf = Arc::new(Mutex::new(String::new()));
        let b = Arc::clone(&buf);
        let thread = std::thread::Builder::new()
            .name(format!("read-{name}"))
            .spawn(move || {
                let mut chunk = [0u8; 16384];
                loop {
                    match src.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => lock(&b).push_str(&String::from_utf8_lossy(&chunk[..n])),
                    }
                }
            })
            .ok();
        Collector { buf, thread }
    }

    pub fn len(&self) -> usize {
        lock(&self.buf).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text from byte `from` on.
    pub fn since(&self, from: usize) -> String {
        let b = lock(&self.buf);
        b.get(from..).unwrap_or_default().to_string()
    }

    /// The last `n` lines collected.
    pub fn tail(&self, n: usize) -> String {
        tail_lines(&lock(&self.buf), n)
    }

    /// Waits for the reader thread to see end of file (after the process exited).
    pub fn join(&mut self, d: Duration) {
        let end = Instant::now() + d;
        if let Some(t) = &self.thread {
            while !t.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn lock(m: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The last `n` lines of `text`, each indented for an error message.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| format!("    | {}", l.trim_end_matches('\r'))).collect::<Vec<_>>().join("\n")
}

/// A private temp directory, removed (with its contents) when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir, String> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("{tag}-{}-{nanos:08x}", std::process::id()));
        std::fs::create_dir(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub const HUGEPAGE_DIR: &str = "/dev/hugepages";
pub const DPDK_RUNTIME_DIR: &str = "/var/run/dpdk";

/// A DPDK `--file-prefix` of ours. Dropped (after its process is gone), it
/// removes `/var/run/dpdk/<prefix>` and `/dev/hugepages/<prefix>map_*`.
pub struct DpdkPrefix {
    name: String,
}

impl DpdkPrefix {
    /// `weir-bench-<pid>-<tag>`: unique to this benchmark process.
    pub fn new(tag: &str) -> DpdkPrefix {
        DpdkPrefix { name: format!("weir-bench-{}-{tag}", std::process::id()) }
    }

    /// A prefix with a name of the caller's choosing (still cleaned up on drop).
    pub fn named(name: &str) -> DpdkPrefix {
        DpdkPrefix { name: name.to_string() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(Path::new(DPDK_RUNTIME_DIR).join(&self.name));
        // EAL names hugepage files `<prefix>map_<n>` (HUGEFILE_FMT).
        let ours = format!("{}map_", self.name);
        if let Ok(rd) = std::fs::read_dir(HUGEPAGE_DIR) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&ours) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

impl Drop for DpdkPrefix {
    fn drop(&mut self) {
        self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail_lines("a\nb\r\nc\n", 2), "    | b\n    | c");
        assert_eq!(tail_lines("", 3), "");
    }

    #[test]
    fn proc_guard_kills_on_drop() {
        let mut p = Proc::spawn("sleep", Command::new("sleep").arg("30")).unwrap();
        let pid = p.pid();
        assert!(p.try_status().is_none());
        drop(p);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(" Z "))
        );
    }

    #[test]
    fn temp_dir_removed() {
        let t = TempDir::new("weir-perf-test").unwrap();
        let p = t.path().to_path_buf();
        std::fs::write(p.join("x"), "y").unwrap();
        drop(t);
        assert!(!p.exists());
    }
}
