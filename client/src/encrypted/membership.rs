//! Fetching what the engine verifies: a conversation's signed membership chain and users'
//! published keys. Shared by the send path and the event pump, so both speak through
//! [`Requests`].

use herald_protocol::DeviceId;
use herald_protocol::e2e::MemberDevice;
use herald_protocol::pb;

use super::{Encryption, device_address, end_to_end};
use crate::ClientError;
use crate::client::Requests;
use crate::e2e::{E2eEngine, EngineError, KeyChange};

/// Most changes asked for per chain page, and most users per key query (the broker's limits).
const PAGE: usize = 1000;

/// Brings the engine's verified membership of `conversation` up to the broker's chain, page by
/// page from the first change it lacks. Returns the chain's length (0: the conversation has no
/// signed membership, it is not end-to-end).
///
/// # Errors
/// The request's; [`ClientError::EndToEnd`] for a change that does not verify (the engine keeps
/// the changes before it).
pub(crate) async fn sync_chain(requests: &Requests, enc: &Encryption, conversation: u64) -> Result<u64, ClientError> {
    loop {
        let from = enc.engine().membership(conversation).map_or(0, |m| m.next_seq());
        let limit = u32::try_from(PAGE).unwrap_or(u32::MAX);
        let page: pb::MembershipChainPage =
            requests.call(pb::MembershipChain { conversation_id: conversation, from_seq: from, limit }).await?;
        if page.signed_changes.is_empty() {
            return Ok(page.chain_length);
        }
        let outcome = enc.engine().apply_membership_batch(conversation, page.signed_changes.iter().map(Vec::as_slice));
        if let Some((_, e)) = outcome.refused {
            return Err(end_to_end(e));
        }
        let reached = enc.engine().membership(conversation).map_or(0, |m| m.next_seq());
        if reached >= page.chain_length || reached == from {
            return Ok(page.chain_length);
        }
    }
}

/// What the directory published for some users, verified.
#[derive(Debug, Default)]
pub(crate) struct LearnedKeys {
    /// Each user's devices with their verified keys, in the directory's order.
    pub(crate) devices: Vec<(String, MemberDevice)>,
    /// Known devices whose keys changed.
    pub(crate) changed: Vec<KeyChange>,
    /// Devices seen for the first time.
    pub(crate) new: Vec<KeyChange>,
    /// Bundles that did not verify (a broker that lies about keys, or corruption), and why.
    pub(crate) refused: Vec<(String, String, EngineError)>,
}

impl LearnedKeys {
    /// The devices of `user`.
    pub(crate) fn of(&self, user: &str) -> Vec<MemberDevice> {
        self.devices.iter().filter(|(u, _)| u == user).map(|(_, d)| d.clone()).collect()
    }
}

/// Queries the directory for `users`, verifies each bundle and records it in the engine.
///
/// # Errors
/// The request's.
pub(crate) async fn learn_keys(
    requests: &Requests,
    enc: &Encryption,
    users: &[String],
) -> Result<LearnedKeys, ClientError> {
    let mut learned = LearnedKeys::default();
    for chunk in users.chunks(PAGE) {
        let keys: pb::Keys = requests.call(pb::KeysQuery { user_ids: chunk.to_vec() }).await?;
        let mut engine = enc.engine();
        for device in keys.devices {
            match engine.learn_bundle(&device.bundle) {
                Ok(change @ KeyChange::Changed { .. }) => learned.changed.push(change),
                Ok(change @ KeyChange::NewDevice { .. }) => learned.new.push(change),
                Ok(_) => {}
                Err(e) => learned.refused.push((device.user_id.clone(), device.device_id.clone(), e)),
            }
            // The keys the engine trusts for the device: these, or the ones it verified before
            // when these are stale or do not verify.
            if let Some(member) = member_device(&engine, &device.user_id, &device.device_id) {
                learned.devices.push((device.user_id, member));
            }
        }
    }
    Ok(learned)
}

/// A device as a membership change lists it, with the keys the engine's directory holds.
fn member_device(engine: &E2eEngine, user: &str, device: &str) -> Option<MemberDevice> {
    let address = device_address(engine.address().org.as_str(), user, device)?;
    let entry = engine.directory_entry(&address)?;
    Some(MemberDevice { device: DeviceId::new(device).ok()?, identity: entry.identity })
}
