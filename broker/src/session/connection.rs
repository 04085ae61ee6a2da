//! The I/O loop around one [`SessionMachine`]: QUIC in, actions out. Deliberately boring: every
//! decision is the machine's.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use herald_protocol::{DeviceId, ErrorCode, Frame, FrameCodec, OrgId, RequestId, SessionId, UserId, pb};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::denials::{Denial, Denials};
use super::requests::Routed;
use super::{Action, Services, SessionContext, SessionMachine, directory};
use crate::admin::{ADMIN_ROLE, AdminRequest, Revocations};
use crate::audit::{AuditAction, AuditEvent, AuditSink};
use crate::auth::Identity;
use crate::clock::Now;
use crate::fanout::{DeviceSession, ReplyTo, push_queue};
use crate::observe::names;
use crate::shard::{Command, Origin, Request};

/// Largest chunk read from the control stream at once.
const READ_CHUNK: usize = 64 * 1024;
/// How long a closing connection waits for the client to acknowledge its last frames (the ERROR
/// saying why), so the reason arrives before CONNECTION_CLOSE discards unsent stream data.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// Serves one incoming connection until it closes. Never panics on peer input; every failure
/// ends with the connection closed and a log line.
pub(crate) async fn serve_connection(
    incoming: quinn::Incoming,
    ctx: Arc<SessionContext>,
    services: Arc<Services>,
    id: SessionId,
    shutdown: CancellationToken,
) {
    let remote = incoming.remote_address();
    let span = tracing::info_span!("session", session = %id, %remote);
    async move {
        match handshake(incoming, &ctx).await {
            Ok(conn) => {
                metrics::counter!(names::CONNECTIONS_ACCEPTED).increment(1);
                let open = metrics::gauge!(names::CONNECTIONS_OPEN);
                open.increment(1.0);
                let codec = FrameCodec::new(ctx.limits.max_frame_bytes);
                let max_inflight = usize::try_from(ctx.limits.max_inflight_requests).unwrap_or(usize::MAX);
                let revocations = ctx.revocations.clone();
                let machine = SessionMachine::new(ctx, id, Now::system(), rand::random());
                let (reply_to, replies) = ReplyTo::channel();
                let mut session = ConnectionLoop {
                    conn,
                    machine,
                    codec,
                    services,
                    control: None,
                    out: BytesMut::new(),
                    reply_to,
                    replies,
                    inflight: 0,
                    max_inflight,
                    registered: None,
                    revoked: CancellationToken::new(),
                    revocations,
                    recheck: CancellationToken::new(),
                    denials: Denials::new(std::time::Instant::now()),
                };
                session.run(shutdown).await;
                session.unregister();
                open.decrement(1.0);
            }
            Err(e) => debug!(error = %e, "QUIC handshake failed"),
        }
    }
    .instrument(span)
    .await;
}

/// Completes the QUIC handshake within the handshake timeout.
///
/// A handshake permit is held only while the broker does the costly part, answering the
/// ClientHello with its signed first flight; a client that then goes silent (a handshake
/// flood, a phone that lost its network) waits without one, so it cannot hold up other
/// clients' handshakes, and is dropped, with its connection slot, when the timeout ends.
async fn handshake(incoming: quinn::Incoming, ctx: &SessionContext) -> Result<quinn::Connection, HandshakeFailed> {
    let deadline = tokio::time::Instant::now() + ctx.handshake_timeout;
    let mut connecting = {
        // The permit is never closed, so acquiring cannot fail.
        let _handshaking = ctx.handshakes.acquire().await;
        let mut connecting = incoming.accept()?;
        tokio::time::timeout_at(deadline, connecting.handshake_data())
            .await
            .map_err(|_| HandshakeFailed::Timeout)??;
        connecting
    };
    // Dropping `connecting` on timeout closes the connection.
    Ok(tokio::time::timeout_at(deadline, &mut connecting).await.map_err(|_| HandshakeFailed::Timeout)??)
}

/// Why a connection never became a session.
#[derive(Debug, thiserror::Error)]
enum HandshakeFailed {
    #[error(transparent)]
    Quic(#[from] quinn::ConnectionError),
    #[error("no complete handshake within the handshake timeout")]
    Timeout,
}

/// Why the loop stopped performing actions.
enum Flow {
    Continue,
    Closed,
}

struct ConnectionLoop {
    conn: quinn::Connection,
    machine: SessionMachine,
    codec: FrameCodec,
    services: Arc<Services>,
    control: Option<quinn::SendStream>,
    /// Frames queued for the control stream, written in one call per batch of input.
    out: BytesMut,
    /// Where shards and readers send this session's answers.
    reply_to: ReplyTo,
    replies: mpsc::UnboundedReceiver<Frame>,
    /// Requests dispatched and not yet answered. At the limit the loop stops reading requests,
    /// so a client that pipelines too much is slowed by flow control, not by errors.
    inflight: usize,
    max_inflight: usize,
    /// The identity under which this session is in the registry.
    registered: Option<Identity>,
    /// Cancelled (through the registry) when an admin revokes this session's device.
    revoked: CancellationToken,
    /// Checked again once registered, for a revocation that raced this session's HELLO.
    revocations: Arc<Revocations>,
    /// Cancelled by a revocation-list reload that names this session.
    recheck: CancellationToken,
    /// Which answers are refusals to audit.
    denials: Denials,
}

impl ConnectionLoop {
    async fn run(&mut self, shutdown: CancellationToken) {
        let Some(mut recv) = self.accept_control_stream(&shutdown).await else {
            self.perform_actions().await;
            return;
        };
        let mut inbuf = BytesMut::new();
        let mut shutdown_seen = false;
        let mut recheck_seen = false;
        loop {
            if let Flow::Closed = self.perform_actions().await {
                return;
            }
            let deadline = self.machine.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                () = shutdown.cancelled(), if !shutdown_seen => {
                    shutdown_seen = true;
                    self.machine.handle_shutdown();
                }
                () = self.recheck.cancelled(), if !recheck_seen => {
                    recheck_seen = true;
                    self.machine.handle_revocations_changed();
                }
                () = sleep_until(deadline) => self.machine.handle_timeout(Now::system()),
                () = self.revoked.cancelled() => self.machine.handle_revoked(),
                // Cancel safety: recv on an mpsc channel loses nothing.
                Some(reply) = self.replies.recv() => {
                    self.inflight = self.inflight.saturating_sub(1);
                    self.queue(&reply);
                    while let Ok(reply) = self.replies.try_recv() {
                        self.inflight = self.inflight.saturating_sub(1);
                        self.queue(&reply);
                    }
                }
                // Cancel safety: read_chunk loses no data when another branch wins.
                chunk = recv.read_chunk(READ_CHUNK, true), if self.inflight < self.max_inflight => match chunk {
                    Ok(Some(chunk)) => {
                        inbuf.extend_from_slice(&chunk.bytes);
                        self.handle_input(&mut inbuf);
                    }
                    Ok(None) => self.machine.handle_control_stream_finished(),
                    Err(quinn::ReadError::Reset(_)) => self.machine.handle_control_stream_reset(),
                    Err(e) => {
                        debug!(error = %e, "control stream ended");
                        return;
                    }
                },
            }
        }
    }

    /// Waits for the client's control stream, or for the handshake deadline or shutdown.
    async fn accept_control_stream(&mut self, shutdown: &CancellationToken) -> Option<quinn::RecvStream> {
        let deadline = self.machine.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            accepted = self.conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    self.control = Some(send);
                    Some(recv)
                }
                Err(e) => {
                    debug!(error = %e, "connection ended before opening a control stream");
                    None
                }
            },
            () = sleep_until(deadline) => {
                self.machine.handle_timeout(Now::system());
                None
            }
            () = shutdown.cancelled() => {
                self.machine.handle_shutdown();
                None
            }
        }
    }

    /// Feeds every whole frame in `inbuf` to the machine, stopping once it closes.
    fn handle_input(&mut self, inbuf: &mut BytesMut) {
        let now = Now::system();
        while !self.machine.is_closed() {
            match self.codec.decode(inbuf) {
                Ok(Some(frame)) => {
                    let frame_type = frame.frame_type().name().unwrap_or("UNKNOWN");
                    metrics::counter!(names::FRAMES_RECEIVED, names::LABEL_TYPE => frame_type).increment(1);
                    self.denials.requested(&frame);
                    self.machine.handle_frame(frame, now);
                }
                Ok(None) => break,
                Err(e) => self.machine.handle_frame_error(e),
            }
        }
    }

    /// Performs the machine's actions in order, batching control-stream frames into one write.
    async fn perform_actions(&mut self) -> Flow {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Send(frame) => self.queue(&frame),
                // Registered for fan-out before WELCOME leaves: a client that has its WELCOME
                // misses no delivery sequenced after it.
                Action::OpenPushStreams { push, urgent } => {
                    if self.open_push_streams(&push, &urgent).await.is_err() {
                        return Flow::Closed;
                    }
                }
                Action::Dispatch { request_id, routed } => self.dispatch(request_id, routed),
                Action::AuditLoginRefused { org, user, device, claims_verified, code } => {
                    self.audit_login_refused(org, user, device, claims_verified, code);
                }
                Action::TokenRenewed { token_id } => {
                    if let Some(identity) = &self.registered {
                        self.services.registry.set_token_id(&identity.org, &identity.user, self.machine.id(), token_id);
                    }
                }
                Action::Close { code, reason } => {
                    self.close(code, &reason).await;
                    return Flow::Closed;
                }
            }
        }
        match self.flush().await {
            Ok(()) => Flow::Continue,
            Err(()) => Flow::Closed,
        }
    }

    fn queue(&mut self, frame: &Frame) {
        let error = frame.decode_body::<pb::Error>().ok();
        if let Some(error) = &error {
            let code = ErrorCode::from_u32(error.code).name().unwrap_or("UNKNOWN");
            metrics::counter!(names::ERRORS_SENT, names::LABEL_CODE => code).increment(1);
        }
        if let Some(denial) = self.denials.answered(frame.request_id(), error.as_ref(), std::time::Instant::now()) {
            self.audit_denial(denial);
        }
        encode_or_warn(&self.codec, frame, &mut self.out);
    }

    /// Records a refused request in the caller's organisation's chain.
    fn audit_denial(&self, denial: Denial) {
        let mut details = vec![
            ("code".to_owned(), denial.code.name().unwrap_or("UNKNOWN").to_owned()),
            ("message".to_owned(), denial.message),
        ];
        if denial.suppressed > 0 {
            details.push(("unaudited_before".to_owned(), denial.suppressed.to_string()));
        }
        self.audit_access_denied(denial.request.name().unwrap_or("UNKNOWN").to_owned(), details);
    }

    /// At the session's end, the refusals the budget skipped since the last record, as a count.
    fn audit_unaudited_denials(&mut self) {
        let unaudited = self.denials.take_unaudited();
        if unaudited > 0 {
            let details = vec![("unaudited_before".to_owned(), unaudited.to_string())];
            self.audit_access_denied("session_closed".to_owned(), details);
        }
    }

    fn audit_access_denied(&self, target: String, details: Vec<(String, String)>) {
        let Some(identity) = &self.registered else { return };
        self.services.audit.record(AuditEvent {
            org: identity.org.clone(),
            at_ms: Now::system().unix_ms,
            actor: identity.user.to_string(),
            device: identity.device.to_string(),
            action: AuditAction::AccessDenied,
            target,
            details,
        });
    }

    async fn flush(&mut self) -> Result<(), ()> {
        let (Some(control), false) = (self.control.as_mut(), self.out.is_empty()) else {
            return Ok(());
        };
        let bytes = self.out.split().freeze();
        control.write_chunk(bytes).await.map_err(|e| debug!(error = %e, "control stream write failed"))
    }

    /// Opens the push and urgent streams, starts their writers and registers the session for
    /// fan-out.
    async fn open_push_streams(&mut self, push_open: &Frame, urgent_open: &Frame) -> Result<(), ()> {
        let push = self.open_stream(push_open, 0).await?;
        // Above every other stream (responses and the push stream default to 0), so a recall
        // notice overtakes a history backfill or a burst of deliveries already queued.
        let urgent = self.open_stream(urgent_open, URGENT_PRIORITY).await?;
        let Some(identity) = self.machine.identity().cloned() else { return Err(()) };
        let (push_queue_tx, push_rx) = push_queue(self.services.push_queue_bytes);
        let (urgent_tx, urgent_rx) = push_queue(self.services.push_queue_bytes);
        tokio::spawn(super::push_writer::write_pushes(push, push_rx));
        tokio::spawn(super::push_writer::write_pushes(urgent, urgent_rx));
        let datagrams = self.conn.max_datagram_size().map(|_| {
            let (datagram_tx, datagram_rx) = push_queue(DATAGRAM_QUEUE_BYTES);
            tokio::spawn(super::push_writer::write_datagrams(self.conn.clone(), datagram_rx));
            datagram_tx
        });
        let device = DeviceSession {
            session: self.machine.id(),
            device: identity.device.clone(),
            push: push_queue_tx,
            urgent: urgent_tx,
            datagrams,
            revoked: self.revoked.clone(),
            token_id: identity.token_id.clone(),
            recheck: self.recheck.clone(),
        };
        self.services.registry.register(&identity.org, &identity.user, device);
        // A revocation (by an admin, or a reload of the list) between this session's HELLO check
        // and its registration found no session to close; checking once more after registering
        // closes that gap (both write their table before they scan the registry).
        if self.revocations.refusal(&identity).is_some() {
            self.revoked.cancel();
        }
        self.machine.handle_revocations_changed();
        info!(org = %identity.org, user = %identity.user, device = %identity.device, "session opened");
        metrics::counter!(names::SESSIONS_OPENED, names::LABEL_ORG => identity.org.to_string()).increment(1);
        self.services.audit.record(AuditEvent {
            org: identity.org.clone(),
            at_ms: Now::system().unix_ms,
            actor: identity.user.to_string(),
            device: identity.device.to_string(),
            action: AuditAction::Login,
            target: format!("session {}", self.machine.id()),
            details: Vec::new(),
        });
        self.registered = Some(identity);
        Ok(())
    }

    async fn open_stream(&mut self, stream_open: &Frame, priority: i32) -> Result<quinn::SendStream, ()> {
        let mut stream = self.conn.open_uni().await.map_err(|e| debug!(error = %e, "cannot open a push stream"))?;
        stream.set_priority(priority).map_err(|e| debug!(error = %e, "push stream closed at once"))?;
        let mut bytes = BytesMut::new();
        encode_or_warn(&self.codec, stream_open, &mut bytes);
        stream.write_chunk(bytes.freeze()).await.map_err(|e| debug!(error = %e, "push stream write failed"))?;
        Ok(stream)
    }

    /// Records a refused HELLO: who the token claimed to be, the code, and where it came from;
    /// never the token itself.
    fn audit_login_refused(
        &self,
        org: OrgId,
        user: Option<UserId>,
        device: Option<DeviceId>,
        claims_verified: bool,
        code: ErrorCode,
    ) {
        self.services.audit.record(AuditEvent {
            org,
            at_ms: Now::system().unix_ms,
            actor: user.map(|u| u.to_string()).unwrap_or_default(),
            device: device.map(|d| d.to_string()).unwrap_or_default(),
            action: AuditAction::LoginFailed,
            target: format!("session {}", self.machine.id()),
            details: vec![
                ("code".to_owned(), code.name().unwrap_or("UNKNOWN").to_owned()),
                ("remote".to_owned(), self.conn.remote_address().to_string()),
                ("claims_verified".to_owned(), claims_verified.to_string()),
            ],
        });
    }

    fn unregister(&mut self) {
        self.audit_unaudited_denials();
        if let Some(identity) = self.registered.take() {
            let device_remains = self.services.registry.unregister(&identity.org, &identity.user, self.machine.id());
            // Its calls keep the device's slot for the rejoin grace, unless the device is still
            // here on another session.
            if !device_remains {
                let endpoint = crate::call::Endpoint::new(identity.user.clone(), identity.device.clone());
                self.services.calls.disconnected(identity.org.clone(), endpoint);
            }
        }
    }

    /// Hands a request to its shard, or to a blocking reader for index queries. The answer comes
    /// back through `replies`.
    fn dispatch(&mut self, request_id: RequestId, routed: Routed) {
        let Some(identity) = self.machine.identity().cloned() else { return };
        self.inflight += 1;
        let reply = self.reply_to.clone();
        match routed {
            Routed::Shard(request) => {
                let origin = Origin {
                    session: self.machine.id(),
                    org: identity.org,
                    user: identity.user,
                    device: identity.device,
                    org_admin: identity.roles.contains(ADMIN_ROLE),
                    request_id,
                    reply: reply.clone(),
                };
                if self.services.shards.route(Command { origin, request }).is_err() {
                    let error = pb::Error {
                        code: ErrorCode::OVERLOADED.get(),
                        message: "the conversation's shard is busy".into(),
                        retry_after_ms: 50,
                        supported_versions: vec![],
                    };
                    reply.send(Frame::from_body(request_id, &error));
                }
            }
            Routed::ListConversations { after, limit } => {
                let store = self.services.store.clone();
                tokio::task::spawn_blocking(move || {
                    let answer = directory::list_conversations(&*store, &identity, after, limit);
                    reply.send(answer_or_unavailable(request_id, answer));
                });
            }
            Routed::Admin(AdminRequest::ConversationArchive { conv, archived }) => {
                let origin = Origin {
                    session: self.machine.id(),
                    org: conv.org,
                    user: identity.user,
                    device: identity.device,
                    // Parsing admitted only admins and operators.
                    org_admin: true,
                    request_id,
                    reply: reply.clone(),
                };
                let command = Command { origin, request: Request::Archive { id: conv.id, archived } };
                if self.services.shards.route(command).is_err() {
                    reply.send(Frame::error(request_id, ErrorCode::OVERLOADED, "the conversation's shard is busy"));
                }
            }
            Routed::Admin(request) => {
                let services = self.services.clone();
                tokio::task::spawn_blocking(move || {
                    let now_ms = Now::system().unix_ms;
                    reply.send(services.admin.serve(&services.shards, &identity, request, request_id, now_ms));
                });
            }
            Routed::Attendance(request) => {
                crate::attendance::dispatch(&self.services, identity, request, request_id, reply)
            }
            Routed::Call(request) => crate::call::dispatch(&self.services, identity, request, request_id, reply),
            Routed::Keys(request) => crate::keydir::dispatch(&self.services, identity, request, request_id, reply),
            Routed::Sync { cursors } => {
                let store = self.services.store.clone();
                tokio::task::spawn_blocking(move || {
                    let answer = directory::sync(&*store, &identity, &cursors);
                    reply.send(answer_or_unavailable(request_id, answer));
                });
            }
        }
    }

    /// Sends what is queued, waits briefly for the client to acknowledge it, then closes.
    async fn close(&mut self, code: ErrorCode, reason: &str) {
        let _ = self.flush().await;
        if let Some(control) = self.control.as_mut() {
            let _ = control.finish();
            let _ = tokio::time::timeout(CLOSE_LINGER, control.stopped()).await;
        }
        if self.registered.is_none() && self.machine.identity().is_none() && code != ErrorCode::NO_ERROR {
            // A refused or abandoned handshake; the span carries the remote address.
            info!(%code, reason, "session refused");
        } else {
            debug!(%code, reason, "closing connection");
        }
        self.conn.close(quinn::VarInt::from_u32(code.get()), reason.as_bytes());
    }
}

fn answer_or_unavailable<B: herald_protocol::FrameBody>(
    request_id: RequestId,
    answer: Result<B, crate::store::StoreError>,
) -> Frame {
    match answer {
        Ok(body) => Frame::from_body(request_id, &body),
        Err(e) => Frame::error(request_id, ErrorCode::UNAVAILABLE, e.to_string()),
    }
}

/// Only the broker's own frames are encoded here; one over the limit is a bug, not peer input,
/// so it is logged and dropped rather than taken down with the connection.
fn encode_or_warn(codec: &FrameCodec, frame: &Frame, buf: &mut BytesMut) {
    if let Err(e) = codec.encode(frame, buf) {
        warn!(error = %e, frame_type = %frame.frame_type(), "dropping an oversize outgoing frame");
    }
}

/// Bytes of datagrams queued for one session before further ones are dropped: datagrams are
/// second copies of urgent signals, so a small queue loses nothing that is owed.
const DATAGRAM_QUEUE_BYTES: usize = 64 * 1024;

/// The urgent stream's send priority; quinn sends higher priorities first.
const URGENT_PRIORITY: i32 = 16;

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
