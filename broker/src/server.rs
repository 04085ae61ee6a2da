//! Starting and stopping the broker: storage, TLS, keys, the QUIC endpoint and its accept loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::{ErrorCode, OrgId, SessionId};
use rustls::pki_types::CertificateDer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admin::{AdminDesk, OrgTable, Revocations};
use crate::audit::{AuditLog, AuditSink};
use crate::auth::{
    HmacSecret, KeyError, RevocationError, RevocationList, Revocations as TokenRevocations, SigningKeyPair,
    TokenVerifier, VerifierSettings,
};
use crate::clock::Now;
use crate::config::{Config, ConfigError};
use crate::connlimit::{ConnectionLimits, LimitExceeded};
use crate::fanout::SessionRegistry;
use crate::observe::{self, HttpState};
use crate::ratelimit::RateLimiter;
use crate::reload::{self, ReloadReport};
use crate::session::{Services, SessionContext, serve_connection};
use crate::shard::{DingRules, OrgPolicy, Policies, ShardConfig, ShardLimits, Shards};
use crate::store::{self, KvBackend, LogStore, RocksStore, StoreError};
use crate::tls::{ReloadableCert, ServerIdentity, TlsError};

/// UDP socket buffer size. The kernel default (208 KiB) drops packets under fan-out and handshake
/// bursts, and quinn then waits for loss recovery (../shared/PERF-NOTES.md, pitfall 1).
const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// How long shutdown waits for sessions to close before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections refused over a connection limit that may be completing their handshake at
/// once (to be told OVERLOADED); beyond it, refusals are bare QUIC CONNECTION_REFUSED, which
/// costs no handshake.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// How often the rate limiter forgets the buckets of users and organisations gone idle. The
/// sweep visits every entry, so it runs rarely; idle entries are small.
const RATE_LIMIT_SWEEP: Duration = Duration::from_secs(60);

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
    /// The token revocation list cannot be read.
    #[error(transparent)]
    Revocations(#[from] RevocationError),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The shard threads could not be started.
    #[error("cannot start shard threads")]
    Shards(#[source] std::io::Error),
    /// The SMS/voice gateway's configuration is unusable.
    #[error("ding.gateway: {0}")]
    Gateway(String),
    /// The accept loop's task failed.
    #[error("broker task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A broker serving connections. Dropping it does not stop it; call [`RunningBroker::shutdown`].
#[derive(Debug)]
pub struct RunningBroker {
    local_addr: SocketAddr,
    /// Where the certificate was loaded from, to read it again on reload.
    identity: ServerIdentity,
    /// What new handshakes present.
    cert_resolver: Arc<ReloadableCert>,
    /// The revocation list file, if configured.
    revoked_file: Option<PathBuf>,
    /// The revocation list sessions check.
    token_revocations: Arc<TokenRevocations>,
    dev_signing_key: Option<SigningKeyPair>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), BrokerError>>,
    services: Arc<Services>,
    metrics_addr: Option<SocketAddr>,
    http: Arc<HttpState>,
}

impl RunningBroker {
    /// Opens the store, loads or creates the certificate and keys, binds the endpoint and starts
    /// accepting connections. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// [`BrokerError`] naming the first step that failed.
    pub async fn start(config: Config) -> Result<Self, BrokerError> {
        config.validate()?;
        // Installed before anything registers metric handles (the shard loops do at start).
        let metrics = observe::prometheus();
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| BrokerError::DataDir { path: config.data_dir.clone(), source })?;
        let store = Arc::new(RocksStore::open(&config.db_path())?);
        store.ensure_orgs(&config.orgs)?;
        let stored_orgs = store::load_orgs(&*store)?;
        let served: Vec<OrgId> = stored_orgs.iter().map(|(org, _)| org.clone()).collect();
        let orgs = Arc::new(OrgTable::new(configured_policies(&config), stored_orgs));
        let revocations = Arc::new(load_revocations(&*store, &served)?);

        let identity = ServerIdentity::load_or_generate(&config)?;
        let cert_resolver = Arc::new(ReloadableCert::new(identity.certified_key()?));
        let server_config = ServerIdentity::quic_server_config_with(cert_resolver.clone(), &config.limits)?;
        let (trusted, dev_signing_key) = trusted_token_keys(&config)?;
        let hmac = config.auth.hmac_secret_file.as_deref().map(HmacSecret::load).transpose()?;
        let settings = VerifierSettings {
            issuer: config.auth.issuer.clone(),
            audience: config.auth.audience.clone(),
            leeway: config.auth.leeway,
        };
        let verifier = TokenVerifier::with_keys(&trusted, hmac.as_ref(), settings).map_err(BrokerError::TokenKeys)?;
        let registry = Arc::new(SessionRegistry::new());
        let mut ctx = SessionContext::new(verifier, config.auth.leeway, [], &config.limits, registry.clone());
        ctx.orgs = orgs.clone();
        ctx.revocations = revocations.clone();
        let revoked = config.auth.revoked_file.as_deref().map(RevocationList::load).transpose()?;
        ctx.token_revocations = Arc::new(TokenRevocations::new(revoked.unwrap_or_default()));
        let token_revocations = ctx.token_revocations.clone();
        ctx.rate_limits = Arc::new(RateLimiter::new(config.rate_limits.clone()));
        let ctx = Arc::new(ctx);
        let services = Arc::new(start_services(&config, store.clone(), registry, orgs, revocations)?);
        if let Some(records) = services.calls.take_records() {
            tokio::spawn(crate::call::forward_records(Arc::downgrade(&services), records));
        }

        let endpoint = bind_endpoint(config.listen, server_config)?;
        let local_addr = endpoint.local_addr().map_err(|source| BrokerError::Bind { addr: config.listen, source })?;
        let shutdown = CancellationToken::new();
        let (metrics_addr, http) = start_http(&config, metrics, shutdown.clone()).await?;
        let limits = ConnectionLimits::new(config.limits.max_connections, config.limits.max_connections_per_ip);
        let task = tokio::spawn(accept_loop(endpoint, ctx, services.clone(), store, limits, shutdown.clone()));
        http.set_ready(true);
        info!(%local_addr, "broker listening");
        Ok(Self {
            local_addr,
            identity,
            cert_resolver,
            revoked_file: config.auth.revoked_file.clone(),
            token_revocations,
            dev_signing_key,
            shutdown,
            task,
            services,
            metrics_addr,
            http,
        })
    }

    /// The address of the metrics and health endpoint, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The shards, for an embedding process that drives conversations in-process (simulated
    /// members in scale tests and load tools) next to its QUIC sessions.
    pub fn shards(&self) -> &crate::shard::Shards {
        &self.services.shards
    }

    /// The UDP address the endpoint is bound to (with the real port when configured with 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The leaf certificate new handshakes present, for clients that pin it.
    pub fn certificate(&self) -> CertificateDer<'static> {
        // `CertifiedKey::from_der` refuses an empty chain, so the leaf is always there.
        self.cert_resolver.current().cert.first().cloned().unwrap_or_else(|| CertificateDer::from(Vec::new()))
    }

    /// The certificate chain's PEM file.
    pub fn cert_path(&self) -> &std::path::Path {
        &self.identity.cert_path
    }

    /// Whether the certificate is the generated self-signed one.
    pub fn is_self_signed(&self) -> bool {
        self.identity.self_signed
    }

    /// Reloads what an operator may replace while the broker runs (the `herald-broker` binary
    /// calls it on SIGHUP): the configured certificate and key, which new handshakes present
    /// from now on while established connections go on; and the token revocation list, whose
    /// entries are refused at HELLO from now on and whose open sessions are closed with
    /// TOKEN_REVOKED. A part whose new file is unusable keeps its current state; the report
    /// and the log say which.
    pub fn reload(&self) -> ReloadReport {
        let certificate = reload::reload_certificate(&self.identity, &self.cert_resolver);
        let revocations = match &self.revoked_file {
            Some(path) => reload::reload_revocations(path, &self.token_revocations, &self.services.registry).map(Some),
            None => Ok(None),
        };
        ReloadReport { certificate, revocations }
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
        self.http.set_ready(false);
        self.shutdown.cancel();
        self.task.await?
    }
}

/// The Ed25519 keys tokens may be signed with: the configured ones, or else, when no production
/// key (public key or HMAC secret) is configured, the development key pair (created on first
/// start), whose private half the `token` command uses.
fn trusted_token_keys(config: &Config) -> Result<(Vec<String>, Option<SigningKeyPair>), BrokerError> {
    if config.uses_dev_signing_key() {
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

/// The policies the configuration sets: broker-wide defaults and `[policies.<org>]` overrides.
fn configured_policies(config: &Config) -> Policies {
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let default = OrgPolicy {
        recall_window_ms: millis(config.limits.recall_window),
        read_receipts: config.receipts.enabled,
        max_groups_per_user: config.limits.max_groups_per_user,
        max_group_members: config.limits.max_group_members,
        ..OrgPolicy::default()
    };
    let orgs = config.policies.iter().map(|(org, p)| {
        let policy = OrgPolicy {
            recall_window_ms: p.recall_window.map_or(default.recall_window_ms, millis),
            read_receipts: p.read_receipts.unwrap_or(default.read_receipts),
            ..default
        };
        (org.clone(), policy)
    });
    Policies { default, orgs: orgs.collect() }
}

/// Revoked devices and disabled users, as stored.
fn load_revocations(kv: &dyn KvBackend, orgs: &[OrgId]) -> Result<Revocations, StoreError> {
    let revocations = Revocations::new();
    for (org, user, device, at_ms) in store::load_revocations(kv)? {
        revocations.revoke_device(org, user, device, at_ms);
    }
    for (org, user) in store::disabled_users(kv, orgs)? {
        revocations.set_disabled(org, user, true);
    }
    Ok(revocations)
}

fn start_services(
    config: &Config,
    store: Arc<RocksStore>,
    registry: Arc<SessionRegistry>,
    orgs: Arc<OrgTable>,
    revocations: Arc<Revocations>,
) -> Result<Services, BrokerError> {
    let shard_count = match config.storage.shards {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    };
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let limits = ShardLimits {
        max_group_members: usize::try_from(config.limits.max_group_members).unwrap_or(usize::MAX),
        // Room for the page's own fields within the frame limit.
        max_page_bytes: usize::try_from(config.limits.max_frame_bytes).unwrap_or(usize::MAX).saturating_sub(64),
        receipt_window_ms: millis(config.receipts.window),
        receipt_horizon: config.receipts.horizon.max(1),
        max_schedule_ms: millis(config.limits.max_schedule),
    };
    let kv: Arc<dyn KvBackend> = store.clone();
    let audit = Arc::new(AuditLog::start(kv.clone(), config.storage.sync_writes).map_err(BrokerError::Shards)?);
    let shard_config = ShardConfig {
        limits,
        policies: Arc::new(orgs.policies()),
        audit: audit.clone(),
        sync_writes: config.storage.sync_writes,
        max_batch: config.storage.max_batch,
        queue_len: config.storage.shard_queue,
        ding: Arc::new(DingRules {
            policies: config.ding.policies()?,
            default_policy: config.ding.default_policy.clone(),
            org_defaults: config.ding.org_defaults.clone(),
            min_redo_ms: u64::try_from(config.ding.min_redo_interval.as_millis()).unwrap_or(u64::MAX),
        }),
        gateway: crate::ding::gateway_from_config(&config.ding.gateway)
            .map_err(|e| BrokerError::Gateway(e.to_string()))?,
    };
    let log: Arc<dyn LogStore> = store;
    let shards =
        Shards::start(shard_count, shard_config, log.clone(), registry.clone()).map_err(BrokerError::Shards)?;
    info!(shards = shard_count, sync_writes = config.storage.sync_writes, "shards started");
    let sink: Arc<dyn AuditSink> = audit.clone();
    let admin_kv = kv.clone();
    let orgs_for_calls = orgs.clone();
    let admin =
        AdminDesk::new(kv, log.clone(), orgs, revocations, registry.clone(), sink.clone(), config.storage.sync_writes);
    let keys = crate::keydir::KeyDirectory::new(
        admin_kv.clone(),
        sink.clone(),
        config.storage.sync_writes,
        crate::clock::Now::system().unix_ms,
    );
    let attendance = crate::attendance::Attendance::start(admin_kv, sink.clone(), config.storage.sync_writes)
        .map_err(BrokerError::Shards)?;
    let calls = crate::call::Calls::start(&config.calls, orgs_for_calls, registry.clone(), sink.clone())
        .map_err(BrokerError::Shards)?;
    Ok(Services {
        shards,
        attendance,
        calls,
        audit,
        store: log,
        registry,
        push_queue_bytes: config.limits.push_queue_bytes,
        admin,
        keys,
    })
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

/// Starts the operators' HTTP endpoint if configured; the state exists either way.
async fn start_http(
    config: &Config,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<(Option<SocketAddr>, Arc<HttpState>), BrokerError> {
    let http = Arc::new(HttpState::new(metrics));
    let Some(addr) = config.metrics.listen else { return Ok((None, http)) };
    let bind_err = |source| BrokerError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    tokio::spawn(observe::serve_http(listener, http.clone(), shutdown));
    info!(%local, "metrics and health endpoint listening");
    Ok((Some(local), http))
}

/// Turns away a connection over a limit with a reason the client can see: the handshake is
/// completed so that the close can carry OVERLOADED and the limit as its reason (before the
/// handshake QUIC can only send a bare transport error). Under a flood of refusals, beyond
/// [`MAX_REFUSALS_IN_FLIGHT`], the handshake is skipped and QUIC refuses the connection instead.
fn refuse_over_limit(
    incoming: quinn::Incoming,
    exceeded: LimitExceeded,
    refusing: &Arc<std::sync::atomic::AtomicUsize>,
    handshake_timeout: Duration,
    tasks: &TaskTracker,
) {
    use std::sync::atomic::Ordering;
    metrics::counter!(crate::observe::names::CONNECTIONS_REFUSED, crate::observe::names::LABEL_LIMIT => exceeded.label())
        .increment(1);
    let remote = incoming.remote_address();
    if refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSALS_IN_FLIGHT {
        refusing.fetch_sub(1, Ordering::Relaxed);
        warn!(%remote, %exceeded, "connection refused without a handshake (too many refusals at once)");
        incoming.refuse();
        return;
    }
    warn!(%remote, %exceeded, "connection refused: OVERLOADED");
    let refusing = refusing.clone();
    tasks.spawn(async move {
        if let Ok(connecting) = incoming.accept()
            && let Ok(Ok(conn)) = tokio::time::timeout(handshake_timeout, connecting).await
        {
            conn.close(quinn::VarInt::from_u32(ErrorCode::OVERLOADED.get()), exceeded.to_string().as_bytes());
        }
        refusing.fetch_sub(1, Ordering::Relaxed);
    });
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    ctx: Arc<SessionContext>,
    services: Arc<Services>,
    store: Arc<RocksStore>,
    limits: Arc<ConnectionLimits>,
    shutdown: CancellationToken,
) -> Result<(), BrokerError> {
    let refusing = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sessions = TaskTracker::new();
    // Session ids start from the clock so ids from successive runs do not repeat in the logs.
    let mut next_id = Now::system().unix_ms << 16;
    let mut sweep = tokio::time::interval(RATE_LIMIT_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sweep.tick() => {
                let dropped = ctx.rate_limits.sweep(std::time::Instant::now());
                tracing::debug!(dropped, "idle rate-limit buckets forgotten");
            }
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let slot = match limits.try_acquire(incoming.remote_address().ip()) {
                    Ok(slot) => slot,
                    Err(exceeded) => {
                        refuse_over_limit(incoming, exceeded, &refusing, ctx.handshake_timeout, &sessions);
                        continue;
                    }
                };
                next_id = next_id.wrapping_add(1);
                let session = serve_connection(incoming, ctx.clone(), services.clone(), SessionId::new(next_id), shutdown.clone());
                sessions.spawn(async move {
                    session.await;
                    drop(slot);
                });
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
    // Shards finish what is queued (committing it) before the store is flushed.
    let stopping = services.clone();
    tokio::task::spawn_blocking(move || stopping.shards.stop()).await?;
    store.flush()?;
    info!("stopped");
    Ok(())
}
