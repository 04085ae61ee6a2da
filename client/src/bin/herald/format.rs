//! How log entries, receipts, roles and kinds are printed: one item a line, `key=value` pairs
//! after a leading word, enums as lowercase words.

use herald_client::pb::{self, event::Kind};
use herald_client::{Entry, EntryKind, MessageReceipts, RecallNotice, RecallProgress, RecallReason};

/// `conv=<id> seq=<n> from=<user>/<device> <text, [event summary] or [tombstone ...]>`.
pub(crate) fn entry(e: &Entry) -> String {
    let body = match &e.kind {
        EntryKind::Message { payload, .. } => one_line(&String::from_utf8_lossy(payload)),
        EntryKind::Membership(event) => format!("[{}]", event_summary(event)),
        EntryKind::Tombstone { recalled_by, reason, event_seq, .. } => {
            format!("[tombstone reason={}{} event_seq={event_seq}]", recall_reason(*reason), by(recalled_by.as_deref()))
        }
        EntryKind::Unknown => "[unknown entry]".to_owned(),
    };
    format!("conv={} seq={} from={}/{} {body}", e.conversation_id, e.seq, e.sender_user, e.sender_device)
}

/// `receipts conv=<id> seq=<n> read=<r> delivered=<d> members=<m>`: a message's counts, from
/// `herald receipts` or pushed to `herald listen`.
pub(crate) fn receipts(conversation_id: u64, m: &MessageReceipts) -> String {
    format!(
        "receipts conv={conversation_id} seq={} read={} delivered={} members={}",
        m.seq, m.read, m.delivered, m.members
    )
}

/// `recall-progress conv=<id> seq=<n> event_seq=<e> applied=<a> devices=<d>`: how many of the
/// conversation's devices have deleted a recalled message.
pub(crate) fn recall_progress(conversation_id: u64, r: &RecallProgress) -> String {
    format!(
        "recall-progress conv={conversation_id} seq={} event_seq={} applied={} devices={}",
        r.seq, r.event_seq, r.applied_devices, r.devices
    )
}

/// `recalled conv=<id> seq=<n> event_seq=<e> reason=<why>[ by=<user>]`: a recall notice.
pub(crate) fn recall_notice(n: &RecallNotice) -> String {
    format!(
        "recalled conv={} seq={} event_seq={} reason={}{}",
        n.conversation_id,
        n.seq,
        n.event_seq,
        recall_reason(n.reason),
        by(n.recalled_by.as_deref())
    )
}

/// ` by=<user>`, or nothing when the broker's own expiry acted.
fn by(user: Option<&str>) -> String {
    user.map(|u| format!(" by={u}")).unwrap_or_default()
}

/// `recalled`, `expired` or `unknown(N)`.
fn recall_reason(reason: RecallReason) -> String {
    match reason {
        RecallReason::Recalled => "recalled".to_owned(),
        RecallReason::Expired => "expired".to_owned(),
        RecallReason::Other(value) => format!("unknown({value})"),
    }
}

/// `on` or `off`.
pub(crate) fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// A membership event in a few words, such as `added carol(member)` or `renamed "Team"`.
fn event_summary(event: &pb::Event) -> String {
    let summary = match &event.kind {
        Some(Kind::Created(list)) => format!("created {}", members(list)),
        Some(Kind::MembersAdded(list)) => format!("added {}", members(list)),
        Some(Kind::MembersRemoved(list)) => format!("removed {}", members(list)),
        Some(Kind::Renamed(name)) => format!("renamed {name:?}"),
        Some(Kind::RolesChanged(list)) => format!("roles {}", members(list)),
        Some(Kind::Recalled(r)) => format!("recalled seq={}", r.seq),
        Some(Kind::SettingsChanged(s)) => {
            format!("settings read_receipts={} retention_secs={}", s.read_receipts, s.retention_secs)
        }
        Some(Kind::CallRecord(c)) => format!(
            "call {} by {} ended after {} s with {} participants",
            c.call_id,
            c.started_by_user_id,
            c.duration_ms / 1000,
            c.participants
        ),
        Some(Kind::MembershipSigned(_)) => "signed membership".to_owned(),
        None => "unknown event".to_owned(),
    };
    match event.signed_changes.len() {
        0 => summary,
        n => format!("{summary} (+{n} signed changes)"),
    }
}

fn members(list: &pb::MemberList) -> String {
    let members: Vec<String> = list.members.iter().map(|m| format!("{}({})", m.user_id, role(m.role))).collect();
    members.join(" ")
}

/// Escapes control characters (newlines included) so that a message stays on one line.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// A role as a lowercase word: `member`, `admin`, `owner` (`unknown(N)` for values this client
/// does not know).
pub(crate) fn role(value: i32) -> String {
    match pb::Role::try_from(value) {
        Ok(role) => lowercase_name(role.as_str_name(), "ROLE_"),
        Err(_) => format!("unknown({value})"),
    }
}

/// A conversation kind as a lowercase word: `direct` or `group`.
pub(crate) fn kind(value: i32) -> String {
    match pb::ConversationKind::try_from(value) {
        Ok(kind) => lowercase_name(kind.as_str_name(), "CONVERSATION_KIND_"),
        Err(_) => format!("unknown({value})"),
    }
}

fn lowercase_name(proto_name: &str, prefix: &str) -> String {
    proto_name.strip_prefix(prefix).unwrap_or(proto_name).to_lowercase()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn entry_of(kind: EntryKind) -> Entry {
        Entry {
            conversation_id: 4,
            seq: 2,
            timestamp_ms: 0,
            sender_user: "alice".into(),
            sender_device: "cli".into(),
            kind,
            expiry: None,
        }
    }

    #[test]
    fn tombstones_say_why_and_who() {
        let recalled = EntryKind::Tombstone {
            recalled_at_ms: 1,
            recalled_by: Some("alice".into()),
            reason: RecallReason::Recalled,
            event_seq: 3,
        };
        assert_eq!(
            entry(&entry_of(recalled)),
            "conv=4 seq=2 from=alice/cli [tombstone reason=recalled by=alice event_seq=3]"
        );
        let expired =
            EntryKind::Tombstone { recalled_at_ms: 1, recalled_by: None, reason: RecallReason::Expired, event_seq: 9 };
        assert_eq!(entry(&entry_of(expired)), "conv=4 seq=2 from=alice/cli [tombstone reason=expired event_seq=9]");
        let message = EntryKind::Message { client_msg_id: "m".into(), payload: Bytes::from_static(b"a\nb") };
        assert_eq!(entry(&entry_of(message)), "conv=4 seq=2 from=alice/cli a\\nb");
    }

    #[test]
    fn receipts_and_recalls_are_one_line_each() {
        let counts = MessageReceipts { seq: 2, read: 1, delivered: 2, members: 3 };
        assert_eq!(receipts(4, &counts), "receipts conv=4 seq=2 read=1 delivered=2 members=3");
        let progress = RecallProgress { seq: 2, event_seq: 5, applied_devices: 1, devices: 4 };
        assert_eq!(recall_progress(4, &progress), "recall-progress conv=4 seq=2 event_seq=5 applied=1 devices=4");
        let notice = RecallNotice {
            conversation_id: 4,
            seq: 2,
            event_seq: 5,
            recalled_by: Some("bob".into()),
            reason: RecallReason::Recalled,
        };
        assert_eq!(recall_notice(&notice), "recalled conv=4 seq=2 event_seq=5 reason=recalled by=bob");
        let expired = RecallNotice { recalled_by: None, reason: RecallReason::Other(7), ..notice };
        assert_eq!(recall_notice(&expired), "recalled conv=4 seq=2 event_seq=5 reason=unknown(7)");
    }
}
