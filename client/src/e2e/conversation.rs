//! Everything the engine keeps for one conversation: its verified membership, this device's
//! sender chain and who holds it, and the chains received from other devices.

use std::collections::BTreeMap;

use herald_protocol::e2e::{ChainId, DeviceAddress, PUBLIC_IDENTITY_LEN};

use super::membership::VerifiedMembership;
use super::ratchet::{RecvChain, SendChain};
use super::wire::{DecodeError, Reader, put_address, put_bytes, put_count};

/// This device's chain in the current epoch and the devices it was sealed to, with the keys
/// it was sealed under: a device missing here, or listed under other keys than the membership
/// now names, gets the chain (at its current counter) with the next message.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) chain: SendChain,
    pub(crate) holders: BTreeMap<DeviceAddress, [u8; PUBLIC_IDENTITY_LEN]>,
}

#[derive(Debug)]
pub(crate) struct Conversation {
    pub(crate) membership: VerifiedMembership,
    pub(crate) sending: Option<Outbound>,
    pub(crate) receiving: BTreeMap<ChainId, RecvChain>,
}

impl Conversation {
    pub(crate) fn new(membership: VerifiedMembership) -> Self {
        Self { membership, sending: None, receiving: BTreeMap::new() }
    }

    /// The current epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.membership.state().epoch()
    }

    /// Whether chains of `epoch` are kept: the current epoch and the one before it (messages
    /// sent just before a removal still arrive after it).
    pub(crate) fn keeps_epoch(&self, epoch: u64) -> bool {
        epoch.saturating_add(1) >= self.epoch()
    }

    /// Appends `u32 n || n × bytes(change) || u8 sending || [send chain || u32 m × (address ||
    /// identity)] || u32 k × receiver chain`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let changes: Vec<&[u8]> = self.membership.changes().collect();
        put_count(out, changes.len());
        changes.iter().for_each(|c| put_bytes(out, c));
        match &self.sending {
            None => out.push(0),
            Some(outbound) => {
                out.push(1);
                outbound.chain.write(out);
                put_count(out, outbound.holders.len());
                for (device, key) in &outbound.holders {
                    put_address(out, device);
                    out.extend_from_slice(key);
                }
            }
        }
        put_count(out, self.receiving.len());
        self.receiving.values().for_each(|chain| chain.write(out));
    }

    /// Reads [`Self::write`], verifying the membership chain again.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut changes = Vec::new();
        for _ in 0..r.count()? {
            changes.push(r.bytes()?);
        }
        let membership = VerifiedMembership::from_chain(changes.iter().copied())
            .map_err(|_| r.error("saved membership chain does not verify"))?;
        let sending = match r.u8()? {
            0 => None,
            1 => {
                let chain = SendChain::read(r)?;
                let mut holders = BTreeMap::new();
                for _ in 0..r.count()? {
                    holders.insert(r.address()?, r.array()?);
                }
                Some(Outbound { chain, holders })
            }
            _ => return Err(r.error("bad sending flag")),
        };
        let mut receiving = BTreeMap::new();
        for _ in 0..r.count()? {
            let chain = RecvChain::read(r)?;
            receiving.insert(chain.id().clone(), chain);
        }
        Ok(Self { membership, sending, receiving })
    }
}
