//! The management socket: a Unix socket (mode 0600) where each line is a JSON
//! [`Request`] and each answer a JSON [`Reply`] line. Connections are served on
//! their own threads; requests are handed to the management thread over a
//! channel, so every change to ports and tables happens on that one thread.
//! A trace, capture or flow-log session lives as long as the connection
//! that started it: when that connection closes, its sessions are stopped.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use crossbeam::channel::{bounded, Receiver, Sender};

use crate::api::{Reply, Request};

/// A request and where its reply goes.
pub type Call = (Request, Sender<Reply>);

/// Longest request line accepted: a full `Resync` of a large cluster
/// (10 000 Services with 10 endpoints each is about 15 MiB of JSON) fits.
const MAX_LINE: usize = 256 << 20;

/// Binds the socket and starts accepting. Refuses to replace a socket that a
/// live process still answers on.
pub fn serve(path: &Path) -> Result<Receiver<Call>, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!("{} is in use by another process", path.display()));
        }
        std::fs::remove_file(path).map_err(|e| format!("cannot remove stale {}: {e}", path.display()))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    let (tx, rx) = bounded::<Call>(64);
    std::thread::Builder::new()
        .name("weir-mgmt".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let tx = tx.clone();
                let _ = std::thread::Builder::new().name("weir-mgmt-conn".into()).spawn(move || serve_conn(conn, tx));
            }
        })
        .map_err(|e| format!("cannot start the management thread: {e}"))?;
    Ok(rx)
}

fn serve_conn(conn: UnixStream, calls: Sender<Call>) {
    // Trace, capture and flow-log sessions started on this connection end
    // with it: a weirctl or weir-control that goes away (killed, Ctrl-C)
    // leaves nothing armed.
    let mut sessions = Sessions::default();
    serve_requests(conn, &calls, &mut sessions);
    let stops = sessions.inspect.into_iter().map(|session| Request::InspectStop { session });
    for req in stops.chain(sessions.flowlog.into_iter().map(|session| Request::FlowLogStop { session })) {
        let (rtx, rrx) = bounded(1);
        if calls.send((req, rtx)).is_ok() {
            let _ = rrx.recv();
        }
    }
}

/// The sessions a connection started and that still run.
#[derive(Default)]
struct Sessions {
    inspect: Vec<u64>,
    flowlog: Vec<u64>,
}

fn serve_requests(conn: UnixStream, calls: &Sender<Call>, sessions: &mut Sessions) {
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut out = std::io::BufWriter::new(write_half);
    let mut input = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut input).take(MAX_LINE as u64).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply::Error { message: format!("bad request: {e}") },
            Ok(req) => {
                let (rtx, rrx) = bounded(1);
                if calls.send((req, rtx)).is_err() {
                    return;
                }
                match rrx.recv() {
                    Ok(r) => r,
                    Err(_) => return,
                }
            }
        };
        match &reply {
            Reply::InspectStarted { session } => sessions.inspect.push(*session),
            Reply::Traced { session, done: Some(_), .. } | Reply::Captured { session, done: Some(_), .. } => {
                sessions.inspect.retain(|s| s != session)
            }
            Reply::FlowLogStarted { session } => sessions.flowlog.push(*session),
            Reply::FlowLogged { session, done: Some(_), .. } => sessions.flowlog.retain(|s| s != session),
            _ => {}
        }
        let Ok(text) = serde_json::to_string(&reply) else {
            return;
        };
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            return;
        }
    }
}

/// Client side: one connection for several requests (a trace or capture
/// session lives as long as the connection that started it).
pub struct Client {
    input: BufReader<UnixStream>,
    out: UnixStream,
    path: std::path::PathBuf,
}

impl Client {
    /// Connects; a reply that takes longer than `timeout` is an error.
    pub fn connect(path: &Path, timeout: std::time::Duration) -> Result<Client, String> {
        let out = UnixStream::connect(path).map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
        out.set_read_timeout(Some(timeout)).map_err(|e| format!("{}: {e}", path.display()))?;
        let input = BufReader::new(out.try_clone().map_err(|e| format!("{}: {e}", path.display()))?);
        Ok(Client { input, out, path: path.to_path_buf() })
    }

    /// Sends one request and reads its reply.
    pub fn call(&mut self, req: &Request) -> Result<Reply, String> {
        let p = self.path.display();
        let text = serde_json::to_string(req).map_err(|e| e.to_string())?;
        writeln!(self.out, "{text}").map_err(|e| format!("write to {p}: {e}"))?;
        let mut line = String::new();
        match self.input.read_line(&mut line) {
            Ok(0) => Err(format!("{p}: the dataplane closed the connection")),
            Ok(_) => serde_json::from_str(&line).map_err(|e| format!("bad reply {line:?}: {e}")),
            Err(e) => Err(format!("read from {p}: {e}")),
        }
    }
}

/// Client side: sends one request and reads its reply.
pub fn call(path: &Path, req: &Request) -> Result<Reply, String> {
    let mut conn = UnixStream::connect(path).map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
    let text = serde_json::to_string(req).map_err(|e| e.to_string())?;
    writeln!(conn, "{text}").map_err(|e| format!("write to {}: {e}", path.display()))?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).map_err(|e| format!("read from {}: {e}", path.display()))?;
    serde_json::from_str(&line).map_err(|e| format!("bad reply {line:?}: {e}"))
}
