//! TLS for the QUIC endpoint: certificate loading or first-start generation, the server config,
//! and the replaceable certificate that lets SIGHUP renew it without dropping connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use herald_protocol::ALPN;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::{Config, LimitsConfig};

mod reloadable;

pub use reloadable::ReloadableCert;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Generating the self-signed certificate failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls or quinn refused the configuration.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// The broker's certificate chain and key, and where the chain lives on disk.
#[derive(Debug)]
pub struct ServerIdentity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The chain's PEM file, which clients pin in development.
    pub cert_path: PathBuf,
    /// The private key's PEM file.
    pub key_path: PathBuf,
    /// Whether the certificate is the generated self-signed one.
    pub self_signed: bool,
}

impl ServerIdentity {
    /// Loads the configured certificate, or the generated one, generating it on first start.
    ///
    /// # Errors
    /// [`TlsError`] if files cannot be read or written or hold no usable PEM.
    pub fn load_or_generate(config: &Config) -> Result<Self, TlsError> {
        match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => Self::load(cert, key, false),
            _ => {
                let (cert, key) = (config.generated_cert_path(), config.generated_key_path());
                if !cert.exists() {
                    generate_self_signed(&cert, &key)?;
                }
                Self::load(&cert, &key, true)
            }
        }
    }

    fn load(cert_path: &Path, key_path: &Path, self_signed: bool) -> Result<Self, TlsError> {
        let pem_err = |path: &Path, reason: String| TlsError::Pem { path: path.to_owned(), reason };
        let chain = CertificateDer::pem_file_iter(cert_path)
            .map_err(|e| pem_err(cert_path, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(cert_path, e.to_string()))?;
        if chain.is_empty() {
            return Err(pem_err(cert_path, "no certificate found".into()));
        }
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| pem_err(key_path, e.to_string()))?;
        Ok(Self { chain, key, cert_path: cert_path.to_owned(), key_path: key_path.to_owned(), self_signed })
    }

    /// Reads the same files again, as after the operator replaced them.
    ///
    /// # Errors
    /// [`TlsError`] if the files cannot be read or hold no usable PEM.
    pub fn reread(&self) -> Result<Self, TlsError> {
        Self::load(&self.cert_path, &self.key_path, self.self_signed)
    }

    /// The chain with its signing key, checked to belong together (the key must be the leaf
    /// certificate's), ready for rustls.
    ///
    /// # Errors
    /// [`TlsError::Config`] if the key is unusable or is not the leaf certificate's.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let provider = rustls::crypto::ring::default_provider();
        CertifiedKey::from_der(self.chain.clone(), self.key.clone_key(), &provider)
            .map(Arc::new)
            .map_err(|e| TlsError::Config(format!("{}: {e}", self.key_path.display())))
    }

    /// The QUIC server configuration presenting this identity for good (see
    /// [`ServerIdentity::quic_server_config_with`]).
    ///
    /// # Errors
    /// [`TlsError::Config`] if rustls refuses the key or chain.
    pub fn quic_server_config(&self, limits: &LimitsConfig) -> Result<quinn::ServerConfig, TlsError> {
        Self::quic_server_config_with(Arc::new(ReloadableCert::new(self.certified_key()?)), limits)
    }

    /// The QUIC server configuration: TLS 1.3 with ALPN `herald/1`, the certificate `resolver`
    /// presents, and transport limits that allow exactly one client-opened (control) stream and
    /// no client-opened unidirectional ones.
    ///
    /// # Errors
    /// [`TlsError::Config`] if rustls or quinn refuse the configuration.
    pub fn quic_server_config_with(
        resolver: Arc<ReloadableCert>,
        limits: &LimitsConfig,
    ) -> Result<quinn::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        tls.alpn_protocols = vec![ALPN.to_vec()];
        tls.max_early_data_size = 0;
        let crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(transport_config(limits)?));
        Ok(server)
    }
}

/// The QUIC limits a client cannot talk its way past: one bidirectional stream (the control
/// stream) and no unidirectional ones, and receive windows of two maximum frames, so a client
/// can pipeline a whole frame and the start of the next but never make the broker buffer more
/// (the session stops reading at its in-flight limit, and flow control then holds the client).
fn transport_config(limits: &LimitsConfig) -> Result<quinn::TransportConfig, TlsError> {
    let window = quinn::VarInt::from_u64(2 * u64::from(limits.max_frame_bytes))
        .map_err(|e| TlsError::Config(format!("receive window: {e}")))?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(1u8.into())
        .max_concurrent_uni_streams(0u8.into())
        .stream_receive_window(window)
        .receive_window(window)
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(limits.idle_timeout).map_err(|e| TlsError::Config(e.to_string()))?,
        ))
        .datagram_receive_buffer_size(Some(64 * 1024));
    Ok(transport)
}

fn generate_self_signed(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    crate::fs::write_private(key_path, certified.signing_key.serialize_pem().as_bytes()).map_err(io(key_path))?;
    crate::fs::write_public(cert_path, certified.cert.pem().as_bytes()).map_err(io(cert_path))?;
    Ok(())
}
