//! Records and the hash chain that links them.

use prost::Message;
use sha2::{Digest, Sha256};

use super::{AuditAction, AuditEvent};

/// A stored audit record: the event, its place in its organisation's chain and the links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the organisation's chain, from 1, without gaps.
    pub seq: u64,
    /// The event.
    pub event: AuditEvent,
    /// The previous record's hash (all zeros for the first).
    pub prev_hash: [u8; 32],
    /// SHA-256 over `prev_hash` and this record's canonical encoding.
    pub hash: [u8; 32],
}

/// The stored form: prost, so the encoding of a record is canonical (fields in tag order) and
/// new fields can be added without breaking old chains' hashes (absent fields encode to nothing).
#[derive(Clone, PartialEq, Message)]
struct Stored {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(uint64, tag = "2")]
    at_ms: u64,
    #[prost(string, tag = "3")]
    actor: String,
    #[prost(string, tag = "4")]
    device: String,
    #[prost(string, tag = "5")]
    action: String,
    #[prost(string, tag = "6")]
    target: String,
    #[prost(string, repeated, tag = "7")]
    details: Vec<String>,
    #[prost(bytes = "vec", tag = "8")]
    prev_hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "9")]
    hash: Vec<u8>,
}

impl From<AuditRecord> for herald_protocol::pb::AuditEntry {
    /// The wire form (AUDIT_PAGE); the organisation is the page's.
    fn from(r: AuditRecord) -> Self {
        herald_protocol::pb::AuditEntry {
            seq: r.seq,
            at_ms: r.event.at_ms,
            actor: r.event.actor,
            device: r.event.device,
            action: r.event.action.name().to_owned(),
            target: r.event.target,
            details: r
                .event
                .details
                .into_iter()
                .map(|(key, value)| herald_protocol::pb::AuditDetail { key, value })
                .collect(),
            hash: r.hash.to_vec(),
        }
    }
}

impl AuditRecord {
    /// Chains `event` after a record with `prev_hash`, at position `seq`.
    pub fn chained(seq: u64, event: AuditEvent, prev_hash: [u8; 32]) -> Self {
        let mut record = Self { seq, event, prev_hash, hash: [0; 32] };
        record.hash = record.computed_hash();
        record
    }

    /// What the hash of this record must be.
    pub fn computed_hash(&self) -> [u8; 32] {
        let mut body = self.stored();
        body.hash.clear();
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash);
        hasher.update(body.encode_to_vec());
        hasher.finalize().into()
    }

    fn stored(&self) -> Stored {
        Stored {
            seq: self.seq,
            at_ms: self.event.at_ms,
            actor: self.event.actor.clone(),
            device: self.event.device.clone(),
            action: self.event.action.name().to_owned(),
            target: self.event.target.clone(),
            details: self.event.details.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            prev_hash: self.prev_hash.to_vec(),
            hash: self.hash.to_vec(),
        }
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.stored().encode_to_vec()
    }

    /// A record from its stored bytes, in `org`'s chain.
    ///
    /// # Errors
    /// A description of what is malformed.
    pub fn decode(org: &herald_protocol::OrgId, bytes: &[u8]) -> Result<Self, String> {
        let s = Stored::decode(bytes).map_err(|e| e.to_string())?;
        let action = AuditAction::from_name(&s.action).ok_or_else(|| format!("unknown action {:?}", s.action))?;
        let details = s
            .details
            .iter()
            .map(|d| d.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect::<Option<Vec<_>>>()
            .ok_or("a detail without '='")?;
        let hash_of = |v: Vec<u8>, what: &str| -> Result<[u8; 32], String> {
            v.try_into().map_err(|_| format!("{what} is not 32 bytes"))
        };
        Ok(Self {
            seq: s.seq,
            event: AuditEvent {
                org: org.clone(),
                at_ms: s.at_ms,
                actor: s.actor,
                device: s.device,
                action,
                target: s.target,
                details,
            },
            prev_hash: hash_of(s.prev_hash, "prev_hash")?,
            hash: hash_of(s.hash, "hash")?,
        })
    }
}

/// Where a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A record's stored hash is not the hash of its contents: it was altered.
    #[error("record {seq} was altered: its hash does not match its contents")]
    Altered {
        /// The record.
        seq: u64,
    },
    /// A record does not follow its predecessor: one was deleted or inserted, or moved.
    #[error("the chain is broken before record {seq}: expected seq {expected} linked to the previous hash")]
    Broken {
        /// The record found.
        seq: u64,
        /// The position it should have held.
        expected: u64,
    },
    /// A record cannot be decoded.
    #[error("record at position {position} is unreadable: {reason}")]
    Unreadable {
        /// Its position in the scan.
        position: u64,
        /// Why.
        reason: String,
    },
}

/// Checks a chain read in order: positions from 1 without gaps, every hash correct, every link
/// to the previous hash intact. Returns how many records were checked.
///
/// # Errors
/// The first break found.
pub fn verify_chain(records: impl IntoIterator<Item = Result<AuditRecord, String>>) -> Result<u64, ChainError> {
    let mut prev = [0u8; 32];
    let mut expected = 1;
    for record in records {
        let record = record.map_err(|reason| ChainError::Unreadable { position: expected, reason })?;
        if record.computed_hash() != record.hash {
            return Err(ChainError::Altered { seq: record.seq });
        }
        if record.seq != expected || record.prev_hash != prev {
            return Err(ChainError::Broken { seq: record.seq, expected });
        }
        prev = record.hash;
        expected += 1;
    }
    Ok(expected - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_protocol::OrgId;

    fn event(n: u64) -> AuditEvent {
        AuditEvent {
            org: OrgId::new("acme").expect("valid"),
            at_ms: 1_000 + n,
            actor: "alice".into(),
            device: "d1".into(),
            action: AuditAction::MessageRecalled,
            target: format!("c42/{n}"),
            details: vec![("reason".into(), "recalled".into())],
        }
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = [0; 32];
        (1..=n)
            .map(|seq| {
                let record = AuditRecord::chained(seq, event(seq), prev);
                prev = record.hash;
                record
            })
            .collect()
    }

    fn ok(records: Vec<AuditRecord>) -> Vec<Result<AuditRecord, String>> {
        records.into_iter().map(Ok).collect()
    }

    #[test]
    fn an_intact_chain_verifies_and_round_trips_through_its_encoding() {
        let records = chain(5);
        let org = OrgId::new("acme").expect("valid");
        let decoded: Vec<_> = records.iter().map(|r| AuditRecord::decode(&org, &r.encode())).collect();
        assert_eq!(verify_chain(decoded), Ok(5));
    }

    #[test]
    fn an_altered_record_is_detected() {
        let mut records = chain(5);
        records[2].event.actor = "mallory".into();
        assert_eq!(verify_chain(ok(records)), Err(ChainError::Altered { seq: 3 }));
    }

    #[test]
    fn a_rehashed_alteration_breaks_the_next_link() {
        let mut records = chain(5);
        records[2].event.target = "c42/99".into();
        records[2].hash = records[2].computed_hash();
        assert_eq!(verify_chain(ok(records)), Err(ChainError::Broken { seq: 4, expected: 4 }));
    }

    #[test]
    fn a_deleted_record_is_detected() {
        let mut records = chain(5);
        records.remove(1);
        assert_eq!(verify_chain(ok(records)), Err(ChainError::Broken { seq: 3, expected: 2 }));
    }
}
