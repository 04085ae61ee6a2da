//! Serving administration requests: durable write first, then the live tables, the shards'
//! policies, the open sessions, and the audit log.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};

use herald_protocol::{ErrorCode, Frame, FrameBody, OrgId, RequestId, UserId, pb};

use super::directory::validate_import;
use super::request::AdminRequest;
use super::{OrgTable, Revocations};
use crate::audit::{AuditAction, AuditEvent, AuditQuery, AuditSink};
use crate::auth::Identity;
use crate::conversation::{ConvKey, Role};
use crate::fanout::SessionRegistry;
use crate::shard::Shards;
use crate::store::{self, KvBackend, LogStore, StoreError};

type Refusal = (ErrorCode, String);
type Answer = Result<Frame, Refusal>;

/// Serves administration requests for every session. Reads run concurrently; changes are
/// serialised by one lock held across read-modify-write, so two admins updating one
/// organisation's settings never lose an update. Changes are rare; nothing on the message path
/// takes this lock.
#[derive(Debug)]
pub struct AdminDesk {
    kv: Arc<dyn KvBackend>,
    log: Arc<dyn LogStore>,
    orgs: Arc<OrgTable>,
    revocations: Arc<Revocations>,
    registry: Arc<SessionRegistry>,
    audit: Arc<dyn AuditSink>,
    sync_writes: bool,
    changes: Mutex<()>,
}

/// Who is asking, and when: what every answer and audit record needs.
struct Call<'a> {
    caller: &'a Identity,
    request_id: RequestId,
    now_ms: u64,
}

impl Call<'_> {
    fn answer<B: FrameBody>(&self, body: &B) -> Answer {
        Ok(Frame::from_body(self.request_id, body))
    }

    fn event(
        &self,
        org: &OrgId,
        action: AuditAction,
        target: String,
        mut details: Vec<(String, String)>,
    ) -> AuditEvent {
        if *org != self.caller.org {
            details.push(("actor_org".into(), self.caller.org.to_string()));
        }
        AuditEvent {
            org: org.clone(),
            at_ms: self.now_ms,
            actor: self.caller.user.to_string(),
            device: self.caller.device.to_string(),
            action,
            target,
            details,
        }
    }
}

fn unavailable(e: &StoreError) -> Refusal {
    (ErrorCode::UNAVAILABLE, e.to_string())
}

fn not_found(what: impl std::fmt::Display) -> Refusal {
    (ErrorCode::NOT_FOUND, format!("{what} not found"))
}

/// `new` over `old`: the fields `new` sets replace those of `old`.
fn merge(old: pb::OrgSettings, new: &pb::OrgSettings) -> pb::OrgSettings {
    pb::OrgSettings {
        recall_window_ms: new.recall_window_ms.or(old.recall_window_ms),
        read_receipts: new.read_receipts.or(old.read_receipts),
        max_groups_per_user: new.max_groups_per_user.or(old.max_groups_per_user),
        max_group_members: new.max_group_members.or(old.max_group_members),
        retention_secs: new.retention_secs.or(old.retention_secs),
        max_call_participants: new.max_call_participants.or(old.max_call_participants),
    }
}

/// The fields a settings message sets, for audit details.
fn settings_details(s: &pb::OrgSettings) -> Vec<(String, String)> {
    let fields: [(&str, Option<String>); 6] = [
        ("recall_window_ms", s.recall_window_ms.map(|v| v.to_string())),
        ("read_receipts", s.read_receipts.map(|v| v.to_string())),
        ("max_groups_per_user", s.max_groups_per_user.map(|v| v.to_string())),
        ("max_group_members", s.max_group_members.map(|v| v.to_string())),
        ("retention_secs", s.retention_secs.map(|v| v.to_string())),
        ("max_call_participants", s.max_call_participants.map(|v| v.to_string())),
    ];
    fields.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))).collect()
}

impl AdminDesk {
    /// A desk over the broker's store and live tables.
    #[allow(clippy::too_many_arguments)] // The broker's services, wired once at start.
    pub fn new(
        kv: Arc<dyn KvBackend>,
        log: Arc<dyn LogStore>,
        orgs: Arc<OrgTable>,
        revocations: Arc<Revocations>,
        registry: Arc<SessionRegistry>,
        audit: Arc<dyn AuditSink>,
        sync_writes: bool,
    ) -> Self {
        Self { kv, log, orgs, revocations, registry, audit, sync_writes, changes: Mutex::new(()) }
    }

    /// Serves one request (not CONVERSATION_ARCHIVE, which its conversation's shard serves) and
    /// returns the answer frame. Blocking: call it from a blocking context.
    pub fn serve(
        &self,
        shards: &Shards,
        caller: &Identity,
        request: AdminRequest,
        request_id: RequestId,
        now_ms: u64,
    ) -> Frame {
        let call = Call { caller, request_id, now_ms };
        let org = request.org().clone();
        let answer = if !matches!(request, AdminRequest::OrgCreate { .. }) && !self.orgs.contains(&org) {
            Err(not_found(format_args!("organisation {org}")))
        } else {
            match request {
                AdminRequest::OrgCreate { org, settings } => self.org_create(&call, shards, &org, settings),
                AdminRequest::OrgGet { org } => self.org_info(&call, &org),
                AdminRequest::OrgUpdate { org, settings } => self.org_update(&call, shards, &org, &settings),
                AdminRequest::UserImport { org, users } => self.user_import(&call, &org, users),
                AdminRequest::UserList { org, after, limit } => self.user_list(&call, &org, after.as_ref(), limit),
                AdminRequest::DeviceList { org, user } => self.device_list(&call, &org, &user),
                AdminRequest::DeviceRevoke { org, user, device } => self.device_revoke(&call, org, user, device),
                AdminRequest::ConversationInspect { conv } => self.conversation_inspect(&call, &conv),
                AdminRequest::ConversationArchive { .. } => {
                    Err((ErrorCode::INTERNAL, "archiving is served by the conversation's shard".into()))
                }
                AdminRequest::AuditQuery { org, query, after_seq, limit } => {
                    self.audit_query(&call, &org, &query, after_seq, limit)
                }
                AdminRequest::Backup { org, path } => self.backup(&call, &org, &path),
            }
        };
        answer.unwrap_or_else(|(code, message)| Frame::error(request_id, code, message))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn org_create(&self, call: &Call<'_>, shards: &Shards, org: &OrgId, settings: pb::OrgSettings) -> Answer {
        let _changing = self.lock();
        if self.orgs.contains(org) {
            return Err((ErrorCode::CONFLICT, format!("organisation {org} exists already")));
        }
        self.kv.write(vec![store::org_write(org, &settings)], self.sync_writes).map_err(|e| unavailable(&e))?;
        shards.set_policy(org, self.orgs.set(org, settings));
        self.audit.record(call.event(org, AuditAction::OrgCreated, org.to_string(), settings_details(&settings)));
        self.org_info(call, org)
    }

    fn org_update(&self, call: &Call<'_>, shards: &Shards, org: &OrgId, settings: &pb::OrgSettings) -> Answer {
        let _changing = self.lock();
        let merged = merge(self.orgs.overrides(org).unwrap_or_default(), settings);
        self.kv.write(vec![store::org_write(org, &merged)], self.sync_writes).map_err(|e| unavailable(&e))?;
        shards.set_policy(org, self.orgs.set(org, merged));
        self.audit.record(call.event(
            org,
            AuditAction::OrgSettingsChanged,
            org.to_string(),
            settings_details(settings),
        ));
        self.org_info(call, org)
    }

    fn org_info(&self, call: &Call<'_>, org: &OrgId) -> Answer {
        let (Some(settings), Some(policy)) = (self.orgs.overrides(org), self.orgs.policy(org)) else {
            return Err(not_found(format_args!("organisation {org}")));
        };
        let directory_users = store::directory_len(&*self.kv, org).map_err(|e| unavailable(&e))?;
        call.answer(&pb::OrgInfo {
            org_id: org.to_string(),
            settings: Some(settings),
            effective: Some(policy.to_settings()),
            directory_users,
        })
    }

    fn user_import(&self, call: &Call<'_>, org: &OrgId, users: Vec<pb::DirectoryUser>) -> Answer {
        let _changing = self.lock();
        let read_error = RefCell::new(None);
        let stored_manager = |user: &UserId| match store::directory_user(&*self.kv, org, user) {
            Ok(entry) => entry.map(|e| UserId::new(e.manager_id).ok()),
            Err(e) => {
                read_error.borrow_mut().get_or_insert(e);
                None
            }
        };
        let checked = validate_import(users, stored_manager);
        if let Some(e) = read_error.take() {
            return Err(unavailable(&e));
        }
        let checked = checked.map_err(|e| (ErrorCode::INVALID_ARGUMENT, e.to_string()))?;
        let mut result = pb::ImportResult::default();
        let mut newly_disabled = Vec::new();
        let mut writes = Vec::with_capacity(checked.len());
        for imported in &checked {
            let before = store::directory_user(&*self.kv, org, &imported.user).map_err(|e| unavailable(&e))?;
            match &before {
                Some(_) => result.updated += 1,
                None => result.created += 1,
            }
            if imported.entry.disabled && !before.is_some_and(|b| b.disabled) {
                newly_disabled.push(imported.user.clone());
            }
            writes.push(store::directory_write(org, &imported.user, &imported.entry));
        }
        self.kv.write(writes, self.sync_writes).map_err(|e| unavailable(&e))?;
        for imported in &checked {
            self.revocations.set_disabled(org.clone(), imported.user.clone(), imported.entry.disabled);
        }
        for user in &newly_disabled {
            self.registry.revoke(org, user, None);
        }
        result.disabled = u32::try_from(newly_disabled.len()).unwrap_or(u32::MAX);
        let details = vec![
            ("created".to_owned(), result.created.to_string()),
            ("updated".to_owned(), result.updated.to_string()),
            ("disabled".to_owned(), result.disabled.to_string()),
        ];
        self.audit.record(call.event(org, AuditAction::DirectoryImported, org.to_string(), details));
        call.answer(&result)
    }

    fn user_list(&self, call: &Call<'_>, org: &OrgId, after: Option<&UserId>, limit: usize) -> Answer {
        let mut users = store::directory_page(&*self.kv, org, after, limit + 1).map_err(|e| unavailable(&e))?;
        let more = users.len() > limit;
        users.truncate(limit);
        call.answer(&pb::UserPage { users, more })
    }

    fn device_list(&self, call: &Call<'_>, org: &OrgId, user: &UserId) -> Answer {
        let mut devices: std::collections::BTreeMap<String, pb::DeviceInfo> = std::collections::BTreeMap::new();
        for (device, sessions) in self.registry.devices(org, user) {
            let info = devices.entry(device.to_string()).or_default();
            info.device_id = device.to_string();
            info.sessions = u32::try_from(sessions).unwrap_or(u32::MAX);
        }
        for (device, at_ms) in self.revocations.revoked_devices(org, user) {
            let info = devices.entry(device.to_string()).or_default();
            info.device_id = device.to_string();
            info.revoked_at_ms = at_ms;
        }
        call.answer(&pb::DevicePage { devices: devices.into_values().collect() })
    }

    fn device_revoke(&self, call: &Call<'_>, org: OrgId, user: UserId, device: herald_protocol::DeviceId) -> Answer {
        let _changing = self.lock();
        let known = self.revocations.revoked_at(&org, &user, &device);
        let revoked_at_ms = known.unwrap_or(call.now_ms);
        if known.is_none() {
            let write = store::revocation_write(&org, &user, &device, revoked_at_ms);
            self.kv.write(vec![write], self.sync_writes).map_err(|e| unavailable(&e))?;
            self.revocations.revoke_device(org.clone(), user.clone(), device.clone(), revoked_at_ms);
        }
        // Sessions that passed HELLO before the table changed are closed here; later ones are refused.
        let closed = self.registry.revoke(&org, &user, Some(&device));
        let details = vec![("sessions_closed".to_owned(), closed.to_string())];
        self.audit.record(call.event(&org, AuditAction::DeviceRevoked, format!("{user}/{device}"), details));
        call.answer(&pb::RevokedDevice { sessions_closed: u32::try_from(closed).unwrap_or(u32::MAX), revoked_at_ms })
    }

    fn conversation_inspect(&self, call: &Call<'_>, conv: &ConvKey) -> Answer {
        let state = self.log.load_conversation(conv).map_err(|e| unavailable(&e))?;
        let state = state.ok_or_else(|| not_found(format_args!("conversation {}", conv.id)))?;
        let with_role =
            |role: Role| state.members().iter().filter(move |(_, r)| **r == role).map(|(u, _)| u.to_string());
        let conversation = pb::Conversation {
            conversation_id: conv.id.get(),
            kind: state.kind.to_pb().into(),
            name: state.name.clone(),
            member_count: u32::try_from(state.member_count()).unwrap_or(u32::MAX),
            last_seq: state.last_seq,
            role: pb::Role::Unspecified.into(),
            created_at_ms: state.created_at_ms,
            settings: Some(state.settings.to_pb()),
            end_to_end: state.is_end_to_end(),
            membership_chain_length: state.chain.length,
        };
        call.answer(&pb::ConversationReport {
            conversation: Some(conversation),
            owner_id: with_role(Role::Owner).next().unwrap_or_default(),
            admin_ids: with_role(Role::Admin).collect(),
        })
    }

    fn backup(&self, call: &Call<'_>, org: &OrgId, path: &std::path::Path) -> Answer {
        if path.exists() {
            return Err((ErrorCode::CONFLICT, format!("{} exists already", path.display())));
        }
        self.kv.checkpoint(path).map_err(|e| unavailable(&e))?;
        let (files, bytes) = tree_size(path).map_err(|e| (ErrorCode::UNAVAILABLE, e.to_string()))?;
        let details = vec![("files".to_owned(), files.to_string()), ("bytes".to_owned(), bytes.to_string())];
        self.audit.record(call.event(org, AuditAction::BackupTaken, path.display().to_string(), details));
        let path = path.display().to_string();
        call.answer(&pb::BackupResult { path, files, bytes, taken_at_ms: call.now_ms })
    }

    fn audit_query(&self, call: &Call<'_>, org: &OrgId, query: &AuditQuery, after_seq: u64, limit: usize) -> Answer {
        let records = query.run(&*self.kv, org).map_err(|e| unavailable(&e))?;
        let mut entries: Vec<pb::AuditEntry> =
            records.into_iter().filter(|r| r.seq > after_seq).take(limit + 1).map(pb::AuditEntry::from).collect();
        let more = entries.len() > limit;
        entries.truncate(limit);
        let filter = [
            ("actor", query.actor.clone()),
            ("action", query.action.map(|a| a.name().to_owned())),
            ("after_seq", Some(after_seq.to_string())),
        ];
        let details = filter.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))).collect();
        self.audit.record(call.event(org, AuditAction::AuditQueried, org.to_string(), details));
        call.answer(&pb::AuditPage { entries, more })
    }
}

/// Files and bytes under `dir`.
fn tree_size(dir: &std::path::Path) -> std::io::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (f, b) = tree_size(&entry.path())?;
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += meta.len();
        }
    }
    Ok((files, bytes))
}
