//! Reloading what an operator may replace while the broker runs (SIGHUP): the TLS certificate
//! and the token revocation list.
//!
//! Each part reloads on its own: a bad new file is reported and logged, and that part keeps
//! what it had, so a typo in one file never takes down what the others serve.

use std::path::Path;

use tracing::{info, warn};

use crate::auth::{RevocationError, RevocationList, Revocations};
use crate::fanout::SessionRegistry;
use crate::tls::{ReloadableCert, ServerIdentity, TlsError};

/// What one reload did, part by part.
#[derive(Debug)]
pub struct ReloadReport {
    /// The certificate: replaced, or left alone because it is the generated development one; an
    /// error means the new files were unusable and the previous certificate is still presented.
    pub certificate: Result<CertificateReload, TlsError>,
    /// The revocation list: `None` when none is configured; an error means the file was
    /// unusable and the previous list is still in force.
    pub revocations: Result<Option<RevocationReload>, RevocationError>,
}

impl ReloadReport {
    /// Whether every part reloaded (or had nothing to reload).
    pub fn is_ok(&self) -> bool {
        self.certificate.is_ok() && self.revocations.is_ok()
    }
}

/// What a revocation-list reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationReload {
    /// Entries in the new list.
    pub entries: usize,
    /// Open sessions it revoked, now closing with TOKEN_REVOKED.
    pub sessions_closed: usize,
}

/// Reads the revocation list again, puts it in force for every later HELLO, then tells the open
/// sessions it names to close. The list is replaced before the registry is scanned, and a
/// session checks the list once more right after registering, so no session opening during a
/// reload escapes it.
pub(crate) fn reload_revocations(
    path: &Path,
    revocations: &Revocations,
    registry: &SessionRegistry,
) -> Result<RevocationReload, RevocationError> {
    let list = match RevocationList::load(path) {
        Ok(list) => list,
        Err(e) => {
            warn!(error = %e, "reload: the revocation list is unusable; keeping the current one");
            return Err(e);
        }
    };
    let entries = list.len();
    revocations.replace(list);
    let list = revocations.current();
    let sessions_closed = registry
        .signal_where(|org, user, session| list.revokes(org, user, &session.device, session.token_id.as_deref()));
    info!(file = %path.display(), entries, sessions_closed, "reload: revocation list in force");
    Ok(RevocationReload { entries, sessions_closed })
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
