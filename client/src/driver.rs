//! The connection driver: one task that owns the control stream and the table of outstanding
//! requests, so no lock guards either. Client handles talk to it over a bounded channel.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

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
    async fn drain(&self, limit: std::time::Duration) {
        if let SessionEndpoint::Owned(endpoint) = self {
            let _ = tokio::time::timeout(limit, endpoint.wait_idle()).await;
        }
    }
}

#[derive(Debug)]
pub(crate) struct Driver {
    pub(crate) endpoint: SessionEndpoint,
    pub(crate) conn: quinn::Connection,
    pub(crate) send: quinn::SendStream,
    pub(crate) reader: FrameReader,
    pub(crate) codec: FrameCodec,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) max_inflight: usize,
    pub(crate) pending: HashMap<RequestId, Reply>,
    pub(crate) last_request: u32,
    /// The ERROR the broker sent with request id 0 before closing, if any: the best explanation
    /// to give callers whose requests die with the connection.
    pub(crate) close_error: Option<pb::Error>,
    /// Where the driver leaves the error that ended it, for requests made afterwards.
    pub(crate) terminal: Arc<OnceLock<ClientError>>,
}

impl Driver {
    pub(crate) async fn run(mut self) {
        let error = loop {
            let room = self.pending.len() < self.max_inflight;
            tokio::select! {
                command = self.commands.recv(), if room => match command {
                    Some(Command::Request { body, reply }) => {
                        if let Err(e) = self.send_request(&body, reply).await {
                            break e;
                        }
                    }
                    Some(Command::Close) | None => {
                        self.conn.close(quinn::VarInt::from_u32(ErrorCode::NO_ERROR.get()), b"client closed");
                        break ClientError::ClientClosed;
                    }
                },
                // Cancel safety: FrameReader::next keeps partial frames buffered.
                frame = self.reader.next() => match frame {
                    Ok(Some(frame)) => self.dispatch(frame),
                    Ok(None) => break ClientError::Protocol("broker finished the control stream".into()),
                    Err(e) => break e,
                },
            }
        };
        let terminal = match self.close_error.take() {
            Some(e) => ClientError::Closed { code: ErrorCode::from_u32(e.code), reason: e.message },
            None => error,
        };
        debug!(error = %terminal, "connection driver stopped");
        // Set before the command receiver drops, so a request that finds the channel closed
        // finds the reason too.
        let _ = self.terminal.set(terminal.clone());
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(terminal.clone()));
        }
        self.endpoint.drain(std::time::Duration::from_secs(1)).await;
    }

    async fn send_request(&mut self, body: &Body, reply: Reply) -> Result<(), ClientError> {
        let request_id = self.next_request_id();
        let mut buf = BytesMut::new();
        if let Err(e) = self.codec.encode(&body.into_frame(request_id), &mut buf) {
            let _ = reply.send(Err(ClientError::Config(format!("request too large: {e}"))));
            return Ok(());
        }
        self.pending.insert(request_id, reply);
        self.send.write_chunk(buf.freeze()).await.map_err(|e| match e {
            quinn::WriteError::ConnectionLost(e) => ClientError::from_connection(e),
            other => ClientError::Protocol(format!("control stream write failed: {other}")),
        })
    }

    /// A fresh nonzero id not in use by an outstanding request. Callers that gave up (timed
    /// out) have dropped their receiver; their entries are reclaimed here.
    fn next_request_id(&mut self) -> RequestId {
        self.pending.retain(|_, reply| !reply.is_closed());
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
            Some(reply) => {
                let _ = reply.send(response(frame));
            }
            None => debug!(request_id = %frame.request_id(), frame_type = %frame.frame_type(), "answer to no request"),
        }
    }
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
