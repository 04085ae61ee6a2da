//! The terminal chat example (examples/chat.rs), driven as a user would: two processes against
//! a real broker, each typing a line that appears in the other's terminal.

mod common;

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::Fixture;

/// The example binary cargo built next to this test's (`target/<profile>/examples/chat`).
fn example() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).context("target layout")?;
    let path = profile_dir.join("examples").join("chat");
    ensure!(path.exists(), "{} is missing: build with `cargo test --workspace`", path.display());
    Ok(path)
}

/// One person's chat window.
struct Chat {
    child: Child,
    input: ChildStdin,
    output: Lines<BufReader<ChildStdout>>,
}

impl Chat {
    fn open(fx: &Fixture, workdir: &std::path::Path, me: &str, peer: &str) -> Result<Self> {
        let mut child = Command::new(example()?)
            .arg(peer)
            .current_dir(workdir)
            .env("HERALD_TOKEN", fx.token(me)?)
            .env("HERALD_SERVER", fx.broker.local_addr().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let input = child.stdin.take().context("stdin")?;
        let output = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let mut chat = Self { child, input, output };
        chat.expect(&format!("{me} ↔ {peer}"))?;
        Ok(chat)
    }

    fn say(&mut self, line: &str) -> Result<()> {
        writeln!(self.input, "{line}")?;
        Ok(self.input.flush()?)
    }

    fn expect(&mut self, text: &str) -> Result<()> {
        for line in self.output.by_ref() {
            if line?.contains(text) {
                return Ok(());
            }
        }
        bail!("the chat ended without showing {text:?}")
    }

    /// Ctrl-D: the chat leaves and exits cleanly.
    fn leave(self) -> Result<()> {
        let Self { mut child, input, .. } = self;
        drop(input);
        for _ in 0..250 {
            if let Some(status) = child.try_wait()? {
                ensure!(status.success(), "chat exited with {status}");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        bail!("the chat did not exit on end of input")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_through_the_example() -> Result<()> {
    let fx = Fixture::start().await?;
    // The example trusts herald-data/tls/cert.pem under its working directory, as in a checkout
    // where the broker runs on its defaults.
    let workdir = tempfile::tempdir()?;
    std::fs::create_dir_all(workdir.path().join("herald-data/tls"))?;
    std::fs::copy(fx.broker.cert_path(), workdir.path().join("herald-data/tls/cert.pem"))?;
    tokio::task::block_in_place(|| -> Result<()> {
        let mut alice = Chat::open(&fx, workdir.path(), "alice", "bob")?;
        let mut bob = Chat::open(&fx, workdir.path(), "bob", "alice")?;
        alice.say("hello bob")?;
        bob.expect("alice: hello bob")?;
        bob.say("hi alice, all good")?;
        alice.expect("bob: hi alice, all good")?;
        alice.leave()?;
        bob.leave()
    })?;
    fx.shutdown().await
}
