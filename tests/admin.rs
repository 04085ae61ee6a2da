//! Administration over the protocol: who may do what, organisations created and tuned live, a
//! directory imported all-or-nothing, a revoked device thrown out within a second, conversations
//! inspected and archived, and the audit log queried, all against a real broker.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::TestBroker;
use herald_client::{Client, ErrorCode, pb};

async fn client_with_roles(broker: &TestBroker, org: &str, user: &str, roles: &[&str]) -> Result<Client> {
    let token = broker.token_with(|c| {
        c.org = org.into();
        c.sub = user.into();
        c.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    });
    Ok(Client::connect(broker.client_config(token)).await?)
}

fn code<T: std::fmt::Debug>(result: Result<T, herald_client::ClientError>) -> Option<ErrorCode> {
    result.err().and_then(|e| e.code())
}

fn person(user: &str, manager: &str, disabled: bool) -> pb::DirectoryUser {
    pb::DirectoryUser {
        user_id: user.into(),
        display_name: format!("{user} display"),
        department: "eng".into(),
        manager_id: manager.into(),
        disabled,
        phone: "+8613800138000".into(),
        roles: vec!["staff".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_scope_every_request_to_the_callers_organisation() -> Result<()> {
    let broker = TestBroker::start().await?;
    let member = broker.client("alice").await?;
    let admin = client_with_roles(&broker, "acme", "root", &["admin"]).await?;
    let operator = client_with_roles(&broker, "acme", "ops", &["operator"]).await?;

    assert_eq!(code(member.admin().org().await), Some(ErrorCode::FORBIDDEN), "no role");
    assert_eq!(admin.admin().org().await?.org_id, "acme");
    let by_admin = admin.admin_of("umbrella").create_org(pb::OrgSettings::default()).await;
    assert_eq!(code(by_admin), Some(ErrorCode::FORBIDDEN));

    let settings = pb::OrgSettings { read_receipts: Some(false), ..Default::default() };
    let created = operator.admin_of("umbrella").create_org(settings).await?;
    assert_eq!(created.effective.and_then(|e| e.read_receipts), Some(false));
    let again = operator.admin_of("umbrella").create_org(pb::OrgSettings::default()).await;
    assert_eq!(code(again), Some(ErrorCode::CONFLICT));
    assert_eq!(code(admin.admin_of("globex").org().await), Some(ErrorCode::NOT_FOUND), "another organisation");
    assert_eq!(code(operator.admin_of("initech").org().await), Some(ErrorCode::NOT_FOUND), "not served");

    // The new organisation is served at once, without a restart.
    let newcomer = client_with_roles(&broker, "umbrella", "gina", &[]).await?;
    newcomer.ping().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organisation_settings_change_live_and_survive_a_restart() -> Result<()> {
    let broker = TestBroker::start().await?;
    let admin = client_with_roles(&broker, "acme", "root", &["admin"]).await?;
    let alice = broker.client("alice").await?;
    let group = alice.create_group("g", &[]).await?;

    let limits = pb::OrgSettings { max_group_members: Some(3), max_groups_per_user: Some(2), ..Default::default() };
    let info = admin.admin().update_org(limits).await?;
    assert_eq!(info.effective.as_ref().and_then(|e| e.max_group_members), Some(3));
    let too_big = alice.create_group("big", &["b", "c", "d"]).await;
    assert_eq!(code(too_big), Some(ErrorCode::LIMIT_EXCEEDED), "the new group limit holds at once");
    let grow = alice.update_members(group.conversation_id, &["b", "c", "d"], &[]).await;
    assert_eq!(code(grow), Some(ErrorCode::LIMIT_EXCEEDED));
    alice.create_group("second", &[]).await?;
    assert_eq!(code(alice.create_group("third", &[]).await), Some(ErrorCode::LIMIT_EXCEEDED), "two groups each");

    // A later update keeps what it does not set.
    admin.admin().update_org(pb::OrgSettings { recall_window_ms: Some(1000), ..Default::default() }).await?;
    let (dir, config) = broker.stop().await?;
    let broker = TestBroker::start_in(dir, config).await?;
    let admin = client_with_roles(&broker, "acme", "root", &["admin"]).await?;
    let stored = admin.admin().org().await?.settings.context("settings")?;
    assert_eq!((stored.max_group_members, stored.recall_window_ms), (Some(3), Some(1000)));
    let alice = broker.client("alice").await?;
    assert_eq!(alice.session().limits.recall_window, Duration::from_secs(1), "WELCOME announces the org's window");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_closed_within_a_second_and_cannot_come_back() -> Result<()> {
    let broker = TestBroker::start().await?;
    let admin = client_with_roles(&broker, "acme", "root", &["admin"]).await?;
    let phone = broker.client("bob").await?;
    let laptop = Client::connect(broker.client_config(broker.token("acme", "bob")).with_device_id("laptop")).await?;

    let revoked_at = Instant::now();
    let answer = admin.admin().revoke_device("bob", "phone-1").await?;
    assert_eq!(answer.sessions_closed, 1);
    let closed = loop {
        match phone.ping().await {
            Err(e) => break e,
            Ok(_) if revoked_at.elapsed() > Duration::from_secs(1) => anyhow::bail!("still open after a second"),
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert!(revoked_at.elapsed() <= Duration::from_secs(1), "closed after {:?}", revoked_at.elapsed());
    assert_eq!(closed.code(), Some(ErrorCode::REVOKED));
    laptop.ping().await.context("the user's other device stays")?;

    let back = broker.client("bob").await.expect_err("a revoked device cannot log in");
    assert_eq!(back.downcast_ref::<herald_client::ClientError>().and_then(|e| e.code()), Some(ErrorCode::REVOKED));
    let again = admin.admin().revoke_device("bob", "phone-1").await?;
    assert_eq!((again.sessions_closed, again.revoked_at_ms), (0, answer.revoked_at_ms), "idempotent");
    let devices = admin.admin().devices("bob").await?;
    let listed: Vec<_> = devices.iter().map(|d| (d.device_id.as_str(), d.sessions, d.revoked_at_ms != 0)).collect();
    assert_eq!(listed, [("laptop", 1, false), ("phone-1", 0, true)]);

    // Durable: still refused after a restart.
    let (dir, config) = broker.stop().await?;
    let broker = TestBroker::start_in(dir, config).await?;
    let refused = broker.client("bob").await.expect_err("still revoked");
    assert_eq!(refused.downcast_ref::<herald_client::ClientError>().and_then(|e| e.code()), Some(ErrorCode::REVOKED));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_import_is_all_or_nothing_and_disabling_a_user_ends_its_sessions() -> Result<()> {
    let broker = TestBroker::start().await?;
    let admin = client_with_roles(&broker, "acme", "root", &["admin"]).await?;
    let bad = vec![person("ceo", "", false), person("alice", "ceo", false), person("bob", "nobody", false)];
    let refused = admin.admin().import_users(bad).await.expect_err("unknown manager");
    assert_eq!(refused.code(), Some(ErrorCode::INVALID_ARGUMENT));
    assert!(refused.to_string().contains("entry 2"), "{refused}");
    assert!(admin.admin().list_users("", 100).await?.users.is_empty(), "nothing was half-applied");

    let good = vec![person("ceo", "", false), person("alice", "ceo", false), person("bob", "alice", false)];
    let result = admin.admin().import_users(good).await?;
    assert_eq!((result.created, result.updated), (3, 0));
    let cycle = admin.admin().import_users(vec![person("ceo", "bob", false)]).await.expect_err("a cycle");
    assert_eq!(cycle.code(), Some(ErrorCode::INVALID_ARGUMENT));

    let bob = broker.client("bob").await?;
    let result = admin.admin().import_users(vec![person("bob", "alice", true)]).await?;
    assert_eq!((result.created, result.updated, result.disabled), (0, 1, 1));
    let closed = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if let Err(e) = bob.ping().await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .context("a disabled user's session stays open")?;
    assert_eq!(closed.code(), Some(ErrorCode::REVOKED));
    let page = admin.admin().list_users("alice", 10).await?;
    assert_eq!(page.users.iter().map(|u| u.user_id.as_str()).collect::<Vec<_>>(), ["bob", "ceo"]);
    assert_eq!(admin.admin().org().await?.directory_users, 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_conversation_is_read_only_and_the_audit_log_shows_who_did_it() -> Result<()> {
    let broker = TestBroker::start().await?;
    let admin = client_with_roles(&broker, "acme", "root", &["admin"]).await?;
    let alice = broker.client("alice").await?;
    let group = alice.create_group("project", &["bob"]).await?;
    let conv = group.conversation_id;
    let sent = alice.send(conv, b"before".to_vec()).await?.seq;

    let report = admin.admin().inspect_conversation(conv).await?;
    assert_eq!((report.owner_id.as_str(), report.conversation.as_ref().map(|c| c.member_count)), ("alice", Some(2)));
    admin.admin().archive_conversation(conv, true).await.context("admins archive without being members")?;
    assert_eq!(code(alice.send(conv, b"after".to_vec()).await), Some(ErrorCode::ARCHIVED));
    assert_eq!(code(alice.rename(conv, "renamed").await), Some(ErrorCode::ARCHIVED));
    let history = alice.history(conv, sent, false, 10).await.context("history stays readable")?;
    assert!(!history.entries.is_empty());
    admin.admin().archive_conversation(conv, false).await?;
    alice.send(conv, b"after unarchiving".to_vec()).await?;
    assert_eq!(code(alice.admin().archive_conversation(conv, true).await), Some(ErrorCode::FORBIDDEN));

    let filter = pb::AuditQuery { action: "conversation_archived".into(), ..Default::default() };
    let page = admin.admin().audit(filter).await?;
    let actors: Vec<_> = page.entries.iter().map(|e| (e.actor.as_str(), e.target.as_str())).collect();
    let target = format!("c{conv:016x}");
    assert_eq!(actors, [("root", target.as_str())]);
    let first = admin.admin().audit(pb::AuditQuery { limit: 1, ..Default::default() }).await?;
    assert!(first.more && first.entries.len() == 1);
    let next = pb::AuditQuery { after_seq: first.entries[0].seq, limit: 1, ..Default::default() };
    assert_eq!(admin.admin().audit(next).await?.entries[0].seq, first.entries[0].seq + 1, "pages follow on");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_restores_to_what_was_acknowledged_before_it() -> Result<()> {
    let broker = TestBroker::start().await?;
    let operator = client_with_roles(&broker, "acme", "ops", &["operator"]).await?;
    let alice = broker.client("alice").await?;
    let conv = alice.create_group("g", &[]).await?.conversation_id;
    let mut before = 0;
    for n in 0..3 {
        before = alice.send(conv, format!("before {n}").into_bytes()).await?.seq;
    }
    let backups = tempfile::tempdir()?;
    let path = backups.path().join("snapshot");
    let taken = operator.admin().backup(&path.display().to_string()).await?;
    assert!(taken.files > 0 && taken.bytes > 0, "{taken:?}");
    let again = operator.admin().backup(&path.display().to_string()).await;
    assert_eq!(code(again), Some(ErrorCode::CONFLICT), "never overwrites");
    let admin = client_with_roles(&broker, "acme", "root", &["admin"]).await?;
    assert_eq!(code(admin.admin().backup("/tmp/x").await), Some(ErrorCode::FORBIDDEN));
    alice.send(conv, b"after the backup".to_vec()).await?;

    let (dir, config) = broker.stop().await?;
    let db = config.db_path();
    std::fs::rename(&db, dir.path().join("db.replaced"))?;
    std::fs::rename(&path, &db)?;
    let broker = TestBroker::start_in(dir, config).await?;
    let alice = broker.client("alice").await?;
    let page = alice.history(conv, 1, false, 100).await?;
    assert_eq!(page.last_seq, before, "the restored log ends where the backup was taken");
    Ok(())
}
