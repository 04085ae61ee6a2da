//! `herald-broker audit …` (part of the binary, not the library): verify the audit chains and
//! export records, reading the store read-only so it works beside a running broker.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use herald_broker::audit::{AuditAction, AuditQuery, AuditRecord, verify_org};
use herald_broker::config::Config;
use herald_broker::store::RocksStore;
use herald_protocol::{OrgId, pb};

/// What to do with the audit log.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check every organisation's chain (or one's): exit status 1 if a record was altered or
    /// deleted, naming the first break.
    Verify {
        /// Only this organisation.
        #[arg(long)]
        org: Option<OrgId>,
    },
    /// Print an organisation's records as JSON lines, oldest first.
    Export(ExportArgs),
}

/// Filters for `audit export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The organisation.
    #[arg(long)]
    org: OrgId,
    /// Only records by this user.
    #[arg(long)]
    actor: Option<String>,
    /// Only this action (login, login_failed, group_created, members_changed, roles_changed, member_left,
    /// message_recalled, message_expired, settings_changed).
    #[arg(long, value_parser = parse_action)]
    action: Option<AuditAction>,
    /// Only records at or after this time (RFC 3339, e.g. 2026-11-26T09:00:00Z).
    #[arg(long, value_parser = parse_time)]
    since: Option<u64>,
    /// Only records before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    until: Option<u64>,
}

fn parse_action(name: &str) -> Result<AuditAction, String> {
    AuditAction::from_name(name).ok_or_else(|| format!("unknown action {name:?}"))
}

fn parse_time(text: &str) -> Result<u64, String> {
    let at = humantime::parse_rfc3339_weak(text).map_err(|e| e.to_string())?;
    let since_epoch = at.duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
    u64::try_from(since_epoch.as_millis()).map_err(|e| e.to_string())
}

/// Runs an audit command against the configured data directory.
pub(crate) fn run(config: &Config, command: AuditCommand) -> Result<()> {
    let path = config.db_path();
    let store = RocksStore::open_read_only(&path).with_context(|| format!("opening {}", path.display()))?;
    match command {
        AuditCommand::Verify { org } => verify(&store, org),
        AuditCommand::Export(args) => export(&store, args),
    }
}

fn verify(store: &RocksStore, org: Option<OrgId>) -> Result<()> {
    let orgs = match org {
        Some(org) => vec![org],
        None => store.orgs()?,
    };
    let mut broken = 0;
    for org in orgs {
        match verify_org(store, &org)? {
            Ok(records) => println!("{org}: {records} records, chain intact"),
            Err(e) => {
                println!("{org}: BROKEN: {e}");
                broken += 1;
            }
        }
    }
    if broken > 0 {
        bail!("{broken} audit chain(s) broken");
    }
    Ok(())
}

fn export(store: &RocksStore, args: ExportArgs) -> Result<()> {
    let query = AuditQuery { actor: args.actor, action: args.action, since_ms: args.since, until_ms: args.until };
    for record in query.run(store, &args.org)? {
        println!("{}", json_line(&record));
    }
    Ok(())
}

fn json_line(record: &AuditRecord) -> String {
    let org = record.event.org.to_string();
    let mut line = entry_json(&pb::AuditEntry::from(record.clone()));
    line.insert("org".into(), serde_json::Value::String(org));
    serde_json::Value::Object(line).to_string()
}

/// An audit record as exported: one JSON object (a line of `audit export` and `admin audit`).
pub(crate) fn entry_json(e: &pb::AuditEntry) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let details = e.details.iter().map(|d| (d.key.clone(), Value::String(d.value.clone()))).collect();
    let fields: [(&str, Value); 8] = [
        ("seq", e.seq.into()),
        ("at_ms", e.at_ms.into()),
        ("actor", e.actor.clone().into()),
        ("device", e.device.clone().into()),
        ("action", e.action.clone().into()),
        ("target", e.target.clone().into()),
        ("details", Value::Object(details)),
        ("hash", hex::encode(&e.hash).into()),
    ];
    fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
