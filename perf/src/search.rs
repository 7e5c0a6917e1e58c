//! Trial results and the searches run over them: the no-drop rate (a binary
//! search on the offered rate, RFC 2544 style, with a loss threshold) and a
//! sweep of fixed fractions of the highest rate.
//!
//! Pure logic over a `trial(rate) -> TrialResult` function, so it is tested
//! with a model of a device instead of a device.

use serde::{Deserialize, Serialize};

/// Latency of the frames of one trial, from the TSC stamp written before
/// their tx burst to the rx burst that returned them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub samples: u64,
    pub min_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
}

/// One trial: the generator offered frames at a rate for a while, then
/// stopped and waited for the stragglers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    /// The trial number stamped into the frames.
    pub trial: u16,
    /// The rate asked for; `None`: as fast as the generator goes.
    pub target_pps: Option<f64>,
    /// Time the generator offered frames.
    pub seconds: f64,
    /// Frames offered: sent, or refused by the full tx queue (a virtqueue
    /// the device under test did not empty in time: its loss).
    pub offered: u64,
    /// Of `offered`, refused by the tx queue.
    pub tx_refused: u64,
    /// Bursts the generator could not build for want of buffers (not offered).
    pub tx_nombuf: u64,
    /// Frames of this trial that came back.
    pub received: u64,
    /// Frames of earlier trials that came back during this one (not counted).
    pub late: u64,
    /// Frames that came back with a lower sequence number than one before.
    pub reordered: u64,
    /// Frames that came back without a stamp (ARP and the like).
    pub other: u64,
    /// Wire size of the frames, FCS included.
    pub frame_size: usize,
    pub latency: Option<Latency>,
    /// Milliseconds of the trial the generator's own loop did not run
    /// (gaps over 100 us: its CPU was taken away).
    #[serde(default)]
    pub gen_stall_ms: f64,
}

impl TrialResult {
    pub fn offered_pps(&self) -> f64 {
        per_second(self.offered, self.seconds)
    }

    /// Frames received per second of offering.
    pub fn rx_pps(&self) -> f64 {
        per_second(self.received, self.seconds)
    }

    /// Lost share of the offered frames (0 when none were offered).
    pub fn loss(&self) -> f64 {
        if self.offered == 0 {
            return 0.0;
        }
        self.offered.saturating_sub(self.received) as f64 / self.offered as f64
    }

    /// Received bits per second, counting each frame's wire size (FCS
    /// included, preamble and gap not).
    pub fn rx_gbps(&self) -> f64 {
        self.rx_pps() * self.frame_size as f64 * 8.0 / 1e9
    }
}

fn per_second(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// How the no-drop rate is searched.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SearchConfig {
    /// The first trial's rate; `None`: as fast as the generator goes.
    pub max_rate_pps: Option<f64>,
    /// A trial passes when it loses at most this share of what it offered.
    pub loss_threshold: f64,
    /// Stop when the bracket is narrower than this share of its upper end.
    pub resolution: f64,
    /// At most this many trials in all.
    pub max_trials: u32,
    /// Trials at one rate before it counts as failed (at least 1): on a
    /// machine whose cores stall now and then, a loss from one stall does
    /// not condemn a rate the device otherwise sustains.
    pub attempts: u32,
}

/// What a search found: every trial, and which one is the answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResult {
    pub trials: Vec<TrialResult>,
    /// Index of the passing trial with the highest offered rate: the
    /// no-drop rate. `None` when no trial passed.
    pub ndr: Option<usize>,
}

impl SearchResult {
    pub fn ndr_trial(&self) -> Option<&TrialResult> {
        self.ndr.and_then(|i| self.trials.get(i))
    }

    /// The first trial (the highest rate offered): what the device forwards
    /// when it is overloaded.
    pub fn max_trial(&self) -> Option<&TrialResult> {
        self.trials.first()
    }
}

/// Binary search for the highest offered rate whose loss is within the
/// threshold. The first trial runs at the maximum rate. If it loses too
/// much, the next one runs just below the rate the device forwarded during
/// it; while trials pass and none below the first has failed, the rate
/// grows by steps that double (2, 4, 8 ... times the resolution); then the
/// search halves the bracket [highest pass, lowest fail] until it is
/// narrower than the resolution (a share of its upper end) or the trials
/// run out. A rate fails only after `attempts` trials at it all lost too
/// much.
pub fn ndr<E>(
    cfg: &SearchConfig,
    mut trial: impl FnMut(Option<f64>) -> Result<TrialResult, E>,
) -> Result<SearchResult, E> {
    let mut res = SearchResult { trials: Vec::new(), ndr: None };
    let first = trial(cfg.max_rate_pps)?;
    let passes = |t: &TrialResult| t.offered > 0 && t.loss() <= cfg.loss_threshold;
    let (mut lo, mut hi) = (0.0f64, first.offered_pps());
    let mut planned = Some(first.rx_pps() * (1.0 - cfg.resolution));
    let mut step = 2.0 * cfg.resolution;
    let mut failed = false;
    if passes(&first) {
        res.ndr = Some(0);
    }
    res.trials.push(first);
    if res.ndr.is_some() || hi <= 0.0 {
        return Ok(res);
    }
    while (res.trials.len() as u32) < cfg.max_trials && hi - lo > cfg.resolution * hi {
        let rate = match planned.take() {
            Some(r) if r > lo && r < hi => r,
            _ => (lo + hi) / 2.0,
        };
        let mut t = trial(Some(rate))?;
        let mut tries = 1;
        while !passes(&t) && tries < cfg.attempts && (res.trials.len() as u32 + 1) < cfg.max_trials {
            res.trials.push(t);
            t = trial(Some(rate))?;
            tries += 1;
        }
        if passes(&t) {
            lo = lo.max(t.offered_pps().min(rate));
            if res.ndr_trial().is_none_or(|b| t.offered_pps() > b.offered_pps()) {
                res.ndr = Some(res.trials.len());
            }
            if !failed {
                planned = Some(lo * (1.0 + step));
                step *= 2.0;
            }
        } else {
            hi = hi.min(rate).min(t.offered_pps().max(lo));
            failed = true;
        }
        res.trials.push(t);
    }
    Ok(res)
}

/// Trials at `steps` evenly spaced fractions of `max_pps` (1/steps .. 1).
pub fn sweep<E>(
    max_pps: f64,
    steps: u32,
    mut trial: impl FnMut(Option<f64>) -> Result<TrialResult, E>,
) -> Result<Vec<TrialResult>, E> {
    (1..=steps).map(|i| trial(Some(max_pps * f64::from(i) / f64::from(steps)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that forwards up to `cap` pps, behind a generator that
    /// offers at most `gen` pps.
    fn model(cap: f64, gen: f64) -> impl FnMut(Option<f64>) -> Result<TrialResult, ()> {
        let mut n = 0u16;
        move |rate| {
            n += 1;
            let offered_pps = rate.unwrap_or(gen).min(gen);
            let received_pps = offered_pps.min(cap);
            Ok(TrialResult {
                trial: n,
                target_pps: rate,
                seconds: 1.0,
                offered: offered_pps as u64,
                tx_refused: (offered_pps - received_pps) as u64,
                tx_nombuf: 0,
                received: received_pps as u64,
                late: 0,
                reordered: 0,
                other: 0,
                frame_size: 64,
                latency: None,
                gen_stall_ms: 0.0,
            })
        }
    }

    const CFG: SearchConfig =
        SearchConfig { max_rate_pps: None, loss_threshold: 0.001, resolution: 0.01, max_trials: 20, attempts: 1 };

    #[test]
    fn finds_the_capacity() {
        for cap in [1e5, 2.5e6, 7.77e6, 9.9e6] {
            let r = ndr(&CFG, model(cap, 10e6)).unwrap();
            let best = r.ndr_trial().expect("a passing trial").offered_pps();
            assert!(best <= cap * 1.001 + 1.0 && best >= cap * 0.98, "cap {cap}: found {best}");
            assert!(r.trials.len() <= 20);
            assert_eq!(r.max_trial().unwrap().target_pps, None);
        }
    }

    #[test]
    fn few_trials_for_a_slow_device() {
        // A device 200 times slower than the generator: the search starts
        // near its forwarding rate instead of halving down from the top.
        let r = ndr(&SearchConfig { resolution: 0.02, ..CFG }, model(1.7e5, 34e6)).unwrap();
        let best = r.ndr_trial().expect("a pass").offered_pps();
        assert!(best >= 1.7e5 * 0.96, "found {best}");
        assert!(r.trials.len() <= 6, "{} trials", r.trials.len());
    }

    #[test]
    fn generator_bound() {
        // The device is faster than the generator: the first trial passes.
        let r = ndr(&CFG, model(20e6, 10e6)).unwrap();
        assert_eq!(r.trials.len(), 1);
        assert_eq!(r.ndr, Some(0));
    }

    #[test]
    fn nothing_passes() {
        let r = ndr(&CFG, model(0.0, 10e6)).unwrap();
        assert_eq!(r.ndr, None);
        assert!(r.trials.len() <= 20);
    }

    #[test]
    fn threshold_tolerates_some_loss() {
        // 5 % loss at every rate: passes a 10 % threshold at full rate.
        let cfg = SearchConfig { loss_threshold: 0.10, ..CFG };
        let r = ndr(&cfg, |rate: Option<f64>| {
            let mut t = model(1e9, 1e6)(rate)?;
            t.received = t.offered * 95 / 100;
            Ok::<_, ()>(t)
        })
        .unwrap();
        assert_eq!(r.ndr, Some(0));
    }

    #[test]
    fn errors_stop_the_search() {
        let mut calls = 0;
        let r = ndr(&CFG, |rate| {
            calls += 1;
            if calls == 3 {
                Err("gone")
            } else {
                Ok(model(1e6, 10e6)(rate).unwrap())
            }
        });
        assert_eq!(r, Err("gone"));
    }

    #[test]
    fn retries_forgive_one_bad_trial() {
        // Every first trial at a rate loses 1 % (a stall); the next one is clean.
        let cap = 3e6;
        let mut m = model(cap, 10e6);
        let mut last: Option<f64> = None;
        let mut noisy = |rate: Option<f64>| {
            let mut t = m(rate)?;
            if rate.is_some() && last != rate {
                t.received -= t.offered / 100;
            }
            last = rate;
            Ok::<_, ()>(t)
        };
        let cfg = SearchConfig { attempts: 2, max_trials: 30, ..CFG };
        let r = ndr(&cfg, &mut noisy).unwrap();
        let best = r.ndr_trial().expect("a pass").offered_pps();
        assert!(best >= cap * 0.98 && best <= cap * 1.001, "found {best}");
        // Each failing rate was tried twice.
        assert!(r.trials.len() <= 30);
        assert!(r.trials.windows(2).any(|w| w[0].target_pps.is_some() && w[0].target_pps == w[1].target_pps));
    }

    #[test]
    fn sweep_rates() {
        let t = sweep(1e6, 4, model(1e9, 1e9)).unwrap();
        let rates: Vec<f64> = t.iter().map(|t| t.target_pps.unwrap()).collect();
        assert_eq!(rates, vec![250_000.0, 500_000.0, 750_000.0, 1_000_000.0]);
    }

    #[test]
    fn loss_and_rates() {
        let mut t = model(5.0, 10.0)(Some(10.0)).unwrap();
        assert_eq!(t.loss(), 0.5);
        t.seconds = 0.0;
        assert_eq!(t.rx_pps(), 0.0);
        t.offered = 0;
        assert_eq!(t.loss(), 0.0);
    }
}
