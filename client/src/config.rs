//! Client configuration.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::{ClientError, CursorStore, Endpoint, ReconnectPolicy};

/// Which certificates the client trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The operating system's root store.
    SystemRoots,
    /// Exactly these certificates as trust anchors: a pinned self-signed broker certificate, or
    /// a private CA.
    Certificates(Vec<CertificateDer<'static>>),
    /// Accept any certificate. Only for tests: anyone on the path can read and alter the session.
    DangerAcceptAny,
}

impl Trust {
    /// Trusts the certificates in a PEM file (a pinned broker certificate or a CA bundle).
    ///
    /// # Errors
    /// [`ClientError::Config`] if the file is unreadable or holds no certificate.
    pub fn pem_file(path: &Path) -> Result<Self, ClientError> {
        let err = |e: &dyn std::fmt::Display| ClientError::Config(format!("{}: {e}", path.display()));
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| err(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(&e))?;
        if certs.is_empty() {
            return Err(err(&"no certificate in file"));
        }
        Ok(Trust::Certificates(certs))
    }
}

/// Everything needed to open a session. Build it with [`ClientConfig::new`] and the `with_*`
/// methods.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) server: SocketAddr,
    pub(crate) fallback_servers: Vec<SocketAddr>,
    pub(crate) server_name: String,
    pub(crate) trust: Trust,
    pub(crate) token: String,
    pub(crate) device_id: String,
    pub(crate) client_name: String,
    pub(crate) client_version: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) keep_alive: Duration,
    pub(crate) endpoint: Option<Endpoint>,
    pub(crate) reconnect: Option<ReconnectPolicy>,
    pub(crate) token_source: Option<TokenSource>,
    pub(crate) cursor_store: Option<Arc<dyn CursorStore>>,
    pub(crate) outbox: Option<Arc<dyn crate::Outbox>>,
    pub(crate) key_store: Option<Arc<dyn crate::e2e::KeyStore>>,
}

/// Supplies the token for each connection attempt, so a long-lived client presents a fresh one
/// after a reconnect rather than one that has expired meanwhile.
#[derive(Clone)]
pub struct TokenSource(Arc<dyn Fn() -> Result<String, String> + Send + Sync>);

impl TokenSource {
    /// A source calling `fetch` (from a cache, a refresh endpoint, a key) for each attempt; an
    /// error ends the attempt as [`ClientError::Config`]. The client also calls it shortly
    /// before the session's token expires and presents the new token to the open session.
    pub fn new(fetch: impl Fn() -> Result<String, String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(fetch))
    }

    /// A token, fresh from the source.
    pub(crate) fn fetch(&self) -> Result<String, String> {
        (self.0)()
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource(..)")
    }
}

impl ClientConfig {
    /// A configuration for `server` with `token`, trusting the system roots, as device `default`.
    pub fn new(server: SocketAddr, token: impl Into<String>) -> Self {
        Self {
            server,
            fallback_servers: Vec::new(),
            server_name: "localhost".to_owned(),
            trust: Trust::SystemRoots,
            token: token.into(),
            device_id: "default".to_owned(),
            client_name: "herald-client".to_owned(),
            client_version: env!("CARGO_PKG_VERSION").to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(10),
            endpoint: None,
            reconnect: Some(ReconnectPolicy::default()),
            token_source: None,
            cursor_store: None,
            outbox: None,
            key_store: None,
        }
    }

    /// Other addresses of the same deployment (one per node or site, all serving the name of
    /// [`ClientConfig::with_server_name`]), tried in turn when the current one cannot be
    /// reached: [`Client::connect`](crate::Client::connect) tries them in order after the
    /// primary, and reconnects start from the address that last worked and go round. They must
    /// be of the primary's address family, which the client's socket is bound for.
    pub fn with_fallback_servers(mut self, servers: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.fallback_servers = servers.into_iter().collect();
        self
    }

    /// The broker's addresses: the primary first, then the fallbacks.
    pub(crate) fn servers(&self) -> Vec<SocketAddr> {
        std::iter::once(self.server).chain(self.fallback_servers.iter().copied()).collect()
    }

    /// The name the broker's certificate must carry (default `localhost`).
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = name.into();
        self
    }

    /// Which certificates to trust.
    pub fn with_trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    /// This device's stable id.
    pub fn with_device_id(mut self, device_id: impl Into<String>) -> Self {
        self.device_id = device_id.into();
        self
    }

    /// The client name and version reported in HELLO.
    pub fn with_client_info(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.client_name = name.into();
        self.client_version = version.into();
        self
    }

    /// How long to wait for the QUIC handshake and WELCOME together.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for the answer to a request.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How to reconnect after losing the connection (on by default, with
    /// [`ReconnectPolicy::default`]): requests made meanwhile wait and go out once online,
    /// requests in flight that are safe to repeat (reads, marks, SEND with its client message id)
    /// are sent again, and the event stream resumes without gaps or repeats, with
    /// [`crate::Event::Connection`] reporting each change.
    pub fn with_reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Ends the client when its connection is lost, failing every request with the reason,
    /// instead of reconnecting: for tools that report the loss rather than ride it out.
    pub fn without_reconnect(mut self) -> Self {
        self.reconnect = None;
        self
    }

    /// Asks `source` for the token of each connection attempt instead of reusing the one given
    /// to [`ClientConfig::new`].
    pub fn with_token_source(mut self, source: TokenSource) -> Self {
        self.token_source = Some(source);
        self
    }

    /// Keeps the event stream's cursors in `store`, so an app that restarts is handed what came
    /// while it was not running (and nothing it had before) as soon as it connects. Without a
    /// store, cursors live as long as the client.
    pub fn with_cursor_store(mut self, store: Arc<dyn CursorStore>) -> Self {
        self.cursor_store = Some(store);
        self
    }

    /// The token for the next attempt.
    pub(crate) fn current_token(&self) -> Result<String, String> {
        match &self.token_source {
            Some(TokenSource(fetch)) => fetch(),
            None => Ok(self.token.clone()),
        }
    }

    /// Keeps messages sent with [`Client::send`](crate::Client::send) or
    /// [`Client::send_with_id`](crate::Client::send_with_id) in `outbox` until the broker
    /// acknowledges them, so an app that stops before the acknowledgement can send them again
    /// with [`Client::resend_outbox`](crate::Client::resend_outbox), without duplicates.
    pub fn with_outbox(mut self, outbox: Arc<dyn crate::Outbox>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// Encrypts end to end: the device's identity and the keys it learns live in `store`
    /// ([`FileKeyStore`](crate::e2e::FileKeyStore) for apps,
    /// [`MemoryKeyStore`](crate::e2e::MemoryKeyStore) for tests). On connect the client
    /// publishes the device's keys and opens the envelopes in its mailbox; from then on
    /// [`Client::send`](crate::Client::send) encrypts (starting a conversation's signed
    /// membership on first use where it may), group requests carry signed membership changes,
    /// and [`Client::events`](crate::Client::events) decrypts, reporting what it cannot read as
    /// [`Event::Undecryptable`](crate::Event::Undecryptable). Nothing is sent in plaintext
    /// (docs/SECURITY.md).
    pub fn with_end_to_end(mut self, store: Arc<dyn crate::e2e::KeyStore>) -> Self {
        self.key_store = Some(store);
        self
    }

    /// Opens the session on a shared [`Endpoint`] instead of a socket of its own: for processes
    /// that hold many sessions at once.
    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }
}
