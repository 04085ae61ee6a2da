//! The audit log end to end: what members and admins do lands in their organisation's
//! hash-chained log, metadata only, and tampering with the stored records is detected.

mod common;

use anyhow::{Context, Result};
use common::{ORG, TestBroker};
use herald_broker::audit::{AuditAction, AuditQuery, AuditRecord, ChainError, verify_org};
use herald_broker::store::{Cf, KvBackend, RocksStore, audit_key};
use herald_protocol::OrgId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_and_admin_actions_are_chained_per_organisation_and_tampering_shows() -> Result<()> {
    let broker = TestBroker::start().await?;
    let alice = broker.client("alice").await?;
    let bob = broker.client("bob").await?;
    let conv = alice.create_group("audited", &["bob"]).await?.conversation_id;
    alice.update_members(conv, &["carol"], &[]).await?;
    alice.set_role(conv, "bob", herald_client::Role::Admin).await?;
    let payload = b"payload-7d1e-never-audited".to_vec();
    let seq = bob.send(conv, payload.clone()).await?.seq;
    alice.recall(conv, seq).await?;
    alice.update_settings(conv, Some(false), None).await?;
    alice.close().await;
    bob.close().await;
    let (dir, config) = broker.stop().await?;

    let store = RocksStore::open(&config.db_path())?;
    let org = OrgId::new(ORG)?;
    let records = AuditQuery::default().run(&store, &org)?;
    let actions: Vec<AuditAction> = records.iter().map(|r| r.event.action).collect();
    for expected in [
        AuditAction::Login,
        AuditAction::GroupCreated,
        AuditAction::MembersChanged,
        AuditAction::RolesChanged,
        AuditAction::MessageRecalled,
        AuditAction::SettingsChanged,
    ] {
        assert!(actions.contains(&expected), "{expected:?} missing from {actions:?}");
    }
    let recall =
        AuditQuery { action: Some(AuditAction::MessageRecalled), ..AuditQuery::default() }.run(&store, &org)?;
    let [recall] = recall.as_slice() else { panic!("one recall: {recall:?}") };
    assert_eq!((recall.event.actor.as_str(), recall.event.target.clone()), ("alice", format!("c{conv:016x}/{seq}")));
    assert!(records.iter().all(|r| !r.encode().windows(payload.len()).any(|w| w == payload.as_slice())), "no payloads");
    let globex = OrgId::new("globex")?;
    assert_eq!(verify_org(&store, &globex)?, Ok(0), "another organisation's chain is untouched");

    let total = verify_org(&store, &org)?.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(total, records.len() as u64);
    let key = audit_key(&org, 2);
    let mut altered =
        AuditRecord::decode(&org, &store.get(Cf::Audit, &key)?.context("record 2")?).map_err(|e| anyhow::anyhow!(e))?;
    altered.event.actor = "mallory".into();
    store.write(vec![(Cf::Audit, key.clone(), Some(altered.encode()))], true)?;
    assert_eq!(verify_org(&store, &org)?, Err(ChainError::Altered { seq: 2 }));
    store.write(vec![(Cf::Audit, key, None)], true)?;
    assert_eq!(verify_org(&store, &org)?, Err(ChainError::Broken { seq: 3, expected: 2 }));
    drop(store);
    drop(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_are_audited_with_code_and_address_but_never_the_token() -> Result<()> {
    let broker = TestBroker::start().await?;
    let expired = broker.token_with(|c| {
        c.sub = "mallory".into();
        c.exp = common::now_s() - 60;
    });
    let forged = {
        let stranger = herald_broker::auth::TokenMinter::new(&herald_broker::auth::SigningKeyPair::generate()?)?;
        broker.token_by(&stranger, |c| c.sub = "eve".into())
    };
    let unknown_org = broker.token("initech", "trudy");
    for token in [&expired, &forged, &unknown_org] {
        let refused = herald_client::Client::connect(broker.client_config(token.clone())).await;
        assert!(refused.is_err(), "the login is refused");
    }
    let (dir, config) = broker.stop().await?;

    let store = RocksStore::open(&config.db_path())?;
    let query = AuditQuery { action: Some(AuditAction::LoginFailed), ..AuditQuery::default() };
    let failed = query.run(&store, &OrgId::new(ORG)?)?;
    let summary: Vec<(String, Vec<(String, String)>)> =
        failed.iter().map(|r| (r.event.actor.clone(), r.event.details.clone())).collect();
    let [expired_record, forged_record] = failed.as_slice() else { panic!("two refusals in acme: {summary:?}") };
    let detail = |record: &AuditRecord, key: &str| {
        record.event.details.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    assert_eq!(expired_record.event.actor, "mallory");
    assert_eq!(expired_record.event.device, "phone-1");
    assert_eq!(detail(expired_record, "code"), "TOKEN_EXPIRED");
    assert_eq!(detail(forged_record, "code"), "TOKEN_INVALID");
    for record in [expired_record, forged_record] {
        assert!(detail(record, "remote").starts_with("127.0.0.1:"), "{summary:?}");
        assert_eq!(detail(record, "claims_verified"), "false", "the org and actor are only claimed");
        let encoded = record.encode();
        for token in [&expired, &forged] {
            let signature = token.rsplit('.').next().context("signature")?.as_bytes();
            assert!(!encoded.windows(signature.len()).any(|w| w == signature), "no token in the record");
        }
    }
    assert_eq!(verify_org(&store, &OrgId::new("initech")?)?, Ok(0), "no chain for an organisation not served");
    drop(store);
    drop(dir);
    Ok(())
}
