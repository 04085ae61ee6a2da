//! Scenario results: counts, rates, latency percentiles and delivery checks, as a table for
//! people and as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::broker::BrokerUsage;
use crate::tally::Check;

/// Latency percentiles of one measured operation, in microseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
}

impl Latency {
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// One named measurement: how many, how fast, how long each took.
#[derive(Debug, Serialize)]
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) elapsed_ms: u64,
    pub(crate) per_second: f64,
    pub(crate) latency: Latency,
}

impl Phase {
    /// A phase whose successes are the histogram's samples, over `elapsed`.
    pub(crate) fn new(name: &'static str, failed: u64, elapsed: Duration, latencies: &Histogram<u64>) -> Self {
        let ok = latencies.len();
        let secs = elapsed.as_secs_f64().max(1e-9);
        Self {
            name,
            ok,
            failed,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            per_second: ok as f64 / secs,
            latency: Latency::from_histogram(latencies),
        }
    }
}

/// A scenario's whole report.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    pub(crate) parameters: serde_json::Value,
    pub(crate) phases: Vec<Phase>,
    /// Expected against received, per kind of delivery: every one must show no loss.
    pub(crate) checks: Vec<Check>,
    /// Scenario-specific figures (such as the updates a sender received).
    pub(crate) figures: BTreeMap<&'static str, f64>,
    /// The broker's CPU time and memory over the run, when the tool can see its process.
    pub(crate) broker: Option<BrokerUsage>,
}

impl Report {
    pub(crate) fn new(scenario: &'static str, parameters: &impl Serialize) -> Self {
        Self {
            scenario,
            parameters: serde_json::to_value(parameters).unwrap_or_default(),
            phases: Vec::new(),
            checks: Vec::new(),
            figures: BTreeMap::new(),
            broker: None,
        }
    }

    /// Whether every check came out clean.
    pub(crate) fn passed(&self) -> bool {
        self.checks.iter().all(Check::clean) && self.phases.iter().all(|p| p.failed == 0)
    }

    /// The human table.
    pub(crate) fn to_text(&self) -> String {
        let mut out = format!("scenario {} {}\n\n", self.scenario, self.parameters);
        let _ = writeln!(
            out,
            "  {:<14} {:>9} {:>7} {:>9} {:>11} {:>10} {:>10} {:>10} {:>10}",
            "phase", "ok", "failed", "ms", "per second", "p50 µs", "p99 µs", "p99.9 µs", "max µs"
        );
        for p in &self.phases {
            let _ = writeln!(
                out,
                "  {:<14} {:>9} {:>7} {:>9} {:>11.0} {:>10} {:>10} {:>10} {:>10}",
                p.name,
                p.ok,
                p.failed,
                p.elapsed_ms,
                p.per_second,
                p.latency.p50_us,
                p.latency.p99_us,
                p.latency.p999_us,
                p.latency.max_us
            );
        }
        if !self.checks.is_empty() {
            out.push('\n');
            let _ = writeln!(
                out,
                "  {:<14} {:>9} {:>9} {:>7} {:>10} {:>9}  verdict",
                "check", "expected", "received", "lost", "duplicate", "reordered"
            );
            for c in &self.checks {
                let verdict = if c.clean() { "ok" } else { "FAILED" };
                let _ = writeln!(
                    out,
                    "  {:<14} {:>9} {:>9} {:>7} {:>10} {:>9}  {verdict}",
                    c.name, c.expected, c.received, c.lost, c.duplicates, c.reordered
                );
            }
        }
        if !self.figures.is_empty() {
            out.push('\n');
            for (name, value) in &self.figures {
                let _ = writeln!(out, "  {name:<32} {value:.1}");
            }
        }
        if let Some(b) = &self.broker {
            let _ = writeln!(
                out,
                "\n  broker: {:.2} CPU seconds over {:.1} s ({:.0}% of one core); RSS {:.1} MiB at the end, peak {:.1} MiB",
                b.cpu_seconds,
                b.wall_seconds,
                100.0 * b.cpu_seconds / b.wall_seconds.max(1e-9),
                b.rss_bytes as f64 / 1048576.0,
                b.peak_rss_bytes as f64 / 1048576.0,
            );
            if b.rss_samples_mib.len() > 1 {
                let samples: Vec<String> = b.rss_samples_mib.iter().map(|mib| format!("{mib:.0}")).collect();
                let every = crate::broker::RSS_SAMPLE_INTERVAL.as_secs();
                let _ = writeln!(out, "  broker RSS every {every} s (MiB): {}", samples.join(" "));
            }
        }
        out
    }
}

/// A histogram of microsecond latencies up to one minute, 3 significant digits.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid")
}

/// Records `d` in microseconds, clamped into the histogram's range.
pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000);
    h.saturating_record(us);
}
