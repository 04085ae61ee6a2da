//! Administration requests: wire messages in, authorised and validated requests out. Pure, so
//! every role and cross-organisation rule is tested without a broker.

use herald_protocol::{Body, DeviceId, ErrorCode, OrgId, UserId, pb};

use crate::audit::{AuditAction, AuditQuery};
use crate::auth::Identity;
use crate::conversation::{ConvKey, ConversationId};

/// The token role of an organisation's administrators: they manage their own organisation.
pub const ADMIN_ROLE: &str = "admin";
/// The token role of the broker's operators: they create organisations and manage any.
pub const OPERATOR_ROLE: &str = "operator";

/// Largest page a caller may ask for.
const MAX_PAGE: usize = 1000;
/// The page size for a limit of 0.
const DEFAULT_PAGE: usize = 100;

/// A refusal: the code and the message the caller sees.
pub(crate) type Refusal = (ErrorCode, String);

/// An authorised administration request.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminRequest {
    /// Serve a new organisation.
    OrgCreate { org: OrgId, settings: pb::OrgSettings },
    /// An organisation's settings.
    OrgGet { org: OrgId },
    /// Change an organisation's settings.
    OrgUpdate { org: OrgId, settings: pb::OrgSettings },
    /// Create or replace directory entries.
    UserImport { org: OrgId, users: Vec<pb::DirectoryUser> },
    /// A page of the directory.
    UserList { org: OrgId, after: Option<UserId>, limit: usize },
    /// A user's devices.
    DeviceList { org: OrgId, user: UserId },
    /// Revoke a device.
    DeviceRevoke { org: OrgId, user: UserId, device: DeviceId },
    /// A conversation's metadata.
    ConversationInspect { conv: ConvKey },
    /// Archive or unarchive a conversation (served by its shard).
    ConversationArchive { conv: ConvKey, archived: bool },
    /// A page of the audit log.
    AuditQuery { org: OrgId, query: AuditQuery, after_seq: u64, limit: usize },
    /// A consistent copy of the whole database at `path` (audited in the operator's organisation).
    Backup { org: OrgId, path: std::path::PathBuf },
}

impl AdminRequest {
    /// The organisation the request is about.
    pub fn org(&self) -> &OrgId {
        match self {
            AdminRequest::OrgCreate { org, .. }
            | AdminRequest::OrgGet { org }
            | AdminRequest::OrgUpdate { org, .. }
            | AdminRequest::UserImport { org, .. }
            | AdminRequest::UserList { org, .. }
            | AdminRequest::DeviceList { org, .. }
            | AdminRequest::DeviceRevoke { org, .. }
            | AdminRequest::AuditQuery { org, .. }
            | AdminRequest::Backup { org, .. } => org,
            AdminRequest::ConversationInspect { conv } | AdminRequest::ConversationArchive { conv, .. } => &conv.org,
        }
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    (ErrorCode::INVALID_ARGUMENT, message.into())
}

pub(crate) fn page(limit: u32) -> Result<usize, Refusal> {
    match usize::try_from(limit).unwrap_or(usize::MAX) {
        0 => Ok(DEFAULT_PAGE),
        n if n <= MAX_PAGE => Ok(n),
        _ => Err(invalid(format!("limit is at most {MAX_PAGE}"))),
    }
}

fn user(raw: &str) -> Result<UserId, Refusal> {
    UserId::new(raw).map_err(|e| invalid(format!("user_id: {e}")))
}

fn conversation(org: OrgId, raw: u64) -> Result<ConvKey, Refusal> {
    if raw == 0 {
        return Err(invalid("conversation_id is required"));
    }
    Ok(ConvKey { org, id: ConversationId::new(raw) })
}

/// The organisation a request names, as the caller may see it: empty means the caller's own; an
/// admin naming another gets NOT_FOUND, as if it did not exist.
pub(crate) fn scope(caller: &Identity, raw: &str) -> Result<OrgId, Refusal> {
    if raw.is_empty() {
        return Ok(caller.org.clone());
    }
    let org = OrgId::new(raw).map_err(|e| invalid(format!("org_id: {e}")))?;
    if org != caller.org && !caller.roles.contains(OPERATOR_ROLE) {
        return Err((ErrorCode::NOT_FOUND, format!("organisation {org} not found")));
    }
    Ok(org)
}

fn audit_query(caller: &Identity, r: pb::AuditQuery) -> Result<AdminRequest, Refusal> {
    let action = match r.action.as_str() {
        "" => None,
        name => Some(AuditAction::from_name(name).ok_or_else(|| invalid(format!("unknown audit action {name:?}")))?),
    };
    let query = AuditQuery {
        actor: (!r.actor.is_empty()).then_some(r.actor),
        action,
        since_ms: (r.since_ms != 0).then_some(r.since_ms),
        until_ms: (r.until_ms != 0).then_some(r.until_ms),
    };
    Ok(AdminRequest::AuditQuery {
        org: scope(caller, &r.org_id)?,
        query,
        after_seq: r.after_seq,
        limit: page(r.limit)?,
    })
}

/// Parses an administration request. `None` if `body` is not one.
///
/// # Errors
/// FORBIDDEN without the `admin` or `operator` role (ORG_CREATE: `operator` only); NOT_FOUND for
/// another organisation than an admin's own; INVALID_ARGUMENT for malformed fields.
pub fn parse(body: Body, caller: &Identity) -> Option<Result<AdminRequest, Refusal>> {
    let is_request = matches!(
        body,
        Body::OrgCreate(_)
            | Body::OrgGet(_)
            | Body::OrgUpdate(_)
            | Body::UserImport(_)
            | Body::UserList(_)
            | Body::DeviceList(_)
            | Body::DeviceRevoke(_)
            | Body::ConversationInspect(_)
            | Body::ConversationArchive(_)
            | Body::AuditQuery(_)
            | Body::Backup(_)
    );
    if !is_request {
        return None;
    }
    let operator = caller.roles.contains(OPERATOR_ROLE);
    let admin = operator || caller.roles.contains(ADMIN_ROLE);
    let parsed = (|| {
        if !admin {
            return Err((ErrorCode::FORBIDDEN, "administration needs the admin or operator role".into()));
        }
        Ok(Some(match body {
            Body::OrgCreate(r) => {
                if !operator {
                    return Err((ErrorCode::FORBIDDEN, "creating organisations needs the operator role".into()));
                }
                let org = OrgId::new(r.org_id.as_str()).map_err(|e| invalid(format!("org_id: {e}")))?;
                AdminRequest::OrgCreate { org, settings: r.settings.unwrap_or_default() }
            }
            Body::OrgGet(r) => AdminRequest::OrgGet { org: scope(caller, &r.org_id)? },
            Body::OrgUpdate(r) => {
                AdminRequest::OrgUpdate { org: scope(caller, &r.org_id)?, settings: r.settings.unwrap_or_default() }
            }
            Body::UserImport(r) => AdminRequest::UserImport { org: scope(caller, &r.org_id)?, users: r.users },
            Body::UserList(r) => {
                let after = if r.after_user_id.is_empty() { None } else { Some(user(&r.after_user_id)?) };
                AdminRequest::UserList { org: scope(caller, &r.org_id)?, after, limit: page(r.limit)? }
            }
            Body::DeviceList(r) => AdminRequest::DeviceList { org: scope(caller, &r.org_id)?, user: user(&r.user_id)? },
            Body::DeviceRevoke(r) => AdminRequest::DeviceRevoke {
                org: scope(caller, &r.org_id)?,
                user: user(&r.user_id)?,
                device: DeviceId::new(r.device_id.as_str()).map_err(|e| invalid(format!("device_id: {e}")))?,
            },
            Body::ConversationInspect(r) => {
                AdminRequest::ConversationInspect { conv: conversation(scope(caller, &r.org_id)?, r.conversation_id)? }
            }
            Body::ConversationArchive(r) => AdminRequest::ConversationArchive {
                conv: conversation(scope(caller, &r.org_id)?, r.conversation_id)?,
                archived: r.archived,
            },
            Body::AuditQuery(r) => audit_query(caller, r)?,
            Body::Backup(r) => {
                if !operator {
                    return Err((ErrorCode::FORBIDDEN, "backups need the operator role".into()));
                }
                let path = std::path::PathBuf::from(r.path);
                if !path.is_absolute() {
                    return Err(invalid("the backup path must be absolute"));
                }
                AdminRequest::Backup { org: caller.org.clone(), path }
            }
            _ => return Ok(None),
        }))
    })();
    parsed.transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Roles;

    fn caller(roles: &[&str]) -> Identity {
        Identity {
            org: OrgId::new("acme").expect("valid"),
            user: UserId::new("root").expect("valid"),
            device: DeviceId::new("cli").expect("valid"),
            roles: Roles::new(roles.iter().map(|r| (*r).to_owned()).collect()),
            expires_at_ms: 0,
            token_id: None,
        }
    }

    fn code(body: impl Into<Body>, roles: &[&str]) -> Option<ErrorCode> {
        parse(body.into(), &caller(roles)).expect("an admin request").err().map(|(code, _)| code)
    }

    #[test]
    fn roles_and_organisations_decide_who_may_do_what() {
        let get_other = pb::OrgGet { org_id: "globex".into() };
        let create = pb::OrgCreate { org_id: "globex".into(), settings: None };
        assert_eq!(code(pb::OrgGet::default(), &[]), Some(ErrorCode::FORBIDDEN), "no role");
        assert_eq!(code(pb::OrgGet::default(), &["admin"]), None, "own organisation");
        assert_eq!(code(get_other.clone(), &["admin"]), Some(ErrorCode::NOT_FOUND), "another organisation");
        assert_eq!(code(get_other, &["operator"]), None, "operators see every organisation");
        assert_eq!(code(create.clone(), &["admin"]), Some(ErrorCode::FORBIDDEN), "admins do not create");
        assert_eq!(code(create, &["operator"]), None);
        let backup = pb::Backup { path: "/var/backups/herald".into() };
        assert_eq!(code(backup.clone(), &["admin"]), Some(ErrorCode::FORBIDDEN), "backups are the operator's");
        assert_eq!(code(backup, &["operator"]), None);
        assert_eq!(code(pb::Backup { path: "relative".into() }, &["operator"]), Some(ErrorCode::INVALID_ARGUMENT));
    }

    #[test]
    fn malformed_fields_are_invalid_arguments() {
        let admin = &["admin"];
        assert_eq!(
            code(pb::DeviceRevoke { user_id: "alice".into(), ..Default::default() }, admin),
            Some(ErrorCode::INVALID_ARGUMENT)
        );
        assert_eq!(code(pb::ConversationInspect::default(), admin), Some(ErrorCode::INVALID_ARGUMENT));
        assert_eq!(code(pb::UserList { limit: 5000, ..Default::default() }, admin), Some(ErrorCode::INVALID_ARGUMENT));
        assert_eq!(
            code(pb::AuditQuery { action: "nope".into(), ..Default::default() }, admin),
            Some(ErrorCode::INVALID_ARGUMENT)
        );
        assert_eq!(code(pb::OrgGet { org_id: "bad org!".into() }, admin), Some(ErrorCode::INVALID_ARGUMENT));
        assert!(parse(Body::Ping(pb::Ping::default()), &caller(admin)).is_none(), "not administration");
        let answer = Body::OrgInfo(pb::OrgInfo::default());
        assert!(parse(answer, &caller(&[])).is_none(), "a broker-to-client type is UNEXPECTED_FRAME, not FORBIDDEN");
    }
}
