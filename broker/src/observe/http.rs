//! The operators' HTTP endpoint: `/metrics` (Prometheus text format), `/healthz` (the process
//! answers) and `/readyz` (the broker accepts sessions; 503 while starting or shutting down).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// A client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the endpoint reports.
#[derive(Debug)]
pub struct HttpState {
    metrics: PrometheusHandle,
    ready: AtomicBool,
}

impl HttpState {
    /// Not ready until [`Self::set_ready`].
    pub fn new(metrics: PrometheusHandle) -> Self {
        Self { metrics, ready: AtomicBool::new(false) }
    }

    /// Marks the broker ready (accepting sessions) or not (shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match request.uri().path() {
            "/metrics" => {
                let mut response = Response::new(Full::new(Bytes::from(self.metrics.render())));
                let content_type = hyper::header::HeaderValue::from_static("text/plain; version=0.0.4");
                response.headers_mut().insert(hyper::header::CONTENT_TYPE, content_type);
                response
            }
            "/healthz" => reply(StatusCode::OK, "ok\n"),
            "/readyz" if self.ready.load(Ordering::Acquire) => reply(StatusCode::OK, "ready\n"),
            "/readyz" => reply(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            _ => reply(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

fn reply(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

/// Serves the endpoint on `listener` until `shutdown`.
pub async fn serve_http(listener: TcpListener, state: Arc<HttpState>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "metrics endpoint accept failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = state.answer(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                debug!(error = %e, "metrics connection ended");
            }
        });
    }
}
