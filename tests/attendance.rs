//! Attendance end to end: real broker, real QUIC clients, real RocksDB. Rules set live by an
//! admin, accepted and flagged check-ins, a flagged one reaching the HR conversation and the
//! audit log, bad input refused with nothing recorded, the day view and the payroll CSV.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::TestBroker;
use herald_broker::attendance::Day;
use herald_client::{CheckInRequest, Client, ClientError, EntryKind, ErrorCode, Event, pb};

/// HQ's centre; its geofence is a 150 m circle.
const HQ: (f64, f64) = (31.2304, 121.4737);
const HQ_AP: &str = "aa:bb:cc:00:00:01";

fn rules(hr_conversation_id: u64) -> pb::AttendanceRules {
    pb::AttendanceRules {
        utc_offset_min: 0,
        workdays: 0x7f,
        sites: vec![pb::AttendanceSite {
            site_id: "hq".into(),
            circle: Some(pb::GeoCircle { latitude: HQ.0, longitude: HQ.1, radius_m: 150.0 }),
            polygon: vec![],
            bssids: vec![HQ_AP.into()],
        }],
        rules: vec![pb::AttendanceRule {
            name: "frontline".into(),
            department: "store".into(),
            site_ids: vec!["hq".into()],
            require: vec![pb::AttendanceProof::Geofence.into(), pb::AttendanceProof::Bssid.into()],
            shift: Some(pb::AttendanceShift { start_min: 0, end_min: 1439, grace_min: 0, flex_min: 0 }),
            ..Default::default()
        }],
        hr_conversation_id,
        ..Default::default()
    }
}

fn at_hq() -> CheckInRequest {
    CheckInRequest {
        kind: pb::CheckInKind::In,
        latitude: HQ.0,
        longitude: HQ.1,
        accuracy_m: 10.0,
        bssid: Some(HQ_AP.into()),
        ..Default::default()
    }
}

fn code(result: Result<pb::CheckInRecord, ClientError>) -> Option<ErrorCode> {
    result.err().and_then(|e| e.code())
}

/// The next message delivered from `sender`, as text.
async fn next_message_from(events: &mut tokio::sync::mpsc::Receiver<Event>, sender: &str) -> Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => bail!("no message from {sender}"),
            Ok(None) => bail!("event stream ended"),
            Ok(Some(Event::Delivery(entry))) if entry.sender_user == sender => {
                if let EntryKind::Message { payload, .. } = entry.kind {
                    return Ok(String::from_utf8(payload.to_vec())?);
                }
            }
            Ok(Some(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_ins_are_judged_flagged_ones_reach_hr_and_bad_input_records_nothing() -> Result<()> {
    let broker = TestBroker::start().await?;
    let admin = Client::connect(broker.client_config(broker.token_with(|c| {
        c.sub = "root".into();
        c.roles = vec!["admin".into()];
    })))
    .await?;
    let person =
        |user: &str| pb::DirectoryUser { user_id: user.into(), department: "store".into(), ..Default::default() };
    admin.admin().import_users(vec![person("ann"), person("bob")]).await?;

    // Before any rules, a check-in has nothing to be judged by.
    let ann = broker.client("ann").await?;
    assert_eq!(code(ann.check_in(at_hq()).await), Some(ErrorCode::NOT_FOUND));

    // HR's alert group, with the attendance bot as a member; the rules point at it.
    let hana = broker.client("hana").await?;
    let mut hana_events = hana.events().context("events")?;
    let hr = hana.create_group("HR alerts", &["attendance-bot"]).await?;
    let set = admin.admin().set_attendance_rules(rules(hr.conversation_id)).await?;
    assert_eq!(set.rules.map(|r| r.hr_conversation_id), Some(hr.conversation_id));

    let accepted = ann.check_in(at_hq()).await?;
    assert_eq!(accepted.status, pb::CheckInStatus::Accepted as i32, "{:?}", accepted.flags);
    assert_eq!((accepted.site_id.as_str(), accepted.rule.as_str()), ("hq", "frontline"));

    // Leaving from 2 km north, moments later: outside the fence, and implausibly fast.
    let away = CheckInRequest { kind: pb::CheckInKind::Out, latitude: HQ.0 + 0.018, ..at_hq() };
    let flagged = ann.check_in(away).await?;
    assert_eq!(flagged.status, pb::CheckInStatus::Flagged as i32);
    let codes: Vec<&str> = flagged.flags.iter().map(|f| f.code.as_str()).collect();
    assert!(codes.contains(&"OUTSIDE_GEOFENCE") && codes.contains(&"IMPOSSIBLE_TRAVEL"), "{codes:?}");
    let outside = flagged.flags.iter().find(|f| f.code == "OUTSIDE_GEOFENCE").context("flag")?;
    assert!((1_800..=1_900).contains(&outside.value), "outside by {} m", outside.value);

    let post = next_message_from(&mut hana_events, "attendance-bot").await?;
    let post: serde_json::Value = serde_json::from_str(&post)?;
    assert_eq!(post["type"], "attendance.flagged");
    assert_eq!(post["user_id"], "ann");
    assert_eq!(post["check_in_id"], flagged.check_in_id);
    assert_eq!(post["kind"], "out");
    assert!(post["flags"].as_array().is_some_and(|f| f.iter().any(|f| f["code"] == "OUTSIDE_GEOFENCE")));

    // Bad input: clear codes, nothing recorded.
    let nan = CheckInRequest { latitude: f64::NAN, ..at_hq() };
    let north_of_the_pole = CheckInRequest { latitude: 90.5, ..at_hq() };
    let negative = CheckInRequest { accuracy_m: -5.0, ..at_hq() };
    let last_year = CheckInRequest { client_time_ms: Some(1_700_000_000_000), ..at_hq() };
    let moon = CheckInRequest { site_id: Some("moon-base".into()), ..at_hq() };
    for (request, expected) in [
        (nan, ErrorCode::INVALID_LOCATION),
        (north_of_the_pole, ErrorCode::INVALID_LOCATION),
        (negative, ErrorCode::INVALID_LOCATION),
        (last_year, ErrorCode::CLOCK_SKEW),
        (moon, ErrorCode::UNKNOWN_SITE),
    ] {
        assert_eq!(code(ann.check_in(request).await), Some(expected));
    }
    let for_bob = pb::CheckIn {
        user_id: "bob".into(),
        kind: pb::CheckInKind::In.into(),
        latitude: HQ.0,
        longitude: HQ.1,
        ..Default::default()
    };
    let refused = ann.call::<pb::CheckInResult>(for_bob).await;
    assert_eq!(refused.err().and_then(|e| e.code()), Some(ErrorCode::FORBIDDEN));

    let day = ann.attendance_day(None).await?;
    assert_eq!(day.check_ins.len(), 2, "only the two valid check-ins were recorded");
    let row = day.row.context("row")?;
    assert_eq!((row.check_ins, row.flagged, row.absent), (2, 1, false));

    // The flag is in the audit log; the report has ann's day and bob's absence.
    let audit =
        admin.admin().audit(pb::AuditQuery { action: "attendance_flagged".into(), ..Default::default() }).await?;
    assert_eq!(audit.entries.len(), 1);
    assert_eq!(audit.entries[0].target, format!("ann/{}", flagged.check_in_id));

    let now_ms = u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis())?;
    let today = Day::of(now_ms, 0).to_string();
    let csv = admin.admin().attendance_csv(&today, &today, "store").await?;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.first().copied(), Some(herald_client::CSV_HEADER));
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].starts_with(&format!("{today},ann,store,")) && lines[1].ends_with(",false,1,2"), "{csv}");
    assert_eq!(lines[2], format!("{today},bob,store,,,0,0,0,true,0,0"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_device_is_flagged_until_an_admin_rebinds_and_rules_are_admin_only() -> Result<()> {
    let broker = TestBroker::start().await?;
    let admin = Client::connect(broker.client_config(broker.token_with(|c| {
        c.sub = "root".into();
        c.roles = vec!["admin".into()];
    })))
    .await?;
    admin
        .admin()
        .import_users(vec![pb::DirectoryUser {
            user_id: "ann".into(),
            department: "store".into(),
            ..Default::default()
        }])
        .await?;
    let ann = broker.client("ann").await?;
    assert_eq!(
        ann.admin().set_attendance_rules(rules(0)).await.err().and_then(|e| e.code()),
        Some(ErrorCode::FORBIDDEN)
    );
    let invalid = pb::AttendanceRules { utc_offset_min: 5000, ..rules(0) };
    let refused = admin.admin().set_attendance_rules(invalid).await;
    assert_eq!(refused.err().and_then(|e| e.code()), Some(ErrorCode::INVALID_ARGUMENT));
    admin.admin().set_attendance_rules(rules(0)).await?;

    assert!(ann.check_in(at_hq()).await?.flags.is_empty(), "first use binds phone-1");
    let tablet = Client::connect(broker.client_config(broker.token("acme", "ann")).with_device_id("tablet")).await?;
    let out = CheckInRequest { kind: pb::CheckInKind::Out, ..at_hq() };
    let flagged = tablet.check_in(out.clone()).await?;
    let codes: Vec<&str> = flagged.flags.iter().map(|f| f.code.as_str()).collect();
    assert_eq!(codes, ["DEVICE_NOT_BOUND"]);

    let binding = admin.admin().rebind_attendance_device("ann", Some("tablet")).await?;
    assert_eq!(binding.device_id, "tablet");
    let field = CheckInRequest { kind: pb::CheckInKind::FieldVisit, ..at_hq() };
    assert!(tablet.check_in(field).await?.flags.is_empty(), "the tablet is ann's now");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_bindings_and_history_survive_a_restart_and_stay_in_their_organisation() -> Result<()> {
    let broker = TestBroker::start().await?;
    let admin_token = broker.token_with(|c| {
        c.sub = "root".into();
        c.roles = vec!["admin".into()];
    });
    let admin = Client::connect(broker.client_config(admin_token)).await?;
    admin
        .admin()
        .import_users(vec![pb::DirectoryUser {
            user_id: "ann".into(),
            department: "store".into(),
            ..Default::default()
        }])
        .await?;
    admin.admin().set_attendance_rules(rules(0)).await?;
    let ann = broker.client("ann").await?;
    assert!(ann.check_in(at_hq()).await?.flags.is_empty());
    ann.close().await;
    admin.close().await;

    let (dir, config) = broker.stop().await?;
    let broker = TestBroker::start_in(dir, config).await?;

    // The history came back: Beijing moments after HQ is a duplicate arrival and impossible.
    let ann = broker.client("ann").await?;
    let beijing = CheckInRequest { latitude: 39.9042, longitude: 116.4074, ..at_hq() };
    let codes: Vec<String> = ann.check_in(beijing).await?.flags.into_iter().map(|f| f.code).collect();
    assert!(codes.contains(&"DUPLICATE".to_owned()) && codes.contains(&"IMPOSSIBLE_TRAVEL".to_owned()), "{codes:?}");
    // So did the binding, and the rules.
    let tablet = Client::connect(broker.client_config(broker.token("acme", "ann")).with_device_id("tablet")).await?;
    let out = CheckInRequest { kind: pb::CheckInKind::Out, ..at_hq() };
    let codes: Vec<String> = tablet.check_in(out).await?.flags.into_iter().map(|f| f.code).collect();
    assert!(codes.contains(&"DEVICE_NOT_BOUND".to_owned()), "{codes:?}");

    // Another organisation sees none of it.
    let globex = Client::connect(broker.client_config(broker.token_with(|c| {
        c.org = "globex".into();
        c.sub = "root".into();
        c.roles = vec!["admin".into()];
    })))
    .await?;
    assert_eq!(globex.admin().attendance_rules().await?.rules, None);
    let stranger = broker.client_config(broker.token("globex", "gus"));
    let gus = Client::connect(stranger).await?;
    assert_eq!(code(gus.check_in(at_hq()).await), Some(ErrorCode::NOT_FOUND));
    let refused = globex.admin_of("acme").attendance_rules().await;
    assert_eq!(refused.err().and_then(|e| e.code()), Some(ErrorCode::NOT_FOUND));
    Ok(())
}
