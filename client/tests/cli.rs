//! The `herald` binary against a real in-process broker.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use herald_broker::auth::TokenMinter;
use herald_broker::{Config, RunningBroker};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

async fn broker(dir: &std::path::Path) -> Result<RunningBroker> {
    let mut config =
        Config { listen: SocketAddr::from(([127, 0, 0, 1], 0)), data_dir: dir.to_owned(), ..Config::default() };
    config.auth.leeway = Duration::ZERO;
    Ok(RunningBroker::start(config).await?)
}

fn herald(broker: &RunningBroker, token: &str, args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(HERALD)
        .arg("--server")
        .arg(broker.local_addr().to_string())
        .arg("--cert")
        .arg(broker.cert_path())
        .args(["--token", token])
        .args(args)
        .output()?)
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_ping_prints_round_trips() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = broker(dir.path()).await?;
    let minter = TokenMinter::new(broker.dev_signing_key().expect("dev key"))?;
    let token = minter.mint_for("demo", "alice", None, &[], now_s(), Duration::from_secs(600))?;
    let broker_ref = &broker;
    let out =
        tokio::task::block_in_place(|| herald(broker_ref, &token, &["ping", "--count", "2", "--interval", "10ms"]))?;
    let stdout = String::from_utf8(out.stdout)?;
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("as demo/alice (device cli)"), "{stdout}");
    assert_eq!(stdout.matches("pong from").count(), 2, "{stdout}");
    assert!(stdout.contains("2 pings: min/avg/max"), "{stdout}");

    let out = tokio::task::block_in_place(|| {
        herald(broker_ref, &token, &["--json", "ping", "--count", "3", "--interval", "10ms"])
    })?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ping: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!((&ping["org"], &ping["user"], &ping["device"]), (&"demo".into(), &"alice".into(), &"cli".into()));
    assert_eq!(ping["remote"], broker.local_addr().to_string());
    let rtts = ping["rtts_ms"].as_array().map_or(0, Vec::len);
    assert_eq!(rtts, 3, "{ping}");
    let (min, avg, max) = (ping["min_ms"].as_f64(), ping["avg_ms"].as_f64(), ping["max_ms"].as_f64());
    assert!(min > Some(0.0) && min <= avg && avg <= max, "{ping}");
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_ping_reports_a_refused_token_by_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = broker(dir.path()).await?;
    let minter = TokenMinter::new(broker.dev_signing_key().expect("dev key"))?;
    let expired = minter.mint_for("demo", "alice", None, &[], now_s() - 7200, Duration::from_secs(60))?;
    let broker_ref = &broker;
    let out = tokio::task::block_in_place(|| herald(broker_ref, &expired, &["ping"]))?;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr)?;
    assert!(stderr.contains("TOKEN_EXPIRED"), "{stderr}");
    let out = tokio::task::block_in_place(|| herald(broker_ref, &expired, &["ping", "--json"]))?;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let error: serde_json::Value = serde_json::from_slice(&out.stderr)?;
    assert_eq!(error["error"]["code"], "TOKEN_EXPIRED", "{error}");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("connecting to")), "{error}");
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_checkin_and_attendance_today() -> Result<()> {
    use herald_client::{Client, ClientConfig, Trust, pb};
    let dir = tempfile::tempdir()?;
    let broker = broker(dir.path()).await?;
    let minter = TokenMinter::new(broker.dev_signing_key().expect("dev key"))?;
    let admin_token = minter.mint_for("demo", "root", None, &["admin".into()], now_s(), Duration::from_secs(600))?;
    let config = ClientConfig::new(broker.local_addr(), admin_token)
        .with_trust(Trust::pem_file(broker.cert_path())?)
        .with_device_id("admin-cli");
    let admin = Client::connect(config).await?;
    let rules = pb::AttendanceRules {
        sites: vec![pb::AttendanceSite {
            site_id: "hq".into(),
            circle: Some(pb::GeoCircle { latitude: 31.2304, longitude: 121.4737, radius_m: 150.0 }),
            ..Default::default()
        }],
        rules: vec![pb::AttendanceRule {
            name: "everyone".into(),
            require: vec![pb::AttendanceProof::Geofence.into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    admin.admin().set_attendance_rules(rules).await?;

    let token = minter.mint_for("demo", "alice", None, &[], now_s(), Duration::from_secs(600))?;
    let broker_ref = &broker;
    let run = |args: &[&str]| tokio::task::block_in_place(|| herald(broker_ref, &token, args));
    let accepted = run(&["checkin", "--lat", "31.2304", "--lon", "121.4737"])?;
    let stdout = String::from_utf8(accepted.stdout)?;
    assert!(accepted.status.success() && stdout.starts_with("accepted id="), "{stdout}");
    assert!(stdout.contains("kind=in") && stdout.contains("site=hq"), "{stdout}");

    let flagged = run(&["checkin", "--lat", "31.25", "--lon", "121.4737", "--kind", "out", "--accuracy", "5"])?;
    let stdout = String::from_utf8(flagged.stdout)?;
    assert!(
        stdout.starts_with("flagged id=") && stdout.contains("flag OUTSIDE_GEOFENCE: outside geofence of hq by"),
        "{stdout}"
    );

    let refused = run(&["checkin", "--lat", "95", "--lon", "0"])?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("INVALID_LOCATION"));

    let today = run(&["attendance", "today"])?;
    let stdout = String::from_utf8(today.stdout)?;
    assert!(today.status.success() && stdout.contains("flagged=1 check_ins=2"), "{stdout}");
    let records = stdout.lines().filter(|l| l.starts_with("accepted ") || l.starts_with("flagged ")).count();
    assert_eq!(records, 2, "{stdout}");
    assert!(stdout.contains("  flag OUTSIDE_GEOFENCE: "), "{stdout}");

    let json = |args: &[&str]| -> Result<serde_json::Value> {
        let args: Vec<&str> = std::iter::once("--json").chain(args.iter().copied()).collect();
        let out = run(&args)?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let outside = json(&["checkin", "--lat", "31.25", "--lon", "121.4737", "--kind", "out"])?;
    assert_eq!((&outside["status"], &outside["kind"]), (&"flagged".into(), &"out".into()), "{outside}");
    assert_eq!(outside["flags"][0]["code"], "OUTSIDE_GEOFENCE", "{outside}");
    assert!(outside["check_in_id"].as_u64() > Some(0) && outside["latitude"] == 31.25, "{outside}");
    // A field visit is away from the sites by definition: no geofence applies.
    let field = json(&["checkin", "--lat", "31.25", "--lon", "121.4737", "--kind", "field"])?;
    assert_eq!((&field["status"], &field["kind"]), (&"accepted".into(), &"field_visit".into()), "{field}");
    assert_eq!(field["flags"], serde_json::json!([]), "{field}");
    let day = json(&["attendance", "today"])?;
    assert_eq!((&day["summary"]["check_ins"], &day["summary"]["flagged"]), (&4.into(), &2.into()), "{day}");
    let kinds: Vec<&serde_json::Value> =
        day["check_ins"].as_array().map(|c| c.iter().map(|r| &r["kind"]).collect()).unwrap_or_default();
    assert_eq!(kinds.len(), 4, "{day}");
    assert!(kinds.contains(&&"in".into()) && kinds.contains(&&"out".into()), "{day}");
    admin.close().await;
    broker.shutdown().await?;
    Ok(())
}
