//! Serving key-directory and mailbox requests against the store. Each answer says what to push
//! to whom; [`super::dispatch`] performs it.

use std::sync::Arc;

use herald_protocol::e2e::DeviceKeyBundle;
use herald_protocol::{Body, DeviceId, OrgId, UserId, pb};

use super::error::KeysError;
use super::ids::EnvelopeIds;
use super::request::{KeysRequest, OutgoingEnvelope};
use crate::audit::{AuditAction, AuditEvent, AuditSink};
use crate::auth::Identity;
use crate::store::{self, KvBackend, KvWrite};

/// Most users a key change is announced to: beyond this (a user in many very large groups),
/// the rest learn of it when they next fetch the user's keys.
const MAX_ANNOUNCE: usize = 100_000;

/// An answer, and the pushes it causes.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The answer's body.
    pub body: Body,
    /// KEYS_CHANGED to every online device of these users.
    pub announce: Option<(pb::KeysChanged, Vec<UserId>)>,
    /// ENVELOPE to each recipient device, if online.
    pub deliver: Vec<(UserId, DeviceId, pb::Envelope)>,
}

impl Answer {
    fn just(body: impl Into<Body>) -> Self {
        Self { body: body.into(), announce: None, deliver: Vec::new() }
    }
}

/// The key directory and the mailboxes, over the store.
#[derive(Debug)]
pub struct KeyDirectory {
    kv: Arc<dyn KvBackend>,
    audit: Arc<dyn AuditSink>,
    ids: EnvelopeIds,
    sync_writes: bool,
}

impl KeyDirectory {
    /// Serves from `kv`, auditing to `audit`; `sync_writes` makes every write durable before
    /// it is answered (as for messages).
    pub fn new(kv: Arc<dyn KvBackend>, audit: Arc<dyn AuditSink>, sync_writes: bool, now_ms: u64) -> Self {
        Self { kv, audit, ids: EnvelopeIds::starting_at(now_ms), sync_writes }
    }

    /// Serves one request for `caller`.
    ///
    /// # Errors
    /// The [`KeysError`] refusing it; nothing was stored.
    pub fn serve(&self, caller: &Identity, request: KeysRequest, now_ms: u64) -> Result<Answer, KeysError> {
        match request {
            KeysRequest::Publish { bundle } => self.publish(caller, bundle, now_ms),
            KeysRequest::Query { users } => self.query(&caller.org, &users),
            KeysRequest::Send { conversation_id, envelopes } => self.send(caller, conversation_id, envelopes, now_ms),
            KeysRequest::Fetch { after_id, limit } => {
                let (envelopes, more) =
                    store::mailbox_page(&*self.kv, &caller.org, &caller.user, &caller.device, after_id, limit)?;
                Ok(Answer::just(pb::EnvelopePage { envelopes, more }))
            }
            KeysRequest::Ack { envelope_ids } => self.ack(caller, &envelope_ids),
        }
    }

    fn publish(&self, caller: &Identity, signed: Vec<u8>, now_ms: u64) -> Result<Answer, KeysError> {
        let bundle = DeviceKeyBundle::verify(&signed)
            .map_err(|e| KeysError::Invalid(format!("the key bundle does not verify: {e}")))?;
        if (&bundle.org, &bundle.user, &bundle.device) != (&caller.org, &caller.user, &caller.device) {
            return Err(KeysError::NotOwnKeys);
        }
        let stored = store::device_keys(&*self.kv, &caller.org, &caller.user, &caller.device)?;
        let version = bundle.key_version;
        match &stored {
            Some(s) if s.bundle == signed => {
                return Ok(Answer::just(pb::KeysPublished { version, changed: false }));
            }
            Some(s) if version <= s.version => {
                return Err(KeysError::StaleVersion { offered: version, published: s.version });
            }
            _ => {}
        }
        let keys = pb::DeviceKeys {
            user_id: caller.user.to_string(),
            device_id: caller.device.to_string(),
            version,
            bundle: signed,
            published_at_ms: now_ms,
        };
        self.kv.write(
            vec![store::device_keys_write(&caller.org, &caller.user, &caller.device, &keys)],
            self.sync_writes,
        )?;
        self.audit_publish(caller, version, stored.is_some(), now_ms);
        let notice = pb::KeysChanged { user_id: keys.user_id, device_id: keys.device_id, version };
        let announce = store::co_members(&*self.kv, &caller.org, &caller.user, MAX_ANNOUNCE)?;
        Ok(Answer {
            body: pb::KeysPublished { version, changed: true }.into(),
            announce: Some((notice, announce.into_iter().collect())),
            deliver: Vec::new(),
        })
    }

    fn audit_publish(&self, caller: &Identity, version: u64, replaces: bool, now_ms: u64) {
        self.audit.record(AuditEvent {
            org: caller.org.clone(),
            at_ms: now_ms,
            actor: caller.user.to_string(),
            device: caller.device.to_string(),
            action: AuditAction::KeysPublished,
            target: format!("{}/{}", caller.user, caller.device),
            details: vec![("version".into(), version.to_string()), ("replaces".into(), replaces.to_string())],
        });
    }

    fn query(&self, org: &OrgId, users: &[UserId]) -> Result<Answer, KeysError> {
        let mut devices = Vec::new();
        for user in users {
            devices.extend(store::user_device_keys(&*self.kv, org, user)?);
        }
        Ok(Answer::just(pb::Keys { devices }))
    }

    fn send(
        &self,
        caller: &Identity,
        conversation_id: u64,
        envelopes: Vec<OutgoingEnvelope>,
        now_ms: u64,
    ) -> Result<Answer, KeysError> {
        for e in &envelopes {
            if store::device_keys(&*self.kv, &caller.org, &e.user, &e.device)?.is_none() {
                return Err(KeysError::UnknownDevice { user: e.user.to_string(), device: e.device.to_string() });
            }
        }
        let first_id = self.ids.take(envelopes.len() as u64);
        let mut writes: Vec<KvWrite> = Vec::with_capacity(envelopes.len());
        let mut deliver = Vec::with_capacity(envelopes.len());
        for (envelope_id, e) in (first_id..).zip(envelopes) {
            let stored = pb::Envelope {
                envelope_id,
                from_user_id: caller.user.to_string(),
                from_device_id: caller.device.to_string(),
                conversation_id,
                envelope: e.envelope,
                sent_at_ms: now_ms,
            };
            writes.push(store::envelope_write(&caller.org, &e.user, &e.device, &stored));
            deliver.push((e.user, e.device, stored));
        }
        let stored = u32::try_from(writes.len()).unwrap_or(u32::MAX);
        self.kv.write(writes, self.sync_writes)?;
        Ok(Answer { body: pb::EnvelopesStored { stored }.into(), announce: None, deliver })
    }

    fn ack(&self, caller: &Identity, envelope_ids: &[u64]) -> Result<Answer, KeysError> {
        let (org, user, device) = (&caller.org, &caller.user, &caller.device);
        let mut writes = Vec::new();
        for &id in envelope_ids {
            if store::has_envelope(&*self.kv, org, user, device, id)? {
                writes.push(store::envelope_removal(org, user, device, id));
            }
        }
        let removed = u32::try_from(writes.len()).unwrap_or(u32::MAX);
        if !writes.is_empty() {
            self.kv.write(writes, self.sync_writes)?;
        }
        Ok(Answer::just(pb::EnvelopesAcked { removed }))
    }
}
