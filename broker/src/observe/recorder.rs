//! The process-wide metrics recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The Prometheus recorder's handle, installing it as the process's `metrics` recorder on first
/// use. One per process: several brokers in one process (tests, embedders) share it.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder already installed (an embedder's own) keeps receiving the
            // metrics; this handle then renders an empty page rather than failing the start.
            let _ = metrics::set_global_recorder(recorder);
            super::names::describe();
            handle
        })
        .clone()
}
