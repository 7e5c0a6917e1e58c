//! Underlay neighbours of the uplink: the ARP state machine the management
//! thread runs. Workers never change it; they report what they see
//! ([`NeighEvent`], through a lock-free queue) and read the resolved
//! addresses from the published tables.
//!
//! States, per IP: *incomplete* (asked, no answer yet: a request every
//! `retry`, `tries` times, then *failed* for `failed_hold`, during which
//! misses do not ask again); *reachable* (known, for `reachable`); *probe*
//! (reachable ran out: still used while asking again; no answer after
//! `tries` requests and it is forgotten). Pure logic: time is passed in.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::wire::MacAddr;

/// What a worker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighEvent {
    /// ARP on the uplink showed this address.
    Learned(Ipv4Addr, MacAddr),
    /// A packet waits for this next hop.
    Miss(Ipv4Addr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub retry: Duration,
    pub tries: u8,
    pub reachable: Duration,
    pub failed_hold: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            retry: Duration::from_secs(1),
            tries: 3,
            reachable: Duration::from_secs(60),
            failed_hold: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Incomplete,
    Reachable,
    Probe,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    mac: Option<MacAddr>,
    state: State,
    tries: u8,
    /// When the state's timer runs out.
    until: Instant,
}

/// What the caller must do after an event or a tick.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Send an ARP request for each.
    pub ask: Vec<Ipv4Addr>,
    /// The resolved set changed: publish new tables.
    pub changed: bool,
}

#[derive(Debug, Default)]
pub struct Neighbours {
    entries: BTreeMap<Ipv4Addr, Entry>,
    timers: Timers,
}

impl Neighbours {
    pub fn new(timers: Timers) -> Self {
        Neighbours { entries: BTreeMap::new(), timers }
    }

    pub fn on_event(&mut self, ev: NeighEvent, now: Instant, fx: &mut Effects) {
        let t = self.timers;
        match ev {
            NeighEvent::Learned(ip, mac) => {
                let e = self.entries.entry(ip).or_insert(Entry {
                    mac: None,
                    state: State::Incomplete,
                    tries: 0,
                    until: now,
                });
                if e.mac != Some(mac) {
                    fx.changed = true;
                }
                *e = Entry { mac: Some(mac), state: State::Reachable, tries: 0, until: now + t.reachable };
            }
            NeighEvent::Miss(ip) => match self.entries.get_mut(&ip) {
                None => {
                    self.entries
                        .insert(ip, Entry { mac: None, state: State::Incomplete, tries: 1, until: now + t.retry });
                    fx.ask.push(ip);
                }
                Some(e) if e.state == State::Failed && now >= e.until => {
                    *e = Entry { mac: None, state: State::Incomplete, tries: 1, until: now + t.retry };
                    fx.ask.push(ip);
                }
                Some(_) => {}
            },
        }
    }

    /// Runs the timers.
    pub fn tick(&mut self, now: Instant, fx: &mut Effects) {
        let t = self.timers;
        let mut forget = Vec::new();
        for (ip, e) in self.entries.iter_mut() {
            if now < e.until {
                continue;
            }
            match e.state {
                State::Incomplete | State::Probe if e.tries < t.tries => {
                    e.tries += 1;
                    e.until = now + t.retry;
                    fx.ask.push(*ip);
                }
                State::Incomplete => {
                    e.state = State::Failed;
                    e.until = now + t.failed_hold;
                }
                State::Probe => {
                    forget.push(*ip);
                    fx.changed = true;
                }
                State::Reachable => {
                    e.state = State::Probe;
                    e.tries = 1;
                    e.until = now + t.retry;
                    fx.ask.push(*ip);
                }
                State::Failed => forget.push(*ip),
            }
        }
        for ip in forget {
            self.entries.remove(&ip);
        }
    }

    /// Addresses with a MAC (reachable, or being probed).
    pub fn resolved(&self) -> impl Iterator<Item = (Ipv4Addr, MacAddr)> + '_ {
        self.entries.iter().filter_map(|(ip, e)| e.mac.map(|m| (*ip, m)))
    }

    /// Every entry, for `weirctl`.
    pub fn list(&self) -> Vec<(Ipv4Addr, Option<MacAddr>, State)> {
        self.entries.iter().map(|(ip, e)| (*ip, e.mac, e.state)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0xaa, 0, 2]);

    fn run(n: &mut Neighbours, ev: Option<NeighEvent>, now: Instant) -> Effects {
        let mut fx = Effects::default();
        if let Some(ev) = ev {
            n.on_event(ev, now, &mut fx);
        }
        n.tick(now, &mut fx);
        fx
    }

    #[test]
    fn resolve_retry_fail_and_retry_after_hold() {
        let t = Timers::default();
        let mut n = Neighbours::new(t);
        let t0 = Instant::now();
        assert_eq!(run(&mut n, Some(NeighEvent::Miss(IP)), t0).ask, vec![IP]);
        // More misses while incomplete ask nothing new.
        assert!(run(&mut n, Some(NeighEvent::Miss(IP)), t0 + Duration::from_millis(10)).ask.is_empty());
        assert_eq!(run(&mut n, None, t0 + t.retry).ask, vec![IP]);
        assert_eq!(run(&mut n, None, t0 + t.retry * 2).ask, vec![IP]);
        // Third retry period runs out: failed, no request.
        let fx = run(&mut n, None, t0 + t.retry * 3);
        assert!(fx.ask.is_empty() && !fx.changed);
        assert_eq!(n.list()[0].2, State::Failed);
        // Misses during the hold ask nothing; after it they start again.
        assert!(run(&mut n, Some(NeighEvent::Miss(IP)), t0 + t.retry * 3 + Duration::from_millis(1)).ask.is_empty());
        let later = t0 + t.retry * 3 + t.failed_hold;
        let mut fx = Effects::default();
        n.on_event(NeighEvent::Miss(IP), later, &mut fx);
        assert_eq!(fx.ask, vec![IP]);
        assert_eq!(n.resolved().count(), 0);
    }

    #[test]
    fn learn_refresh_and_forget() {
        let t = Timers::default();
        let mut n = Neighbours::new(t);
        let t0 = Instant::now();
        run(&mut n, Some(NeighEvent::Miss(IP)), t0);
        let fx = run(&mut n, Some(NeighEvent::Learned(IP, MAC)), t0 + Duration::from_millis(5));
        assert!(fx.changed);
        assert_eq!(n.resolved().collect::<Vec<_>>(), vec![(IP, MAC)]);
        // The same MAC again changes nothing.
        assert!(!run(&mut n, Some(NeighEvent::Learned(IP, MAC)), t0 + Duration::from_millis(6)).changed);
        // Reachable runs out: probe, still resolved.
        let t1 = t0 + Duration::from_millis(6) + t.reachable;
        assert_eq!(run(&mut n, None, t1).ask, vec![IP]);
        assert_eq!(n.resolved().count(), 1);
        // An answer makes it reachable again.
        run(&mut n, Some(NeighEvent::Learned(IP, MAC)), t1 + Duration::from_millis(1));
        assert_eq!(n.list()[0].2, State::Reachable);
        // Unanswered probes: forgotten, and the tables must change.
        let t2 = t1 + t.reachable + Duration::from_millis(1);
        assert_eq!(run(&mut n, None, t2).ask, vec![IP]);
        assert_eq!(run(&mut n, None, t2 + t.retry).ask, vec![IP]);
        assert_eq!(run(&mut n, None, t2 + t.retry * 2).ask, vec![IP]);
        let fx = run(&mut n, None, t2 + t.retry * 3);
        assert!(fx.changed);
        assert_eq!(n.resolved().count(), 0);
        // A new MAC for a known address is a change.
        run(&mut n, Some(NeighEvent::Learned(IP, MAC)), t2 + t.retry * 4);
        let fx = run(&mut n, Some(NeighEvent::Learned(IP, MacAddr([2, 0, 0, 0xaa, 0, 9]))), t2 + t.retry * 5);
        assert!(fx.changed);
    }
}
