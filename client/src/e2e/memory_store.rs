//! A key store that lives as long as the process: for tests, and for apps that re-register the
//! device on every start.

use std::sync::Mutex;

use zeroize::Zeroizing;

use super::{KeyStore, KeyStoreError, StoredIdentity};

/// Keeps identity and state in memory; both are zeroized when replaced or dropped.
#[derive(Default)]
pub struct MemoryKeyStore {
    identity: Mutex<Option<StoredIdentity>>,
    state: Mutex<Option<Zeroizing<Vec<u8>>>>,
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn poisoned() -> KeyStoreError {
    KeyStoreError::Other("memory key store lock poisoned".into())
}

impl KeyStore for MemoryKeyStore {
    fn load_identity(&self) -> Result<Option<StoredIdentity>, KeyStoreError> {
        Ok(self.identity.lock().map_err(|_| poisoned())?.clone())
    }

    fn save_identity(&self, identity: &StoredIdentity) -> Result<(), KeyStoreError> {
        *self.identity.lock().map_err(|_| poisoned())? = Some(identity.clone());
        Ok(())
    }

    fn load_state(&self) -> Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError> {
        Ok(self.state.lock().map_err(|_| poisoned())?.as_ref().map(|s| Zeroizing::new(s.to_vec())))
    }

    fn save_state(&self, state: &[u8]) -> Result<(), KeyStoreError> {
        *self.state.lock().map_err(|_| poisoned())? = Some(Zeroizing::new(state.to_vec()));
        Ok(())
    }
}

impl std::fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryKeyStore").finish_non_exhaustive()
    }
}
