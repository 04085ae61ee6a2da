//! Authentication: JWTs (RFC 7519) signed with EdDSA (Ed25519) or, where an identity provider
//! needs it, HS256 with a shared secret.
//!
//! The broker only verifies; minting lives here too so that the `herald-broker token` command,
//! tests and the load tool produce exactly what an operator's identity provider would: a standard
//! JWT whose claims are `sub` (user), `org`, `device` (optional), `roles`, `iat` and `exp`.

mod claims;
mod hmac_secret;
mod identity;
mod keys;
mod minter;
mod revocation;
mod verifier;

pub use claims::Claims;
pub use hmac_secret::{HmacSecret, MIN_HMAC_SECRET_BYTES};
pub use identity::{Identity, Roles};
pub use keys::{KeyError, SigningKeyPair};
pub use minter::{MintError, TokenMinter};
pub use revocation::{RevocationError, RevocationList, Revocations};
pub use verifier::{AuthError, TokenVerifier, UnverifiedClaims, VerifierSettings};
