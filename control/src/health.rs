//! The healthCheckNodePort server: for each LoadBalancer Service with
//! `externalTrafficPolicy: Local`, HTTP on its healthCheckNodePort answers
//! 200 when this node has ready endpoints of the Service and 503 when it
//! has none, with kube-proxy's body, so that an external load balancer
//! sends the Service's traffic only to nodes that can serve it.
//!
//! One thread serves every port: the listeners are non-blocking and polled
//! (health checks come every few seconds; a 20 ms poll costs nothing), and
//! the set of ports follows [`HealthServer::set`]. The counts are read when
//! a request arrives, so an answer is never older than the last `set`.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::announce::HealthCheck;

const POLL: Duration = Duration::from_millis(20);
/// A port that could not be bound is tried again this often.
const RETRY: Duration = Duration::from_secs(5);
/// Requests larger than this are not health checks.
const MAX_REQUEST: usize = 8192;

type Wanted = Arc<Mutex<BTreeMap<u16, HealthCheck>>>;

pub struct HealthServer {
    wanted: Wanted,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HealthServer {
    /// Serves on `addr` (the node's addresses: `0.0.0.0` in production)
    /// the ports given to [`set`](Self::set).
    pub fn start(addr: IpAddr) -> HealthServer {
        let wanted: Wanted = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (wanted.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("weir-health".into()).spawn(move || serve(addr, &w, &s)).ok();
        if thread.is_none() {
            eprintln!("weir-control: warning: no thread for the healthCheckNodePort server");
        }
        HealthServer { wanted, stop, thread }
    }

    /// The health checks to serve from now on.
    pub fn set(&self, checks: &[HealthCheck]) {
        let map = checks.iter().map(|c| (c.port, c.clone())).collect();
        *self.wanted.lock().unwrap_or_else(|e| e.into_inner()) = map;
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(addr: IpAddr, wanted: &Wanted, stop: &AtomicBool) {
    let mut listeners: BTreeMap<u16, TcpListener> = BTreeMap::new();
    // Ports that failed to bind, and when to try again.
    let mut failed: BTreeMap<u16, Instant> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let want: BTreeMap<u16, HealthCheck> = wanted.lock().unwrap_or_else(|e| e.into_inner()).clone();
        listeners.retain(|p, _| want.contains_key(p));
        failed.retain(|p, _| want.contains_key(p));
        for (&port, check) in &want {
            if listeners.contains_key(&port) || failed.get(&port).is_some_and(|t| *t > now) {
                continue;
            }
            match TcpListener::bind(SocketAddr::new(addr, port)).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
                Ok(l) => {
                    if failed.remove(&port).is_some() {
                        println!("weir-control: healthCheckNodePort {addr}:{port} bound");
                    }
                    listeners.insert(port, l);
                }
                Err(e) => {
                    if !failed.contains_key(&port) {
                        eprintln!(
                            "weir-control: warning: healthCheckNodePort {addr}:{port} of {}/{}: {e}; retrying",
                            check.namespace, check.name
                        );
                    }
                    failed.insert(port, now + RETRY);
                }
            }
        }
        let mut busy = false;
        for (port, l) in &listeners {
            match l.accept() {
                Ok((conn, _)) => {
                    busy = true;
                    answer(conn, *port, wanted);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {} // the peer gave up already
            }
        }
        if !busy {
            std::thread::sleep(POLL);
        }
    }
}

/// Reads one request (whatever its path, as kube-proxy) and answers it
/// with the port's Service as it is now.
fn answer(mut conn: TcpStream, port: u16, wanted: &Wanted) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
        if req.len() > MAX_REQUEST {
            let _ = conn.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n");
            return;
        }
    }
    let check = wanted.lock().unwrap_or_else(|e| e.into_inner()).get(&port).cloned();
    let response = match check {
        Some(c) => response(&c),
        None => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
    };
    let _ = conn.write_all(response.as_bytes());
}

/// kube-proxy's answer: 200 with local endpoints, 503 without; the body
/// names the Service and the count.
pub fn response(c: &HealthCheck) -> String {
    let body = serde_json::json!({
        "service": { "namespace": c.namespace, "name": c.name },
        "localEndpoints": c.local_endpoints,
        "serviceProxyHealthy": true,
    })
    .to_string();
    let status = if c.local_endpoints > 0 { "200 OK" } else { "503 Service Unavailable" };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nX-Load-Balancing-Endpoint-Weight: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        c.local_endpoints,
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(port: u16) -> Option<(u16, serde_json::Value)> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let code = out.get(9..12)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n")?.1;
        Some((code, serde_json::from_str(body).ok()?))
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn answers_200_or_503_as_local_endpoints_come_and_go() {
        let server = HealthServer::start("127.0.0.1".parse().unwrap());
        let port = free_port();
        let check = |n| HealthCheck { port, namespace: "default".into(), name: "web".into(), local_endpoints: n };
        server.set(&[check(2)]);
        wait_for("200 with two", || get(port).is_some_and(|(c, _)| c == 200));
        let (_, body) = get(port).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"service": {"namespace": "default", "name": "web"}, "localEndpoints": 2, "serviceProxyHealthy": true})
        );
        server.set(&[check(0)]);
        let (code, body) = get(port).unwrap();
        assert_eq!((code, &body["localEndpoints"]), (503, &serde_json::json!(0)));
        server.set(&[check(1)]);
        assert_eq!(get(port).unwrap().0, 200);
        // Gone from the set: the port is closed.
        server.set(&[]);
        wait_for("port closed", || TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn a_taken_port_is_retried_and_others_still_served() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap().port();
        let port = free_port();
        let server = HealthServer::start("127.0.0.1".parse().unwrap());
        let check =
            |port, n| HealthCheck { port, namespace: "ns".into(), name: format!("s{port}"), local_endpoints: n };
        server.set(&[check(busy, 1), check(port, 1)]);
        wait_for("the free port served", || get(port).is_some_and(|(c, _)| c == 200));
        drop(taken);
    }

    #[test]
    fn junk_and_oversized_requests_get_no_panic() {
        let server = HealthServer::start("127.0.0.1".parse().unwrap());
        let port = free_port();
        server.set(&[HealthCheck { port, namespace: "a".into(), name: "b".into(), local_endpoints: 1 }]);
        wait_for("served", || get(port).is_some());
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(&vec![b'x'; MAX_REQUEST + 2048]);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 431"), "{out}");
        // A client that connects and says nothing does not stop the server for long.
        let _idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert_eq!(get(port).map(|(c, _)| c), Some(200));
    }
}
