//! How log entries, roles and kinds are printed: one entry a line, enums as lowercase words.

use herald_client::pb::{self, event::Kind};
use herald_client::{Entry, EntryKind};

/// `conv=<id> seq=<n> from=<user>/<device> <text or [event summary]>`.
pub(crate) fn entry(e: &Entry) -> String {
    let body = match &e.kind {
        EntryKind::Message { payload, .. } => one_line(&String::from_utf8_lossy(payload)),
        EntryKind::Membership(event) => format!("[{}]", event_summary(event)),
        EntryKind::Unknown => "[unknown entry]".to_owned(),
    };
    format!("conv={} seq={} from={}/{} {body}", e.conversation_id, e.seq, e.sender_user, e.sender_device)
}

/// A membership event in a few words, such as `added carol(member)` or `renamed "Team"`.
fn event_summary(event: &pb::Event) -> String {
    match &event.kind {
        Some(Kind::Created(list)) => format!("created {}", members(list)),
        Some(Kind::MembersAdded(list)) => format!("added {}", members(list)),
        Some(Kind::MembersRemoved(list)) => format!("removed {}", members(list)),
        Some(Kind::Renamed(name)) => format!("renamed {name:?}"),
        Some(Kind::RolesChanged(list)) => format!("roles {}", members(list)),
        Some(Kind::Recalled(r)) => format!("recalled seq={}", r.seq),
        Some(Kind::SettingsChanged(s)) => {
            format!("settings read_receipts={} retention_secs={}", s.read_receipts, s.retention_secs)
        }
        None => "unknown event".to_owned(),
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
