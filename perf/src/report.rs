//! What weir-pktgen and the harness print and write: a readable table of
//! trials, the JSON report, and an SVG plot of offered rate against loss and
//! latency (written by hand: a few lines, axes and labels).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::search::{Latency, TrialResult};

/// Microseconds with two decimals, from nanoseconds.
pub fn us(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1000.0)
}

fn mpps(pps: f64) -> String {
    format!("{:.3}", pps / 1e6)
}

/// Header of [`trial_row`] lines.
pub fn trial_header() -> String {
    format!(
        "  {:>5} {:>11} {:>12} {:>9} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "trial",
        "target Mpps",
        "offered Mpps",
        "rx Mpps",
        "loss %",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "stall ms"
    )
}

pub fn trial_row(t: &TrialResult) -> String {
    let target = t.target_pps.map_or("max".to_string(), mpps);
    let l = |f: fn(&Latency) -> u64| t.latency.as_ref().map_or("-".to_string(), |l| us(f(l)));
    format!(
        "  {:>5} {:>11} {:>12} {:>9} {:>8.3} {:>9} {:>9} {:>9} {:>10} {:>9.1}",
        t.trial,
        target,
        mpps(t.offered_pps()),
        mpps(t.rx_pps()),
        t.loss() * 100.0,
        l(|l| l.p50_ns),
        l(|l| l.p99_ns),
        l(|l| l.p999_ns),
        l(|l| l.max_ns),
        t.gen_stall_ms
    )
}

/// The main figures of a rate: offered and received rate, loss, latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateSummary {
    pub trial: u16,
    pub offered_mpps: f64,
    pub rx_mpps: f64,
    pub rx_gbps: f64,
    pub loss: f64,
    pub latency: Option<Latency>,
}

impl RateSummary {
    pub fn of(t: &TrialResult) -> RateSummary {
        RateSummary {
            trial: t.trial,
            offered_mpps: t.offered_pps() / 1e6,
            rx_mpps: t.rx_pps() / 1e6,
            rx_gbps: t.rx_gbps(),
            loss: t.loss(),
            latency: t.latency,
        }
    }
}

/// How the established-flow scenarios set up their flows before the trials.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Priming {
    pub flows: u32,
    pub sent: u64,
    pub received: u64,
    pub seconds: f64,
}

/// Everything one weir-pktgen run measured (its `--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub tool: &'static str,
    /// The device under test, as the caller named it (`--label`).
    pub label: String,
    pub scenario: crate::traffic::Scenario,
    pub scenario_label: String,
    /// `ndr`, `fixed` or `sweep`.
    pub mode: String,
    pub trial_seconds: f64,
    pub loss_threshold: f64,
    pub tsc_hz: u64,
    /// The generator's ports (DPDK devargs), and which carry tx and rx.
    pub ports: Vec<String>,
    pub tx_port: usize,
    pub rx_port: usize,
    pub priming: Option<Priming>,
    pub trials: Vec<TrialResult>,
    /// The first trial of a search: as fast as the generator goes (what the
    /// device forwards when overloaded).
    pub max: Option<RateSummary>,
    /// The no-drop rate (loss within the threshold).
    pub ndr: Option<RateSummary>,
    /// The latency trial at `latency_load` × the no-drop rate.
    pub latency_load: f64,
    pub at_load: Option<RateSummary>,
    /// Generator-side notes (flow tuples wrapped, frame size raised, ...).
    pub notes: Vec<String>,
}

impl RunReport {
    /// The readable form printed on stdout.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "weir-pktgen: {} | {}", self.label, self.scenario_label);
        if let Some(p) = &self.priming {
            let _ = writeln!(
                s,
                "  primed {} flows: {} sent, {} came back, {:.2} s",
                p.flows, p.sent, p.received, p.seconds
            );
        }
        let _ = writeln!(s, "{}", trial_header());
        for t in &self.trials {
            let _ = writeln!(s, "{}", trial_row(t));
        }
        if let Some(m) = &self.max {
            let _ = writeln!(
                s,
                "  at the highest offered rate ({:.3} Mpps): {:.3} Mpps forwarded, loss {:.2} %",
                m.offered_mpps,
                m.rx_mpps,
                m.loss * 100.0
            );
        }
        if self.mode == "ndr" {
            match &self.ndr {
                Some(n) => {
                    let _ = writeln!(
                        s,
                        "  no-drop rate (loss <= {} %): {:.3} Mpps, {:.2} Gbit/s (trial {})",
                        self.loss_threshold * 100.0,
                        n.rx_mpps,
                        n.rx_gbps,
                        n.trial
                    );
                }
                None => {
                    let _ = writeln!(s, "  no-drop rate: none (every trial lost more than the threshold)");
                }
            }
        }
        if let Some(l) = &self.at_load {
            let lat = l.latency.map_or("no latency samples".to_string(), |x| {
                format!("p50 {} us, p99 {} us, p99.9 {} us", us(x.p50_ns), us(x.p99_ns), us(x.p999_ns))
            });
            let _ = writeln!(
                s,
                "  latency at {:.0} % of it ({:.3} Mpps offered, loss {:.3} %): {lat}",
                self.latency_load * 100.0,
                l.offered_mpps,
                l.loss * 100.0
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }
}

/// One line of a plot: a device's trials.
pub struct Series<'a> {
    pub name: &'a str,
    pub trials: &'a [TrialResult],
    /// Marked with a dashed vertical line (the no-drop rate).
    pub ndr_mpps: Option<f64>,
}

const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// "Nice" axis ticks from 0 to at least `max`.
fn ticks(max: f64) -> Vec<f64> {
    let max = if max > 0.0 && max.is_finite() { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let n = (max / step).ceil() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

fn fmt_tick(v: f64) -> String {
    if v == v.trunc() {
        format!("{v:.0}")
    } else if (v * 10.0) == (v * 10.0).trunc() {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// An SVG of offered rate (x, Mpps) against loss (top, %) and p50/p99
/// latency (bottom, microseconds, log scale), one colour per series.
pub fn rate_plot(title: &str, series: &[Series<'_>]) -> String {
    const W: f64 = 760.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 150.0;
    const PANEL_H: f64 = 210.0;
    const TOP1: f64 = 50.0;
    const TOP2: f64 = TOP1 + PANEL_H + 60.0;
    let h = TOP2 + PANEL_H + 50.0;
    let pw = W - LEFT - RIGHT;

    let all: Vec<&TrialResult> = series.iter().flat_map(|s| s.trials.iter()).collect();
    // The axis covers the paced trials and what the devices forwarded; a
    // trial offered far beyond (as fast as the generator goes) sits on the
    // right edge with its rate written next to it.
    let paced = all.iter().filter(|t| t.target_pps.is_some()).map(|t| t.offered_pps() / 1e6).fold(0.0, f64::max);
    let fwd = all.iter().map(|t| t.rx_pps() / 1e6 * 1.1).fold(0.0, f64::max);
    let xmax = paced.max(fwd);
    let xmax = if xmax > 0.0 { xmax } else { all.iter().map(|t| t.offered_pps() / 1e6).fold(0.0, f64::max) };
    let xt = ticks(xmax);
    let xmax = *xt.last().unwrap_or(&1.0);
    let lmax = all.iter().map(|t| t.loss() * 100.0).fold(0.0, f64::max);
    let lt = ticks(if lmax > 0.0 { lmax } else { 1.0 });
    let lmax = *lt.last().unwrap_or(&1.0);
    let lat: Vec<f64> = all
        .iter()
        .filter_map(|t| t.latency)
        .flat_map(|l| [l.p50_ns as f64 / 1000.0, l.p99_ns as f64 / 1000.0])
        .filter(|v| *v > 0.0)
        .collect();
    let dmin = lat.iter().copied().fold(f64::MAX, f64::min);
    let dmax = lat.iter().copied().fold(0.0, f64::max);
    let (d0, d1) = if lat.is_empty() {
        (0, 3)
    } else {
        (dmin.log10().floor() as i32, (dmax.log10().ceil() as i32).max(dmin.log10().floor() as i32 + 1))
    };

    let x = |v: f64| LEFT + v.min(xmax) / xmax * pw;
    let y1 = |v: f64| TOP1 + PANEL_H - v / lmax * PANEL_H;
    let y2 = |us: f64| {
        let l = us.max(1e-3).log10().clamp(f64::from(d0), f64::from(d1));
        TOP2 + PANEL_H - (l - f64::from(d0)) / f64::from(d1 - d0) * PANEL_H
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#, W / 2.0, esc(title));
    for (top, label) in [(TOP1, "loss (%)"), (TOP2, "latency (us, log scale): solid p99, dotted p50")] {
        let _ =
            writeln!(s, r##"<rect x="{LEFT}" y="{top}" width="{pw}" height="{PANEL_H}" fill="none" stroke="#444"/>"##);
        let _ = writeln!(s, r#"<text x="{LEFT}" y="{}" >{}</text>"#, top - 8.0, esc(label));
        for v in &xt {
            let _ = writeln!(
                s,
                r##"<line x1="{0}" y1="{top}" x2="{0}" y2="{1}" stroke="#ddd"/><text x="{0}" y="{2}" text-anchor="middle">{3}</text>"##,
                x(*v),
                top + PANEL_H,
                top + PANEL_H + 16.0,
                fmt_tick(*v)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">offered rate (Mpps)</text>"#,
            LEFT + pw / 2.0,
            top + PANEL_H + 34.0
        );
    }
    for v in &lt {
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="#ddd"/><text x="{2}" y="{3}" text-anchor="end">{4}</text>"##,
            y1(*v),
            LEFT + pw,
            LEFT - 6.0,
            y1(*v) + 4.0,
            fmt_tick(*v)
        );
    }
    for d in d0..=d1 {
        let v = 10f64.powi(d);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="#ddd"/><text x="{2}" y="{3}" text-anchor="end">{4}</text>"##,
            y2(v),
            LEFT + pw,
            LEFT - 6.0,
            y2(v) + 4.0,
            if d >= 0 { format!("{v:.0}") } else { format!("{v}") }
        );
    }
    for (i, se) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let mut pts: Vec<&TrialResult> = se.trials.iter().filter(|t| t.offered > 0).collect();
        pts.sort_by(|a, b| a.offered_pps().total_cmp(&b.offered_pps()));
        let line = |f: &dyn Fn(&TrialResult) -> Option<f64>, y: &dyn Fn(f64) -> f64| -> String {
            pts.iter()
                .filter_map(|t| f(t).map(|v| format!("{:.1},{:.1}", x(t.offered_pps() / 1e6), y(v))))
                .collect::<Vec<_>>()
                .join(" ")
        };
        for t in pts.iter().filter(|t| t.offered_pps() / 1e6 > xmax) {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10" fill="{c}">offered {:.1} &#8594;</text>"#,
                LEFT + pw - 4.0,
                y1(t.loss() * 100.0) + 14.0,
                t.offered_pps() / 1e6
            );
        }
        let loss = line(&|t| Some(t.loss() * 100.0), &y1);
        let p99 = line(&|t| t.latency.map(|l| l.p99_ns as f64 / 1000.0), &y2);
        let p50 = line(&|t| t.latency.map(|l| l.p50_ns as f64 / 1000.0), &y2);
        for (pts_s, dash) in [(&loss, ""), (&p99, ""), (&p50, r#" stroke-dasharray="2,3""#)] {
            let _ = writeln!(s, r#"<polyline points="{pts_s}" fill="none" stroke="{c}" stroke-width="1.5"{dash}/>"#);
            for p in pts_s.split(' ').filter(|p| !p.is_empty()) {
                let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(s, r#"<circle cx="{px}" cy="{py}" r="2.5" fill="{c}"/>"#);
            }
        }
        if let Some(n) = se.ndr_mpps.filter(|n| *n > 0.0) {
            for top in [TOP1, TOP2] {
                let _ = writeln!(
                    s,
                    r#"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1}" stroke="{c}" stroke-dasharray="6,4"/>"#,
                    x(n),
                    top + PANEL_H
                );
            }
        }
        let ly = TOP1 + 10.0 + i as f64 * 36.0;
        let _ = writeln!(
            s,
            r#"<rect x="{0}" y="{1}" width="12" height="12" fill="{c}"/><text x="{2}" y="{3}">{4}</text>"#,
            LEFT + pw + 12.0,
            ly,
            LEFT + pw + 30.0,
            ly + 10.0,
            esc(se.name)
        );
        if let Some(n) = se.ndr_mpps {
            let _ = writeln!(
                s,
                r##"<text x="{0}" y="{1}" fill="#555">NDR {2:.2} Mpps</text>"##,
                LEFT + pw + 30.0,
                ly + 25.0,
                n
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(n: u16, rate: f64, loss: f64, p99_ns: u64) -> TrialResult {
        TrialResult {
            trial: n,
            target_pps: Some(rate),
            seconds: 1.0,
            offered: rate as u64,
            tx_refused: 0,
            tx_nombuf: 0,
            received: (rate * (1.0 - loss)) as u64,
            late: 0,
            reordered: 0,
            other: 0,
            frame_size: 64,
            latency: Some(Latency {
                samples: 10,
                min_ns: 100,
                p50_ns: p99_ns / 2,
                p99_ns,
                p999_ns: p99_ns * 2,
                max_ns: p99_ns * 3,
                mean_ns: 1.0,
            }),
            gen_stall_ms: 0.0,
        }
    }

    #[test]
    fn svg_is_well_formed() {
        let a = [trial(1, 8e6, 0.4, 900_000), trial(2, 4e6, 0.0, 9_000), trial(3, 6e6, 0.01, 30_000)];
        let b = [trial(1, 9e6, 0.1, 50_000)];
        let svg = rate_plot(
            "pod2pod <64 B>",
            &[
                Series { name: "weir", trials: &a, ndr_mpps: Some(4.0) },
                Series { name: "testpmd & co", trials: &b, ndr_mpps: None },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("pod2pod &lt;64 B&gt;") && svg.contains("testpmd &amp; co"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        // Every element is closed: each tag is self-closed, a closing tag, or
        // one of the elements that hold text or children.
        let tags = svg.matches('<').count();
        let self_closed = svg.matches("/>").count();
        let closing = svg.matches("</").count();
        let containers = svg.matches("<svg").count() + svg.matches("<text").count();
        assert_eq!(tags, self_closed + closing + containers);
        assert_eq!(closing, containers);
        assert_eq!(svg.matches("<polyline").count(), 6);
        // Points lie inside the canvas.
        for cap in svg.split("cx=\"").skip(1) {
            let v: f64 = cap.split('"').next().unwrap().parse().unwrap();
            assert!((0.0..=760.0).contains(&v));
        }
        // An empty plot still renders.
        let empty = rate_plot("none", &[]);
        assert!(empty.contains("</svg>") && !empty.contains("NaN"));
    }

    #[test]
    fn nice_ticks() {
        assert_eq!(ticks(9.3), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(1.0), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(ticks(0.0).len(), 6);
        assert_eq!(fmt_tick(2.5), "2.5");
        assert_eq!(fmt_tick(10.0), "10");
    }

    #[test]
    fn table_lines() {
        let t = trial(3, 2e6, 0.5, 12_340);
        let row = trial_row(&t);
        assert!(row.contains("2.000") && row.contains("1.000") && row.contains("50.000") && row.contains("12.34"));
        let mut r = RunReport {
            tool: "weir-pktgen",
            label: "dut".into(),
            scenario: crate::traffic::Scenario::new(crate::traffic::Kind::Pod2Pod, None, 64, 0).unwrap(),
            scenario_label: "pod2pod".into(),
            mode: "ndr".into(),
            trial_seconds: 1.0,
            loss_threshold: 0.001,
            tsc_hz: 1,
            ports: vec![],
            tx_port: 0,
            rx_port: 1,
            priming: None,
            trials: vec![t.clone()],
            max: Some(RateSummary::of(&t)),
            ndr: None,
            latency_load: 0.5,
            at_load: None,
            notes: vec!["n".into()],
        };
        assert!(r.table().contains("no-drop rate: none"));
        r.ndr = Some(RateSummary::of(&t));
        assert!(r.table().contains("no-drop rate (loss <= 0.1 %): 1.000 Mpps"));
        assert!(serde_json::to_string(&r).unwrap().contains("\"kind\":\"pod2pod\""));
    }
}
