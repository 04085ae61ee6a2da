//! The receive side, run by the event pump: membership changes are verified and applied in the
//! conversation's order, messages decrypted (or held until their sender key arrives, then shown
//! as undecryptable), envelopes opened before they leave the mailbox, and key changes checked.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald_protocol::e2e::{DeviceAddress, E2eError, GroupMessage};
use herald_protocol::pb;
use tracing::warn;

use super::membership::{learn_keys, sync_chain};
use super::order::InOrder;
use super::{Encryption, device_address};
use crate::client::Requests;
use crate::e2e::{DecryptOutcome, EngineError, KeyChange, Released, UndecryptableReason};
use crate::{Entry, EntryKind, Event};

/// Something about end-to-end encryption the app should show or log: the SDK acted safely
/// (nothing was sealed to an unverified device, nothing unverifiable shown as a message), but a
/// person may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum E2eWarning {
    /// A device this client knew now publishes other keys: it was reinstalled, or someone is
    /// impersonating it. Worth telling the user, as messengers show a changed safety number.
    KeysChanged {
        /// The device.
        device: DeviceAddress,
    },
    /// This user has a device the end-to-end groups do not list yet (a new phone, a reinstall).
    /// It reads nothing there until it is linked: once the user confirms the device is theirs
    /// (a code shown on both, as messengers do), call
    /// [`Client::link_device`](crate::Client::link_device) from a device already in the groups.
    /// The SDK never links on the directory's word alone: the broker serves the directory.
    NewOwnDevice {
        /// The device.
        device: DeviceAddress,
    },
    /// A device joined a conversation with other keys than the directory lists for it.
    KeyMismatch {
        /// The conversation.
        conversation_id: u64,
        /// The device.
        device: DeviceAddress,
    },
    /// A membership change that does not verify (forged, unsigned, not permitted): it was not
    /// applied, and no sender key goes to devices it would have added.
    MembershipRefused {
        /// The conversation.
        conversation_id: u64,
        /// Why.
        reason: String,
    },
    /// A key envelope that could not be opened or verified; messages its key would have opened
    /// are reported undecryptable once their hold deadline passes.
    EnvelopeRefused {
        /// Who the broker says sent it.
        from_user: String,
        /// From which device.
        from_device: String,
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for E2eWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            E2eWarning::KeysChanged { device } => write!(f, "keys changed device={device}"),
            E2eWarning::NewOwnDevice { device } => write!(f, "new own device={device} (link it to read)"),
            E2eWarning::KeyMismatch { conversation_id, device } => {
                write!(f, "key mismatch conv={conversation_id} device={device}")
            }
            E2eWarning::MembershipRefused { conversation_id, reason } => {
                write!(f, "membership refused conv={conversation_id}: {reason}")
            }
            E2eWarning::EnvelopeRefused { from_user, from_device, reason } => {
                write!(f, "envelope refused from={from_user}/{from_device}: {reason}")
            }
        }
    }
}

/// The pump's end-to-end state: the engine and the per-conversation order of held messages.
#[derive(Debug)]
pub(crate) struct Inbound {
    enc: Arc<Encryption>,
    order: InOrder,
    /// The engine changed since it was last saved.
    dirty: bool,
}

impl Inbound {
    pub(crate) fn new(enc: Arc<Encryption>) -> Self {
        Self { enc, order: InOrder::default(), dirty: false }
    }

    /// A log entry, next in its conversation: what to hand out now.
    pub(crate) async fn entry(&mut self, requests: &Requests, mut entry: Entry) -> Vec<Event> {
        let conversation = entry.conversation_id;
        let mut out = Vec::new();
        match &entry.kind {
            EntryKind::Membership(event) if !event.signed_changes.is_empty() => {
                out.extend(self.apply_changes(requests, conversation, &event.signed_changes).await);
            }
            EntryKind::Message { payload, client_msg_id } => {
                let known = self.enc.engine().membership(conversation).is_some();
                if known || GroupMessage::parse(payload).is_ok() {
                    if !known {
                        out.extend(self.sync(requests, conversation).await);
                    }
                    let (payload, client_msg_id) = (payload.clone(), client_msg_id.clone());
                    let outcome = match self.own_message(&entry, &client_msg_id) {
                        Some(plaintext) => DecryptOutcome::Plaintext(plaintext.to_vec()),
                        None => self.decrypt(&entry, &payload),
                    };
                    match outcome {
                        DecryptOutcome::Plaintext(plaintext) => {
                            entry.kind = EntryKind::Message { client_msg_id, payload: Bytes::from(plaintext) };
                            entry.end_to_end = true;
                        }
                        DecryptOutcome::Held => {
                            self.order.hold(entry);
                            return out;
                        }
                        DecryptOutcome::Undecryptable { reason } => {
                            out.extend(
                                self.order.ready(conversation, Event::Undecryptable { entry: Box::new(entry), reason }),
                            );
                            return out;
                        }
                    }
                }
            }
            _ => {}
        }
        out.extend(self.order.ready(conversation, Event::Delivery(entry)));
        out
    }

    /// The plaintext of a message this very device sent, if it remembers it.
    fn own_message(&self, entry: &Entry, client_msg_id: &str) -> Option<Bytes> {
        let engine = self.enc.engine();
        let me = engine.address();
        let mine = entry.sender_user == me.user.as_str() && entry.sender_device == me.device.as_str();
        drop(engine);
        if mine { self.enc.sent_plaintext(entry.conversation_id, client_msg_id) } else { None }
    }

    fn decrypt(&mut self, entry: &Entry, payload: &[u8]) -> DecryptOutcome {
        let mut engine = self.enc.engine();
        let Some(sender) = device_address(engine.address().org.as_str(), &entry.sender_user, &entry.sender_device)
        else {
            let reason = UndecryptableReason::Refused(E2eError::InvalidId { what: "entry sender" });
            return DecryptOutcome::Undecryptable { reason };
        };
        self.dirty = true;
        engine.decrypt(entry.conversation_id, entry.seq, &sender, payload, now_ms())
    }

    /// Applies the signed changes of a membership event; fetches the chain instead when this
    /// device has not verified the conversation's earlier changes.
    async fn apply_changes(&mut self, requests: &Requests, conversation: u64, changes: &[Vec<u8>]) -> Vec<Event> {
        if self.enc.engine().membership(conversation).is_none() {
            return self.sync(requests, conversation).await;
        }
        let outcome = self.enc.engine().apply_membership_batch(conversation, changes.iter().map(Vec::as_slice));
        self.dirty = true;
        let mut out = outcome.update.map(|u| mismatches(conversation, &u.key_mismatches)).unwrap_or_default();
        match outcome.refused {
            // Changes before these were missed (a gap in what this device saw): fetch them.
            Some((_, EngineError::Refused(E2eError::OutOfOrder { expected, found }))) if found > expected => {
                out.extend(self.sync(requests, conversation).await);
            }
            Some((_, e)) => out.push(refused_membership(conversation, &e)),
            None => {}
        }
        out
    }

    /// Fetches and verifies the conversation's chain; a failure becomes a warning.
    async fn sync(&mut self, requests: &Requests, conversation: u64) -> Vec<Event> {
        self.dirty = true;
        match sync_chain(requests, &self.enc, conversation).await {
            Ok(_) => Vec::new(),
            Err(crate::ClientError::EndToEnd(e)) => vec![refused_membership(conversation, &e)],
            Err(e) => {
                warn!(error = %e, conversation, "cannot fetch the signed membership");
                Vec::new()
            }
        }
    }

    /// An envelope for this device: opened, and the engine saved, before it is acknowledged
    /// (once acknowledged it leaves the mailbox for good).
    pub(crate) async fn envelope(&mut self, requests: &Requests, envelope: pb::Envelope) -> Vec<Event> {
        let mut out = Vec::new();
        let org = self.enc.engine().address().org.clone();
        let from = device_address(org.as_str(), &envelope.from_user_id, &envelope.from_device_id);
        let opened = match &from {
            Some(from) => {
                let first = self.enc.engine().open_envelope(from, &envelope.envelope);
                match first {
                    // Membership this device has not verified yet: fetch it, then try again.
                    Err(
                        EngineError::UnknownConversation { .. }
                        | EngineError::EpochAhead { .. }
                        | EngineError::UnknownSender { .. },
                    ) => {
                        out.extend(self.sync(requests, envelope.conversation_id).await);
                        self.enc.engine().open_envelope(from, &envelope.envelope)
                    }
                    other => other,
                }
            }
            None => Err(EngineError::Refused(E2eError::InvalidId { what: "envelope sender" })),
        };
        self.dirty = true;
        match opened {
            Ok(released) => out.extend(self.released(released)),
            Err(e) => out.push(Event::E2eWarning(E2eWarning::EnvelopeRefused {
                from_user: envelope.from_user_id.clone(),
                from_device: envelope.from_device_id.clone(),
                reason: e.to_string(),
            })),
        }
        if self.save() {
            let ack = pb::EnvelopesAck { envelope_ids: vec![envelope.envelope_id] };
            if let Err(e) = requests.call::<pb::EnvelopesAcked>(ack).await {
                warn!(error = %e, "cannot acknowledge an envelope; it comes again");
            }
        }
        out
    }

    /// Opens everything waiting in this device's mailbox: on start and after each reconnect,
    /// before the message catch-up, so keys come before the messages they open.
    pub(crate) async fn drain_mailbox(&mut self, requests: &Requests) -> Vec<Event> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page: pb::EnvelopePage =
                match requests.call(pb::EnvelopesFetch { after_envelope_id: after, limit: 1000 }).await {
                    Ok(page) => page,
                    Err(e) => {
                        warn!(error = %e, "cannot fetch the mailbox; the next reconnect tries again");
                        return out;
                    }
                };
            let Some(last) = page.envelopes.last().map(|e| e.envelope_id) else { return out };
            for envelope in page.envelopes {
                out.extend(self.envelope(requests, envelope).await);
            }
            if !page.more {
                return out;
            }
            after = last;
        }
    }

    /// A device published keys: verify them against what this client knew.
    pub(crate) async fn keys_changed(&mut self, requests: &Requests, notice: &pb::KeysChanged) -> Vec<Event> {
        let learned = match learn_keys(requests, &self.enc, std::slice::from_ref(&notice.user_id)).await {
            Ok(learned) => learned,
            Err(e) => {
                warn!(error = %e, user = notice.user_id, "cannot fetch changed keys");
                return Vec::new();
            }
        };
        self.dirty = true;
        let me = self.enc.engine().address().clone();
        let own_new = learned.new.into_iter().filter_map(|c| match c {
            KeyChange::NewDevice { device, .. } if device.user == me.user && device != me => {
                Some(Event::E2eWarning(E2eWarning::NewOwnDevice { device }))
            }
            _ => None,
        });
        let changed = learned.changed.into_iter().filter_map(|c| match c {
            KeyChange::Changed { device, .. } => Some(Event::E2eWarning(E2eWarning::KeysChanged { device })),
            _ => None,
        });
        let changed = own_new.chain(changed);
        let refused = learned.refused.into_iter().map(|(from_user, from_device, e)| {
            Event::E2eWarning(E2eWarning::EnvelopeRefused { from_user, from_device, reason: e.to_string() })
        });
        changed.chain(refused).collect()
    }

    /// Held messages whose deadline passed, shown as undecryptable (with what waited behind them).
    pub(crate) fn expire(&mut self) -> Vec<Event> {
        let expired = self.enc.engine().expire_held(now_ms());
        let mut out = Vec::new();
        for u in expired {
            self.dirty = true;
            let reason = u.reason;
            out.extend(
                self.order
                    .resolve(u.conversation, u.seq, |entry| Event::Undecryptable { entry: Box::new(entry), reason }),
            );
        }
        out
    }

    /// Messages an opened envelope released, in their conversations' order.
    fn released(&mut self, released: Released) -> Vec<Event> {
        let mut out = Vec::new();
        for d in released.decrypted {
            out.extend(self.order.resolve(d.conversation, d.seq, |mut entry| {
                if let EntryKind::Message { client_msg_id, .. } = entry.kind {
                    entry.kind = EntryKind::Message { client_msg_id, payload: Bytes::from(d.plaintext) };
                }
                entry.end_to_end = true;
                Event::Delivery(entry)
            }));
        }
        for u in released.undecryptable {
            let reason = u.reason;
            out.extend(
                self.order
                    .resolve(u.conversation, u.seq, |entry| Event::Undecryptable { entry: Box::new(entry), reason }),
            );
        }
        out
    }

    /// Whether the engine changed since it was last saved.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Saves the engine if it changed; `false` if it could not be saved.
    pub(crate) fn save(&mut self) -> bool {
        if !self.dirty {
            return true;
        }
        match self.enc.save() {
            Ok(()) => {
                self.dirty = false;
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot save the end-to-end state; retrying later");
                false
            }
        }
    }
}

fn mismatches(conversation_id: u64, devices: &[DeviceAddress]) -> Vec<Event> {
    devices
        .iter()
        .map(|device| Event::E2eWarning(E2eWarning::KeyMismatch { conversation_id, device: device.clone() }))
        .collect()
}

fn refused_membership(conversation_id: u64, e: &EngineError) -> Event {
    Event::E2eWarning(E2eWarning::MembershipRefused { conversation_id, reason: e.to_string() })
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
