//! The connection driver: for one connection, the owner of the control stream and the table of
//! outstanding requests, so no lock guards either. Client handles talk to it over a bounded
//! channel that outlives the connection.

use std::collections::{HashMap, VecDeque};

use bytes::BytesMut;
use herald_protocol::{Body, ErrorCode, Frame, FrameCodec, FrameType, RequestId, pb};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use crate::ClientError;
use crate::reader::FrameReader;

/// A request's answer: the response frame, or why there is none.
pub(crate) type Reply = oneshot::Sender<Result<Frame, ClientError>>;

/// What a client handle asks of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send a request and route its answer to `reply`.
    Request { body: Box<Body>, reply: Reply },
    /// Close the connection.
    Close,
}

/// The endpoint a session runs on, and so what closing it must wait for.
#[derive(Debug)]
pub(crate) enum SessionEndpoint {
    /// The session's own socket: closing drains the whole endpoint.
    Owned(quinn::Endpoint),
    /// A socket other sessions use too: closing waits for this connection alone.
    Shared(quinn::Endpoint),
}

impl SessionEndpoint {
    pub(crate) fn quic(&self) -> &quinn::Endpoint {
        match self {
            SessionEndpoint::Owned(endpoint) | SessionEndpoint::Shared(endpoint) => endpoint,
        }
    }

    /// Waits, up to `limit`, until the close has reached the broker, so the broker learns of
    /// it rather than waiting for an idle timeout. A shared endpoint's driver, kept running by
    /// the other sessions, sends the close on its own.
    pub(crate) async fn drain(&self, limit: std::time::Duration) {
        if let SessionEndpoint::Owned(endpoint) = self {
            let _ = tokio::time::timeout(limit, endpoint.wait_idle()).await;
        }
    }
}

/// A request waiting to be sent: after a reconnect, or while the connection has no room.
pub(crate) type Queued = (Box<Body>, Reply);

/// A request sent and not yet answered.
#[derive(Debug)]
struct Pending {
    reply: Reply,
    /// The request itself, kept when sending it again after a reconnect is safe.
    retry: Option<Box<Body>>,
}

/// How one connection's driver run ended.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) error: ClientError,
    /// The app closed the client (or dropped every handle).
    pub(crate) by_app: bool,
    /// Requests sent but unanswered that are safe to send again, in the order they were sent.
    pub(crate) retry: Vec<Queued>,
}

/// One connection's control stream and its outstanding requests. The command channel outlives
/// it: the supervisor lends it to each connection in turn.
#[derive(Debug)]
pub(crate) struct Driver<'a> {
    pub(crate) conn: quinn::Connection,
    pub(crate) send: quinn::SendStream,
    pub(crate) reader: FrameReader,
    pub(crate) codec: FrameCodec,
    pub(crate) commands: &'a mut mpsc::Receiver<Command>,
    pub(crate) max_inflight: usize,
    pending: HashMap<RequestId, Pending>,
    last_request: u32,
    /// The ERROR the broker sent with request id 0 before closing, if any: the best explanation
    /// to give callers whose requests die with the connection.
    close_error: Option<pb::Error>,
}

impl<'a> Driver<'a> {
    pub(crate) fn new(
        conn: quinn::Connection,
        send: quinn::SendStream,
        reader: FrameReader,
        codec: FrameCodec,
        commands: &'a mut mpsc::Receiver<Command>,
        max_inflight: usize,
        first_request_id: u32,
    ) -> Self {
        Self {
            conn,
            send,
            reader,
            codec,
            commands,
            max_inflight,
            pending: HashMap::new(),
            last_request: first_request_id,
            close_error: None,
        }
    }

    /// Sends `queued` first, then serves commands until the connection ends or the app closes.
    pub(crate) async fn run(mut self, queued: &mut VecDeque<Queued>) -> Ended {
        let (error, by_app) = loop {
            let room = self.pending.len() < self.max_inflight;
            if room && let Some((body, reply)) = queued.pop_front() {
                if reply.is_closed() {
                    continue;
                }
                if let Err(e) = self.send_request(body, reply).await {
                    break (e, false);
                }
                continue;
            }
            tokio::select! {
                command = self.commands.recv(), if room => match command {
                    Some(Command::Request { body, reply }) => {
                        if let Err(e) = self.send_request(body, reply).await {
                            break (e, false);
                        }
                    }
                    Some(Command::Close) | None => {
                        self.conn.close(quinn::VarInt::from_u32(ErrorCode::NO_ERROR.get()), b"client closed");
                        break (ClientError::ClientClosed, true);
                    }
                },
                // Cancel safety: FrameReader::next keeps partial frames buffered.
                frame = self.reader.next() => match frame {
                    Ok(Some(frame)) => self.dispatch(frame),
                    Ok(None) => break (ClientError::Protocol("broker finished the control stream".into()), false),
                    Err(e) => break (e, false),
                },
            }
        };
        let error = match self.close_error.take() {
            Some(e) => ClientError::Closed { code: ErrorCode::from_u32(e.code), reason: e.message },
            None => error,
        };
        debug!(%error, "connection driver stopped");
        Ended { retry: self.settle_pending(&error), error, by_app }
    }

    /// Fails the outstanding requests that must not be sent twice and returns the others, in
    /// the order they were sent, for the next connection.
    fn settle_pending(&mut self, error: &ClientError) -> Vec<Queued> {
        let mut pending: Vec<(RequestId, Pending)> = self.pending.drain().collect();
        pending.sort_by_key(|(id, _)| id.get().wrapping_sub(self.last_request.wrapping_add(1)));
        let mut retry = Vec::new();
        for (_, Pending { reply, retry: body }) in pending {
            match body {
                Some(body) if !reply.is_closed() => retry.push((body, reply)),
                _ => {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
        retry
    }

    async fn send_request(&mut self, body: Box<Body>, reply: Reply) -> Result<(), ClientError> {
        let request_id = self.next_request_id();
        let mut buf = BytesMut::new();
        if let Err(e) = self.codec.encode(&body.into_frame(request_id), &mut buf) {
            let _ = reply.send(Err(ClientError::Config(format!("request too large: {e}"))));
            return Ok(());
        }
        let retry = safe_to_repeat(&body).then_some(body);
        self.pending.insert(request_id, Pending { reply, retry });
        self.send.write_chunk(buf.freeze()).await.map_err(|e| match e {
            quinn::WriteError::ConnectionLost(e) => ClientError::from_connection(e),
            other => ClientError::Protocol(format!("control stream write failed: {other}")),
        })
    }

    /// A fresh nonzero id not in use by an outstanding request. Callers that gave up (timed
    /// out) have dropped their receiver; their entries are reclaimed here.
    fn next_request_id(&mut self) -> RequestId {
        self.pending.retain(|_, pending| !pending.reply.is_closed());
        loop {
            self.last_request = self.last_request.wrapping_add(1);
            let id = RequestId::new(self.last_request);
            if id != RequestId::NONE && !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    fn dispatch(&mut self, frame: Frame) {
        if frame.request_id() == RequestId::NONE {
            if let Ok(error) = frame.decode_body::<pb::Error>() {
                self.close_error = Some(error);
            }
            return;
        }
        match self.pending.remove(&frame.request_id()) {
            Some(Pending { reply, .. }) => {
                let _ = reply.send(response(frame));
            }
            None => debug!(request_id = %frame.request_id(), frame_type = %frame.frame_type(), "answer to no request"),
        }
    }
}

/// Whether a request may be sent again after a reconnect without doing twice what it asks:
/// reads, cursor marks (a cursor only moves forward) and SEND (the broker answers a repeated
/// client message id with the first acknowledgement). Anything else fails with the connection
/// and the caller decides.
fn safe_to_repeat(body: &Body) -> bool {
    matches!(
        body,
        Body::Send(_)
            | Body::Ping(_)
            | Body::History(_)
            | Body::Sync(_)
            | Body::ListConversations(_)
            | Body::ListMembers(_)
            | Body::Mark(_)
            | Body::ReceiptQuery(_)
            | Body::DingAck(_)
            | Body::DingQuery(_)
            | Body::Reauth(_)
            | Body::KeysPublish(_)
            | Body::KeysQuery(_)
            | Body::EnvelopesFetch(_)
            | Body::EnvelopesAck(_)
    )
}

/// Turns a response frame into the caller's result: ERROR becomes [`ClientError::Request`].
fn response(frame: Frame) -> Result<Frame, ClientError> {
    if frame.frame_type() != FrameType::ERROR {
        return Ok(frame);
    }
    let error: pb::Error = frame.decode_body().map_err(|e| ClientError::Protocol(e.to_string()))?;
    Err(ClientError::Request {
        code: ErrorCode::from_u32(error.code),
        message: error.message,
        retry_after: (error.retry_after_ms > 0).then(|| std::time::Duration::from_millis(error.retry_after_ms)),
    })
}
