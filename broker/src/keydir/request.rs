//! Key-directory and mailbox requests: wire messages in, checked requests out.

use herald_protocol::{Body, DeviceId, UserId, pb};

use super::error::KeysError;

/// Most users one KEYS_QUERY names.
pub(super) const MAX_QUERY_USERS: usize = 1000;
/// Most envelopes one ENVELOPES_SEND or ENVELOPES_ACK carries.
pub(super) const MAX_ENVELOPES: usize = 1000;
/// Largest envelope, in bytes: a sender-key distribution is about 220.
pub(super) const MAX_ENVELOPE_LEN: usize = 4096;
/// Largest key bundle, in bytes: one with the longest ids is about 900.
pub(super) const MAX_BUNDLE_LEN: usize = 2048;
/// Largest mailbox page.
pub(super) const MAX_PAGE: usize = 1000;
/// The page size when a client asks for 0.
pub(super) const DEFAULT_PAGE: usize = 100;

/// An envelope to store in a device's mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEnvelope {
    /// The recipient user.
    pub user: UserId,
    /// The recipient device.
    pub device: DeviceId,
    /// The sealed envelope, opaque here.
    pub envelope: Vec<u8>,
}

/// A checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysRequest {
    /// Publish the caller's device's signed bundle.
    Publish {
        /// The bundle bytes, not yet verified.
        bundle: Vec<u8>,
    },
    /// The bundles of these users' devices.
    Query {
        /// Distinct users.
        users: Vec<UserId>,
    },
    /// Store envelopes in their recipients' mailboxes.
    Send {
        /// The conversation they concern (0: none).
        conversation_id: u64,
        /// The envelopes.
        envelopes: Vec<OutgoingEnvelope>,
    },
    /// A page of the caller's device's mailbox.
    Fetch {
        /// Envelopes after this id.
        after_id: u64,
        /// Page size.
        limit: usize,
    },
    /// Take envelopes out of the caller's device's mailbox.
    Ack {
        /// Their ids.
        envelope_ids: Vec<u64>,
    },
}

fn invalid(message: impl Into<String>) -> KeysError {
    KeysError::Invalid(message.into())
}

/// The request a frame body holds, if it is a key-directory or mailbox request.
///
/// # Errors
/// [`KeysError::Invalid`] or [`KeysError::TooLarge`] for a malformed request.
pub fn parse(body: Body) -> Option<Result<KeysRequest, KeysError>> {
    let parsed = match body {
        Body::KeysPublish(r) => publish(r),
        Body::KeysQuery(r) => query(&r),
        Body::EnvelopesSend(r) => send(r),
        Body::EnvelopesFetch(r) => fetch(&r),
        Body::EnvelopesAck(r) => ack(r),
        _ => return None,
    };
    Some(parsed)
}

fn publish(r: pb::KeysPublish) -> Result<KeysRequest, KeysError> {
    if r.bundle.len() > MAX_BUNDLE_LEN {
        return Err(KeysError::TooLarge { len: r.bundle.len(), max: MAX_BUNDLE_LEN });
    }
    Ok(KeysRequest::Publish { bundle: r.bundle })
}

fn query(r: &pb::KeysQuery) -> Result<KeysRequest, KeysError> {
    if r.user_ids.is_empty() || r.user_ids.len() > MAX_QUERY_USERS {
        return Err(invalid(format!("user_ids: 1 to {MAX_QUERY_USERS} users")));
    }
    let mut users =
        r.user_ids.iter().map(UserId::new).collect::<Result<Vec<_>, _>>().map_err(|e| invalid(e.to_string()))?;
    users.sort();
    users.dedup();
    Ok(KeysRequest::Query { users })
}

fn send(r: pb::EnvelopesSend) -> Result<KeysRequest, KeysError> {
    if r.envelopes.is_empty() || r.envelopes.len() > MAX_ENVELOPES {
        return Err(invalid(format!("envelopes: 1 to {MAX_ENVELOPES}")));
    }
    let envelopes = r.envelopes.into_iter().map(envelope).collect::<Result<_, _>>()?;
    Ok(KeysRequest::Send { conversation_id: r.conversation_id, envelopes })
}

fn envelope(e: pb::EnvelopeTo) -> Result<OutgoingEnvelope, KeysError> {
    if e.envelope.is_empty() {
        return Err(invalid("an envelope is empty"));
    }
    if e.envelope.len() > MAX_ENVELOPE_LEN {
        return Err(KeysError::TooLarge { len: e.envelope.len(), max: MAX_ENVELOPE_LEN });
    }
    let user = UserId::new(&e.user_id).map_err(|err| invalid(err.to_string()))?;
    let device = DeviceId::new(&e.device_id).map_err(|err| invalid(err.to_string()))?;
    Ok(OutgoingEnvelope { user, device, envelope: e.envelope })
}

fn fetch(r: &pb::EnvelopesFetch) -> Result<KeysRequest, KeysError> {
    let limit = match usize::try_from(r.limit).unwrap_or(usize::MAX) {
        0 => DEFAULT_PAGE,
        n if n > MAX_PAGE => return Err(invalid(format!("limit is at most {MAX_PAGE}"))),
        n => n,
    };
    Ok(KeysRequest::Fetch { after_id: r.after_envelope_id, limit })
}

fn ack(r: pb::EnvelopesAck) -> Result<KeysRequest, KeysError> {
    if r.envelope_ids.is_empty() || r.envelope_ids.len() > MAX_ENVELOPES {
        return Err(invalid(format!("envelope_ids: 1 to {MAX_ENVELOPES}")));
    }
    let mut envelope_ids = r.envelope_ids;
    envelope_ids.sort_unstable();
    envelope_ids.dedup();
    Ok(KeysRequest::Ack { envelope_ids })
}
