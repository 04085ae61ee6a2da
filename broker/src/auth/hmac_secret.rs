//! The shared secret of HS256 (HMAC-SHA256) tokens, for identity providers that cannot sign
//! with Ed25519.

use std::path::{Path, PathBuf};

use super::KeyError;

/// Shortest secret accepted, in bytes: RFC 7518 §3.2 requires a key at least as long as the
/// hash output (256 bits) for HS256; anything shorter is guessable offline from one token.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// A shared HMAC secret. Whoever holds it can mint tokens for any user of any organisation, so
/// it is never printed (its `Debug` shows only the length).
#[derive(Clone)]
pub struct HmacSecret(Vec<u8>);

impl std::fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacSecret").field("len", &self.0.len()).finish_non_exhaustive()
    }
}

impl HmacSecret {
    /// Wraps secret bytes.
    ///
    /// # Errors
    /// [`KeyError::Format`] if the secret is shorter than [`MIN_HMAC_SECRET_BYTES`].
    pub fn new(secret: Vec<u8>) -> Result<Self, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return Err(KeyError::Format {
                path: PathBuf::new(),
                reason: format!(
                    "an HS256 secret needs at least {MIN_HMAC_SECRET_BYTES} bytes, this one has {}",
                    secret.len()
                ),
            });
        }
        Ok(Self(secret))
    }

    /// Reads the secret from `path`: the file's bytes, without one trailing line break (so that
    /// `echo "$SECRET" > file` and editors that end files with a newline give the same secret).
    ///
    /// # Errors
    /// [`KeyError`] if the file cannot be read or the secret is too short.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let mut bytes = std::fs::read(path).map_err(|source| KeyError::Io { path: path.to_owned(), source })?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        Self::new(bytes).map_err(|e| match e {
            KeyError::Format { reason, .. } => KeyError::Format { path: path.to_owned(), reason },
            other => other,
        })
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_not_part_of_the_secret_and_short_secrets_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        let secret = "0123456789abcdef0123456789abcdef";
        std::fs::write(&path, format!("{secret}\r\n")).expect("write");
        assert_eq!(HmacSecret::load(&path).expect("valid").as_bytes(), secret.as_bytes());
        std::fs::write(&path, "too short\n").expect("write");
        let err = HmacSecret::load(&path).expect_err("short");
        assert!(err.to_string().contains("secret"), "{err}");
        assert!(!format!("{:?}", HmacSecret::new(vec![7; 40]).expect("valid")).contains('7'));
    }
}
