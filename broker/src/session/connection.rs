//! The I/O loop around one [`SessionMachine`]: QUIC in, actions out. Deliberately boring: every
//! decision is the machine's.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use herald_protocol::{ErrorCode, Frame, FrameCodec, SessionId};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::{Action, SessionContext, SessionMachine};
use crate::clock::Now;

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
    id: SessionId,
    shutdown: CancellationToken,
) {
    let remote = incoming.remote_address();
    let span = tracing::info_span!("session", session = %id, %remote);
    async move {
        let conn = match incoming.accept() {
            Ok(connecting) => connecting.await,
            Err(e) => Err(e),
        };
        match conn {
            Ok(conn) => {
                let codec = FrameCodec::new(ctx.limits.max_frame_bytes);
                let machine = SessionMachine::new(ctx, id, Now::system());
                ConnectionLoop { conn, machine, codec, control: None, push: None, out: BytesMut::new() }
                    .run(shutdown)
                    .await;
            }
            Err(e) => debug!(error = %e, "QUIC handshake failed"),
        }
    }
    .instrument(span)
    .await;
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
    control: Option<quinn::SendStream>,
    /// The push stream, kept open for the session's lifetime; pushed events are written here.
    push: Option<quinn::SendStream>,
    /// Frames queued for the control stream, written in one call per batch of input.
    out: BytesMut,
}

impl ConnectionLoop {
    async fn run(mut self, shutdown: CancellationToken) {
        let Some(mut recv) = self.accept_control_stream(&shutdown).await else {
            self.perform_actions().await;
            return;
        };
        let mut inbuf = BytesMut::new();
        let mut shutdown_seen = false;
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
                () = sleep_until(deadline) => self.machine.handle_timeout(Now::system()),
                // Cancel safety: read_chunk loses no data when another branch wins.
                chunk = recv.read_chunk(READ_CHUNK, true) => match chunk {
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
                Ok(Some(frame)) => self.machine.handle_frame(frame, now),
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
                Action::OpenPushStream(frame) => {
                    if self.flush().await.is_err() || self.open_push_stream(&frame).await.is_err() {
                        return Flow::Closed;
                    }
                    if let Some(identity) = self.machine.identity() {
                        info!(org = %identity.org, user = %identity.user, device = %identity.device, "session opened");
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
        encode_or_warn(&self.codec, frame, &mut self.out);
    }

    async fn flush(&mut self) -> Result<(), ()> {
        let (Some(control), false) = (self.control.as_mut(), self.out.is_empty()) else {
            return Ok(());
        };
        let bytes = self.out.split().freeze();
        control.write_chunk(bytes).await.map_err(|e| debug!(error = %e, "control stream write failed"))
    }

    async fn open_push_stream(&mut self, stream_open: &Frame) -> Result<(), ()> {
        let mut push = self.conn.open_uni().await.map_err(|e| debug!(error = %e, "cannot open push stream"))?;
        let mut bytes = BytesMut::new();
        encode_or_warn(&self.codec, stream_open, &mut bytes);
        push.write_chunk(bytes.freeze()).await.map_err(|e| debug!(error = %e, "push stream write failed"))?;
        self.push = Some(push);
        Ok(())
    }

    /// Sends what is queued, waits briefly for the client to acknowledge it, then closes.
    async fn close(&mut self, code: ErrorCode, reason: &str) {
        let _ = self.flush().await;
        if let Some(control) = self.control.as_mut() {
            let _ = control.finish();
            let _ = tokio::time::timeout(CLOSE_LINGER, control.stopped()).await;
        }
        debug!(%code, reason, "closing connection");
        self.conn.close(quinn::VarInt::from_u32(code.get()), reason.as_bytes());
    }
}

/// Only the broker's own frames are encoded here; one over the limit is a bug, not peer input,
/// so it is logged and dropped rather than taken down with the connection.
fn encode_or_warn(codec: &FrameCodec, frame: &Frame, buf: &mut BytesMut) {
    if let Err(e) = codec.encode(frame, buf) {
        warn!(error = %e, frame_type = %frame.frame_type(), "dropping an oversize outgoing frame");
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
