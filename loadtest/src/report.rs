//! Scenario results: counts, rates and latency percentiles, as text and JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

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
}

impl Report {
    pub(crate) fn to_text(&self) -> String {
        let mut out = format!("scenario {} {}\n", self.scenario, self.parameters);
        for p in &self.phases {
            out.push_str(&format!(
                "  {:<10} ok={} failed={} in {} ms = {:.0}/s; latency p50={} µs p99={} µs p99.9={} µs max={} µs\n",
                p.name,
                p.ok,
                p.failed,
                p.elapsed_ms,
                p.per_second,
                p.latency.p50_us,
                p.latency.p99_us,
                p.latency.p999_us,
                p.latency.max_us
            ));
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
