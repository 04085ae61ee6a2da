//! `herald call` against a real in-process broker: a host starts a call ringing bob, bob joins
//! from another process, host controls are refused to a participant, and the host ends it for
//! both, whose followers print the end and exit.

mod common;

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::Fixture;

/// A running `herald call start|join`, and its stdout lines.
struct Follower {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Follower {
    fn spawn(fx: &Fixture, user: &str, args: &[&str]) -> Result<Self> {
        let mut child = fx.command(user, args)?.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        Ok(Self { child, lines })
    }

    /// The next line containing `needle` (earlier lines are skipped).
    fn line_with(&mut self, needle: &str) -> Result<String> {
        for line in self.lines.by_ref() {
            let line = line?;
            if line.contains(needle) {
                return Ok(line);
            }
        }
        bail!("output ended without a line containing {needle:?}")
    }

    /// Waits for the process to exit on its own.
    fn exits(mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "exited with {status}");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        bail!("still running after {limit:?}")
    }
}

impl Drop for Follower {
    /// A failing test must not leave `herald` processes behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn field<'a>(line: &'a str, name: &str) -> Result<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
        .with_context(|| format!("no {name}= in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_starts_a_call_bob_joins_and_the_host_ends_it_for_both() -> Result<()> {
    let fx = Fixture::start().await?;
    tokio::task::block_in_place(|| -> Result<()> {
        let mut host = Follower::spawn(&fx, "alice", &["call", "start", "--to", "bob"])?;
        let started = host.line_with("call id=")?;
        let id = field(&started, "id")?.to_owned();
        assert_eq!(field(&started, "participants")?, "1");

        let mut bob = Follower::spawn(&fx, "bob", &["call", "join", &id, "--muted"])?;
        assert_eq!(field(&bob.line_with("call id=")?, "participants")?, "2");
        assert_eq!(field(&host.line_with("count=2")?, "count")?, "2", "the host sees bob join");

        fx.fails("bob", &["call", "end", &id], "FORBIDDEN")?;
        let muted = fx.ok("alice", &["call", "mute", &id, "--all"])?;
        assert!(muted.starts_with(&format!("muted call={id}")), "{muted}");
        assert!(fx.ok("alice", &["call", "end", &id])?.starts_with(&format!("ended call={id}")));
        for follower in [&mut host, &mut bob] {
            let ended = follower.line_with("ended call=")?;
            assert_eq!(field(&ended, "by")?, "alice");
        }
        host.exits(Duration::from_secs(5))?;
        bob.exits(Duration::from_secs(5))?;
        fx.fails("bob", &["call", "join", &id], "CALL_ENDED")
    })?;
    fx.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_call_prints_one_json_object_per_event() -> Result<()> {
    let fx = Fixture::start().await?;
    tokio::task::block_in_place(|| -> Result<()> {
        let mut host = Follower::spawn(&fx, "alice", &["--json", "call", "start", "--to", "bob"])?;
        let joined: serde_json::Value = serde_json::from_str(&host.line_with(r#""type":"joined""#)?)?;
        let id = joined["call_id"].as_u64().with_context(|| format!("no call_id in {joined}"))?;
        assert_eq!(joined["participants"], 1, "{joined}");

        let mut bob = Follower::spawn(&fx, "bob", &["--json", "call", "join", &id.to_string()])?;
        let bob_joined: serde_json::Value = serde_json::from_str(&bob.line_with(r#""type":"joined""#)?)?;
        assert_eq!((&bob_joined["call_id"], &bob_joined["participants"]), (&id.into(), &2.into()));
        let delta: serde_json::Value = serde_json::from_str(&host.line_with(r#""count":2"#)?)?;
        assert_eq!((&delta["type"], &delta["call_id"]), (&"participants".into(), &id.into()), "{delta}");

        let (code, _) = fx.json_error("bob", &["call", "end", &id.to_string()])?;
        assert_eq!(code, "FORBIDDEN");
        let ended = fx.json("alice", &["call", "end", &id.to_string()])?;
        assert_eq!((&ended["action"], &ended["call_id"]), (&"ended".into(), &id.into()), "{ended}");
        for follower in [&mut host, &mut bob] {
            let line: serde_json::Value = serde_json::from_str(&follower.line_with(r#""type":"ended""#)?)?;
            assert_eq!((&line["by"], &line["removed"], &line["call_id"]), (&"alice".into(), &false.into(), &id.into()));
            assert_eq!(line["reason"], "host_ended", "{line}");
        }
        host.exits(Duration::from_secs(5))?;
        bob.exits(Duration::from_secs(5))
    })?;
    fx.shutdown().await
}
