//! Why a call refused a request. Every refusal leaves the call untouched.

use herald_protocol::ErrorCode;

/// A refused call request, with the stable wire code each maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No such call, or the caller's organisation cannot see it.
    #[error("no such call")]
    UnknownCall,
    /// The call has ended; nothing more can happen in it.
    #[error("the call has ended")]
    Ended,
    /// The call holds its tier's capacity already.
    #[error("the call is full ({capacity} participants)")]
    Full {
        /// The call's capacity.
        capacity: u32,
    },
    /// The host locked the call: no new participants.
    #[error("the call is locked")]
    Locked,
    /// The caller's device is not a participant of the call.
    #[error("this device is not in the call")]
    NotInCall,
    /// Only the host (or a co-host, for some controls) may do this.
    #[error("only the host may do this")]
    NotHost,
    /// Someone else is sharing their screen; stop theirs first (the host may take over).
    #[error("another participant is sharing their screen")]
    ScreenBusy,
    /// An SDP/ICE blob exceeds the configured size.
    #[error("blob of {len} bytes exceeds {max}")]
    BlobTooLarge {
        /// The blob's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A relay or host control names a device or user that is not in the call.
    #[error("the target is not in the call")]
    UnknownTarget,
    /// The user was not invited to ring (decline without an invite).
    #[error("no invite to answer")]
    NotInvited,
    /// A field of the request is out of range (too many invitees, no media server configured).
    #[error("invalid request: {0}")]
    Invalid(&'static str),
}

impl CallError {
    /// The error code this refusal is answered with (docs/PROTOCOL.md §17.10).
    pub fn code(&self) -> ErrorCode {
        match self {
            CallError::UnknownCall | CallError::NotInCall | CallError::UnknownTarget | CallError::NotInvited => {
                ErrorCode::NOT_FOUND
            }
            CallError::Ended => ErrorCode::CALL_ENDED,
            CallError::Full { .. } => ErrorCode::CALL_FULL,
            CallError::Locked => ErrorCode::CALL_LOCKED,
            CallError::NotHost => ErrorCode::FORBIDDEN,
            CallError::ScreenBusy => ErrorCode::SCREEN_SHARE_BUSY,
            CallError::BlobTooLarge { .. } => ErrorCode::PAYLOAD_TOO_LARGE,
            CallError::Invalid(_) => ErrorCode::INVALID_ARGUMENT,
        }
    }
}
