//! Stable error codes: the same numbers appear in ERROR frames and in QUIC CONNECTION_CLOSE
//! application error codes.

/// An error code, as carried in an ERROR frame and as a QUIC application close code.
///
/// Open like [`crate::FrameType`]: a code from a newer broker is kept and shown by number. Codes
/// are grouped by their high byte: 0x01 framing and session, 0x02 authentication, 0x03 the request,
/// 0x04 flow control, 0x05 the broker itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(u32);

impl ErrorCode {
    /// Wraps a raw code.
    pub const fn from_u32(raw: u32) -> Self {
        Self(raw)
    }

    /// The raw code, as it appears on the wire.
    pub const fn get(self) -> u32 {
        self.0
    }
}

macro_rules! error_codes {
    ($( $konst:ident = $value:literal, $closes:literal, $desc:literal; )+) => {
        impl ErrorCode {
            $( #[doc = $desc] pub const $konst: ErrorCode = ErrorCode($value); )+

            /// Every code this version defines, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$konst),+];

            /// The code's name in docs/PROTOCOL.md, or `None` for a code this version lacks.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($konst)), )+
                    _ => None,
                }
            }

            /// What the code means, as the spec's error table says.
            pub const fn description(self) -> &'static str {
                match self.0 {
                    $( $value => $desc, )+
                    _ => "an error this protocol version does not define",
                }
            }

            /// Whether the broker closes the connection after sending this code, rather than
            /// failing one request and carrying on.
            pub const fn closes_connection(self) -> bool {
                match self.0 {
                    $( $value => $closes, )+
                    _ => false,
                }
            }
        }
    };
}

error_codes! {
    NO_ERROR = 0x0000, true, "The connection closed normally.";
    FRAME_TOO_LARGE = 0x0101, true, "A frame header announced a body over the negotiated maximum.";
    UNKNOWN_FRAME_TYPE = 0x0102, false, "The frame type is not defined by the session's protocol version.";
    MALFORMED_BODY = 0x0103, false, "The frame body is not a valid encoding of the message its type names.";
    UNEXPECTED_FRAME = 0x0104, false, "The frame is not allowed here: before HELLO, a second HELLO, or a broker-to-client type sent by a client.";
    UNSUPPORTED_VERSION = 0x0105, true, "The broker does not speak the protocol version in HELLO; ERROR lists the versions it does.";
    STREAM_VIOLATION = 0x0106, true, "The client reset its control stream, or used a stream the protocol does not allow.";
    HANDSHAKE_TIMEOUT = 0x0107, true, "No valid HELLO arrived within the handshake timeout.";
    TOKEN_INVALID = 0x0201, true, "The token is malformed, badly signed, of the wrong algorithm, missing a claim, or for another device.";
    TOKEN_EXPIRED = 0x0202, true, "The token's expiry time has passed (also sent when a live session's token expires).";
    UNKNOWN_ORG = 0x0203, true, "The token names an organisation the broker does not serve.";
    FORBIDDEN = 0x0204, false, "The authenticated identity may not do this.";
    REVOKED = 0x0205, true, "An administrator revoked this device or disabled this user; the session is closed and cannot reopen.";
    TOKEN_REVOKED = 0x0206, true, "The token, its device or its user has been revoked by the operator (also sent when an open session's identity is revoked).";
    INVALID_ARGUMENT = 0x0301, false, "A field of the request is missing or out of range.";
    NOT_FOUND = 0x0302, false, "The request names something that does not exist, or that the caller may not see.";
    CONFLICT = 0x0303, false, "The request conflicts with the current state.";
    PAYLOAD_TOO_LARGE = 0x0304, false, "A payload exceeds the session's max_payload_bytes limit.";
    LIMIT_EXCEEDED = 0x0305, false, "The request would exceed a configured limit, such as the group size.";
    OUT_OF_RANGE = 0x0306, false, "A sequence number or time is outside its allowed range: a cursor beyond the last entry, a schedule or expiry in the past or beyond limits.max_schedule_ms.";
    STALE_CURSOR = 0x0307, false, "The cursor is behind the stored one; the stored cursor stands (the message says where it is).";
    ALREADY_RECALLED = 0x0308, false, "The message was already recalled or has expired.";
    RECALL_WINDOW_CLOSED = 0x0309, false, "The sender's recall window for this message has passed; only admins may recall it now.";
    RECEIPTS_DISABLED = 0x030a, false, "Read receipts are turned off for this conversation or organisation.";
    ARCHIVED = 0x030b, false, "The conversation is archived (read-only): it takes no messages or membership changes.";
    INVALID_LOCATION = 0x030c, false, "A check-in's position is not a place on Earth: latitude or longitude out of range, not a finite number, or a negative accuracy.";
    CLOCK_SKEW = 0x030d, false, "A check-in's client time is further from the broker's clock than the organisation's rules allow.";
    UNKNOWN_SITE = 0x030e, false, "A check-in names a site the organisation's attendance rules do not define.";
    CALL_FULL = 0x030f, false, "The call already holds as many participants as the organisation's call tier allows.";
    CALL_LOCKED = 0x0310, false, "The host locked the call: it takes no new participants.";
    CALL_ENDED = 0x0311, false, "The call has ended; nothing more can happen in it.";
    SCREEN_SHARE_BUSY = 0x0312, false, "Another participant is sharing their screen; only the host or a co-host may take over.";
    RATE_LIMITED = 0x0401, false, "Too many requests; retry after retry_after_ms.";
    OVERLOADED = 0x0402, false, "The broker is shedding load; retry after retry_after_ms.";
    INTERNAL = 0x0501, false, "The broker failed in a way the client cannot fix; the request had no effect unless stated.";
    SHUTTING_DOWN = 0x0502, true, "The broker is shutting down; reconnect, to this or another broker, after a short delay.";
    UNAVAILABLE = 0x0503, false, "The broker cannot serve the request now (for example, its store refuses writes).";
}

impl std::fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (0x{:04x})", self.0),
            None => write!(f, "UNKNOWN_ERROR (0x{:04x})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_keep_their_value() {
        let code = ErrorCode::from_u32(0x0999);
        assert_eq!(code.get(), 0x0999);
        assert_eq!(code.name(), None);
        assert_eq!(code.to_string(), "UNKNOWN_ERROR (0x0999)");
    }

    #[test]
    fn codes_are_unique_and_ordered() {
        assert!(ErrorCode::ALL.windows(2).all(|w| matches!(w, [a, b] if a < b)));
    }
}
