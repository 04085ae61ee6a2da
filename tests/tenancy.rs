//! Tenancy attacks: a member of one organisation calls every request that takes an id with
//! another organisation's real ids (a group, its messages, a direct conversation, a call, a DING,
//! an envelope, a user) and with a thousand generated ones. Every answer must be exactly what a
//! nonexistent id gets, code and message alike (with the id itself blanked out), so that
//! nothing, not even existence, leaks across the boundary; and afterwards the other organisation's
//! state must be untouched. Then a plain member calls every administrative operation: all refused.
//!
//! Refused requests are audited in the caller's organisation (`access_denied`, with a
//! per-session budget): the attacker's own chain records the probes (by request type, with a
//! count of those over the budget), and the victim organisation's chain shows no trace of them.
//!
//! `HERALD_TENANCY_IDS` sets how many generated ids to try (default [`DEFAULT_GENERATED`]);
//! `HERALD_TENANCY_SEED` the seed that generates them.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use common::TestBroker;
use common::rng::SplitMix64;
use herald_broker::audit::{AuditAction, AuditQuery};
use herald_broker::store::RocksStore;
use herald_client::{Client, ClientError, DingRequest, ErrorCode, pb};
use herald_protocol::e2e::{DeviceKeyBundle, IdentityKeyPair};
use herald_protocol::{DeviceId, OrgId, UserId};

/// The victim organisation and the attacker's.
const VICTIM_ORG: &str = "globex";
const ATTACKER_ORG: &str = "acme";
const ATTACKER: &str = "mallory";
const DEFAULT_GENERATED: u64 = 1000;
const DEFAULT_SEED: u64 = 0x5445_4e41_4e54; // "TENANT"

/// The other organisation's real ids, as its members know them.
#[derive(Debug, Clone)]
struct Target {
    conv: u64,
    seq: u64,
    call: u64,
    ding: u64,
    envelope: u64,
    /// A message the victim scheduled (its client message id), for RESCHEDULE.
    scheduled: String,
    user: String,
}

/// What a request got back, with the ids it named blanked, so answers for different ids compare.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Answered(String),
    Refused(ErrorCode, String),
}

impl Answer {
    fn of<T: std::fmt::Debug>(result: Result<T, ClientError>, target: &Target) -> Self {
        let blank = |text: String| blank_ids(text, target);
        match result {
            Ok(body) => Answer::Answered(blank(format!("{body:?}"))),
            Err(ClientError::Request { code, message, .. }) => Answer::Refused(code, blank(message)),
            Err(other) => Answer::Answered(format!("client error: {other}")),
        }
    }
}

/// Replaces every spelling of the target's ids in `text` (decimal, hex, the broker's `c…` form)
/// with a placeholder.
fn blank_ids(mut text: String, target: &Target) -> String {
    for id in [target.conv, target.call, target.ding, target.envelope] {
        for spelling in
            [format!("c{id:016x}"), format!("{id:#x}"), format!("{id:016x}"), format!("{id:x}"), id.to_string()]
        {
            if spelling.len() > 2 {
                text = text.replace(&spelling, "<id>");
            }
        }
    }
    text.replace(&target.user, "<user>").replace(&target.scheduled, "<scheduled>")
}

/// Every request that names something by id, as the attacker can call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Probe {
    History,
    Send,
    Mark,
    Recall,
    Reschedule,
    ListMembers,
    UpdateMembers,
    Leave,
    Rename,
    SetRole,
    UpdateSettings,
    ReceiptQuery,
    Sync,
    DingSend,
    DingAck,
    DingQuery,
    DingCancel,
    Reding,
    CallStart,
    CallJoin,
    CallDecline,
    CallLeave,
    CallEnd,
    CallSetSelf,
    CallHostControl,
    CallShare,
    CallRelay,
    CallSnapshotQuery,
    EnvelopesSend,
    EnvelopesAck,
    KeysQuery,
}

impl Probe {
    const ALL: [Probe; 31] = [
        Probe::History,
        Probe::Send,
        Probe::Mark,
        Probe::Recall,
        Probe::Reschedule,
        Probe::ListMembers,
        Probe::UpdateMembers,
        Probe::Leave,
        Probe::Rename,
        Probe::SetRole,
        Probe::UpdateSettings,
        Probe::ReceiptQuery,
        Probe::Sync,
        Probe::DingSend,
        Probe::DingAck,
        Probe::DingQuery,
        Probe::DingCancel,
        Probe::Reding,
        Probe::CallStart,
        Probe::CallJoin,
        Probe::CallDecline,
        Probe::CallLeave,
        Probe::CallEnd,
        Probe::CallSetSelf,
        Probe::CallHostControl,
        Probe::CallShare,
        Probe::CallRelay,
        Probe::CallSnapshotQuery,
        Probe::EnvelopesSend,
        Probe::EnvelopesAck,
        Probe::KeysQuery,
    ];

    /// Whether an answer rather than a refusal is right (it must still be the same answer a
    /// nonexistent id gets): requests that filter by what the caller may see instead of failing,
    /// and ENVELOPES_SEND, whose conversation id is a label the broker passes on unchecked
    /// (docs/PROTOCOL.md §19.4) to devices of the caller's own organisation.
    fn may_answer(self) -> bool {
        matches!(self, Probe::Sync | Probe::EnvelopesAck | Probe::KeysQuery | Probe::EnvelopesSend)
    }

    /// Calls the request naming `t`'s ids, with otherwise valid arguments, so that only the
    /// lookup can refuse it.
    async fn ask(self, client: &Client, t: &Target, nonce: u64) -> Answer {
        let (conv, call, ding) = (t.conv, t.call, t.ding);
        let later_ms = now_ms() + 600_000;
        match self {
            Probe::History => Answer::of(client.history(conv, 0, false, 10).await, t),
            Probe::Send => Answer::of(client.send_with_id(conv, &format!("attack-{nonce}"), &b"x"[..]).await, t),
            Probe::Mark => Answer::of(client.mark_read(conv, t.seq).await, t),
            Probe::Recall => Answer::of(client.recall(conv, t.seq).await, t),
            Probe::Reschedule => Answer::of(
                client
                    .call::<pb::Scheduled>(pb::Reschedule {
                        conversation_id: conv,
                        client_msg_id: t.scheduled.clone(),
                        deliver_at_ms: later_ms,
                    })
                    .await,
                t,
            ),
            Probe::ListMembers => Answer::of(client.list_members(conv, "", 10).await, t),
            Probe::UpdateMembers => Answer::of(client.update_members(conv, &[ATTACKER], &[&t.user]).await, t),
            Probe::Leave => Answer::of(client.leave(conv).await, t),
            Probe::Rename => Answer::of(client.rename(conv, "pwned").await, t),
            Probe::SetRole => Answer::of(client.set_role(conv, &t.user, herald_client::Role::Member).await, t),
            Probe::UpdateSettings => Answer::of(client.update_settings(conv, Some(false), None).await, t),
            Probe::ReceiptQuery => Answer::of(client.receipts(conv, t.seq).await, t),
            Probe::Sync => Answer::of(client.sync(&[(conv, 0)]).await, t),
            Probe::DingSend => {
                let request = DingRequest {
                    conversation_id: conv,
                    seq: t.seq,
                    recipients: vec![t.user.clone()],
                    policy: "app".into(),
                    ..DingRequest::default()
                };
                Answer::of(client.ding(request).await, t)
            }
            Probe::DingAck => Answer::of(client.ding_ack(conv, ding).await, t),
            Probe::DingQuery => Answer::of(client.ding_status(conv, ding, "", 10).await, t),
            Probe::DingCancel => Answer::of(client.ding_cancel(conv, ding).await, t),
            Probe::Reding => Answer::of(client.reding(conv, ding).await, t),
            Probe::CallStart => Answer::of(client.call_start(conv, Vec::new(), false, false).await, t),
            Probe::CallJoin => Answer::of(client.call_join(call, false, false).await, t),
            Probe::CallDecline => Answer::of(client.call_decline(call).await, t),
            Probe::CallLeave => Answer::of(client.call_leave(call).await, t),
            Probe::CallEnd => Answer::of(client.call_end(call).await, t),
            Probe::CallSetSelf => Answer::of(client.call_set_self(call, Some(true), None, None).await, t),
            Probe::CallHostControl => {
                let control =
                    pb::CallHostControl { call_id: call, action: Some(pb::call_host_control::Action::MuteAll(true)) };
                Answer::of(client.call::<pb::CallOk>(control).await, t)
            }
            Probe::CallShare => Answer::of(client.call_share(call, pb::ShareAction::Start).await, t),
            Probe::CallRelay => {
                let relay = pb::CallRelay {
                    call_id: call,
                    to_user_id: t.user.clone(),
                    to_device_id: "phone-1".into(),
                    kind: pb::RelayKind::Offer.into(),
                    blob: b"v=0".to_vec(),
                };
                Answer::of(client.call::<pb::CallOk>(relay).await, t)
            }
            Probe::CallSnapshotQuery => Answer::of(
                client.call::<pb::CallSnapshot>(pb::CallSnapshotQuery { call_id: call, ..Default::default() }).await,
                t,
            ),
            Probe::EnvelopesSend => {
                // To the attacker's own device, whose keys are published: only the
                // conversation can refuse it.
                let to = pb::EnvelopeTo {
                    user_id: ATTACKER.into(),
                    device_id: "phone-1".into(),
                    envelope: b"sealed".to_vec(),
                };
                Answer::of(client.send_envelopes(conv, vec![to]).await, t)
            }
            Probe::EnvelopesAck => Answer::of(client.ack_envelopes(vec![t.envelope]).await, t),
            Probe::KeysQuery => Answer::of(client.query_keys(&[&t.user]).await, t),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

async fn member(broker: &TestBroker, org: &str, user: &str, roles: &[&str]) -> Result<Client> {
    let token = broker.token_with(|c| {
        c.org = org.into();
        c.sub = user.into();
        c.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    });
    Ok(Client::connect(broker.client_config(token)).await?)
}

/// The victim organisation's state: a group with a message, a scheduled message, a live call,
/// a pending DING and an envelope waiting in a mailbox.
async fn victim_state(gina: &Client, gus: &Client) -> Result<Target> {
    let conv = gina.create_group("board", &["gus"]).await?.conversation_id;
    let seq = gina.send(conv, &b"quarterly numbers"[..]).await?.seq;
    let scheduled = "board-later".to_owned();
    let options = herald_client::SendOptions::new().deliver_at(SystemTime::now() + Duration::from_secs(3600));
    gina.send_with_options(conv, Some(&scheduled), &b"later"[..], &options).await?;
    let call = gina.call_start(conv, Vec::new(), false, false).await?.call.context("call info")?.call_id;
    let ding = gina
        .ding(DingRequest {
            conversation_id: conv,
            seq,
            recipients: vec!["gus".into()],
            policy: "app".into(),
            ..DingRequest::default()
        })
        .await?
        .ding_id;
    publish_keys(gus).await?;
    let to = pb::EnvelopeTo { user_id: "gus".into(), device_id: "phone-1".into(), envelope: b"sealed key".to_vec() };
    ensure!(gina.send_envelopes(conv, vec![to]).await? == 1, "the envelope is stored");
    let envelope = gus.fetch_envelopes(0, 0).await?.envelopes.first().context("gus's envelope")?.envelope_id;
    Ok(Target { conv, seq, call, ding, envelope, scheduled, user: "gus".into() })
}

/// Publishes keys for `client`'s device, so that envelopes can be sent to it.
async fn publish_keys(client: &Client) -> Result<()> {
    let session = client.session();
    let mut counter = 0u8;
    let keys = IdentityKeyPair::generate(&mut |buf: &mut [u8]| {
        for byte in buf {
            counter = counter.wrapping_add(97);
            *byte = counter;
        }
    });
    let bundle = DeviceKeyBundle {
        org: OrgId::new(&session.org)?,
        user: UserId::new(&session.user)?,
        device: DeviceId::new(&session.device)?,
        key_version: 1,
        identity: *keys.public(),
    };
    client.publish_keys(bundle.sign(&keys)?).await?;
    Ok(())
}

/// A fingerprint of the victim's state that an attack could change.
async fn fingerprint(gina: &Client, gus: &Client, t: &Target) -> Result<String> {
    let history = gina.history(t.conv, 0, false, 100).await?;
    let members = gina.list_members(t.conv, "", 100).await?;
    let ding = gina.ding_status(t.conv, t.ding, "", 10).await?;
    let call = gina.call::<pb::CallSnapshot>(pb::CallSnapshotQuery { call_id: t.call, ..Default::default() }).await?;
    let mailbox = gus.fetch_envelopes(0, 0).await?;
    let conversation = gina.list_conversations(0, 10).await?;
    Ok(format!("{history:?}\n{members:?}\n{ding:?}\n{call:?}\n{mailbox:?}\n{conversation:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_ids_get_exactly_what_nonexistent_ids_get() -> Result<()> {
    let generated = env_or("HERALD_TENANCY_IDS", DEFAULT_GENERATED)?;
    let seed = env_or("HERALD_TENANCY_SEED", DEFAULT_SEED)?;
    println!("tenancy: HERALD_TENANCY_SEED={seed} HERALD_TENANCY_IDS={generated}");
    let broker = TestBroker::start_with(|c| c.rate_limits.enabled = false).await?;
    let gina = member(&broker, VICTIM_ORG, "gina", &[]).await?;
    let gus = member(&broker, VICTIM_ORG, "gus", &[]).await?;
    let real = victim_state(&gina, &gus).await?;
    let before = fingerprint(&gina, &gus, &real).await?;

    let mallory = member(&broker, ATTACKER_ORG, ATTACKER, &[]).await?;
    let own = mallory.create_group("decoy", &["mel"]).await?.conversation_id;
    publish_keys(&mallory).await?;
    let mut rng = SplitMix64(seed);
    let fresh = |rng: &mut SplitMix64| Target {
        conv: rng.next_u64(),
        seq: real.seq,
        call: rng.next_u64(),
        ding: rng.next_u64(),
        envelope: rng.next_u64(),
        scheduled: real.scheduled.clone(),
        user: format!("nobody-{:x}", rng.next_u64()),
    };
    let nonexistent = fresh(&mut rng);

    // The other organisation's real ids against one nonexistent set, request by request.
    let mut table: BTreeMap<Probe, Answer> = BTreeMap::new();
    let mut nonce = 0;
    for probe in Probe::ALL {
        nonce += 1;
        let foreign = probe.ask(&mallory, &real, nonce).await;
        nonce += 1;
        let absent = probe.ask(&mallory, &nonexistent, nonce).await;
        ensure!(
            foreign == absent,
            "{probe:?}: another organisation's ids get {foreign:?}, nonexistent ones {absent:?}"
        );
        match &absent {
            Answer::Refused(code, _) => ensure!(
                *code != ErrorCode::INVALID_ARGUMENT && *code != ErrorCode::MALFORMED_BODY,
                "{probe:?} is refused before any lookup ({absent:?}): the probe proves nothing"
            ),
            Answer::Answered(body) => ensure!(probe.may_answer(), "{probe:?} answered an attacker: {body}"),
        }
        table.insert(probe, absent);
    }
    // A DING id of the victim's inside a conversation of the attacker's own.
    let (in_own, in_own_absent) = (
        Target { conv: own, ..real.clone() },
        Target { conv: own, ding: nonexistent.ding, call: nonexistent.call, ..real.clone() },
    );
    for probe in [Probe::DingAck, Probe::DingQuery, Probe::DingCancel, Probe::Reding] {
        let (foreign, absent) = (probe.ask(&mallory, &in_own, 0).await, probe.ask(&mallory, &in_own_absent, 0).await);
        let foreign = blank_ids(format!("{foreign:?}"), &in_own_absent);
        ensure!(foreign == format!("{absent:?}"), "{probe:?} in the attacker's own group: {foreign} vs {absent:?}");
    }

    // Generated ids: every one gets its request's answer for a nonexistent id.
    for n in 0..generated {
        let probe = Probe::ALL[n as usize % Probe::ALL.len()];
        let target = fresh(&mut rng);
        nonce += 1;
        let answer = probe.ask(&mallory, &target, nonce).await;
        ensure!(
            Some(&answer) == table.get(&probe),
            "HERALD_TENANCY_SEED={seed}: {probe:?} for generated ids {target:?} got {answer:?}, not {:?}",
            table.get(&probe)
        );
    }
    ensure!(fingerprint(&gina, &gus, &real).await? == before, "the attacks changed the victim's state");

    println!("tenancy: {} requests with {VICTIM_ORG}'s ids and {generated} with generated ids:", Probe::ALL.len());
    for (probe, answer) in &table {
        println!("  {probe:?}: {answer:?}");
    }
    mallory.close().await;
    gina.close().await;
    gus.close().await;

    // No trace of the attacker in the victim's audit chain.
    let (dir, config) = broker.stop().await?;
    let store = RocksStore::open(&config.db_path())?;
    let victim = AuditQuery::default().run(&store, &OrgId::new(VICTIM_ORG)?)?;
    ensure!(victim.iter().all(|r| r.event.actor != ATTACKER), "the attacker appears in {VICTIM_ORG}'s audit log");
    // The probes are on record at home: by the attacker, by request type, and beyond the
    // per-session budget as a count rather than a record each.
    let own_log = AuditQuery::default().run(&store, &OrgId::new(ATTACKER_ORG)?)?;
    let denied: Vec<_> =
        own_log.iter().filter(|r| r.event.action == AuditAction::AccessDenied && r.event.actor == ATTACKER).collect();
    ensure!(!denied.is_empty(), "the attacker's refused requests are audited in {ATTACKER_ORG}'s chain");
    let detail = |r: &&herald_broker::audit::AuditRecord, key: &str| {
        r.event.details.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    ensure!(
        denied
            .iter()
            .filter(|r| r.event.target != "session_closed")
            .all(|r| matches!(detail(r, "code").as_deref(), Some("NOT_FOUND" | "FORBIDDEN"))),
        "each record of a refusal names its code"
    );
    let unaudited: u64 = denied.iter().filter_map(|r| detail(r, "unaudited_before")?.parse::<u64>().ok()).sum();
    let targets: std::collections::BTreeSet<&str> = denied.iter().map(|r| r.event.target.as_str()).collect();
    println!(
        "  {ATTACKER_ORG}'s audit log: {} access_denied records ({unaudited} more refusals counted over the budget), request types {targets:?}",
        denied.len()
    );
    drop(store);
    drop(dir);
    Ok(())
}

/// Every administrative operation, for `org`.
fn admin_requests(org: &str, conv: u64) -> Vec<(&'static str, herald_protocol::Body)> {
    let org = org.to_owned();
    vec![
        ("ORG_CREATE", pb::OrgCreate { org_id: "umbrella".into(), settings: None }.into()),
        ("ORG_GET", pb::OrgGet { org_id: org.clone() }.into()),
        ("ORG_UPDATE", pb::OrgUpdate { org_id: org.clone(), settings: Some(pb::OrgSettings::default()) }.into()),
        ("USER_IMPORT", pb::UserImport { org_id: org.clone(), users: Vec::new() }.into()),
        ("USER_LIST", pb::UserList { org_id: org.clone(), ..Default::default() }.into()),
        ("DEVICE_LIST", pb::DeviceList { org_id: org.clone(), user_id: "gus".into() }.into()),
        (
            "DEVICE_REVOKE",
            pb::DeviceRevoke { org_id: org.clone(), user_id: "gus".into(), device_id: "phone-1".into() }.into(),
        ),
        ("CONVERSATION_INSPECT", pb::ConversationInspect { org_id: org.clone(), conversation_id: conv }.into()),
        (
            "CONVERSATION_ARCHIVE",
            pb::ConversationArchive { org_id: org.clone(), conversation_id: conv, archived: true }.into(),
        ),
        ("AUDIT_QUERY", pb::AuditQuery { org_id: org.clone(), ..Default::default() }.into()),
        ("BACKUP", pb::Backup { path: "/tmp/herald-tenancy-backup".into() }.into()),
        ("ATTENDANCE_RULES_SET", pb::AttendanceRulesSet { org_id: org.clone(), rules: None }.into()),
        ("ATTENDANCE_RULES_GET", pb::AttendanceRulesGet { org_id: org.clone() }.into()),
        (
            "ATTENDANCE_REPORT",
            pb::AttendanceReport {
                org_id: org.clone(),
                from: "2025-01-01".into(),
                to: "2025-01-31".into(),
                ..Default::default()
            }
            .into(),
        ),
        ("DEVICE_REBIND", pb::DeviceRebind { org_id: org, user_id: "gus".into(), device_id: "phone-2".into() }.into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_member_is_refused_every_administrative_operation() -> Result<()> {
    let broker = TestBroker::start_with(|c| c.rate_limits.enabled = false).await?;
    let gina = member(&broker, VICTIM_ORG, "gina", &[]).await?;
    let conv = gina.create_group("board", &["gus"]).await?.conversation_id;
    let mallory = member(&broker, ATTACKER_ORG, ATTACKER, &[]).await?;
    let own = mallory.create_group("decoy", &["mel"]).await?.conversation_id;
    let admin = member(&broker, ATTACKER_ORG, "root", &["admin"]).await?;

    let mut refused = 0;
    for (org, conv) in [(ATTACKER_ORG, own), (VICTIM_ORG, conv)] {
        for (name, body) in admin_requests(org, conv) {
            let answer = mallory.call::<pb::Pong>(body).await;
            let code = answer.as_ref().err().and_then(ClientError::code);
            ensure!(code == Some(ErrorCode::FORBIDDEN), "{name} for {org} by a plain member: {answer:?}");
            refused += 1;
        }
    }
    // An admin of one organisation reaches no other: its conversation ids and its name alike.
    for (name, body) in admin_requests(ATTACKER_ORG, conv).into_iter().filter(|(n, _)| n.starts_with("CONVERSATION")) {
        let foreign = admin.call::<pb::ConversationReport>(body).await;
        let absent = admin
            .call::<pb::ConversationReport>(pb::ConversationInspect {
                org_id: ATTACKER_ORG.into(),
                conversation_id: conv ^ 0x5a5a,
            })
            .await;
        let (foreign, absent) = (foreign.err().context(name)?, absent.err().context("absent")?);
        ensure!(foreign.code() == absent.code(), "{name}: {foreign} vs {absent}");
    }
    let foreign_org = admin.admin_of(VICTIM_ORG).org().await.err().and_then(|e| e.code());
    let unknown_org = admin.admin_of("initech").org().await.err().and_then(|e| e.code());
    ensure!(foreign_org == unknown_org && foreign_org.is_some(), "ORG_GET: {foreign_org:?} vs {unknown_org:?}");
    ensure!(gina.list_members(conv, "", 10).await?.members.len() == 2, "the group is untouched");
    println!("admin operations: {refused} refused to a plain member (own and other organisation)");
    Ok(())
}

/// A setting from the environment, or its default when unset.
fn env_or(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(value) => value.trim().parse().with_context(|| format!("{name}={value}")),
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(e).context(name.to_owned()),
    }
}
