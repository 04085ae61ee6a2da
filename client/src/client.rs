//! The client handle: connect, request, close.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use herald_protocol::{Body, Frame, FrameBody, SessionId, pb};
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver::{Command, SessionEndpoint};
use crate::encrypted::{Encryption, Inbound};
use crate::endpoint::wildcard_for;
use crate::supervisor::{Current, Supervisor, open_first};
use crate::{ClientConfig, ClientError, Event, tls};

/// Largest frame the client accepts from the broker, in bytes.
pub(crate) const MAX_RECEIVED_FRAME: u32 = 16 * 1024 * 1024;
/// Requests queued for the driver before `request` waits for room.
const COMMAND_QUEUE: usize = 1024;
/// Pushed events buffered before the push reader waits for the app.
const EVENT_QUEUE: usize = 4096;

/// The limits the broker announced in WELCOME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame body the broker accepts.
    pub max_frame_bytes: u32,
    /// Largest message payload the broker accepts.
    pub max_payload_bytes: u32,
    /// Largest group size.
    pub max_group_members: u32,
    /// How long after sending a message its sender may recall it.
    pub recall_window: Duration,
    /// Most requests outstanding at once.
    pub max_inflight_requests: u32,
    /// How far ahead a message may be scheduled or set to expire (zero from a broker that does
    /// not say).
    pub max_schedule: Duration,
}

/// The session the broker opened, as WELCOME described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The protocol version in use.
    pub protocol_version: u32,
    /// The broker's id for this session (quote it when reporting problems).
    pub session_id: SessionId,
    /// The organisation the token proved.
    pub org: String,
    /// The user the token proved.
    pub user: String,
    /// This device's id.
    pub device: String,
    /// The broker's clock when it sent WELCOME, Unix milliseconds.
    pub server_time_ms: u64,
    /// When the token expires, Unix milliseconds.
    pub token_expires_at_ms: u64,
    /// What the broker enforces.
    pub limits: Limits,
}

impl TryFrom<pb::Welcome> for SessionInfo {
    type Error = ClientError;

    fn try_from(w: pb::Welcome) -> Result<Self, ClientError> {
        let limits = w.limits.ok_or_else(|| ClientError::Protocol("WELCOME without limits".into()))?;
        Ok(SessionInfo {
            protocol_version: w.protocol_version,
            session_id: SessionId::new(w.session_id),
            org: w.org_id,
            user: w.user_id,
            device: w.device_id,
            server_time_ms: w.server_time_ms,
            token_expires_at_ms: w.token_expires_at_ms,
            limits: Limits {
                max_frame_bytes: limits.max_frame_bytes,
                max_payload_bytes: limits.max_payload_bytes,
                max_group_members: limits.max_group_members,
                recall_window: Duration::from_millis(limits.recall_window_ms),
                max_inflight_requests: limits.max_inflight_requests,
                max_schedule: Duration::from_millis(limits.max_schedule_ms),
            },
        })
    }
}

/// A session with a Herald broker.
///
/// Cheap to clone: every clone talks through the same connection-driver task. The connection
/// closes when [`Client::close`] is called or the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    commands: mpsc::Sender<Command>,
    /// Why the client stopped, set before it stops taking commands.
    terminal: Arc<OnceLock<ClientError>>,
    /// Pushed events, until the app takes them.
    events: std::sync::Mutex<Option<mpsc::Receiver<Event>>>,
    /// The current session and its broker address: a reconnect replaces them.
    session: watch::Receiver<Current>,
    /// The QUIC endpoint the sessions run on, to move to a new socket on a network change.
    endpoint: quinn::Endpoint,
    /// Where unacknowledged sends are kept, if the app gave one.
    outbox: Option<Arc<dyn crate::Outbox>>,
    request_timeout: Duration,
    next_nonce: std::sync::atomic::AtomicU64,
    /// The token expiry a REAUTH set, and for which session: it overrides WELCOME's for that
    /// session only.
    renewed: Renewed,
    /// The end-to-end engine, if the app configured a key store.
    encryption: Option<Arc<Encryption>>,
}

/// The expiry the last renewal gave, and the session it was for.
pub(crate) type Renewed = Arc<std::sync::Mutex<Option<(SessionId, u64)>>>;

/// A way to make requests that does not keep the client open: the event pump's, which must not
/// outlive the app's handles.
#[derive(Debug, Clone)]
pub(crate) struct Requests {
    commands: mpsc::WeakSender<Command>,
    terminal: Arc<OnceLock<ClientError>>,
    timeout: Duration,
}

impl Requests {
    /// Sends a request and decodes its answer as `R`.
    pub(crate) async fn call<R: FrameBody>(&self, request: impl Into<Body>) -> Result<R, ClientError> {
        let Some(commands) = self.commands.upgrade() else { return Err(ClientError::ClientClosed) };
        let frame = request_on(&commands, &self.terminal, self.timeout, request.into()).await?;
        frame.decode_body::<R>().map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

/// Hands `body` to the supervisor and waits for its answer, all within `timeout`.
///
/// The wait for room in the command queue counts against the timeout too: a driver at the
/// broker's in-flight limit, or a supervisor offline with a full offline queue, takes no
/// requests, and a caller waiting for room outside the timeout would wait for as long as that
/// lasts, possibly for ever. A request that times out before it was queued was never sent.
async fn request_on(
    commands: &mpsc::Sender<Command>,
    terminal: &OnceLock<ClientError>,
    timeout: Duration,
    body: Body,
) -> Result<Frame, ClientError> {
    let stopped = || terminal.get().cloned().unwrap_or(ClientError::ClientClosed);
    let exchange = async {
        let (reply, answer) = oneshot::channel();
        if commands.send(Command::Request { body: Box::new(body), reply }).await.is_err() {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    };
    tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(ClientError::Timeout(timeout)))
}

impl Client {
    /// Connects, sends HELLO and waits for WELCOME.
    ///
    /// # Errors
    /// [`ClientError::Refused`] with the broker's code if it refuses the session (bad token,
    /// unknown organisation, unsupported version); [`ClientError::Connection`] if QUIC or TLS
    /// fails; [`ClientError::Timeout`] if it all takes longer than the connect timeout. With
    /// end-to-end encryption configured, [`ClientError::EndToEnd`] if the key store cannot be
    /// read or written, or the request's error if the device's keys cannot be published.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the attempt and closes whatever was opened.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let quic = tls::quic_client_config(&config)?;
        let endpoint = match &config.endpoint {
            Some(shared) => SessionEndpoint::Shared(shared.quic.clone()),
            None => SessionEndpoint::Owned(
                quinn::Endpoint::client(wildcard_for(config.server)).map_err(|e| ClientError::Endpoint(Arc::new(e)))?,
            ),
        };
        let (first, server_index) = open_first(&endpoint, &quic, &config).await?;
        let encryption = match &config.key_store {
            Some(store) => Some(Arc::new(Encryption::load(&first.session, store.clone())?)),
            None => None,
        };
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let terminal = Arc::new(OnceLock::new());
        let (pump_input, pump_output) = mpsc::channel(EVENT_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (session_tx, session) = watch::channel(Current::of(&first));
        let requests =
            Requests { commands: commands.downgrade(), terminal: terminal.clone(), timeout: config.request_timeout };
        let inbound = encryption.clone().map(Inbound::new);
        let pump_task =
            tokio::spawn(crate::resume::pump(pump_output, events_tx, requests, config.cursor_store.clone(), inbound));
        let quic_endpoint = endpoint.quic().clone();
        let outbox = config.outbox.clone();
        let request_timeout = config.request_timeout;
        let supervisor = Supervisor {
            config,
            endpoint,
            quic,
            commands: receiver,
            pump: pump_input,
            pump_task,
            session: session_tx,
            server_index,
            terminal: terminal.clone(),
        };
        let renewed = Renewed::default();
        if let Some(source) = supervisor.config.token_source.clone() {
            let requests =
                Requests { commands: commands.downgrade(), terminal: terminal.clone(), timeout: request_timeout };
            let renewal = (session.clone(), renewed.clone());
            tokio::spawn(crate::token_refresh::refresh_tokens(requests, renewal, source));
        }
        tokio::spawn(supervisor.run(first));
        let client = Client {
            inner: Arc::new(Inner {
                commands,
                terminal,
                events: std::sync::Mutex::new(Some(events_rx)),
                session,
                endpoint: quic_endpoint,
                outbox,
                request_timeout,
                next_nonce: std::sync::atomic::AtomicU64::new(1),
                renewed,
                encryption,
            }),
        };
        if let Some(enc) = client.encryption() {
            client.publish_device_keys(enc).await?;
        }
        Ok(client)
    }

    /// The end-to-end engine, if configured.
    pub(crate) fn encryption(&self) -> Option<&Arc<Encryption>> {
        self.inner.encryption.as_ref()
    }

    /// A way to make requests that the event pump and the end-to-end layer share.
    pub(crate) fn requests(&self) -> Requests {
        Requests {
            commands: self.inner.commands.downgrade(),
            terminal: self.inner.terminal.clone(),
            timeout: self.inner.request_timeout,
        }
    }

    /// The session as the broker described it in WELCOME (the current one, after a reconnect).
    pub fn session(&self) -> SessionInfo {
        let mut info = self.inner.session.borrow().info.clone();
        if let Ok(renewed) = self.inner.renewed.lock()
            && let Some((session, expires_at_ms)) = *renewed
            && session == info.session_id
        {
            info.token_expires_at_ms = expires_at_ms;
        }
        info
    }

    /// The stream of pushed events (deliveries, resync notices, receipts, recall notices), from
    /// the push and urgent streams together. The first call takes it;
    /// later calls get `None`. Read it steadily: a client that stops reading is eventually told
    /// to resync instead of being buffered for. It ends once the connection has.
    pub fn events(&self) -> Option<mpsc::Receiver<Event>> {
        self.inner.events.lock().ok()?.take()
    }

    /// The address of the broker the current session runs to (after a reconnect, possibly a
    /// fallback address, [`ClientConfig::with_fallback_servers`]).
    pub fn remote_address(&self) -> SocketAddr {
        self.inner.session.borrow().remote
    }

    /// Moves this client's connection to a new local socket without reconnecting: QUIC
    /// migrates the session to the new path, so requests and pushes carry on. Call it when the
    /// device's network changes (Wi-Fi to cellular, a new address) instead of waiting for the old
    /// path to time out. On an [`Endpoint`](crate::Endpoint) shared through
    /// [`ClientConfig::with_endpoint`], every session on it moves.
    ///
    /// # Errors
    /// [`ClientError::Endpoint`] if no new socket can be bound; the old one stays in use.
    pub fn rebind(&self) -> Result<(), ClientError> {
        crate::endpoint::rebind(&self.inner.endpoint)
    }

    /// Presents a fresh token to the open session, which then runs until that token expires
    /// (clients configured with a [`TokenSource`](crate::TokenSource) do this on their own,
    /// shortly before each expiry). Returns the new expiry, Unix milliseconds.
    ///
    /// # Errors
    /// The token's refusal (TOKEN_EXPIRED, TOKEN_INVALID, TOKEN_REVOKED; FORBIDDEN for another
    /// user's token); the session goes on under its current token.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the new token in use or not; presenting it again is harmless.
    pub async fn reauthenticate(&self, token: String) -> Result<u64, ClientError> {
        let session = self.inner.session.borrow().info.session_id;
        let expires_at_ms = self.call::<pb::Reauthed>(pb::Reauth { token }).await?.token_expires_at_ms;
        crate::token_refresh::record(&self.inner.renewed, session, expires_at_ms);
        Ok(expires_at_ms)
    }

    /// The outbox, if the app configured one.
    pub(crate) fn outbox(&self) -> Option<&Arc<dyn crate::Outbox>> {
        self.inner.outbox.as_ref()
    }

    /// The local address the client's socket is bound to.
    ///
    /// # Errors
    /// [`ClientError::Endpoint`] if the socket cannot say.
    pub fn local_address(&self) -> Result<SocketAddr, ClientError> {
        self.inner.endpoint.local_addr().map_err(|e| ClientError::Endpoint(Arc::new(e)))
    }

    /// Sends PING and returns the round-trip time.
    ///
    /// # Errors
    /// Any [`ClientError`] that ends the request: timeout, connection loss, an ERROR answer.
    ///
    /// # Cancel safety
    /// Cancel-safe: PING changes nothing; dropping the future only loses the measurement.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let nonce = self.inner.next_nonce.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let start = Instant::now();
        let pong: pb::Pong = self.call(pb::Ping { nonce }).await?;
        if pong.nonce != nonce {
            return Err(ClientError::Protocol(format!("PONG echoed nonce {} for {nonce}", pong.nonce)));
        }
        Ok(start.elapsed())
    }

    /// Sends a request and decodes its answer as `R`.
    ///
    /// # Errors
    /// [`ClientError::Request`] if the broker answers with ERROR; [`ClientError::Protocol`] if
    /// it answers with another type; otherwise whatever ended the request.
    ///
    /// # Cancel safety
    /// Dropping the future does not withdraw a request already queued: the broker may still apply
    /// it. Whether repeating it is safe depends on the request (docs/PROTOCOL.md).
    pub async fn call<R: FrameBody>(&self, request: impl Into<Body>) -> Result<R, ClientError> {
        let frame = self.request(request.into()).await?;
        frame.decode_body::<R>().map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Sends a request and returns its answer frame, for requests answered by more than one type.
    pub(crate) async fn request(&self, body: Body) -> Result<Frame, ClientError> {
        request_on(&self.inner.commands, &self.inner.terminal, self.inner.request_timeout, body).await
    }

    /// Closes the session with NO_ERROR. Other clones fail their requests afterwards.
    ///
    /// # Cancel safety
    /// Dropping the future once the close is queued does not stop the close, only the wait for the
    /// client to stop and save its cursors; calling it again waits, harmlessly. Dropped while the
    /// request queue is full, it may not close at all.
    pub async fn close(&self) {
        let _ = self.inner.commands.send(Command::Close).await;
        self.inner.commands.closed().await;
    }
}
