//! The CLI tests' shared fixture: a real broker in-process on loopback with RocksDB in a temp
//! dir, and the `herald` binary run against it as any user of the `demo` organisation.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use herald_broker::auth::TokenMinter;
use herald_broker::{Config, RunningBroker};

pub const HERALD: &str = env!("CARGO_BIN_EXE_herald");
/// How long to wait for anything pushed or scheduled to show up.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A broker in a temp directory and a way to mint tokens for its `demo` organisation.
pub struct Fixture {
    pub broker: RunningBroker,
    minter: TokenMinter,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn start() -> Result<Self> {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        config.auth.leeway = Duration::ZERO;
        configure(&mut config);
        let broker = RunningBroker::start(config).await?;
        let minter = TokenMinter::new(broker.dev_signing_key().context("dev key")?)?;
        Ok(Fixture { broker, minter, _dir: dir })
    }

    /// A ten-minute token for `user` of the `demo` organisation.
    pub fn token(&self, user: &str) -> Result<String> {
        Ok(self.minter.mint_for("demo", user, None, &[], now_s(), Duration::from_secs(600))?)
    }

    /// `herald` as `user`, not yet run.
    pub fn command(&self, user: &str, args: &[&str]) -> Result<Command> {
        let token = self.token(user)?;
        let mut command = Command::new(HERALD);
        command
            .arg("--server")
            .arg(self.broker.local_addr().to_string())
            .arg("--cert")
            .arg(self.broker.cert_path())
            .args(["--token", &token])
            .args(args);
        Ok(command)
    }

    /// Runs `herald` as `user` to completion (blocking: call it inside `block_in_place`).
    pub fn run(&self, user: &str, args: &[&str]) -> Result<Output> {
        Ok(self.command(user, args)?.output()?)
    }

    /// Runs `herald` as `user`, requires success and returns its stdout.
    pub fn ok(&self, user: &str, args: &[&str]) -> Result<String> {
        let out = self.run(user, args)?;
        let stdout = String::from_utf8(out.stdout)?;
        ensure!(out.status.success(), "herald {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        Ok(stdout)
    }

    /// Runs `herald` as `user`, requires failure with `code` named on stderr.
    pub fn fails(&self, user: &str, args: &[&str], code: &str) -> Result<()> {
        let out = self.run(user, args)?;
        let stderr = String::from_utf8(out.stderr)?;
        ensure!(!out.status.success(), "herald {args:?} succeeded:\n{}", String::from_utf8_lossy(&out.stdout));
        ensure!(stderr.contains(code), "herald {args:?} failed without {code}:\n{stderr}");
        Ok(())
    }

    /// Runs `herald --json` as `user`, requires success and parses its stdout as one JSON value.
    pub fn json(&self, user: &str, args: &[&str]) -> Result<serde_json::Value> {
        let args: Vec<&str> = std::iter::once("--json").chain(args.iter().copied()).collect();
        let stdout = self.ok(user, &args)?;
        ensure!(stdout.lines().count() == 1, "herald {args:?} printed more than one line:\n{stdout}");
        serde_json::from_str(&stdout).with_context(|| format!("herald {args:?} printed no JSON:\n{stdout}"))
    }

    /// Runs `herald --json` as `user`, requires failure with nothing on stdout and one error
    /// object on stderr; returns the object's code and message.
    pub fn json_error(&self, user: &str, args: &[&str]) -> Result<(String, String)> {
        let args: Vec<&str> = std::iter::once("--json").chain(args.iter().copied()).collect();
        let out = self.run(user, &args)?;
        let stderr = String::from_utf8(out.stderr)?;
        ensure!(!out.status.success(), "herald {args:?} succeeded:\n{}", String::from_utf8_lossy(&out.stdout));
        ensure!(out.stdout.is_empty(), "herald {args:?} failed but printed:\n{}", String::from_utf8_lossy(&out.stdout));
        let value: serde_json::Value =
            serde_json::from_str(&stderr).with_context(|| format!("herald {args:?}: no JSON error in:\n{stderr}"))?;
        let field = |name: &str| value.pointer(&format!("/error/{name}")).and_then(|v| v.as_str()).map(str::to_owned);
        let code = field("code").with_context(|| format!("no error.code in {value}"))?;
        let message = field("message").with_context(|| format!("no error.message in {value}"))?;
        Ok((code, message))
    }

    /// Creates a group owned by alice with these other members; returns its id.
    pub fn group(&self, members: &[&str]) -> Result<u64> {
        let args: Vec<&str> = ["group", "create", "Team"].into_iter().chain(members.iter().copied()).collect();
        let stdout = self.ok("alice", &args)?;
        stdout.trim().parse().with_context(|| format!("a conversation id in {stdout:?}"))
    }

    /// Polls `user`'s view of the conversation's history until a line contains `needle`.
    pub fn history_until(&self, user: &str, conversation: u64, needle: &str) -> Result<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let history = self.ok(user, &["history", &conversation.to_string(), "--limit", "1000"])?;
            if history.contains(needle) {
                return Ok(history);
            }
            if Instant::now() > deadline {
                bail!("no {needle:?} in the history within {PATIENCE:?}:\n{history}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub async fn shutdown(self) -> Result<()> {
        Ok(self.broker.shutdown().await?)
    }
}

pub fn now_s() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
