//! How values are encoded. Records are small prost messages, so fields can be added without a
//! migration; fixed-size values are raw big-endian.

use prost::Message;

use super::log::ConversationSummary;
use crate::conversation::{Kind, Role, Settings};

/// The stored form of [`ConversationSummary`].
#[derive(Clone, PartialEq, Message)]
struct ConversationRecord {
    /// 1 = direct, 2 = group.
    #[prost(uint32, tag = "1")]
    kind: u32,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(uint64, tag = "3")]
    created_at_ms: u64,
    #[prost(uint64, tag = "4")]
    last_seq: u64,
    #[prost(uint32, tag = "5")]
    member_count: u32,
    /// Stored inverted so that a record written before receipts existed reads as "on".
    #[prost(bool, tag = "6")]
    receipts_off: bool,
    #[prost(uint64, tag = "7")]
    retention_secs: u64,
}

pub(crate) fn encode_summary(summary: &ConversationSummary) -> Vec<u8> {
    ConversationRecord {
        kind: match summary.kind {
            Kind::Direct => 1,
            Kind::Group => 2,
        },
        name: summary.name.clone(),
        created_at_ms: summary.created_at_ms,
        last_seq: summary.last_seq,
        member_count: summary.member_count,
        receipts_off: !summary.settings.read_receipts,
        retention_secs: summary.settings.retention_secs,
    }
    .encode_to_vec()
}

pub(crate) fn decode_summary(bytes: &[u8]) -> Result<ConversationSummary, String> {
    let record = ConversationRecord::decode(bytes).map_err(|e| e.to_string())?;
    let kind = match record.kind {
        1 => Kind::Direct,
        2 => Kind::Group,
        other => return Err(format!("unknown conversation kind {other}")),
    };
    Ok(ConversationSummary {
        kind,
        name: record.name,
        created_at_ms: record.created_at_ms,
        last_seq: record.last_seq,
        member_count: record.member_count,
        settings: Settings { read_receipts: !record.receipts_off, retention_secs: record.retention_secs },
    })
}

pub(crate) fn encode_role(role: Role) -> [u8; 1] {
    [match role {
        Role::Member => 1,
        Role::Admin => 2,
        Role::Owner => 3,
    }]
}

pub(crate) fn decode_role(bytes: &[u8]) -> Result<Role, String> {
    match bytes {
        [1] => Ok(Role::Member),
        [2] => Ok(Role::Admin),
        [3] => Ok(Role::Owner),
        other => Err(format!("bad role record {other:02x?}")),
    }
}

pub(crate) fn decode_seq(bytes: &[u8]) -> Result<u64, String> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| format!("bad sequence record {bytes:02x?}"))?;
    Ok(u64::from_be_bytes(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let summary = ConversationSummary {
            kind: Kind::Group,
            name: "ops".into(),
            created_at_ms: 7,
            last_seq: 99,
            member_count: 5000,
            settings: Settings { read_receipts: false, retention_secs: 60 },
        };
        assert_eq!(decode_summary(&encode_summary(&summary)), Ok(summary));
        for role in [Role::Member, Role::Admin, Role::Owner] {
            assert_eq!(decode_role(&encode_role(role)), Ok(role));
        }
        assert!(decode_role(&[9]).is_err());
        assert_eq!(decode_seq(&42u64.to_be_bytes()), Ok(42));
        assert!(decode_seq(&[1, 2]).is_err());
    }
}
