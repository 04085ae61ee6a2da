//! Starting and stopping the broker: storage, TLS, keys, the QUIC endpoint and its accept loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::{ErrorCode, SessionId};
use rustls::pki_types::CertificateDer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::{KeyError, SigningKeyPair, TokenVerifier, VerifierSettings};
use crate::clock::Now;
use crate::config::{Config, ConfigError};
use crate::session::{SessionContext, serve_connection};
use crate::store::{RocksStore, StoreError};
use crate::tls::{ServerIdentity, TlsError};

/// UDP socket buffer size. The kernel default (208 KiB) drops packets under fan-out and handshake
/// bursts, and quinn then waits for loss recovery (../shared/PERF-NOTES.md, pitfall 1).
const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// How long shutdown waits for sessions to close before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the broker could not start, or failed while stopping.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A token key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The trusted token keys are unusable.
    #[error("token keys: {0}")]
    TokenKeys(String),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The accept loop's task failed.
    #[error("broker task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A broker serving connections. Dropping it does not stop it; call [`RunningBroker::shutdown`].
#[derive(Debug)]
pub struct RunningBroker {
    local_addr: SocketAddr,
    certificate: CertificateDer<'static>,
    cert_path: PathBuf,
    self_signed: bool,
    dev_signing_key: Option<SigningKeyPair>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), BrokerError>>,
}

impl RunningBroker {
    /// Opens the store, loads or creates the certificate and keys, binds the endpoint and starts
    /// accepting connections. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// [`BrokerError`] naming the first step that failed.
    pub async fn start(config: Config) -> Result<Self, BrokerError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| BrokerError::DataDir { path: config.data_dir.clone(), source })?;
        let store = RocksStore::open(&config.db_path())?;
        store.ensure_orgs(&config.orgs)?;
        let orgs = store.orgs()?;

        let identity = ServerIdentity::load_or_generate(&config)?;
        let server_config = identity.quic_server_config(&config.limits)?;
        let (trusted, dev_signing_key) = trusted_token_keys(&config)?;
        let settings = VerifierSettings {
            issuer: config.auth.issuer.clone(),
            audience: config.auth.audience.clone(),
            leeway: config.auth.leeway,
        };
        let verifier = TokenVerifier::new(&trusted, settings).map_err(BrokerError::TokenKeys)?;
        let ctx = Arc::new(SessionContext::new(verifier, config.auth.leeway, orgs, &config.limits));

        let endpoint = bind_endpoint(config.listen, server_config)?;
        let local_addr = endpoint.local_addr().map_err(|source| BrokerError::Bind { addr: config.listen, source })?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(accept_loop(endpoint, ctx, store, shutdown.clone()));
        info!(%local_addr, "broker listening");
        let certificate = identity.chain.first().cloned().ok_or_else(|| {
            BrokerError::Tls(TlsError::Pem { path: identity.cert_path.clone(), reason: "empty chain".into() })
        })?;
        Ok(Self {
            local_addr,
            certificate,
            cert_path: identity.cert_path,
            self_signed: identity.self_signed,
            dev_signing_key,
            shutdown,
            task,
        })
    }

    /// The UDP address the endpoint is bound to (with the real port when configured with 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The leaf certificate, for clients that pin it.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// The certificate chain's PEM file.
    pub fn cert_path(&self) -> &std::path::Path {
        &self.cert_path
    }

    /// Whether the certificate is the generated self-signed one.
    pub fn is_self_signed(&self) -> bool {
        self.self_signed
    }

    /// The development signing key, when the broker trusts no configured key.
    pub fn dev_signing_key(&self) -> Option<&SigningKeyPair> {
        self.dev_signing_key.as_ref()
    }

    /// Stops accepting, closes every session with SHUTTING_DOWN, and flushes the store.
    ///
    /// # Errors
    /// [`BrokerError`] if the accept loop failed or the final flush did.
    pub async fn shutdown(self) -> Result<(), BrokerError> {
        self.shutdown.cancel();
        self.task.await?
    }
}

/// The keys tokens must be signed with: the configured ones, or else the development key pair
/// (created on first start), whose private half the `token` command uses.
fn trusted_token_keys(config: &Config) -> Result<(Vec<String>, Option<SigningKeyPair>), BrokerError> {
    if config.auth.public_keys.is_empty() {
        let pair = SigningKeyPair::load_or_generate(&config.dev_signing_key_path())?;
        return Ok((vec![pair.public_pem().to_owned()], Some(pair)));
    }
    let pems = config
        .auth
        .public_keys
        .iter()
        .map(|path| std::fs::read_to_string(path).map_err(|source| KeyError::Io { path: path.clone(), source }))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((pems, None))
}

fn bind_endpoint(addr: SocketAddr, server_config: quinn::ServerConfig) -> Result<quinn::Endpoint, BrokerError> {
    let bind_err = |source| BrokerError::Bind { addr, source };
    let socket =
        socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None).map_err(bind_err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).map_err(bind_err)?;
    }
    for (what, result) in [
        ("receive", socket.set_recv_buffer_size(UDP_BUFFER_BYTES)),
        ("send", socket.set_send_buffer_size(UDP_BUFFER_BYTES)),
    ] {
        if let Err(e) = result {
            warn!(error = %e, "cannot raise the UDP {what} buffer; expect loss under bursts");
        }
    }
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(server_config), socket.into(), runtime)
        .map_err(bind_err)
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    ctx: Arc<SessionContext>,
    store: RocksStore,
    shutdown: CancellationToken,
) -> Result<(), BrokerError> {
    let sessions = TaskTracker::new();
    // Session ids start from the clock so ids from successive runs do not repeat in the logs.
    let mut next_id = Now::system().unix_ms << 16;
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                next_id = next_id.wrapping_add(1);
                sessions.spawn(serve_connection(incoming, ctx.clone(), SessionId::new(next_id), shutdown.clone()));
            }
            () = shutdown.cancelled() => break,
        }
    }
    info!(sessions = sessions.len(), "shutting down");
    endpoint.set_server_config(None);
    sessions.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, sessions.wait()).await.is_err() {
        warn!(remaining = sessions.len(), "sessions did not close in time");
    }
    endpoint.close(quinn::VarInt::from_u32(ErrorCode::SHUTTING_DOWN.get()), b"shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    store.flush()?;
    info!("stopped");
    Ok(())
}
