//! weir-fake-apiserver: the tests' fake Kubernetes API server
//! (`weir_control::fake_api`) as a process, for tests in other crates and
//! for trying weir-control's `--kube-url` by hand. Plain HTTP on
//! 127.0.0.1, no authentication: never for anything but tests.
//!
//! Prints its URL on the first line, then reads commands on stdin, one per
//! line, answering `ok <resourceVersion>` or `error <reason>`:
//! - `apply <file>`: create or replace the objects of a YAML file;
//! - `delete <kind> <namespace or -> <name>`;
//! - `compact`: forget the watch history (resumes get 410 Gone);
//! - `kill-watches`: close every open watch.
//!
//! `--apply FILE` applies a file before the URL is printed.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use weir_control::fake_api::FakeApi;

fn main() -> ExitCode {
    let api = FakeApi::start();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--apply", Some(f)) => {
                if let Err(e) = std::fs::read_to_string(&f).map_err(|e| e.to_string()).and_then(|t| api.apply(&t)) {
                    eprintln!("weir-fake-apiserver: {f}: {e}");
                    return ExitCode::from(2);
                }
            }
            _ => {
                eprintln!("usage: weir-fake-apiserver [--apply FILE]...");
                return ExitCode::from(2);
            }
        }
    }
    println!("{}", api.url());
    let _ = std::io::stdout().flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let r = match words.as_slice() {
            ["apply", f] => std::fs::read_to_string(f).map_err(|e| e.to_string()).and_then(|t| api.apply(&t)),
            ["delete", kind, ns, name] => api.delete(kind, if *ns == "-" { "" } else { ns }, name),
            ["compact"] => {
                api.compact();
                Ok(api.resource_version())
            }
            ["kill-watches"] => {
                api.kill_watches();
                Ok(api.resource_version())
            }
            _ => Err(format!("unknown command {line:?}")),
        };
        match r {
            Ok(rv) => println!("ok {rv}"),
            Err(e) => println!("error {e}"),
        }
        let _ = std::io::stdout().flush();
    }
    ExitCode::SUCCESS
}
