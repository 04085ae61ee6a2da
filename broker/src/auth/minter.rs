//! Minting tokens, for the `token` command, tests and the load tool.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::{Claims, HmacSecret, SigningKeyPair};

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The key is not usable for EdDSA.
    #[error("signing key unusable: {0}")]
    Key(#[source] jsonwebtoken::errors::Error),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// Signs Herald tokens with an Ed25519 key (EdDSA) or a shared secret (HS256).
#[derive(Clone)]
pub struct TokenMinter {
    key: EncodingKey,
    algorithm: Algorithm,
}

impl std::fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenMinter").finish_non_exhaustive()
    }
}

impl TokenMinter {
    /// A minter that signs with `pair`'s private key.
    ///
    /// # Errors
    /// [`MintError::Key`] if the key is not Ed25519.
    pub fn new(pair: &SigningKeyPair) -> Result<Self, MintError> {
        let key = EncodingKey::from_ed_pem(pair.private_pem().as_bytes()).map_err(MintError::Key)?;
        Ok(Self { key, algorithm: Algorithm::EdDSA })
    }

    /// A minter that signs HS256 tokens with `secret`, as an identity provider sharing the
    /// broker's `auth.hmac_secret_file` would.
    pub fn hmac(secret: &HmacSecret) -> Self {
        Self { key: EncodingKey::from_secret(secret.as_bytes()), algorithm: Algorithm::HS256 }
    }

    /// Signs arbitrary claims.
    ///
    /// # Errors
    /// [`MintError::Sign`] if signing fails.
    pub fn mint(&self, claims: &Claims) -> Result<String, MintError> {
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, &self.key).map_err(MintError::Sign)
    }

    /// Signs a token for `org`/`user` valid for `ttl` from `now_unix_s`.
    ///
    /// # Errors
    /// [`MintError::Sign`] if signing fails.
    pub fn mint_for(
        &self,
        org: &str,
        user: &str,
        device: Option<&str>,
        roles: &[String],
        now_unix_s: u64,
        ttl: Duration,
    ) -> Result<String, MintError> {
        self.mint(&Claims {
            sub: user.to_owned(),
            org: org.to_owned(),
            device: device.map(str::to_owned),
            roles: roles.to_vec(),
            exp: now_unix_s.saturating_add(ttl.as_secs()),
            iat: now_unix_s,
            nbf: None,
            iss: None,
            aud: None,
            jti: None,
        })
    }
}
