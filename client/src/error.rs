//! The SDK's error type.

use std::sync::Arc;
use std::time::Duration;

use herald_protocol::ErrorCode;

/// Everything that can go wrong talking to a broker.
///
/// Cloneable, so the error that ended a connection can be handed to every request that was
/// waiting on it, and to every later one.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The configuration cannot work (for example, no address or an unreadable certificate).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The local UDP endpoint could not be created.
    #[error("cannot create the local endpoint")]
    Endpoint(#[source] Arc<std::io::Error>),
    /// The connection attempt could not start (bad server name, endpoint stopping).
    #[error("cannot connect")]
    Connect(#[from] quinn::ConnectError),
    /// The QUIC connection failed or was closed by the transport (timeouts, TLS failures such as
    /// a wrong ALPN or an untrusted certificate, resets).
    #[error("connection failed")]
    Connection(#[source] quinn::ConnectionError),
    /// The broker refused the session in answer to HELLO.
    #[error("broker refused the session: {code}: {message}")]
    Refused {
        /// Why, from the error table.
        code: ErrorCode,
        /// The broker's detail, for logs.
        message: String,
        /// For UNSUPPORTED_VERSION: the versions the broker speaks.
        supported_versions: Vec<u32>,
    },
    /// The broker answered a request with ERROR; the session goes on.
    #[error("request failed: {code}: {message}")]
    Request {
        /// Why, from the error table.
        code: ErrorCode,
        /// The broker's detail, for logs.
        message: String,
        /// For RATE_LIMITED and OVERLOADED: when to retry.
        retry_after: Option<Duration>,
    },
    /// The broker closed the session with an application error code.
    #[error("broker closed the session: {code}: {reason}")]
    Closed {
        /// Why, from the error table.
        code: ErrorCode,
        /// The broker's detail.
        reason: String,
    },
    /// An argument cannot be put on the wire (a time before 1970, a duration too long for its
    /// field); nothing was sent. Checked here because the wire has no way to say it: a time of 0
    /// would mean "none" rather than fail.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The broker sent something the protocol does not allow here.
    #[error("protocol violation by the broker: {0}")]
    Protocol(String),
    /// No answer arrived in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The client was closed locally.
    #[error("the client is closed")]
    ClientClosed,
    /// End-to-end encryption refused an input or could not keep its state: a membership change
    /// that does not verify, a key store that cannot be written. Nothing was sent.
    #[error("end-to-end encryption: {0}")]
    EndToEnd(#[source] Arc<crate::e2e::EngineError>),
    /// The conversation has no signed membership, and this client cannot start one (or has no
    /// key store): with end-to-end encryption configured nothing is ever sent in plaintext.
    #[error("conversation {conversation_id} is not end-to-end encrypted: {reason}")]
    NotEndToEnd {
        /// The conversation.
        conversation_id: u64,
        /// Why it cannot be made so here.
        reason: String,
    },
}

impl ClientError {
    /// The Herald error code behind this error, when the broker gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. }
            | ClientError::Request { code, .. }
            | ClientError::Closed { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// How long the broker asked the caller to wait before retrying (RATE_LIMITED, OVERLOADED),
    /// when it gave a hint. `None` for every other error, and for a refusal without a hint: then
    /// back off on your own, exponentially.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Request { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Maps a QUIC connection loss to the most specific error: an application close carries a
    /// Herald code.
    pub(crate) fn from_connection(error: quinn::ConnectionError) -> Self {
        match error {
            quinn::ConnectionError::ApplicationClosed(close) => ClientError::Closed {
                code: ErrorCode::from_u32(u32::try_from(close.error_code.into_inner()).unwrap_or(u32::MAX)),
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            },
            quinn::ConnectionError::LocallyClosed => ClientError::ClientClosed,
            other => ClientError::Connection(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_receipts_and_recall_show_by_name() {
        for (code, name) in [
            (ErrorCode::OUT_OF_RANGE, "OUT_OF_RANGE"),
            (ErrorCode::STALE_CURSOR, "STALE_CURSOR"),
            (ErrorCode::ALREADY_RECALLED, "ALREADY_RECALLED"),
            (ErrorCode::RECALL_WINDOW_CLOSED, "RECALL_WINDOW_CLOSED"),
            (ErrorCode::RECEIPTS_DISABLED, "RECEIPTS_DISABLED"),
        ] {
            let error = ClientError::Request { code, message: "detail".into(), retry_after: None };
            assert_eq!(error.code(), Some(code));
            let shown = error.to_string();
            assert!(shown.contains(name) && shown.contains("detail"), "{shown}");
        }
    }

    #[test]
    fn a_rate_limited_request_carries_its_retry_hint() {
        let wait = Duration::from_millis(120);
        let error = ClientError::Request {
            code: ErrorCode::RATE_LIMITED,
            message: "slow down".into(),
            retry_after: Some(wait),
        };
        assert_eq!((error.code(), error.retry_after()), (Some(ErrorCode::RATE_LIMITED), Some(wait)));
        assert_eq!(ClientError::Timeout(wait).retry_after(), None);
    }
}
