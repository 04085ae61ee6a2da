//! The `herald-broker` binary as a newcomer and an operator use it: start on a fresh data
//! directory, read the banner, mint a token with the `token` command, connect, renew the
//! certificate with SIGHUP, and stop it with SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herald_client::{Client, ClientConfig, Trust};

const BROKER: &str = env!("CARGO_BIN_EXE_herald-broker");

#[tokio::test]
async fn a_fresh_broker_prints_what_a_newcomer_needs_and_its_token_works() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("herald-data");
    let mut broker = Command::new(BROKER)
        .args(["--data-dir"])
        .arg(&data_dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut lines = BufReader::new(broker.stdout.take().context("stdout")?).lines();
    let banner: Vec<String> = lines.by_ref().take(7).collect::<Result<_, _>>()?;
    let banner = banner.join("\n");
    let addr: SocketAddr =
        banner.split_whitespace().skip_while(|w| *w != "on").nth(1).context("address in banner")?.parse()?;
    assert!(banner.contains("certificate:"), "{banner}");
    assert!(banner.contains("token --org demo --user alice"), "{banner}");
    let cert = data_dir.join("tls/cert.pem");
    assert!(banner.contains(&cert.display().to_string()), "{banner}");
    assert!(data_dir.join("token-signing-key.pem").exists());

    let minted = Command::new(BROKER)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["token", "--org", "demo", "--user", "alice", "--ttl", "10m", "--role", "admin"])
        .output()?;
    if !minted.status.success() {
        bail!("token command failed: {}", String::from_utf8_lossy(&minted.stderr));
    }
    let token = String::from_utf8(minted.stdout)?.trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let config = ClientConfig::new(addr, token).with_trust(Trust::pem_file(&cert)?).with_device_id("cli-test");
    let client = Client::connect(config).await?;
    assert_eq!((client.session().org.as_str(), client.session().user.as_str()), ("demo", "alice"));
    client.ping().await?;

    // `admin` mints itself an operator token with the same development key.
    let admin = |args: &[&str]| -> Result<String> {
        let out = Command::new(BROKER)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["admin", "--server", &addr.to_string()])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("admin {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    };
    assert!(admin(&["org-set", "--recall-window", "5m"])?.contains("recall_window=5m"));
    let users = dir.path().join("users.csv");
    std::fs::write(&users, "user_id,manager_id,phone,roles\nceo,,+8613800138000,exec;hr\nalice,ceo,,\n")?;
    assert_eq!(admin(&["users-import", &users.display().to_string()])?.trim(), "created=2 updated=0 disabled=0");
    assert!(admin(&["revoke", "alice", "cli-test"])?.contains("sessions closed: 1"));
    let audit = admin(&["audit", "--action", "device_revoked"])?;
    assert!(audit.contains("\"target\":\"alice/cli-test\""), "{audit}");

    // `attendance`: rules from the documented example file, the payroll export, a rebind.
    let attendance = |args: &[&str]| -> Result<String> {
        let out = Command::new(BROKER)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["attendance", "--server", &addr.to_string()])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("attendance {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    };
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/attendance-rules.example.json");
    let outline = attendance(&["set-rules", example])?;
    assert!(outline.contains("sites=hq,depot rules=managers,frontline,drivers,remote"), "{outline}");
    let csv = attendance(&["export", "--org", "demo", "--from", "2026-11-02", "--to", "2026-11-03"])?;
    let expected = [
        herald_client::CSV_HEADER,
        "2026-11-02,alice,,,,0,0,0,true,0,0",
        "2026-11-03,alice,,,,0,0,0,true,0,0",
        "2026-11-02,ceo,,,,0,0,0,true,0,0",
        "2026-11-03,ceo,,,,0,0,0,true,0,0",
    ];
    assert_eq!(csv.lines().collect::<Vec<_>>(), expected);
    assert_eq!(attendance(&["rebind", "alice", "phone-9"])?.trim(), "user=alice device=phone-9");
    let audit = admin(&["audit", "--action", "attendance_exported"])?;
    assert!(audit.contains("2026-11-02"), "{audit}");

    let killed = Command::new("kill").args(["-TERM", &broker.id().to_string()]).status()?;
    assert!(killed.success());
    let status = wait_with_timeout(&mut broker, Duration::from_secs(15))?;
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let err = client.ping().await.expect_err("revoked, then stopped");
    assert_eq!(err.code(), Some(herald_protocol::ErrorCode::REVOKED), "{err}");
    Ok(())
}

#[test]
fn help_documents_every_option() -> Result<()> {
    let out = Command::new(BROKER).args(["serve", "--help"]).output()?;
    let help = String::from_utf8(out.stdout)?;
    for option in ["--listen", "--org", "--log-format", "--log-level", "--config", "--data-dir"] {
        assert!(help.contains(option), "serve --help lacks {option}:\n{help}");
    }
    let out = Command::new(BROKER).args(["token", "--help"]).output()?;
    let help = String::from_utf8(out.stdout)?;
    for option in ["--org", "--user", "--device", "--ttl", "--role", "--key"] {
        assert!(help.contains(option), "token --help lacks {option}:\n{help}");
    }
    Ok(())
}

#[test]
fn a_bad_config_file_is_refused_with_its_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nno_such_key = 1\n")?;
    let out = Command::new(BROKER).arg("--config").arg(&config).output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr)?;
    assert!(stderr.contains("herald.toml") && stderr.contains("no_such_key"), "{stderr}");
    Ok(())
}

fn wait_with_timeout(child: &mut std::process::Child, timeout: Duration) -> Result<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if std::time::Instant::now() > deadline {
            child.kill()?;
            bail!("broker did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a fresh self-signed certificate for localhost to `cert` and its key to `key`.
fn write_certificate(cert: &std::path::Path, key: &std::path::Path) -> Result<()> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    std::fs::write(cert, certified.cert.pem())?;
    std::fs::write(key, certified.signing_key.serialize_pem())?;
    Ok(())
}

#[tokio::test]
async fn sighup_swaps_the_certificate_for_new_connections_and_keeps_open_ones() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    write_certificate(&cert, &key)?;
    let first_cert = dir.path().join("first.pem");
    std::fs::copy(&cert, &first_cert)?;
    let config = dir.path().join("herald.toml");
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[tls]\ncert = {:?}\nkey = {:?}\n",
        dir.path().join("data"),
        cert,
        key
    );
    std::fs::write(&config, toml)?;
    let mut broker = Command::new(BROKER)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--log-level", "info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Read the whole banner and keep the pipe open: a closed stdout would fail the broker's prints.
    let mut stdout = BufReader::new(broker.stdout.take().context("stdout")?).lines();
    let banner: Vec<String> = stdout.by_ref().take(7).collect::<Result<_, _>>()?;
    let addr: SocketAddr =
        banner.join(" ").split_whitespace().skip_while(|w| *w != "on").nth(1).context("address")?.parse()?;
    // The log goes to stderr; a thread forwards each line so the test can wait for the reload's.
    let (log_tx, log_rx) = std::sync::mpsc::channel();
    let stderr = broker.stderr.take().context("stderr")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = log_tx.send(line);
        }
    });
    let token = |device: &str| -> Result<String> {
        let out = Command::new(BROKER)
            .arg("--config")
            .arg(&config)
            .args(["token", "--org", "demo", "--user", "alice", "--device", device])
            .output()?;
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    };
    let connect = |pem: &std::path::Path, device: &str| -> Result<ClientConfig> {
        Ok(ClientConfig::new(addr, token(device)?).with_trust(Trust::pem_file(pem)?).with_device_id(device))
    };
    let open = Client::connect(connect(&first_cert, "before")?).await?;

    write_certificate(&cert, &key)?;
    let hup = Command::new("kill").args(["-HUP", &broker.id().to_string()]).status()?;
    assert!(hup.success());
    while !log_rx.recv_timeout(Duration::from_secs(10)).context("no reload logged")?.contains("reload finished") {}

    open.ping().await.context("the open connection survives the reload")?;
    Client::connect(connect(&cert, "after")?).await.context("new connections get the new certificate")?;
    let stale = Client::connect(connect(&first_cert, "stale")?).await;
    assert!(stale.is_err(), "a client pinned to the old certificate is refused");

    let killed = Command::new("kill").args(["-TERM", &broker.id().to_string()]).status()?;
    assert!(killed.success());
    assert!(wait_with_timeout(&mut broker, Duration::from_secs(15))?.success());
    drop(stdout);
    Ok(())
}
