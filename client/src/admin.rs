//! Administration (docs/PROTOCOL.md §14): organisations, the user directory, devices,
//! conversations and the audit log, for sessions whose token has the `admin` role (its own
//! organisation) or the `operator` role (any organisation).

use herald_protocol::pb;

use crate::{Client, ClientError};

/// Administration requests about one organisation. Get one with [`Client::admin`] (the
/// session's own organisation) or [`Client::admin_of`] (operators: any).
///
/// Every method fails with FORBIDDEN without the role, and with NOT_FOUND for an organisation
/// the caller may not see (or that does not exist).
///
/// # Cancel safety
/// Dropping a request's future does not withdraw the request: a change may still be applied.
#[derive(Debug, Clone)]
pub struct Admin<'a> {
    pub(crate) client: &'a Client,
    org_id: String,
}

impl Client {
    /// Administration of the session's own organisation.
    pub fn admin(&self) -> Admin<'_> {
        Admin { client: self, org_id: String::new() }
    }

    /// Administration of `org_id` (operators; admins only for their own).
    pub fn admin_of(&self, org_id: &str) -> Admin<'_> {
        Admin { client: self, org_id: org_id.to_owned() }
    }
}

impl Admin<'_> {
    pub(crate) fn org_id(&self) -> String {
        self.org_id.clone()
    }

    /// Starts serving the organisation with these overrides (operators only).
    ///
    /// # Errors
    /// CONFLICT if it exists; FORBIDDEN without the operator role.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the organisation created or not; a repeat gets CONFLICT if it
    /// was, which [`Admin::org`] confirms.
    pub async fn create_org(&self, settings: pb::OrgSettings) -> Result<pb::OrgInfo, ClientError> {
        self.client.call(pb::OrgCreate { org_id: self.org_id(), settings: Some(settings) }).await
    }

    /// The organisation's overrides and effective settings.
    ///
    /// # Errors
    /// See [`Admin`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn org(&self) -> Result<pb::OrgInfo, ClientError> {
        self.client.call(pb::OrgGet { org_id: self.org_id() }).await
    }

    /// Changes the settings `settings` sets; takes effect for the next request of any session.
    ///
    /// # Errors
    /// See [`Admin`].
    ///
    /// # Cancel safety
    /// Dropping the future may leave the update applied or not; repeating it is harmless (it
    /// merges the same values again, and is audited again).
    pub async fn update_org(&self, settings: pb::OrgSettings) -> Result<pb::OrgInfo, ClientError> {
        self.client.call(pb::OrgUpdate { org_id: self.org_id(), settings: Some(settings) }).await
    }

    /// Creates or replaces directory entries, all or none.
    ///
    /// # Errors
    /// INVALID_ARGUMENT naming the first bad entry (bad id, duplicate, unknown manager, a cycle
    /// of managers, a text over 256 bytes); nothing is written then.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the whole import applied or none of it; repeating it is
    /// harmless (each entry replaces itself; the counts then show them as updated).
    pub async fn import_users(&self, users: Vec<pb::DirectoryUser>) -> Result<pb::ImportResult, ClientError> {
        self.client.call(pb::UserImport { org_id: self.org_id(), users }).await
    }

    /// A page of the directory after `after_user_id` ("" for the first), at most `limit` (1..=1000).
    ///
    /// # Errors
    /// See [`Admin`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn list_users(&self, after_user_id: &str, limit: u32) -> Result<pb::UserPage, ClientError> {
        let request = pb::UserList { org_id: self.org_id(), after_user_id: after_user_id.to_owned(), limit };
        self.client.call(request).await
    }

    /// The user's devices: those online now and those revoked.
    ///
    /// # Errors
    /// See [`Admin`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn devices(&self, user_id: &str) -> Result<Vec<pb::DeviceInfo>, ClientError> {
        let page: pb::DevicePage =
            self.client.call(pb::DeviceList { org_id: self.org_id(), user_id: user_id.into() }).await?;
        Ok(page.devices)
    }

    /// Revokes a device: its sessions close with REVOKED at once and it cannot open another.
    ///
    /// # Errors
    /// See [`Admin`].
    ///
    /// # Cancel safety
    /// Dropping the future may leave the device revoked or not; repeat it: revoking is idempotent
    /// and answers with the first revocation's time.
    pub async fn revoke_device(&self, user_id: &str, device_id: &str) -> Result<pb::RevokedDevice, ClientError> {
        let request = pb::DeviceRevoke { org_id: self.org_id(), user_id: user_id.into(), device_id: device_id.into() };
        self.client.call(request).await
    }

    /// Any conversation's metadata (never its messages), member or not.
    ///
    /// # Errors
    /// NOT_FOUND if the organisation has no such conversation.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn inspect_conversation(&self, conversation_id: u64) -> Result<pb::ConversationReport, ClientError> {
        self.client.call(pb::ConversationInspect { org_id: self.org_id(), conversation_id }).await
    }

    /// Archives (read-only) or unarchives a conversation. Returns the `settings_changed` event's
    /// sequence number.
    ///
    /// # Errors
    /// NOT_FOUND if the organisation has no such conversation.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the change applied or not; repeat it: a repeat that finds
    /// the conversation already in that state writes nothing.
    pub async fn archive_conversation(&self, conversation_id: u64, archived: bool) -> Result<u64, ClientError> {
        let request = pb::ConversationArchive { org_id: self.org_id(), conversation_id, archived };
        Ok(self.client.call::<pb::Sequenced>(request).await?.seq)
    }

    /// Writes a consistent copy of the whole database (every organisation) to `path`, an
    /// absolute path on the broker's host that must not exist (operators only). Online.
    ///
    /// # Errors
    /// FORBIDDEN without the operator role; CONFLICT if `path` exists; INVALID_ARGUMENT for a
    /// relative path; UNAVAILABLE if writing fails.
    ///
    /// # Cancel safety
    /// Dropping the future does not stop the backup: a copy may still be written to `path`, and
    /// a repeat then gets CONFLICT. Check `path` on the broker's host, or back up to a new path.
    pub async fn backup(&self, path: &str) -> Result<pb::BackupResult, ClientError> {
        self.client.call(pb::Backup { path: path.to_owned() }).await
    }

    /// A page of the audit log, oldest first; the filter's `org_id` is replaced by this handle's.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for an unknown action name.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads (each query the broker receives is itself recorded as
    /// `audit_queried`).
    pub async fn audit(&self, filter: pb::AuditQuery) -> Result<pb::AuditPage, ClientError> {
        self.client.call(pb::AuditQuery { org_id: self.org_id(), ..filter }).await
    }
}
