//! The SMS and voice gateway adapter: how a DING step that escalates past in-app reaches a phone.
//!
//! Herald does not speak to carriers. The operator runs (or rents) a gateway with an HTTP
//! webhook, and [`WebhookGateway`] POSTs one JSON request per step and recipient to it, retrying
//! transient failures with exponential backoff and full jitter. Every retry carries the same body
//! and the same `Idempotency-Key`, so a gateway that received a request whose answer was lost can
//! drop the duplicate. The wire contract is in docs/OPERATIONS.md ("SMS and voice gateway").
//!
//! The DING engine sees only the object-safe [`Gateway`] trait: [`NoGateway`] stands in when no
//! URL is configured (and in tests of the engine), [`gateway_from_config`] picks one.
//!
//! Only `http://` URLs are supported: this module has no TLS connector. Reach an `https://`
//! gateway through a local TLS-originating proxy (or a sidecar) on a private interface.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_protocol::{OrgId, UserId};
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, warn};

use super::backoff::Backoff;
use crate::auth::{HmacSecret, KeyError};
use crate::observe::names;

/// The header carrying the idempotency key, the same on every attempt of one request.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The header carrying `sha256=<hex HMAC-SHA256 of the body>` when a secret is configured.
pub const SIGNATURE_HEADER: &str = "x-herald-signature";

/// `[ding.gateway]`: where SMS and voice steps go and how hard Herald tries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// The webhook (`http://host[:port]/path`); without one, SMS and voice steps fail at once
    /// with "no gateway configured" and the escalation goes on without them.
    pub url: Option<String>,
    /// Longest one attempt may take: connecting, sending and receiving the response head.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per request, the first included (at least 1).
    pub attempts: u32,
    /// Ceiling of the first retry's delay; it doubles with each retry.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Cap on any delay between attempts, `Retry-After` included.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// A file holding a shared secret (at least 32 bytes; one trailing line break is ignored).
    /// When set, every request carries `X-Herald-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    pub secret_file: Option<PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            url: None,
            timeout: Duration::from_secs(5),
            attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            secret_file: None,
        }
    }
}

/// A gateway configuration that cannot work; reported at start, before any DING needs it.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The URL does not parse.
    #[error("ding.gateway.url {url:?} is not a URL")]
    Url {
        /// The configured URL.
        url: String,
        /// Why it does not parse.
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    /// The URL is not `http://host[:port][/path]` (no TLS connector here; no credentials in URLs).
    #[error("ding.gateway.url {url:?}: {reason}")]
    Unsupported {
        /// The configured URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A setting is out of range.
    #[error("ding.gateway.{field} {rule}")]
    Invalid {
        /// The setting's key.
        field: &'static str,
        /// What it must be.
        rule: &'static str,
    },
    /// The secret file cannot be read or holds too short a secret.
    #[error("ding.gateway.secret_file")]
    Secret(#[source] KeyError),
}

/// How a step reaches the recipient's phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A text message.
    Sms,
    /// A voice call that reads the text out.
    Voice,
}

impl Channel {
    /// The name on the wire and in logs: `sms` or `voice`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Voice => "voice",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step's notice to one recipient, as the gateway receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRequest {
    /// The recipient's organisation.
    pub org: OrgId,
    /// The DING this step belongs to.
    pub ding_id: String,
    /// Who is notified.
    pub recipient: UserId,
    /// The escalation step (the gateway may word SMS and voice differently per step).
    pub step: u32,
    /// SMS or voice.
    pub channel: Channel,
    /// The recipient's number, as the directory holds it (E.164 recommended).
    pub phone: String,
    /// What to send or read out.
    pub text: String,
    /// Identical on every attempt; the gateway drops requests whose key it has seen. Use
    /// [`GatewayRequest::idempotency_key_for`] unless the engine has its own scheme. It must be a
    /// valid header value (visible ASCII), or the request fails without being sent.
    pub idempotency_key: String,
}

impl GatewayRequest {
    /// A key unique per organisation, DING, recipient and step: the unit Herald sends at most
    /// once, so the same unit always gets the same key even across broker restarts.
    pub fn idempotency_key_for(org: &OrgId, ding_id: &str, recipient: &UserId, step: u32) -> String {
        format!("ding:{org}:{ding_id}:{recipient}:{step}")
    }
}

/// The JSON body; field names are the wire contract in docs/OPERATIONS.md.
#[derive(Serialize)]
struct WireRequest<'a> {
    org: &'a str,
    ding_id: &'a str,
    recipient: &'a str,
    step: u32,
    channel: Channel,
    phone: &'a str,
    text: &'a str,
    idempotency_key: &'a str,
}

/// What came of a request, after every attempt it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayOutcome {
    /// The gateway answered 2xx: it has taken responsibility for the SMS or call.
    Accepted {
        /// Attempts made, this one included.
        attempts: u32,
        /// The 2xx status.
        status: u16,
    },
    /// The gateway refused the request (a 4xx other than 408 and 429, or a redirect), every
    /// attempt failed, or there is no gateway (`attempts` is then 0).
    Failed {
        /// Attempts made (requests sent or tried).
        attempts: u32,
        /// Why, for logs and the audit trail.
        reason: String,
    },
}

/// The future [`Gateway::deliver`] returns.
pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = GatewayOutcome> + Send + 'a>>;

/// Where SMS and voice steps go. Object-safe, so the DING engine holds an `Arc<dyn Gateway>`
/// and its tests can supply their own.
pub trait Gateway: Send + Sync + std::fmt::Debug {
    /// Delivers one request, retrying as configured; never panics, and finishes within
    /// attempts × (timeout + max backoff).
    ///
    /// # Cancel safety
    /// Dropping the future stops at once, but a request already sent may have reached the
    /// gateway; sending it again with the same idempotency key is safe.
    fn deliver(&self, request: GatewayRequest) -> DeliverFuture<'_>;
}

/// The gateway used when none is configured: every request fails at once, without being sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGateway;

impl Gateway for NoGateway {
    fn deliver(&self, _request: GatewayRequest) -> DeliverFuture<'_> {
        Box::pin(std::future::ready(GatewayOutcome::Failed { attempts: 0, reason: "no gateway configured".into() }))
    }
}

/// [`WebhookGateway`] when `config.url` is set, [`NoGateway`] otherwise.
///
/// # Errors
/// [`GatewayError`] if the URL, a setting or the secret file is unusable.
pub fn gateway_from_config(config: &GatewayConfig) -> Result<Arc<dyn Gateway>, GatewayError> {
    let gateway: Arc<dyn Gateway> = match config.url {
        Some(_) => Arc::new(WebhookGateway::new(config)?),
        None => Arc::new(NoGateway),
    };
    Ok(gateway)
}

/// Where and how to connect, parsed once from the URL.
#[derive(Debug, Clone)]
struct Target {
    /// `host:port` for the TCP connection (IPv6 hosts keep their brackets).
    connect: String,
    /// The `Host` header.
    host: HeaderValue,
    /// The request target (origin form: path and query).
    path: Uri,
}

impl Target {
    fn parse(url: &str) -> Result<Self, GatewayError> {
        let unsupported = |reason| GatewayError::Unsupported { url: url.to_owned(), reason };
        let uri: Uri = url.parse().map_err(|source| GatewayError::Url { url: url.to_owned(), source })?;
        if uri.scheme_str() != Some("http") {
            return Err(unsupported("only http:// is supported (no TLS connector; use a local TLS proxy)"));
        }
        let authority = uri.authority().ok_or_else(|| unsupported("no host"))?;
        if authority.as_str().contains('@') {
            return Err(unsupported("credentials in the URL are not supported (use secret_file)"));
        }
        if authority.host().is_empty() {
            return Err(unsupported("no host"));
        }
        let connect = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| unsupported("host is not a valid header"))?;
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let path = path_and_query.parse().map_err(|source| GatewayError::Url { url: url.to_owned(), source })?;
        Ok(Self { connect, host, path })
    }
}

/// The webhook client: one fresh HTTP/1.1 connection per attempt (DINGs that reach SMS are
/// rare, so pooling would buy nothing and would keep half-dead connections around).
#[derive(Debug, Clone)]
pub struct WebhookGateway {
    target: Target,
    timeout: Duration,
    attempts: u32,
    backoff: Backoff,
    secret: Option<HmacSecret>,
}

impl WebhookGateway {
    /// Checks the configuration and reads the secret file.
    ///
    /// # Errors
    /// [`GatewayError`] if `url` is missing, not `http://`, or malformed; if `attempts` or
    /// `timeout` is zero; or if the secret file is unreadable or shorter than 32 bytes.
    pub fn new(config: &GatewayConfig) -> Result<Self, GatewayError> {
        let url = config.url.as_deref().ok_or(GatewayError::Invalid { field: "url", rule: "must be set" })?;
        if config.attempts == 0 {
            return Err(GatewayError::Invalid { field: "attempts", rule: "must be at least 1" });
        }
        if config.timeout.is_zero() {
            return Err(GatewayError::Invalid { field: "timeout", rule: "must be above zero" });
        }
        let secret = config.secret_file.as_deref().map(HmacSecret::load).transpose().map_err(GatewayError::Secret)?;
        Ok(Self {
            target: Target::parse(url)?,
            timeout: config.timeout,
            attempts: config.attempts,
            backoff: Backoff::new(config.initial_backoff, config.max_backoff),
            secret,
        })
    }

    async fn deliver_with_retries(&self, request: GatewayRequest) -> GatewayOutcome {
        let prepared = match self.prepare(&request) {
            Ok(prepared) => prepared,
            Err(reason) => return failed(&request, 0, reason),
        };
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout(self.timeout, self.send_once(&prepared)).await {
                Ok(result) => result,
                Err(_) => {
                    Attempt::Transient { reason: format!("timed out after {:?}", self.timeout), retry_after: None }
                }
            };
            let (reason, retry_after) = match result {
                Attempt::Accepted(status) => return accepted(&request, attempt, status),
                Attempt::Refused(reason) => return failed(&request, attempt, reason),
                Attempt::Transient { reason, retry_after } => (reason, retry_after),
            };
            if attempt >= self.attempts {
                return failed(&request, attempt, format!("gave up after {attempt} attempts, last: {reason}"));
            }
            let delay = retry_after
                .map_or_else(|| self.backoff.delay(attempt - 1, rand::random()), |d| d.min(self.backoff.max()));
            metrics::counter!(names::DING_GATEWAY_REQUESTS, names::LABEL_OUTCOME => "retried").increment(1);
            debug!(org = %request.org, ding = %request.ding_id, step = request.step, channel = %request.channel, attempt, %reason, ?delay, "gateway attempt failed; retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// The body and headers, built once so every attempt sends the same bytes.
    fn prepare(&self, request: &GatewayRequest) -> Result<Prepared, String> {
        let wire = WireRequest {
            org: request.org.as_str(),
            ding_id: &request.ding_id,
            recipient: request.recipient.as_str(),
            step: request.step,
            channel: request.channel,
            phone: &request.phone,
            text: &request.text,
            idempotency_key: &request.idempotency_key,
        };
        let body = Bytes::from(serde_json::to_vec(&wire).map_err(|e| format!("cannot encode the request: {e}"))?);
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, self.target.host.clone());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers
            .insert(header::USER_AGENT, HeaderValue::from_static(concat!("herald-broker/", env!("CARGO_PKG_VERSION"))));
        let key = HeaderValue::from_str(&request.idempotency_key)
            .map_err(|_| "the idempotency key is not a valid header value".to_owned())?;
        headers.insert(HeaderName::from_static(IDEMPOTENCY_KEY_HEADER), key);
        if let Some(secret) = &self.secret {
            headers.insert(HeaderName::from_static(SIGNATURE_HEADER), sign(secret, &body)?);
        }
        Ok(Prepared { body, headers })
    }

    /// One attempt on a fresh connection. Not bounded in time itself: the caller wraps it in the
    /// attempt timeout, and dropping it closes the connection.
    async fn send_once(&self, prepared: &Prepared) -> Attempt {
        let stream = match TcpStream::connect(&self.target.connect).await {
            Ok(stream) => stream,
            Err(e) => return Attempt::transient(format!("cannot connect to {}: {e}", self.target.connect)),
        };
        let (mut sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => return Attempt::transient(format!("HTTP handshake failed: {e}")),
        };
        // The connection future does the I/O, in its own task so that a response followed at
        // once by a close is still read; the guard stops it when this attempt ends or is dropped.
        let _driver = AbortOnDropHandle::new(tokio::spawn(connection));
        let mut request = Request::new(Full::new(prepared.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.target.path.clone();
        *request.headers_mut() = prepared.headers.clone();
        let response = sender.send_request(request).await;
        match response {
            Ok(response) => classify(response.status(), response.headers()),
            Err(e) => Attempt::transient(format!("request failed: {e}")),
        }
    }
}

impl Gateway for WebhookGateway {
    fn deliver(&self, request: GatewayRequest) -> DeliverFuture<'_> {
        Box::pin(self.deliver_with_retries(request))
    }
}

/// A request ready to send, identical on every attempt.
#[derive(Debug)]
struct Prepared {
    body: Bytes,
    headers: HeaderMap,
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// 2xx.
    Accepted(u16),
    /// Retrying cannot help (a 4xx other than 408/429, a redirect, a 1xx).
    Refused(String),
    /// Worth another attempt, after `retry_after` if the gateway asked for one.
    Transient { reason: String, retry_after: Option<Duration> },
}

impl Attempt {
    fn transient(reason: String) -> Self {
        Self::Transient { reason, retry_after: None }
    }
}

/// Sorts a response status into accepted, refused (permanent) or transient.
fn classify(status: StatusCode, headers: &HeaderMap) -> Attempt {
    if status.is_success() {
        return Attempt::Accepted(status.as_u16());
    }
    let retryable =
        status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
    if retryable {
        Attempt::Transient { reason: format!("HTTP {status}"), retry_after: retry_after(headers) }
    } else {
        Attempt::Refused(format!("refused with HTTP {status}"))
    }
}

/// `Retry-After` in delay-seconds form; the HTTP-date form is ignored (the backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(seconds))
}

/// `sha256=<hex HMAC-SHA256 of body>`.
fn sign(secret: &HmacSecret, body: &[u8]) -> Result<HeaderValue, String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|e| format!("cannot sign: {e}"))?;
    mac.update(body);
    let value = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    HeaderValue::from_str(&value).map_err(|_| "cannot sign: bad header".to_owned())
}

fn accepted(request: &GatewayRequest, attempts: u32, status: u16) -> GatewayOutcome {
    metrics::counter!(names::DING_GATEWAY_REQUESTS, names::LABEL_OUTCOME => "accepted").increment(1);
    debug!(org = %request.org, ding = %request.ding_id, step = request.step, channel = %request.channel, attempts, status, "gateway accepted");
    GatewayOutcome::Accepted { attempts, status }
}

fn failed(request: &GatewayRequest, attempts: u32, reason: String) -> GatewayOutcome {
    metrics::counter!(names::DING_GATEWAY_REQUESTS, names::LABEL_OUTCOME => "failed").increment(1);
    warn!(org = %request.org, ding = %request.ding_id, step = request.step, channel = %request.channel, attempts, %reason, "gateway delivery failed");
    GatewayOutcome::Failed { attempts, reason }
}

#[cfg(test)]
mod tests {
    //! Against a real HTTP server on loopback, standing in for the operator's gateway. Timeouts
    //! and backoffs are a few tens of milliseconds so the whole module runs in a few seconds.

    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use http_body_util::BodyExt;
    use hyper::Response;
    use hyper::body::Incoming;
    use tokio::net::TcpListener;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-gateway";

    /// How the stand-in gateway answers one request.
    #[derive(Debug, Clone, Copy)]
    enum Reply {
        Status(u16),
        RetryAfter(u16, &'static str),
        Hang,
    }

    /// A request as the stand-in gateway received it.
    #[derive(Debug, Clone)]
    struct Seen {
        headers: HeaderMap,
        body: Bytes,
        at: Instant,
    }

    /// The stand-in gateway: answers the n-th request with `replies[n]` (the last one repeats).
    struct StandIn {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl StandIn {
        async fn start(replies: Vec<Reply>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("address");
            let seen = Arc::new(Mutex::new(Vec::new()));
            let script = Arc::new((replies, AtomicUsize::new(0), seen.clone()));
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let script = script.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| answer(script.clone(), request));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Self { addr, seen }
        }

        fn url(&self) -> String {
            format!("http://{}/hooks/ding?v=1", self.addr)
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().expect("lock").clone()
        }
    }

    type Script = Arc<(Vec<Reply>, AtomicUsize, Arc<Mutex<Vec<Seen>>>)>;

    async fn answer(script: Script, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let (replies, next, seen) = &*script;
        let (parts, body) = request.into_parts();
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.uri.to_string(), "/hooks/ding?v=1");
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        seen.lock().expect("lock").push(Seen { headers: parts.headers, body, at: Instant::now() });
        let n = next.fetch_add(1, Ordering::SeqCst);
        let reply = replies.get(n).or(replies.last()).copied().unwrap_or(Reply::Status(200));
        let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
        match reply {
            Reply::Status(code) => *response.status_mut() = StatusCode::from_u16(code).expect("status"),
            Reply::RetryAfter(code, after) => {
                *response.status_mut() = StatusCode::from_u16(code).expect("status");
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(after));
            }
            Reply::Hang => std::future::pending::<()>().await,
        }
        Ok(response)
    }

    fn config(url: String, attempts: u32) -> GatewayConfig {
        GatewayConfig {
            url: Some(url),
            timeout: Duration::from_millis(300),
            attempts,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
            secret_file: None,
        }
    }

    fn request() -> GatewayRequest {
        let org = OrgId::new("acme").expect("org");
        let recipient = UserId::new("bob").expect("user");
        GatewayRequest {
            idempotency_key: GatewayRequest::idempotency_key_for(&org, "d-42", &recipient, 1),
            org,
            ding_id: "d-42".into(),
            recipient,
            step: 1,
            channel: Channel::Sms,
            phone: "+15550100".into(),
            text: "Server room on fire — please ack".into(),
        }
    }

    fn deliverer(config: &GatewayConfig) -> Arc<dyn Gateway> {
        gateway_from_config(config).expect("valid config")
    }

    #[tokio::test]
    async fn a_500_then_200_is_retried_with_the_same_key_and_body() {
        let server = StandIn::start(vec![Reply::Status(500), Reply::Status(200)]).await;
        let outcome = deliverer(&config(server.url(), 5)).deliver(request()).await;
        assert_eq!(outcome, GatewayOutcome::Accepted { attempts: 2, status: 200 });
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        let (first, second) = (&seen[0], &seen[1]);
        assert_eq!(first.body, second.body, "byte-identical bodies");
        let key = first.headers.get(IDEMPOTENCY_KEY_HEADER).expect("key header");
        assert_eq!(key, "ding:acme:d-42:bob:1");
        assert_eq!(second.headers.get(IDEMPOTENCY_KEY_HEADER), Some(key));
        assert_eq!(first.headers.get(header::CONTENT_TYPE).expect("content type"), "application/json");
        assert!(first.headers.get(SIGNATURE_HEADER).is_none(), "no secret, no signature");
        let json: serde_json::Value = serde_json::from_slice(&first.body).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "org": "acme", "ding_id": "d-42", "recipient": "bob", "step": 1, "channel": "sms",
                "phone": "+15550100", "text": "Server room on fire — please ack",
                "idempotency_key": "ding:acme:d-42:bob:1",
            })
        );
    }

    #[tokio::test]
    async fn a_gateway_that_never_answers_times_out_on_every_attempt() {
        let server = StandIn::start(vec![Reply::Hang]).await;
        let config = config(server.url(), 3);
        let started = Instant::now();
        let outcome = deliverer(&config).deliver(request()).await;
        let elapsed = started.elapsed();
        let GatewayOutcome::Failed { attempts, reason } = outcome else { panic!("accepted by a hung server") };
        assert_eq!(attempts, 3);
        assert!(reason.contains("timed out"), "{reason}");
        assert_eq!(server.seen().len(), 3, "each attempt reached the server");
        let floor = config.timeout * 3;
        let bound = (config.timeout + config.max_backoff) * 3;
        assert!(elapsed >= floor && elapsed < bound + Duration::from_millis(200), "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_400_is_a_permanent_refusal_and_is_not_retried() {
        let server = StandIn::start(vec![Reply::Status(400), Reply::Status(200)]).await;
        let outcome = deliverer(&config(server.url(), 5)).deliver(request()).await;
        let GatewayOutcome::Failed { attempts, reason } = outcome else { panic!("a 400 accepted") };
        assert_eq!(attempts, 1);
        assert!(reason.contains("400"), "{reason}");
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn a_429_with_retry_after_waits_that_long_then_succeeds() {
        let server = StandIn::start(vec![Reply::RetryAfter(429, "1"), Reply::Status(202)]).await;
        let config = GatewayConfig { max_backoff: Duration::from_secs(2), ..config(server.url(), 3) };
        let outcome = deliverer(&config).deliver(request()).await;
        assert_eq!(outcome, GatewayOutcome::Accepted { attempts: 2, status: 202 });
        let seen = server.seen();
        let waited = seen[1].at - seen[0].at;
        assert!(waited >= Duration::from_millis(990) && waited < Duration::from_millis(1500), "{waited:?}");
    }

    #[tokio::test]
    async fn retry_after_is_capped_by_the_maximum_backoff() {
        let server = StandIn::start(vec![Reply::RetryAfter(503, "3600"), Reply::Status(200)]).await;
        let started = Instant::now();
        let outcome = deliverer(&config(server.url(), 2)).deliver(request()).await;
        assert_eq!(outcome, GatewayOutcome::Accepted { attempts: 2, status: 200 });
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn the_signature_header_verifies_with_the_shared_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret_file = dir.path().join("gateway.secret");
        std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write secret");
        let server = StandIn::start(vec![Reply::Status(200)]).await;
        let config = GatewayConfig { secret_file: Some(secret_file), ..config(server.url(), 1) };
        let outcome = deliverer(&config).deliver(request()).await;
        assert_eq!(outcome, GatewayOutcome::Accepted { attempts: 1, status: 200 });
        let seen = server.seen();
        let header = seen[0].headers.get(SIGNATURE_HEADER).expect("signature").to_str().expect("ascii");
        let signature = hex::decode(header.strip_prefix("sha256=").expect("scheme prefix")).expect("hex");
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
        mac.update(&seen[0].body);
        mac.verify_slice(&signature).expect("signature verifies");
        let mut wrong = Hmac::<Sha256>::new_from_slice(b"another secret of thirty-two bytes").expect("key");
        wrong.update(&seen[0].body);
        assert!(wrong.verify_slice(&signature).is_err());
    }

    #[tokio::test]
    async fn a_refused_connection_fails_after_every_attempt() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        drop(listener);
        let outcome = deliverer(&config(format!("http://{addr}/"), 3)).deliver(request()).await;
        let GatewayOutcome::Failed { attempts, reason } = outcome else { panic!("accepted with no server") };
        assert_eq!(attempts, 3);
        assert!(reason.contains("gave up after 3 attempts") && reason.contains("connect"), "{reason}");
    }

    #[tokio::test]
    async fn without_a_url_requests_fail_at_once() {
        let gateway = deliverer(&GatewayConfig::default());
        let outcome = gateway.deliver(request()).await;
        assert_eq!(outcome, GatewayOutcome::Failed { attempts: 0, reason: "no gateway configured".into() });
    }

    #[tokio::test]
    async fn a_key_that_is_not_a_header_value_fails_without_being_sent() {
        let server = StandIn::start(vec![Reply::Status(200)]).await;
        let bad = GatewayRequest { idempotency_key: "line\nbreak".into(), ..request() };
        let outcome = deliverer(&config(server.url(), 3)).deliver(bad).await;
        assert!(matches!(outcome, GatewayOutcome::Failed { attempts: 0, .. }), "{outcome:?}");
        assert!(server.seen().is_empty());
    }

    #[test]
    fn config_reads_humantime_durations_and_refuses_unknown_keys() {
        let config: GatewayConfig = toml::from_str(
            "url = \"http://127.0.0.1:9000/sms\"\ntimeout = \"2s\"\nattempts = 3\ninitial_backoff = \"250ms\"\nmax_backoff = \"1m\"\nsecret_file = \"/etc/herald/gw.secret\"\n",
        )
        .expect("valid");
        assert_eq!(config.timeout, Duration::from_secs(2));
        assert_eq!(config.initial_backoff, Duration::from_millis(250));
        assert_eq!(config.max_backoff, Duration::from_secs(60));
        assert_eq!(config.attempts, 3);
        assert_eq!(toml::from_str::<GatewayConfig>("").expect("empty is valid"), GatewayConfig::default());
        assert!(toml::from_str::<GatewayConfig>("retries = 3").is_err());
    }

    #[test]
    fn unusable_urls_and_settings_are_refused_at_start() {
        let with = |url: &str| GatewayConfig { url: Some(url.into()), ..GatewayConfig::default() };
        for url in ["https://gw.example/sms", "gw.example/sms", "http://user:pw@gw.example/", "not a url", "http:///x"]
        {
            assert!(WebhookGateway::new(&with(url)).is_err(), "{url} accepted");
        }
        let ok = WebhookGateway::new(&with("http://[::1]:8080")).expect("IPv6 literal");
        assert_eq!(ok.target.connect, "[::1]:8080");
        assert_eq!(ok.target.path, "/");
        assert_eq!(
            WebhookGateway::new(&with("http://gw.example/a")).expect("default port").target.connect,
            "gw.example:80"
        );
        let zero = GatewayConfig { attempts: 0, ..with("http://gw.example/") };
        assert!(matches!(WebhookGateway::new(&zero), Err(GatewayError::Invalid { field: "attempts", .. })));
        let missing = GatewayConfig { secret_file: Some("/nonexistent/secret".into()), ..with("http://gw.example/") };
        assert!(matches!(WebhookGateway::new(&missing), Err(GatewayError::Secret(_))));
    }

    #[test]
    fn statuses_sort_into_accepted_refused_and_transient() {
        let none = HeaderMap::new();
        assert_eq!(classify(StatusCode::NO_CONTENT, &none), Attempt::Accepted(204));
        for code in [400, 401, 403, 404, 409, 422, 301] {
            let status = StatusCode::from_u16(code).expect("status");
            assert!(matches!(classify(status, &none), Attempt::Refused(_)), "{code}");
        }
        for code in [408, 429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).expect("status");
            assert!(matches!(classify(status, &none), Attempt::Transient { retry_after: None, .. }), "{code}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), None, "the date form falls back to the backoff");
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }
}
