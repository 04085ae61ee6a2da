//! Messages that arrived before their sender key.
//!
//! Envelopes and messages travel separately, so a message can arrive first. It is kept here
//! until the envelope arrives (then decrypted), its deadline passes, or the budget (count and
//! bytes) forces the oldest out. Either way the app hears of it: the last two come back from
//! [`HeldQueue::expire`] as undecryptable, never dropped in silence.

use std::collections::VecDeque;

use herald_protocol::e2e::{ChainId, DeviceAddress};

use super::outcome::{Undecryptable, UndecryptableReason};
use super::wire::{DecodeError, Reader, put_address, put_bytes, put_count};

/// One message waiting for its chain.
#[derive(Debug, Clone)]
pub(crate) struct HeldMessage {
    pub(crate) conversation: u64,
    pub(crate) seq: u64,
    pub(crate) sender: DeviceAddress,
    pub(crate) chain: ChainId,
    pub(crate) payload: Vec<u8>,
    pub(crate) held_at_ms: u64,
}

impl HeldMessage {
    fn undecryptable(&self, reason: UndecryptableReason) -> Undecryptable {
        Undecryptable { conversation: self.conversation, seq: self.seq, sender: self.sender.clone(), reason }
    }
}

/// Held messages in arrival order, within a count and byte budget.
#[derive(Debug, Default)]
pub(crate) struct HeldQueue {
    messages: VecDeque<HeldMessage>,
    bytes: usize,
    /// Messages pushed out by the budget, reported by the next [`Self::expire`].
    evicted: Vec<Undecryptable>,
}

impl HeldQueue {
    /// Holds `message`, evicting the oldest while over `max_count` or `max_bytes`.
    pub(crate) fn push(&mut self, message: HeldMessage, max_count: usize, max_bytes: usize) {
        self.bytes = self.bytes.saturating_add(message.payload.len());
        self.messages.push_back(message);
        while self.messages.len() > max_count || self.bytes > max_bytes {
            let Some(oldest) = self.messages.pop_front() else { break };
            self.bytes = self.bytes.saturating_sub(oldest.payload.len());
            self.evicted.push(oldest.undecryptable(UndecryptableReason::Evicted));
        }
    }

    /// Takes out every message of `chain`, in arrival order.
    pub(crate) fn take_chain(&mut self, chain: &ChainId) -> Vec<HeldMessage> {
        let (matching, rest): (Vec<_>, Vec<_>) = self.messages.drain(..).partition(|m| m.chain == *chain);
        self.messages = rest.into();
        self.bytes = self.messages.iter().map(|m| m.payload.len()).sum();
        matching
    }

    /// Puts back a message taken by [`Self::take_chain`] that still cannot be read.
    pub(crate) fn put_back(&mut self, message: HeldMessage) {
        self.bytes = self.bytes.saturating_add(message.payload.len());
        self.messages.push_back(message);
    }

    /// Messages held `hold_ms` or longer by `now_ms`, and those evicted since the last call.
    pub(crate) fn expire(&mut self, now_ms: u64, hold_ms: u64) -> Vec<Undecryptable> {
        let mut out = std::mem::take(&mut self.evicted);
        let (expired, kept): (Vec<_>, Vec<_>) =
            self.messages.drain(..).partition(|m| now_ms.saturating_sub(m.held_at_ms) >= hold_ms);
        self.messages = kept.into();
        self.bytes = self.messages.iter().map(|m| m.payload.len()).sum();
        out.extend(expired.iter().map(|m| {
            m.undecryptable(UndecryptableReason::KeyNotReceived { waited_ms: now_ms.saturating_sub(m.held_at_ms) })
        }));
        out
    }

    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Appends `u32 n || n × (u64 conversation || u64 seq || sender address || u64 held_at ||
    /// bytes payload)`, then the evictions not yet reported as `u32 n || n × (u64 conversation
    /// || u64 seq || sender address)`, so a restart loses neither.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        put_count(out, self.messages.len());
        for m in &self.messages {
            out.extend_from_slice(&m.conversation.to_be_bytes());
            out.extend_from_slice(&m.seq.to_be_bytes());
            put_address(out, &m.sender);
            out.extend_from_slice(&m.held_at_ms.to_be_bytes());
            put_bytes(out, &m.payload);
        }
        put_count(out, self.evicted.len());
        for u in &self.evicted {
            out.extend_from_slice(&u.conversation.to_be_bytes());
            out.extend_from_slice(&u.seq.to_be_bytes());
            put_address(out, &u.sender);
        }
    }

    /// Reads [`Self::write`]; each payload's chain is re-parsed from its header.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut queue = Self::default();
        for _ in 0..r.count()? {
            let conversation = r.u64()?;
            let seq = r.u64()?;
            let sender = r.address()?;
            let held_at_ms = r.u64()?;
            let payload = r.bytes()?.to_vec();
            let chain = herald_protocol::e2e::GroupMessage::parse(&payload)
                .map_err(|_| r.error("held message is not a group message"))?
                .chain;
            queue.put_back(HeldMessage { conversation, seq, sender, chain, payload, held_at_ms });
        }
        for _ in 0..r.count()? {
            let conversation = r.u64()?;
            let seq = r.u64()?;
            let sender = r.address()?;
            queue.evicted.push(Undecryptable { conversation, seq, sender, reason: UndecryptableReason::Evicted });
        }
        Ok(queue)
    }
}
