//! The certificate new handshakes present, replaceable while the endpoint runs.
//!
//! rustls asks a [`ResolvesServerCert`] for the certificate at every handshake, so swapping the
//! `Arc` here changes what the next handshake presents while established connections, whose
//! handshakes are over, keep going untouched. This is what lets SIGHUP install a renewed
//! certificate without dropping anyone.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate chain and key that can be replaced at any time; one read lock per handshake.
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Presents `key` until it is replaced.
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        Self { current: RwLock::new(key) }
    }

    /// The chain and key handshakes present now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        // A panic while holding the lock cannot leave a half-written `Arc`: the value is intact.
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Makes every later handshake present `key`.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
