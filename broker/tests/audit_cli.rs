//! `herald-broker audit verify` and `audit export` on a data directory, as an operator runs them.

use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result};
use herald_broker::audit::{AuditAction, AuditEvent, AuditLog, AuditRecord, AuditSink};
use herald_broker::config::Config;
use herald_broker::store::{Cf, KvBackend, RocksStore, audit_key};
use herald_protocol::OrgId;

const BROKER: &str = env!("CARGO_BIN_EXE_herald-broker");

fn event(n: u64) -> AuditEvent {
    AuditEvent {
        org: OrgId::new("demo").expect("valid"),
        at_ms: 1_800_000_000_000 + n,
        actor: if n.is_multiple_of(2) { "alice".into() } else { "bob".into() },
        device: "d1".into(),
        action: if n == 3 { AuditAction::MessageRecalled } else { AuditAction::Login },
        target: format!("c{n}"),
        details: vec![("n".into(), n.to_string())],
    }
}

fn audit(data_dir: &std::path::Path, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(BROKER).arg("--data-dir").arg(data_dir).arg("audit").args(args).output()?;
    Ok((out.status.success(), String::from_utf8(out.stdout)? + &String::from_utf8(out.stderr)?))
}

#[test]
fn verify_reports_intact_and_broken_chains_and_export_filters() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
    std::fs::create_dir_all(&config.data_dir)?;
    {
        let store = Arc::new(RocksStore::open(&config.db_path())?);
        store.ensure_orgs(&config.orgs)?;
        let log = AuditLog::start(store.clone(), true)?;
        for n in 1..=4 {
            log.record(event(n));
        }
        log.stop();
    }

    let (ok, out) = audit(dir.path(), &["verify"])?;
    assert!(ok, "{out}");
    assert!(out.contains("demo: 4 records, chain intact"), "{out}");

    let (ok, out) = audit(dir.path(), &["export", "--org", "demo", "--action", "message_recalled"])?;
    assert!(ok, "{out}");
    let lines: Vec<serde_json::Value> = out.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let [recall] = lines.as_slice() else { panic!("one record: {out}") };
    assert_eq!((recall["seq"].as_u64(), recall["actor"].as_str()), (Some(3), Some("bob")));
    assert_eq!(recall["details"]["n"], "3");
    let (_, out) = audit(dir.path(), &["export", "--org", "demo", "--actor", "alice"])?;
    assert_eq!(out.lines().count(), 2);

    {
        let store = RocksStore::open(&config.db_path())?;
        let org = OrgId::new("demo")?;
        let key = audit_key(&org, 2);
        let bytes = store.get(Cf::Audit, &key)?.context("record 2")?;
        let mut record = AuditRecord::decode(&org, &bytes).map_err(anyhow::Error::msg)?;
        record.event.details = vec![("n".into(), "20".into())];
        store.write(vec![(Cf::Audit, key, Some(record.encode()))], true)?;
    }
    let (ok, out) = audit(dir.path(), &["verify"])?;
    assert!(!ok, "a broken chain fails the command: {out}");
    assert!(out.contains("record 2 was altered"), "{out}");
    Ok(())
}
