//! How log entries, receipts and recall notices are printed, by `history` and `listen` alike:
//! for people one item a line, `key=value` pairs after a leading word, enums as lowercase words;
//! for scripts one [`Item`] as a JSON object with a `type` field.

use herald_client::pb::{self, event::Kind};
use herald_client::{Entry, EntryKind, MessageReceipts, RecallNotice, RecallProgress, RecallReason};
use serde::Serialize;

use crate::output::{Output, enum_word};

/// One thing `listen` prints, or one entry of `history`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Item {
    /// A log entry: a message, an event or a tombstone.
    Entry(EntryOut),
    /// The receipt counts of a message this user sent.
    Receipts(ReceiptsOut),
    /// How far a recall this user made has reached the conversation's devices.
    RecallProgress(RecallProgressOut),
    /// A message was recalled or expired.
    Recalled(RecallNoticeOut),
    /// The broker dropped deliveries because this client read too slowly.
    Resync {
        /// How many bytes were dropped.
        dropped_bytes: u64,
        /// Whether the missed entries follow (with `listen --resync`).
        catching_up: bool,
    },
    /// A message of an end-to-end conversation this device cannot read (`--e2e-keys`).
    Undecryptable {
        /// The entry, its payload as the broker delivered it.
        entry: EntryOut,
        /// Why it cannot be read.
        reason: String,
    },
    /// Something about end-to-end encryption worth knowing: changed keys, a refused membership
    /// change or envelope.
    E2eWarning {
        /// What happened.
        warning: String,
    },
}

impl Output for Item {
    fn human(&self) -> String {
        match self {
            Item::Entry(e) => e.line.clone(),
            Item::Receipts(r) => receipts(r.conversation_id, &r.counts()),
            Item::RecallProgress(r) => recall_progress(r.conversation_id, &r.progress()),
            Item::Recalled(n) => n.line.clone(),
            Item::Resync { dropped_bytes, catching_up: true } => {
                format!("resync dropped_bytes={dropped_bytes}: catching up from the log")
            }
            Item::Resync { dropped_bytes, catching_up: false } => {
                format!("resync dropped_bytes={dropped_bytes}: entries were missed (--resync fetches them)")
            }
            Item::Undecryptable { entry, reason } => format!(
                "undecryptable conv={} seq={} from={}/{}: {reason}",
                entry.conversation_id, entry.seq, entry.sender_user, entry.sender_device
            ),
            Item::E2eWarning { warning } => format!("e2e-warning {warning}"),
        }
    }
}

/// A log entry for output; its human line is fixed when it is built.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EntryOut {
    #[serde(skip)]
    line: String,
    conversation_id: u64,
    seq: u64,
    timestamp_ms: u64,
    sender_user: String,
    sender_device: String,
    #[serde(flatten)]
    body: EntryBody,
    /// When the broker will recall the message by itself, if its sender asked.
    expiry: Option<ExpiryOut>,
    /// Whether the message arrived end-to-end encrypted and was decrypted here.
    end_to_end: bool,
}

/// What an entry is, under its `kind`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum EntryBody {
    Message {
        client_msg_id: String,
        /// The payload when it is UTF-8 (most CLI messages); `null` otherwise.
        text: Option<String>,
        /// The payload in hex when it is not UTF-8 (ciphertext); `null` otherwise.
        payload_hex: Option<String>,
    },
    Event {
        event: EventOut,
    },
    Tombstone {
        reason: String,
        recalled_by: Option<String>,
        recalled_at_ms: u64,
        event_seq: u64,
    },
    Unknown,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct ExpiryOut {
    at_ms: Option<u64>,
    after_read_secs: Option<u64>,
}

/// A conversation event, under its `type`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EventOut {
    Created {
        members: Vec<MemberOut>,
    },
    MembersAdded {
        members: Vec<MemberOut>,
    },
    MembersRemoved {
        members: Vec<MemberOut>,
    },
    Renamed {
        name: String,
    },
    RolesChanged {
        members: Vec<MemberOut>,
    },
    Recalled {
        seq: u64,
        recalled_by: Option<String>,
        reason: String,
    },
    SettingsChanged(SettingsOut),
    CallRecord {
        call_id: u64,
        started_by: String,
        duration_ms: u64,
        participants: u32,
    },
    /// The conversation's signed membership grew by these changes (end-to-end groups).
    MembershipSigned {
        changes: usize,
    },
    Unknown,
}

/// A member and its role (`owner`, `admin` or `member`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemberOut {
    pub(crate) user_id: String,
    pub(crate) role: String,
}

impl MemberOut {
    pub(crate) fn of(member: &pb::Member) -> Self {
        MemberOut { user_id: member.user_id.clone(), role: role(member.role) }
    }
}

/// A conversation's settings.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct SettingsOut {
    pub(crate) read_receipts: bool,
    /// Seconds after sending that messages are recalled; 0 keeps them.
    pub(crate) retention_secs: u64,
    pub(crate) archived: bool,
}

impl SettingsOut {
    /// What a broker that sends no settings has: receipts on, no retention.
    pub(crate) fn defaults() -> Self {
        SettingsOut { read_receipts: true, retention_secs: 0, archived: false }
    }
}

impl From<pb::ConversationSettings> for SettingsOut {
    fn from(s: pb::ConversationSettings) -> Self {
        SettingsOut { read_receipts: s.read_receipts, retention_secs: s.retention_secs, archived: s.archived }
    }
}

impl From<&Entry> for EntryOut {
    fn from(e: &Entry) -> Self {
        let body = match &e.kind {
            EntryKind::Message { client_msg_id, payload } => {
                let text = std::str::from_utf8(payload).ok().map(str::to_owned);
                let payload_hex = text.is_none().then(|| hex::encode(payload));
                EntryBody::Message { client_msg_id: client_msg_id.clone(), text, payload_hex }
            }
            EntryKind::Membership(event) => EntryBody::Event { event: EventOut::of(event) },
            EntryKind::Tombstone { recalled_at_ms, recalled_by, reason, event_seq } => EntryBody::Tombstone {
                reason: recall_reason(*reason),
                recalled_by: recalled_by.clone(),
                recalled_at_ms: *recalled_at_ms,
                event_seq: *event_seq,
            },
            EntryKind::Unknown => EntryBody::Unknown,
        };
        let expiry = e.expiry.map(|x| ExpiryOut { at_ms: x.at_ms, after_read_secs: x.after_read.map(|d| d.as_secs()) });
        EntryOut {
            line: entry(e),
            conversation_id: e.conversation_id,
            seq: e.seq,
            timestamp_ms: e.timestamp_ms,
            sender_user: e.sender_user.clone(),
            sender_device: e.sender_device.clone(),
            body,
            expiry,
            end_to_end: e.end_to_end,
        }
    }
}

impl EventOut {
    fn of(event: &pb::Event) -> Self {
        let members = |list: &pb::MemberList| list.members.iter().map(MemberOut::of).collect();
        match &event.kind {
            Some(Kind::Created(list)) => EventOut::Created { members: members(list) },
            Some(Kind::MembersAdded(list)) => EventOut::MembersAdded { members: members(list) },
            Some(Kind::MembersRemoved(list)) => EventOut::MembersRemoved { members: members(list) },
            Some(Kind::Renamed(name)) => EventOut::Renamed { name: name.clone() },
            Some(Kind::RolesChanged(list)) => EventOut::RolesChanged { members: members(list) },
            Some(Kind::Recalled(r)) => EventOut::Recalled {
                seq: r.seq,
                recalled_by: (!r.recalled_by_user_id.is_empty()).then(|| r.recalled_by_user_id.clone()),
                reason: enum_word(
                    r.reason,
                    pb::RecallReason::try_from(r.reason).ok().map(|r| r.as_str_name()),
                    "RECALL_REASON_",
                ),
            },
            Some(Kind::SettingsChanged(s)) => EventOut::SettingsChanged((*s).into()),
            Some(Kind::CallRecord(c)) => EventOut::CallRecord {
                call_id: c.call_id,
                started_by: c.started_by_user_id.clone(),
                duration_ms: c.duration_ms,
                participants: c.participants,
            },
            Some(Kind::MembershipSigned(_)) => EventOut::MembershipSigned { changes: event.signed_changes.len() },
            None => EventOut::Unknown,
        }
    }
}

/// A message's receipt counts.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct ReceiptsOut {
    pub(crate) conversation_id: u64,
    pub(crate) seq: u64,
    pub(crate) read: u32,
    pub(crate) delivered: u32,
    pub(crate) members: u32,
}

impl ReceiptsOut {
    pub(crate) fn of(conversation_id: u64, m: &MessageReceipts) -> Self {
        ReceiptsOut { conversation_id, seq: m.seq, read: m.read, delivered: m.delivered, members: m.members }
    }

    pub(crate) fn counts(&self) -> MessageReceipts {
        MessageReceipts { seq: self.seq, read: self.read, delivered: self.delivered, members: self.members }
    }
}

/// A recall's progress through the conversation's devices.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct RecallProgressOut {
    conversation_id: u64,
    seq: u64,
    event_seq: u64,
    applied_devices: u32,
    devices: u32,
}

impl RecallProgressOut {
    pub(crate) fn of(conversation_id: u64, r: &RecallProgress) -> Self {
        let (seq, event_seq, applied_devices, devices) = (r.seq, r.event_seq, r.applied_devices, r.devices);
        RecallProgressOut { conversation_id, seq, event_seq, applied_devices, devices }
    }

    fn progress(&self) -> RecallProgress {
        let (seq, event_seq, applied_devices, devices) = (self.seq, self.event_seq, self.applied_devices, self.devices);
        RecallProgress { seq, event_seq, applied_devices, devices }
    }
}

/// A recall notice.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RecallNoticeOut {
    #[serde(skip)]
    line: String,
    conversation_id: u64,
    seq: u64,
    event_seq: u64,
    reason: String,
    recalled_by: Option<String>,
}

impl From<&RecallNotice> for RecallNoticeOut {
    fn from(n: &RecallNotice) -> Self {
        RecallNoticeOut {
            line: recall_notice(n),
            conversation_id: n.conversation_id,
            seq: n.seq,
            event_seq: n.event_seq,
            reason: recall_reason(n.reason),
            recalled_by: n.recalled_by.clone(),
        }
    }
}

/// `conv=<id> seq=<n> from=<user>/<device> <text, [event summary] or [tombstone ...]>`.
pub(crate) fn entry(e: &Entry) -> String {
    let body = match &e.kind {
        EntryKind::Message { payload, .. } if e.end_to_end => {
            format!("[e2e] {}", one_line(&String::from_utf8_lossy(payload)))
        }
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

/// A role as a lowercase word: `member`, `admin`, `owner`.
pub(crate) fn role(value: i32) -> String {
    enum_word(value, pb::Role::try_from(value).ok().map(|r| r.as_str_name()), "ROLE_")
}

/// A conversation kind as a lowercase word: `direct` or `group`.
pub(crate) fn kind(value: i32) -> String {
    enum_word(value, pb::ConversationKind::try_from(value).ok().map(|k| k.as_str_name()), "CONVERSATION_KIND_")
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
            end_to_end: false,
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
