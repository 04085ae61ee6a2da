//! Protocol version and transport identification.

/// The ALPN protocol id a Herald v1 connection negotiates in its TLS handshake.
pub const ALPN: &[u8] = b"herald/1";

/// The protocol version this crate speaks, sent in HELLO and confirmed in WELCOME.
pub const PROTOCOL_VERSION: u32 = 1;

/// Every version this crate can serve, listed in UNSUPPORTED_VERSION errors.
pub const SUPPORTED_VERSIONS: &[u32] = &[PROTOCOL_VERSION];
