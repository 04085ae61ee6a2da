//! The connection's life: the first session, and after a loss, reconnecting with backoff,
//! presenting a fresh token, and sending again what was in flight. One task owns it; client
//! handles only see the command channel, which outlives every connection.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use herald_protocol::{Body, ErrorCode, Frame, FrameCodec, PROTOCOL_VERSION, RequestId, pb};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use crate::client::{MAX_RECEIVED_FRAME, SessionInfo};
use crate::driver::{Command, Driver, Queued, SessionEndpoint};
use crate::event::ConnectionState;
use crate::reader::FrameReader;
use crate::reconnect::{Backoff, worth_retrying};
use crate::resume::Input;
use crate::{ClientConfig, ClientError};

/// The id of HELLO; requests are numbered after it.
const HELLO_ID: u32 = 1;

/// An open session: the connection, its control stream, and what WELCOME said.
#[derive(Debug)]
pub(crate) struct Connected {
    pub(crate) conn: quinn::Connection,
    send: quinn::SendStream,
    reader: FrameReader,
    pub(crate) session: SessionInfo,
}

/// Opens a QUIC connection, sends HELLO with `token` and waits for WELCOME.
pub(crate) async fn open_session(
    endpoint: &SessionEndpoint,
    quic: quinn::ClientConfig,
    config: &ClientConfig,
    server: SocketAddr,
    token: String,
) -> Result<Connected, ClientError> {
    let attempt = async {
        let conn = endpoint
            .quic()
            .connect_with(quic, server, &config.server_name)?
            .await
            .map_err(ClientError::from_connection)?;
        let (mut send, recv) = conn.open_bi().await.map_err(ClientError::from_connection)?;
        let hello = pb::Hello {
            protocol_version: PROTOCOL_VERSION,
            token,
            device_id: config.device_id.clone(),
            client_name: config.client_name.clone(),
            client_version: config.client_version.clone(),
        };
        let mut buf = BytesMut::new();
        FrameCodec::default()
            .encode(&Frame::from_body(RequestId::new(HELLO_ID), &hello), &mut buf)
            .map_err(|e| ClientError::Config(format!("HELLO too large: {e}")))?;
        send.write_chunk(buf.freeze()).await.map_err(|e| match e {
            quinn::WriteError::ConnectionLost(e) => ClientError::from_connection(e),
            other => ClientError::Protocol(other.to_string()),
        })?;
        let mut reader = FrameReader::new(recv, FrameCodec::new(MAX_RECEIVED_FRAME));
        let answer = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Err(closed_without_answer(&conn)),
            Err(e) => return Err(e),
        };
        let session = welcome(&answer)?;
        debug!(session = %session.session_id, "session opened");
        Ok(Connected { conn, send, reader, session })
    };
    tokio::time::timeout(config.connect_timeout, attempt)
        .await
        .map_err(|_| ClientError::Timeout(config.connect_timeout))?
}

/// WELCOME as the session's description, or the refusal ERROR as an error.
fn welcome(answer: &Frame) -> Result<SessionInfo, ClientError> {
    match Body::decode(answer).map_err(|e| ClientError::Protocol(e.to_string()))? {
        Body::Welcome(welcome) => SessionInfo::try_from(welcome),
        Body::Error(error) => Err(ClientError::Refused {
            code: ErrorCode::from_u32(error.code),
            message: error.message,
            supported_versions: error.supported_versions,
        }),
        other => Err(ClientError::Protocol(format!("{} in answer to HELLO", other.frame_type()))),
    }
}

fn closed_without_answer(conn: &quinn::Connection) -> ClientError {
    match conn.close_reason() {
        Some(reason) => ClientError::from_connection(reason),
        None => ClientError::Protocol("broker finished the control stream without answering HELLO".into()),
    }
}

/// The session in use and the broker address it runs to.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub(crate) info: SessionInfo,
    pub(crate) remote: SocketAddr,
}

impl Current {
    pub(crate) fn of(connected: &Connected) -> Self {
        Self { info: connected.session.clone(), remote: connected.conn.remote_address() }
    }
}

/// Opens the first session: the configured addresses in order, until one opens a session or
/// refuses it for a reason another address would not change (a bad token, say). Returns the
/// session and the index of the address that served it.
///
/// # Errors
/// The refusal, or the last address's error.
pub(crate) async fn open_first(
    endpoint: &SessionEndpoint,
    quic: &quinn::ClientConfig,
    config: &ClientConfig,
) -> Result<(Connected, usize), ClientError> {
    let servers = config.servers();
    let mut last = None;
    for (index, server) in servers.into_iter().enumerate() {
        let token = config.current_token().map_err(ClientError::Config)?;
        match open_session(endpoint, quic.clone(), config, server, token).await {
            Ok(connected) => return Ok((connected, index)),
            Err(e) if worth_retrying(&e, config.token_source.is_some()) => {
                debug!(error = %e, %server, "broker address unreachable; trying the next");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Config("no broker address".into())))
}

/// The address for reconnect attempt `attempt` (from 1): the one that last worked first, then
/// round the list.
fn server_for_attempt(last_good: usize, attempt: u32, servers: usize) -> usize {
    let step = usize::try_from(attempt.saturating_sub(1)).unwrap_or(0);
    (last_good + step) % servers.max(1)
}

/// Owns the connection from the first session to the end.
#[derive(Debug)]
pub(crate) struct Supervisor {
    pub(crate) config: ClientConfig,
    pub(crate) endpoint: SessionEndpoint,
    pub(crate) quic: quinn::ClientConfig,
    pub(crate) commands: mpsc::Receiver<Command>,
    /// The event pump's input: pushed events, and connection state changes.
    pub(crate) pump: mpsc::Sender<Input>,
    /// The pump itself, awaited when the client stops.
    pub(crate) pump_task: tokio::task::JoinHandle<()>,
    pub(crate) session: watch::Sender<Current>,
    /// Which of the configured broker addresses the current (or last) session used.
    pub(crate) server_index: usize,
    /// Why the client stopped, set before the command channel closes.
    pub(crate) terminal: Arc<OnceLock<ClientError>>,
}

impl Supervisor {
    /// Serves `first`, then each reconnected session in turn, until the app closes the client or
    /// an ending is final.
    pub(crate) async fn run(mut self, first: Connected) {
        let mut connected = first;
        let mut queued: VecDeque<Queued> = VecDeque::new();
        let error = loop {
            self.start_streams(&connected);
            let max_inflight = usize::try_from(connected.session.limits.max_inflight_requests.max(1)).unwrap_or(1);
            let codec = FrameCodec::new(connected.session.limits.max_frame_bytes);
            let Connected { conn, send, reader, .. } = connected;
            let driver = Driver::new(conn, send, reader, codec, &mut self.commands, max_inflight, HELLO_ID);
            let ended = driver.run(&mut queued).await;
            for request in ended.retry.into_iter().rev() {
                queued.push_front(request);
            }
            if ended.by_app || self.config.reconnect.is_none() {
                break ended.error;
            }
            if !worth_retrying(&ended.error, self.config.token_source.is_some()) {
                break ended.error;
            }
            info!(error = %ended.error, "connection lost; reconnecting");
            let _ = self.pump.send(Input::State(ConnectionState::Offline { reason: ended.error.to_string() })).await;
            match self.reconnect(&mut queued).await {
                Ok(next) => {
                    self.session.send_replace(Current::of(&next));
                    let _ = self.pump.send(Input::Online { resumed: true }).await;
                    connected = next;
                }
                Err(error) => break error,
            }
        };
        debug!(%error, "client stopped");
        let _ = self.terminal.set(error.clone());
        for (_, reply) in queued {
            let _ = reply.send(Err(error.clone()));
        }
        if self.config.reconnect.is_some() {
            let _ = self.pump.send(Input::State(ConnectionState::Closed { reason: error.to_string() })).await;
        }
        let Supervisor { mut commands, pump, pump_task, endpoint, .. } = self;
        // The pump saves the cursors as it ends; `close` returns only after that, so an app that
        // quits and starts again finds them.
        drop(pump);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), pump_task).await;
        commands.close();
        while let Ok(Command::Request { reply, .. }) = commands.try_recv() {
            let _ = reply.send(Err(error.clone()));
        }
        endpoint.drain(std::time::Duration::from_secs(1)).await;
    }

    /// Reads the broker's streams of this connection into the event pump.
    fn start_streams(&self, connected: &Connected) {
        let (conn, session) = (connected.conn.clone(), connected.session.session_id);
        tokio::spawn(crate::push::read_broker_streams(conn, session, MAX_RECEIVED_FRAME, self.pump.clone()));
    }

    /// Tries again with growing, jittered waits until a session opens, the app closes the
    /// client, or an attempt fails for good. Requests made meanwhile wait in `queued` (up to the
    /// policy's bound; beyond it, in the command channel).
    async fn reconnect(&mut self, queued: &mut VecDeque<Queued>) -> Result<Connected, ClientError> {
        let policy = self.config.reconnect.unwrap_or_default();
        let mut backoff = Backoff::new(policy);
        loop {
            let wait = backoff.next_wait(rand::random::<f64>());
            let attempt = backoff.attempts();
            let _ = self.pump.send(Input::State(ConnectionState::Connecting { attempt })).await;
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                let room = queued.len() < policy.offline_queue;
                tokio::select! {
                    () = &mut sleep => break,
                    command = self.commands.recv(), if room => match command {
                        Some(Command::Request { body, reply }) => queued.push_back((body, reply)),
                        Some(Command::Close) | None => return Err(ClientError::ClientClosed),
                    },
                }
            }
            let token = self.config.current_token().map_err(ClientError::Config)?;
            let servers = self.config.servers();
            let index = server_for_attempt(self.server_index, attempt, servers.len());
            let server = servers.get(index).copied().unwrap_or(self.config.server);
            match open_session(&self.endpoint, self.quic.clone(), &self.config, server, token).await {
                Ok(connected) => {
                    self.server_index = index;
                    return Ok(connected);
                }
                Err(e) if worth_retrying(&e, self.config.token_source.is_some()) => {
                    debug!(error = %e, attempt, "reconnect attempt failed");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::server_for_attempt;

    #[test]
    fn reconnects_start_at_the_address_that_last_worked_and_go_round() {
        let picks: Vec<usize> = (1..=5).map(|attempt| server_for_attempt(1, attempt, 3)).collect();
        assert_eq!(picks, [1, 2, 0, 1, 2]);
        assert_eq!(server_for_attempt(0, 7, 1), 0, "one address: always it");
    }
}
