//! The `checkin-burst` scenario: a workforce checks in within one window (everyone arriving at
//! 9:00). One site, a geofence and a Wi-Fi access point required; every N-th person checks in
//! from a kilometre away and must come back flagged, with the flag posted to the HR group. Counts
//! accepted and flagged against what the rules say they must be.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use herald_client::{CheckInRequest, Client, EntryKind, Event, pb};

use crate::harness::{Harness, close_all};
use crate::progress::Progress;
use crate::report::{Phase, Report, latency_histogram, record};
use crate::tally::Check;

/// The site everyone works at.
const SITE: (f64, f64) = (31.2304, 121.4737);
/// About a kilometre north of it: outside any reasonable fence.
const ELSEWHERE: (f64, f64) = (31.2394, 121.4737);
const ACCESS_POINT: &str = "aa:bb:cc:00:00:01";
/// Who posts flagged check-ins to HR (the broker's system user).
const HR_POSTER: &str = "attendance-bot";

/// Parameters of `checkin-burst`.
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct CheckinArgs {
    /// People checking in (simulated users 1 to N; user 0 is the HR admin).
    #[arg(long, default_value_t = 5000)]
    people: usize,
    /// The window their check-ins are spread over, in seconds.
    #[arg(long, default_value_t = 60.0)]
    window_s: f64,
    /// Every N-th person checks in from outside the fence (0: nobody).
    #[arg(long, default_value_t = 20)]
    outside_every: usize,
    /// Handshakes in flight at once while the sessions open.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// How long to wait for the HR group's alerts after the burst.
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
}

impl CheckinArgs {
    fn outside(&self, person: usize) -> bool {
        self.outside_every > 0 && person.is_multiple_of(self.outside_every)
    }
}

/// What one person's check-in came to.
struct Outcome {
    took: Option<Duration>,
    flagged: bool,
    outside: bool,
}

pub(crate) async fn run(harness: &Harness, args: &CheckinArgs) -> Result<Report> {
    anyhow::ensure!(args.people >= 1, "--people is at least 1");
    let mut report = Report::new("checkin-burst", args);
    let admin = Client::connect(harness.client_config_with_roles(0, &["admin"])?).await.context("the HR admin")?;
    let hr_events = admin.events().context("the HR admin's events")?;
    let hr = admin.create_group("HR alerts", &[HR_POSTER]).await.context("creating the HR group")?.conversation_id;
    admin.admin().set_attendance_rules(rules(hr)).await.context("setting the attendance rules")?;
    let (people, connect) = harness.open_all(1..args.people + 1, args.concurrency, "connect").await?;
    report.phases.push(connect);

    let progress = Progress::new("check-ins", args.people as u64, harness.live);
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = people
        .iter()
        .enumerate()
        .map(|(i, client)| {
            let person = i + 1;
            let at = start + Duration::from_secs_f64(args.window_s * i as f64 / args.people as f64);
            let (client, progress, outside) = (client.clone(), progress.clone(), args.outside(person));
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let began = Instant::now();
                let record = client.check_in(check_in(outside)).await;
                progress.inc(1);
                if let Err(e) = &record {
                    eprintln!("check-in failed: {e}");
                }
                let flagged = record.as_ref().is_ok_and(|r| r.status == pb::CheckInStatus::Flagged as i32);
                Outcome { took: record.is_ok().then(|| began.elapsed()), flagged, outside }
            })
        })
        .collect();
    let (mut latencies, mut failed) = (latency_histogram(), 0);
    let (mut accepted, mut flagged, mut wrong) = (0u64, 0u64, 0u64);
    for task in tasks {
        let outcome = task.await?;
        match outcome.took {
            Some(took) => record(&mut latencies, took),
            None => failed += 1,
        }
        match (outcome.took.is_some(), outcome.flagged) {
            (false, _) => {}
            (true, true) => flagged += 1,
            (true, false) => accepted += 1,
        }
        wrong += u64::from(outcome.took.is_some() && outcome.flagged != outcome.outside);
    }
    progress.finish();
    report.phases.push(Phase::new("check-in", failed, start.elapsed(), &latencies));

    let expected_flagged = (1..=args.people).filter(|&p| args.outside(p)).count() as u64;
    let alerts = count_alerts(hr_events, hr, expected_flagged, Duration::from_secs(args.timeout_s)).await;
    report.checks.push(Check::counted("accepted", args.people as u64 - expected_flagged, accepted, 0));
    report.checks.push(Check::counted("flagged", expected_flagged, flagged, 0));
    report.checks.push(Check::counted("hr-alerts", expected_flagged, alerts.0, alerts.1));
    report.figures.insert("misjudged", wrong as f64);
    report.figures.insert("check_ins_per_second", args.people as f64 / start.elapsed().as_secs_f64().max(1e-9));
    close_all(people).await;
    admin.close().await;
    anyhow::ensure!(wrong == 0, "{wrong} check-ins were judged against the rules' verdict");
    Ok(report)
}

/// One site with a 200 m fence and one access point; the fence and the access point required.
fn rules(hr_conversation_id: u64) -> pb::AttendanceRules {
    pb::AttendanceRules {
        sites: vec![pb::AttendanceSite {
            site_id: "hq".into(),
            circle: Some(pb::GeoCircle { latitude: SITE.0, longitude: SITE.1, radius_m: 200.0 }),
            polygon: Vec::new(),
            bssids: vec![ACCESS_POINT.into()],
        }],
        rules: vec![pb::AttendanceRule {
            name: "everyone".into(),
            require: vec![pb::AttendanceProof::Geofence.into(), pb::AttendanceProof::Bssid.into()],
            ..Default::default()
        }],
        hr_conversation_id,
        ..Default::default()
    }
}

fn check_in(outside: bool) -> CheckInRequest {
    let (latitude, longitude) = if outside { ELSEWHERE } else { SITE };
    CheckInRequest {
        kind: pb::CheckInKind::In,
        latitude,
        longitude,
        accuracy_m: 15.0,
        bssid: Some(ACCESS_POINT.into()),
        ssid: Some("office".into()),
        liveness: None,
        mock_location: false,
        site_id: None,
        client_time_ms: None,
    }
}

/// Counts the alerts the HR group receives from the attendance bot, up to `expected` or the
/// timeout: (distinct alerts, repeats).
async fn count_alerts(
    mut events: tokio::sync::mpsc::Receiver<Event>,
    hr: u64,
    expected: u64,
    timeout: Duration,
) -> (u64, u64) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = std::collections::HashSet::new();
    let mut repeats = 0;
    while (seen.len() as u64) < expected {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await else { break };
        if let Event::Delivery(entry) = event
            && entry.conversation_id == hr
            && entry.sender_user == HR_POSTER
            && let EntryKind::Message { client_msg_id, .. } = entry.kind
            && !seen.insert(client_msg_id)
        {
            repeats += 1;
        }
    }
    (seen.len() as u64, repeats)
}
