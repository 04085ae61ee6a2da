//! What is audited.

use herald_protocol::OrgId;

/// The kinds of audited actions. Their names are stable: exports and queries use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A session opened.
    Login,
    /// A HELLO was refused (target: the session; details: the code, the remote address, and
    /// whether the token's signature had been verified: if not, org and actor are only claimed).
    LoginFailed,
    /// A group was created (target: the conversation; details: the members).
    GroupCreated,
    /// Members were added or removed.
    MembersChanged,
    /// Roles changed, including ownership transfers.
    RolesChanged,
    /// A member left a group.
    MemberLeft,
    /// A message was recalled by a member or an admin.
    MessageRecalled,
    /// A message expired (a recall by the broker).
    MessageExpired,
    /// A conversation's settings changed.
    SettingsChanged,
    /// An admin archived a conversation (read-only).
    ConversationArchived,
    /// An admin made an archived conversation writable again.
    ConversationUnarchived,
    /// An operator started serving an organisation (details: its settings).
    OrgCreated,
    /// An organisation's settings changed (details: the new values).
    OrgSettingsChanged,
    /// Users were imported into the directory (details: counts).
    DirectoryImported,
    /// An admin revoked a device (target: user/device).
    DeviceRevoked,
    /// An admin read the audit log (details: the filter).
    AuditQueried,
    /// An operator took a backup of the database (target: the path).
    BackupTaken,
    /// A DING was sent, or sent again (details: recipients, policy or the DING it repeats).
    DingSent,
    /// A step of a DING's ladder fired (details: the step, its channel, how many it reached).
    DingEscalated,
    /// A recipient acknowledged a DING.
    DingAcknowledged,
    /// The sender cancelled a DING.
    DingCancelled,
    /// A check-in was flagged (target `user/check_in_id`; details: the flags).
    AttendanceFlagged,
    /// An organisation's attendance rules were replaced.
    AttendanceRulesChanged,
    /// A user's attendance device binding was changed by an administrator.
    AttendanceDeviceRebound,
    /// An attendance report (payroll export) was read.
    AttendanceExported,
    /// A call started (target the call id; details: conversation, invitees).
    CallStarted,
    /// A device joined a call (target `call_id/user/device`).
    CallJoined,
    /// A device left a call (target `call_id/user/device`; details: why).
    CallLeft,
    /// A call's recording flag changed (details: `on`).
    CallRecording,
    /// A call ended (details: reason, duration, participants).
    CallEnded,
    /// A device published end-to-end keys (target `user/device`; details: version, whether
    /// they replace other keys).
    KeysPublished,
    /// A request inside a session was refused NOT_FOUND or FORBIDDEN (target: the request's
    /// frame type; details: the code, the broker's message, and how many refusals of the
    /// session went unaudited before it, over the per-session budget). Recorded in the caller's
    /// organisation: probing another organisation's ids leaves a trace at home.
    AccessDenied,
}

impl AuditAction {
    /// Every action, for parsing and documentation.
    pub const ALL: [AuditAction; 32] = [
        AuditAction::Login,
        AuditAction::LoginFailed,
        AuditAction::GroupCreated,
        AuditAction::MembersChanged,
        AuditAction::RolesChanged,
        AuditAction::MemberLeft,
        AuditAction::MessageRecalled,
        AuditAction::MessageExpired,
        AuditAction::SettingsChanged,
        AuditAction::ConversationArchived,
        AuditAction::ConversationUnarchived,
        AuditAction::OrgCreated,
        AuditAction::OrgSettingsChanged,
        AuditAction::DirectoryImported,
        AuditAction::DeviceRevoked,
        AuditAction::AuditQueried,
        AuditAction::BackupTaken,
        AuditAction::DingSent,
        AuditAction::DingEscalated,
        AuditAction::DingAcknowledged,
        AuditAction::DingCancelled,
        AuditAction::AttendanceFlagged,
        AuditAction::AttendanceRulesChanged,
        AuditAction::AttendanceDeviceRebound,
        AuditAction::AttendanceExported,
        AuditAction::CallStarted,
        AuditAction::CallJoined,
        AuditAction::CallLeft,
        AuditAction::CallRecording,
        AuditAction::CallEnded,
        AuditAction::KeysPublished,
        AuditAction::AccessDenied,
    ];

    /// The action's stable name.
    pub fn name(self) -> &'static str {
        match self {
            AuditAction::Login => "login",
            AuditAction::LoginFailed => "login_failed",
            AuditAction::GroupCreated => "group_created",
            AuditAction::MembersChanged => "members_changed",
            AuditAction::RolesChanged => "roles_changed",
            AuditAction::MemberLeft => "member_left",
            AuditAction::MessageRecalled => "message_recalled",
            AuditAction::MessageExpired => "message_expired",
            AuditAction::SettingsChanged => "settings_changed",
            AuditAction::ConversationArchived => "conversation_archived",
            AuditAction::ConversationUnarchived => "conversation_unarchived",
            AuditAction::OrgCreated => "org_created",
            AuditAction::OrgSettingsChanged => "org_settings_changed",
            AuditAction::DirectoryImported => "directory_imported",
            AuditAction::DeviceRevoked => "device_revoked",
            AuditAction::AuditQueried => "audit_queried",
            AuditAction::BackupTaken => "backup_taken",
            AuditAction::DingSent => "ding_sent",
            AuditAction::DingEscalated => "ding_escalated",
            AuditAction::DingAcknowledged => "ding_acknowledged",
            AuditAction::DingCancelled => "ding_cancelled",
            AuditAction::AttendanceFlagged => "attendance_flagged",
            AuditAction::AttendanceRulesChanged => "attendance_rules_changed",
            AuditAction::AttendanceDeviceRebound => "attendance_device_rebound",
            AuditAction::AttendanceExported => "attendance_exported",
            AuditAction::CallStarted => "call_started",
            AuditAction::CallJoined => "call_joined",
            AuditAction::CallLeft => "call_left",
            AuditAction::CallRecording => "call_recording",
            AuditAction::CallEnded => "call_ended",
            AuditAction::KeysPublished => "keys_published",
            AuditAction::AccessDenied => "access_denied",
        }
    }

    /// The action with this name.
    pub fn from_name(name: &str) -> Option<AuditAction> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// An audited action, before the log gives it a place in its organisation's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The organisation whose chain records it.
    pub org: OrgId,
    /// When it happened, Unix milliseconds.
    pub at_ms: u64,
    /// The user who acted (empty for the broker itself).
    pub actor: String,
    /// The actor's device (empty when not known).
    pub device: String,
    /// What was done.
    pub action: AuditAction,
    /// What it was done to: a conversation (`c…`), a message (`c…/seq`), a user.
    pub target: String,
    /// Further metadata, `key=value` pairs; never payloads.
    pub details: Vec<(String, String)>,
}
