//! The SDK's transparent end-to-end layer: with a key store configured
//! ([`ClientConfig::with_end_to_end`](crate::ClientConfig::with_end_to_end)), [`Client::send`]
//! encrypts, the event stream decrypts, and group membership changes carry the signatures that
//! let every member verify who is in the group (docs/SECURITY.md).
//!
//! The cryptography and key bookkeeping are the sans-IO [`E2eEngine`]; this module moves its
//! inputs and outputs. The engine sits behind a mutex that is only ever held for one of its
//! (synchronous, fast) calls, never across an await: the send path and the event pump each lock
//! it, feed it, and do their I/O with what it returned.

mod incoming;
mod membership;
mod order;
mod outgoing;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use herald_protocol::e2e::DeviceAddress;
use herald_protocol::{DeviceId, OrgId, UserId};

pub use incoming::E2eWarning;
pub(crate) use incoming::Inbound;

use crate::e2e::{E2eEngine, EngineError, KeyStore};
use crate::{ClientError, SessionInfo};

/// One device's engine and the store that keeps it across runs.
#[derive(Debug)]
pub(crate) struct Encryption {
    engine: Mutex<E2eEngine>,
    store: Arc<dyn KeyStore>,
    /// What this device sent lately, to show its own messages when the broker delivers them
    /// back: a sender's message key is used once and forgotten, so it cannot decrypt them.
    sent: Mutex<SentMessages>,
}

impl Encryption {
    /// Loads the engine of the session's device from `store` (a new identity on first use).
    pub(crate) fn load(session: &SessionInfo, store: Arc<dyn KeyStore>) -> Result<Self, ClientError> {
        let address = device_address(&session.org, &session.user, &session.device)
            .ok_or_else(|| ClientError::Protocol("WELCOME named an invalid organisation, user or device id".into()))?;
        let engine =
            E2eEngine::load_from(address, store.as_ref(), &mut |buf: &mut [u8]| rand::fill(buf)).map_err(end_to_end)?;
        Ok(Self { engine: Mutex::new(engine), store, sent: Mutex::default() })
    }

    /// The engine, for one synchronous call.
    pub(crate) fn engine(&self) -> MutexGuard<'_, E2eEngine> {
        // A panic while the engine was locked leaves it as the panicking call left it; its
        // methods keep it consistent on every error path, so carrying on is sound.
        self.engine.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers the plaintext of a message this device is sending.
    pub(crate) fn remember_sent(&self, conversation: u64, client_msg_id: &str, plaintext: Bytes) {
        let mut sent = self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sent.insert((conversation, client_msg_id.to_owned()), plaintext);
    }

    /// The plaintext of a message this device sent, when it comes back.
    pub(crate) fn sent_plaintext(&self, conversation: u64, client_msg_id: &str) -> Option<Bytes> {
        let sent = self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sent.get(&(conversation, client_msg_id.to_owned()))
    }

    /// Saves the engine's identity and state.
    pub(crate) fn save(&self) -> Result<(), ClientError> {
        self.engine().save_to(self.store.as_ref()).map_err(end_to_end)
    }
}

/// A device address from wire ids, or `None` if one is not a valid id.
pub(crate) fn device_address(org: &str, user: &str, device: &str) -> Option<DeviceAddress> {
    Some(DeviceAddress::new(OrgId::new(org).ok()?, UserId::new(user).ok()?, DeviceId::new(device).ok()?))
}

/// How many of its own messages a device remembers in plaintext; older ones come back as
/// undecryptable (`FromThisDevice`), which an app that keeps its sent messages can match.
const SENT_REMEMBERED: usize = 4096;

/// The plaintexts of the messages this device sent lately, oldest forgotten first.
#[derive(Debug, Default)]
struct SentMessages {
    by_id: HashMap<(u64, String), Bytes>,
    order: VecDeque<(u64, String)>,
}

impl SentMessages {
    fn insert(&mut self, key: (u64, String), plaintext: Bytes) {
        if self.by_id.insert(key.clone(), plaintext).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > SENT_REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.by_id.remove(&oldest);
            }
        }
    }

    fn get(&self, key: &(u64, String)) -> Option<Bytes> {
        self.by_id.get(key).cloned()
    }
}

pub(crate) fn end_to_end(e: EngineError) -> ClientError {
    ClientError::EndToEnd(Arc::new(e))
}

/// Randomness for the engine.
pub(crate) fn rng() -> impl FnMut(&mut [u8]) {
    |buf: &mut [u8]| rand::fill(buf)
}
