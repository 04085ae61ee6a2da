//! How values are encoded. Records are small prost messages, so fields can be added without a
//! migration; fixed-size values are raw big-endian.

use prost::Message;

use super::log::ConversationSummary;
use herald_protocol::DeviceId;

use crate::conversation::{ChainHead, Kind, Role, Settings};
use crate::receipts::MemberCursor;
use crate::timer::{ScheduledMessage, Timer, TimerKind, TimerWhat};

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
    #[prost(bool, tag = "8")]
    archived: bool,
    #[prost(bool, tag = "9")]
    end_to_end: bool,
    /// The signed membership chain's length (0: no chain).
    #[prost(uint64, tag = "10")]
    chain_length: u64,
    /// The chain's head hash: 32 bytes, absent while the chain is empty.
    #[prost(bytes = "vec", tag = "11")]
    chain_head: Vec<u8>,
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
        archived: summary.settings.archived,
        end_to_end: summary.end_to_end,
        chain_length: summary.chain.length,
        chain_head: if summary.chain.is_empty() { Vec::new() } else { summary.chain.hash.to_vec() },
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
    let chain = match (record.chain_length, record.chain_head.as_slice()) {
        (0, []) => ChainHead::default(),
        (length, head) if length > 0 => {
            let hash = head.try_into().map_err(|_| format!("bad membership chain head of {} bytes", head.len()))?;
            ChainHead { length, hash }
        }
        _ => return Err("a membership chain head without a chain".into()),
    };
    Ok(ConversationSummary {
        kind,
        name: record.name,
        created_at_ms: record.created_at_ms,
        last_seq: record.last_seq,
        member_count: record.member_count,
        settings: Settings {
            read_receipts: !record.receipts_off,
            retention_secs: record.retention_secs,
            archived: record.archived,
        },
        end_to_end: record.end_to_end,
        chain,
    })
}

/// The stored form of a member's [`MemberCursor`].
#[derive(Clone, PartialEq, Message)]
struct MemberCursorRecord {
    #[prost(uint64, tag = "1")]
    joined_seq: u64,
    /// 0 while a member.
    #[prost(uint64, tag = "2")]
    left_seq: u64,
    #[prost(uint64, tag = "3")]
    read: u64,
    #[prost(uint64, tag = "4")]
    delivered: u64,
}

pub(crate) fn encode_member_cursor(cursor: &MemberCursor) -> Vec<u8> {
    MemberCursorRecord {
        joined_seq: cursor.joined_seq,
        left_seq: cursor.left_seq.unwrap_or(0),
        read: cursor.read,
        delivered: cursor.delivered,
    }
    .encode_to_vec()
}

pub(crate) fn decode_member_cursor(bytes: &[u8]) -> Result<MemberCursor, String> {
    let r = MemberCursorRecord::decode(bytes).map_err(|e| e.to_string())?;
    let left_seq = (r.left_seq != 0).then_some(r.left_seq);
    Ok(MemberCursor { joined_seq: r.joined_seq, left_seq, read: r.read, delivered: r.delivered })
}

/// The stored form of a [`Timer`]; the key holds its id.
#[derive(Clone, PartialEq, Message)]
struct TimerRecord {
    #[prost(uint64, tag = "1")]
    due_ms: u64,
    /// Expire: seconds after everyone read the message (0 for a fixed time).
    #[prost(uint32, tag = "2")]
    after_read_secs: u32,
    /// Deliver: the held message. Absent for an expiry.
    #[prost(message, optional, tag = "3")]
    scheduled: Option<ScheduledRecord>,
}

#[derive(Clone, PartialEq, Message)]
struct ScheduledRecord {
    #[prost(string, tag = "1")]
    device: String,
    #[prost(bytes = "bytes", tag = "2")]
    payload: bytes::Bytes,
    #[prost(uint64, tag = "3")]
    expire_at_ms: u64,
    #[prost(uint32, tag = "4")]
    expire_after_read_secs: u32,
}

pub(crate) fn encode_timer(timer: &Timer) -> Vec<u8> {
    let record = match &timer.kind {
        TimerKind::Expire { after_read_secs } => {
            TimerRecord { due_ms: timer.due_ms, after_read_secs: *after_read_secs, scheduled: None }
        }
        TimerKind::Ding => TimerRecord { due_ms: timer.due_ms, after_read_secs: 0, scheduled: None },
        TimerKind::Deliver(m) => TimerRecord {
            due_ms: timer.due_ms,
            after_read_secs: 0,
            scheduled: Some(ScheduledRecord {
                device: m.device.to_string(),
                payload: m.payload.clone(),
                expire_at_ms: m.expire_at_ms,
                expire_after_read_secs: m.expire_after_read_secs,
            }),
        },
    };
    record.encode_to_vec()
}

pub(crate) fn decode_timer(what: &TimerWhat, bytes: &[u8]) -> Result<Timer, String> {
    let record = TimerRecord::decode(bytes).map_err(|e| e.to_string())?;
    let kind = match (what, record.scheduled) {
        (TimerWhat::Expire(_), None) => TimerKind::Expire { after_read_secs: record.after_read_secs },
        (TimerWhat::Ding { .. }, None) => TimerKind::Ding,
        (TimerWhat::Deliver { .. }, Some(s)) => TimerKind::Deliver(ScheduledMessage {
            device: DeviceId::new(s.device).map_err(|e| e.to_string())?,
            payload: s.payload,
            expire_at_ms: s.expire_at_ms,
            expire_after_read_secs: s.expire_after_read_secs,
        }),
        _ => return Err("timer record does not match its key".into()),
    };
    Ok(Timer { due_ms: record.due_ms, kind })
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
            settings: Settings { read_receipts: false, retention_secs: 60, archived: true },
            end_to_end: true,
            chain: ChainHead { length: 3, hash: [9; 32] },
        };
        assert_eq!(decode_summary(&encode_summary(&summary)), Ok(summary.clone()));
        let plain = ConversationSummary { end_to_end: false, chain: ChainHead::default(), ..summary };
        assert_eq!(decode_summary(&encode_summary(&plain)), Ok(plain));
        for role in [Role::Member, Role::Admin, Role::Owner] {
            assert_eq!(decode_role(&encode_role(role)), Ok(role));
        }
        assert!(decode_role(&[9]).is_err());
        assert_eq!(decode_seq(&42u64.to_be_bytes()), Ok(42));
        let cursor = MemberCursor { joined_seq: 3, left_seq: Some(9), read: 7, delivered: 8 };
        assert_eq!(decode_member_cursor(&encode_member_cursor(&cursor)), Ok(cursor));
        let held = ScheduledMessage {
            device: DeviceId::new("d1").expect("valid"),
            payload: bytes::Bytes::from_static(b"ciphertext"),
            expire_at_ms: 5,
            expire_after_read_secs: 6,
        };
        let timer = Timer { due_ms: 77, kind: TimerKind::Deliver(held) };
        let what =
            TimerWhat::Deliver { sender: herald_protocol::UserId::new("a").expect("valid"), client_msg_id: "m".into() };
        assert_eq!(decode_timer(&what, &encode_timer(&timer)), Ok(timer.clone()));
        assert!(decode_timer(&TimerWhat::Expire(1), &encode_timer(&timer)).is_err());
        assert!(decode_seq(&[1, 2]).is_err());
    }
}
