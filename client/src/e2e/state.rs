//! The engine's saved state: one versioned binary blob.
//!
//! ```text
//! state         = "HRLDE2ES" (8) || u8 version (1) || address || directory || conversations || held
//! address       = id8(org) || id8(user) || id8(device)
//! directory     = u32 n || n × (address || u64 key_version || public_identity (64))
//! conversations = u32 n || n × (u64 conversation_id || conversation)
//! conversation  = u32 n || n × (u32 len || signed membership change)
//!                 || u8 has_sender_chain
//!                 || [chain_id || u32 next || chain_key (32) || u32 m × (address || public_identity (64))]
//!                 || u32 k × (chain_id || ed25519 key (32) || u32 start || u32 next || chain_key (32)
//!                            || u32 s × (u32 counter || message_key (32) || nonce (12)))
//! held          = u32 n × (u64 conversation || u64 seq || address || u64 held_at_ms || u32 len || payload)
//!                 || u32 e × (u64 conversation || u64 seq || address)
//! ```
//!
//! Integers are big-endian and ids are `id8`, as in PROTOCOL.md §18.2. Only current chain keys
//! and unused skipped message keys are written, never a key that was already advanced past.
//! Membership is saved as the signed changes and verified again on load, so a tampered file can
//! lose keys but cannot add a member. The blob holds secrets: it lives in zeroizing memory.

use std::collections::BTreeMap;

use herald_protocol::e2e::DeviceAddress;
use zeroize::Zeroizing;

use super::conversation::Conversation;
use super::directory::Directory;
use super::held::HeldQueue;
use super::wire::{DecodeError, Reader, put_address, put_count};

const MAGIC: &[u8; 8] = b"HRLDE2ES";
const VERSION: u8 = 1;

/// The parts of an engine that are saved.
pub(crate) struct SavedState {
    pub(crate) address: DeviceAddress,
    pub(crate) directory: Directory,
    pub(crate) conversations: BTreeMap<u64, Conversation>,
    pub(crate) held: HeldQueue,
}

pub(crate) fn encode(
    address: &DeviceAddress,
    directory: &Directory,
    conversations: &BTreeMap<u64, Conversation>,
    held: &HeldQueue,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    put_address(&mut out, address);
    directory.write(&mut out);
    put_count(&mut out, conversations.len());
    for (id, conversation) in conversations {
        out.extend_from_slice(&id.to_be_bytes());
        conversation.write(&mut out);
    }
    held.write(&mut out);
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Result<SavedState, DecodeError> {
    let mut r = Reader::new("e2e state", bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return Err(r.error("not an e2e state"));
    }
    if r.u8()? != VERSION {
        return Err(r.error("unknown state version"));
    }
    let address = r.address()?;
    let directory = Directory::read(&mut r)?;
    let mut conversations = BTreeMap::new();
    for _ in 0..r.count()? {
        let id = r.u64()?;
        let conversation = Conversation::read(&mut r)?;
        if conversation.membership.state().conversation() != id {
            return Err(r.error("membership saved under another conversation"));
        }
        conversations.insert(id, conversation);
    }
    let held = HeldQueue::read(&mut r)?;
    r.finish()?;
    Ok(SavedState { address, directory, conversations, held })
}
