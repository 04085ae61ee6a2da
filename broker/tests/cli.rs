//! The `herald-broker` binary as a newcomer uses it: start on a fresh data directory, read the
//! banner, mint a token with the `token` command, connect, and stop it with SIGTERM.

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

    let killed = Command::new("kill").args(["-TERM", &broker.id().to_string()]).status()?;
    assert!(killed.success());
    let status = wait_with_timeout(&mut broker, Duration::from_secs(15))?;
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let err = client.ping().await.expect_err("broker stopped");
    assert_eq!(err.code(), Some(herald_protocol::ErrorCode::SHUTTING_DOWN), "{err}");
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
