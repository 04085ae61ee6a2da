//! End-to-end encryption's broker requests (docs/PROTOCOL.md §19): publishing this device's
//! signed key bundle, fetching other devices' bundles, and the device mailbox through which
//! sealed envelopes (sender keys) travel. The bundles and envelopes themselves are built and
//! opened with `herald_protocol::e2e`; the broker only stores and routes them.

use herald_protocol::pb;

use crate::{Client, ClientError};

/// Most envelopes one ENVELOPES_SEND carries; [`Client::send_envelopes`] splits larger batches.
const MAX_ENVELOPES_PER_FRAME: usize = 1000;

impl Client {
    /// Publishes this device's signed key bundle (`DeviceKeyBundle::sign`). Publishing the same
    /// bundle again changes nothing (`changed` false), so a retry is safe.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a bundle that does not verify; FORBIDDEN for a bundle naming another
    /// device; CONFLICT for different keys without a higher `key_version`.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the bundle published or not; publish it again.
    pub async fn publish_keys(&self, bundle: Vec<u8>) -> Result<pb::KeysPublished, ClientError> {
        self.call(pb::KeysPublish { bundle }).await
    }

    /// The published key bundles of these users' devices (verify each before trusting it).
    ///
    /// # Errors
    /// INVALID_ARGUMENT for no users, more than 1000, or a malformed id.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn query_keys(&self, users: &[&str]) -> Result<Vec<pb::DeviceKeys>, ClientError> {
        let request = pb::KeysQuery { user_ids: users.iter().map(ToString::to_string).collect() };
        Ok(self.call::<pb::Keys>(request).await?.devices)
    }

    /// Stores sealed envelopes in their recipients' mailboxes, durably, in batches of 1000 (each
    /// batch all or nothing); returns how many were stored.
    ///
    /// # Errors
    /// NOT_FOUND for a recipient device without published keys (that batch and later ones are
    /// not stored); PAYLOAD_TOO_LARGE for an envelope over 4096 bytes.
    ///
    /// # Cancel safety
    /// Dropping the future may leave some batches stored; sending them again delivers
    /// duplicates, which opening an envelope tolerates.
    pub async fn send_envelopes(
        &self,
        conversation_id: u64,
        envelopes: Vec<pb::EnvelopeTo>,
    ) -> Result<u64, ClientError> {
        let mut stored = 0;
        let mut rest = envelopes;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(MAX_ENVELOPES_PER_FRAME));
            let batch = std::mem::replace(&mut rest, tail);
            let request = pb::EnvelopesSend { conversation_id, envelopes: batch };
            stored += u64::from(self.call::<pb::EnvelopesStored>(request).await?.stored);
        }
        Ok(stored)
    }

    /// A page of this device's mailbox after `after_envelope_id` (0: from the start); `limit` 0
    /// asks for the default of 100. Envelopes stay until [`Client::ack_envelopes`].
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a limit over 1000.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn fetch_envelopes(&self, after_envelope_id: u64, limit: u32) -> Result<pb::EnvelopePage, ClientError> {
        self.call(pb::EnvelopesFetch { after_envelope_id, limit }).await
    }

    /// Takes envelopes out of this device's mailbox; returns how many were there.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for no ids or more than 1000.
    ///
    /// # Cancel safety
    /// Dropping the future may leave them removed or not; acknowledging again is harmless.
    pub async fn ack_envelopes(&self, envelope_ids: Vec<u64>) -> Result<u32, ClientError> {
        Ok(self.call::<pb::EnvelopesAcked>(pb::EnvelopesAck { envelope_ids }).await?.removed)
    }
}
