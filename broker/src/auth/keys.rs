//! The token-signing key pair: loaded from a PEM file, or generated on first start.

use std::path::{Path, PathBuf};

/// Why a key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("cannot access key file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an Ed25519 key in PEM.
    #[error("{path} is not an Ed25519 key in PEM: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
}

/// An Ed25519 key pair for signing tokens, as PEM text.
#[derive(Clone)]
pub struct SigningKeyPair {
    private_pem: String,
    public_pem: String,
}

impl std::fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private half.
        f.debug_struct("SigningKeyPair").field("public_pem", &self.public_pem).finish_non_exhaustive()
    }
}

impl SigningKeyPair {
    /// A fresh random key pair.
    ///
    /// # Errors
    /// [`KeyError::Format`] if the platform's random source fails.
    pub fn generate() -> Result<Self, KeyError> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| KeyError::Format { path: PathBuf::new(), reason: e.to_string() })?;
        Ok(Self { private_pem: pair.serialize_pem(), public_pem: pair.public_key_pem() })
    }

    /// Parses a PKCS#8 PEM private key.
    ///
    /// # Errors
    /// [`KeyError::Format`] if `pem` is not an Ed25519 private key.
    pub fn from_private_pem(pem: &str) -> Result<Self, KeyError> {
        let pair = rcgen::KeyPair::from_pem(pem)
            .map_err(|e| KeyError::Format { path: PathBuf::new(), reason: e.to_string() })?;
        if !pair.is_compatible(&rcgen::PKCS_ED25519) {
            return Err(KeyError::Format { path: PathBuf::new(), reason: "not an Ed25519 key".into() });
        }
        Ok(Self { private_pem: pair.serialize_pem(), public_pem: pair.public_key_pem() })
    }

    /// Reads the key at `path`, creating it (mode 0600) if the file does not exist.
    ///
    /// # Errors
    /// [`KeyError`] if the file cannot be read or written, or holds something else.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io { path: path.to_owned(), source };
        match std::fs::read_to_string(path) {
            Ok(pem) => Self::from_private_pem(&pem).map_err(|e| match e {
                KeyError::Format { reason, .. } => KeyError::Format { path: path.to_owned(), reason },
                other => other,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pair = Self::generate()?;
                crate::fs::write_private(path, pair.private_pem.as_bytes()).map_err(io)?;
                Ok(pair)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The private key, PKCS#8 PEM.
    pub fn private_pem(&self) -> &str {
        &self.private_pem
    }

    /// The public key, SubjectPublicKeyInfo PEM: what a broker is configured to trust.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }
}
