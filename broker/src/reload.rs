//! Reloading what an operator may replace while the broker runs (SIGHUP): the TLS certificate.
//!
//! Each part reloads on its own: a bad new file is reported and logged, and that part keeps
//! what it had, so a typo in one file never takes down what the others serve.

use tracing::{info, warn};

use crate::tls::{ReloadableCert, ServerIdentity, TlsError};

/// What one reload did, part by part.
#[derive(Debug)]
pub struct ReloadReport {
    /// The certificate: replaced, or left alone because it is the generated development one; an
    /// error means the new files were unusable and the previous certificate is still presented.
    pub certificate: Result<CertificateReload, TlsError>,
}

impl ReloadReport {
    /// Whether every part reloaded (or had nothing to reload).
    pub fn is_ok(&self) -> bool {
        self.certificate.is_ok()
    }
}

/// What happened to the certificate on reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateReload {
    /// New handshakes present the certificate now in the configured files.
    Replaced,
    /// The broker runs on its generated self-signed certificate, which never changes on disk
    /// behind its back: nothing to reload.
    SelfSigned,
}

/// Reads the configured certificate and key again and, if they are usable and belong together,
/// makes new handshakes present them. Established connections are not affected either way.
pub(crate) fn reload_certificate(
    identity: &ServerIdentity,
    resolver: &ReloadableCert,
) -> Result<CertificateReload, TlsError> {
    if identity.self_signed {
        info!(cert = %identity.cert_path.display(), "reload: the generated development certificate is in use; nothing to reload");
        return Ok(CertificateReload::SelfSigned);
    }
    match identity.reread().and_then(|fresh| fresh.certified_key()) {
        Ok(key) => {
            resolver.replace(key);
            info!(cert = %identity.cert_path.display(), "reload: new connections get the certificate now in the file");
            Ok(CertificateReload::Replaced)
        }
        Err(e) => {
            warn!(error = %e, "reload: the new certificate is unusable; keeping the current one");
            Err(e)
        }
    }
}
