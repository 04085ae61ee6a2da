//! Every `herald-load` scenario, tiny, against a broker the tool spawns itself: so the tool never
//! rots, and its checks are seen to find every delivery. The full-size runs are in
//! docs/BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `herald-load --spawn-broker <args>` and returns its JSON report, failing on a non-zero
/// exit (which a failed delivery check causes).
fn run(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let exe = Path::new(env!("CARGO_BIN_EXE_herald-load"));
    let output = Command::new(exe)
        .arg("--spawn-broker")
        .arg("--broker-bin")
        .arg(broker_bin(exe))
        .arg("--broker-shards")
        .arg("2")
        .arg("--quiet")
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .expect("running herald-load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "herald-load {args:?} failed:\n{stdout}\n{stderr}");
    serde_json::from_str(&std::fs::read_to_string(&json).expect("report written")).expect("report is JSON")
}

/// The broker built beside the load tool (`cargo test --workspace` builds both).
fn broker_bin(load_exe: &Path) -> PathBuf {
    let dir = load_exe.parent().expect("the executable's directory");
    let bin = dir.join(format!("herald-broker{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing: run the workspace's tests (`cargo test --workspace`)", bin.display());
    bin
}

/// Asserts every check in the report expected something and lost, duplicated and reordered
/// nothing; returns the checks by name with their expected counts.
fn assert_clean(report: &serde_json::Value) -> Vec<(String, u64)> {
    let checks = report["checks"].as_array().expect("checks");
    assert!(!checks.is_empty(), "a scenario without checks proves nothing: {report}");
    checks
        .iter()
        .map(|c| {
            let expected = c["expected"].as_u64().expect("expected");
            assert!(expected > 0, "{c}");
            for field in ["lost", "unexpected", "duplicates", "reordered"] {
                assert_eq!(c[field], 0, "{field} in {c}");
            }
            (c["name"].as_str().expect("name").to_owned(), expected)
        })
        .collect()
}

fn phase<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["phases"].as_array().expect("phases").iter().find(|p| p["name"] == name).expect("phase present")
}

#[test]
fn fanout_delivers_every_message_to_every_member_and_measures_the_broker() {
    let report = run(&["fanout", "--members", "30", "--messages", "20", "--window", "8"]);
    assert_eq!(assert_clean(&report), vec![("deliveries".to_owned(), 20 * 29)]);
    assert_eq!(phase(&report, "delivery")["latency"]["count"], 20 * 29);
    let broker = &report["broker"];
    assert!(broker["cpu_seconds"].as_f64().expect("cpu") > 0.0, "{broker}");
    assert!(broker["peak_rss_bytes"].as_u64().expect("rss") > 1 << 20, "{broker}");
}

#[test]
fn paced_offers_its_rate() {
    let report = run(&["paced", "--members", "20", "--messages", "10", "--rate", "20"]);
    assert_eq!(assert_clean(&report), vec![("deliveries".to_owned(), 10 * 19)]);
    // Ten messages at 20 a second take at least the nine gaps between them.
    assert!(phase(&report, "send")["elapsed_ms"].as_u64().expect("ms") >= 400, "{report}");
}

#[test]
fn groups_and_direct_deliver_within_each_conversation_only() {
    let groups = run(&["groups", "--groups", "4", "--group-size", "5", "--messages", "5", "--rate", "50"]);
    assert_eq!(assert_clean(&groups), vec![("deliveries".to_owned(), 20 * 5 * 4)]);
    let direct = run(&["direct", "--pairs", "5", "--messages", "10", "--rate", "0"]);
    assert_eq!(assert_clean(&direct), vec![("deliveries".to_owned(), 10 * 10)]);
}

#[test]
fn read_storm_reaches_the_sender_aggregated() {
    let report = run(&["read-storm", "--members", "40"]);
    assert_eq!(assert_clean(&report), vec![("message".to_owned(), 39), ("reads-counted".to_owned(), 40)]);
    let updates = report["figures"]["sender_updates"].as_f64().expect("updates");
    assert!((1.0..39.0).contains(&updates), "39 reads must not mean 39 updates: {updates}");
}

#[test]
fn reconnect_storm_catches_everyone_up_exactly() {
    let report = run(&["reconnect-storm", "--members", "25", "--backlog", "30"]);
    assert_eq!(assert_clean(&report), vec![("backlog".to_owned(), 24 * 30)]);
    assert_eq!(phase(&report, "caught-up")["ok"], 24);
}

#[test]
fn recall_tells_every_member_once() {
    let report = run(&["recall", "--members", "15", "--messages", "4"]);
    assert_eq!(assert_clean(&report), vec![("notices".to_owned(), 14 * 4)]);
}

#[test]
fn ding_reaches_every_recipient() {
    let report = run(&["ding", "--recipients", "10", "--ack-spread-ms", "200", "--timeout-s", "30"]);
    assert_eq!(assert_clean(&report), vec![("notices".to_owned(), 10)]);
    assert_eq!(phase(&report, "ack")["ok"], 10);
}

#[test]
fn connect_opens_and_pings_every_session() {
    let report = run(&["connect", "--clients", "20", "--pings", "3"]);
    assert_eq!(phase(&report, "connect")["ok"], 20);
    assert_eq!(phase(&report, "ping")["ok"], 60);
}

#[test]
fn checkin_burst_judges_every_check_in_and_alerts_hr() {
    let report = run(&["checkin-burst", "--people", "30", "--window-s", "1", "--outside-every", "10"]);
    assert_eq!(
        assert_clean(&report),
        vec![("accepted".to_owned(), 27), ("flagged".to_owned(), 3), ("hr-alerts".to_owned(), 3)]
    );
    assert_eq!(report["figures"]["misjudged"], 0.0);
}

#[test]
fn call_join_converges_every_participant_list() {
    let report = run(&["call-join", "--devices", "40", "--window-s", "0.5", "--timeout-s", "20"]);
    assert_eq!(assert_clean(&report), vec![("converged".to_owned(), 40)]);
    assert_eq!(phase(&report, "join")["ok"], 40);
    assert_eq!(report["figures"]["snapshots"], 40.0);
}
