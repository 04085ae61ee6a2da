//! The real `herald-broker` binary as a child process, for tests that kill it, stop it, damage
//! its files or read its memory: start on a data directory, SIGKILL, SIGTERM, and the start that
//! fails (its exit status and stderr).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use herald_client::{Client, ClientConfig, ClientError, Trust};
use tokio::sync::oneshot;

/// The organisation a broker started without a configuration file serves.
pub const ORG: &str = "demo";
/// How long a (re)started broker may take to print its banner: opening RocksDB replays the WAL.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to keep retrying a connection to a broker that should be up.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// What `ExitStatus::signal` reports for a process killed by SIGKILL.
const SIGKILL: i32 = 9;

/// A `herald-broker serve` child process. Dropping it kills the process, so a failing test
/// leaves no broker behind.
#[derive(Debug)]
pub struct ChildBroker {
    child: Child,
}

/// How a start ended: a listening broker, or a process that exited first.
#[derive(Debug)]
pub enum Started {
    /// The broker printed its banner.
    Running(ChildBroker),
    /// The broker exited before listening, with this status and everything it wrote to stderr.
    Exited { status: ExitStatus, stderr: String },
}

impl ChildBroker {
    /// Starts the broker and waits until it listens; fails if it exits instead.
    pub async fn start(binary: &Path, data_dir: &Path, listen: SocketAddr, extra: &[&str]) -> Result<Self> {
        Self::start_with_env(binary, data_dir, listen, extra, &[]).await
    }

    /// [`ChildBroker::start`] with extra environment variables for the broker process.
    pub async fn start_with_env(
        binary: &Path,
        data_dir: &Path,
        listen: SocketAddr,
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> Result<Self> {
        match Self::try_start_with_env(binary, data_dir, listen, extra, env).await? {
            Started::Running(broker) => Ok(broker),
            Started::Exited { status, stderr } => bail!("the broker exited before listening: {status}\n{stderr}"),
        }
    }

    /// Starts the broker and waits for the first line of its banner, which it prints once it
    /// listens. stderr goes to `<data_dir>.stderr`, so a refusal to start can be read back.
    pub async fn try_start(binary: &Path, data_dir: &Path, listen: SocketAddr, extra: &[&str]) -> Result<Started> {
        Self::try_start_with_env(binary, data_dir, listen, extra, &[]).await
    }

    async fn try_start_with_env(
        binary: &Path,
        data_dir: &Path,
        listen: SocketAddr,
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> Result<Started> {
        let stderr_path = data_dir.with_extension("stderr");
        let stderr = std::fs::File::create(&stderr_path)?;
        let mut child = Command::new(binary)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--listen", &listen.to_string(), "--log-level", "warn"])
            .args(extra)
            .envs(env.iter().copied())
            // A refusal to start is read back from stderr: no backtrace in the way.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("the broker's stdout")?;
        let mut broker = Self { child };
        let first_line = tokio::time::timeout(READY_TIMEOUT, read_first_line(stdout))
            .await
            .with_context(|| format!("the broker printed no banner within {READY_TIMEOUT:?}"))?
            .context("the stdout reader stopped")?
            .context("reading the broker's stdout")?;
        let Some(banner) = first_line else {
            let status = broker.child.wait()?;
            let mut stderr = String::new();
            std::fs::File::open(&stderr_path)?.read_to_string(&mut stderr)?;
            return Ok(Started::Exited { status, stderr });
        };
        let announced = banner_address(&banner)?;
        ensure!(announced == listen, "the broker listens on {announced}, not on {listen}");
        Ok(Started::Running(broker))
    }

    /// The broker's process id, to read its memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the broker with SIGKILL and reaps it. Fails if it had already exited on its own.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        let status = self.child.wait()?;
        ensure!(status.signal() == Some(SIGKILL), "the broker had exited by itself before the kill: {status}");
        Ok(())
    }

    /// Stops the broker as an operator does (SIGTERM: drain, flush, close) and waits for a
    /// successful exit.
    pub fn stop(mut self) -> Result<()> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        ensure!(status.success(), "kill -TERM failed: {status}");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "the broker stopped with {status}");
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "the broker did not stop within {READY_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the first line of the broker's stdout on a thread (`None` if it closed first), then
/// keeps draining the pipe until the process exits, so the broker never blocks writing to it.
fn read_first_line(stdout: ChildStdout) -> oneshot::Receiver<io::Result<Option<String>>> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let first = reader.read_line(&mut line).map(|n| (n > 0).then_some(line));
        let _ = tx.send(first);
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    rx
}

/// The address in the banner's first line: `Herald broker 0.1.0 listening on 127.0.0.1:7443 (...)`.
fn banner_address(banner: &str) -> Result<SocketAddr> {
    let address = banner.split_whitespace().skip_while(|w| *w != "on").nth(1);
    let address = address.with_context(|| format!("no address in the banner: {banner}"))?;
    address.parse().with_context(|| format!("bad address in the banner: {banner}"))
}

/// How clients reach a child broker: its address and its pinned certificate.
#[derive(Debug, Clone)]
pub struct Connector {
    pub addr: SocketAddr,
    pub trust: Trust,
}

impl Connector {
    /// For the broker listening on `addr` with the certificate in `data_dir`.
    pub fn new(addr: SocketAddr, data_dir: &Path) -> Result<Self> {
        Ok(Self { addr, trust: Trust::pem_file(&data_dir.join("tls/cert.pem"))? })
    }

    /// Opens a session, retrying with a short backoff for at most [`CONNECT_DEADLINE`].
    pub async fn connect(&self, token: &str, device: &str) -> Result<Client> {
        let deadline = Instant::now() + CONNECT_DEADLINE;
        let mut backoff = Duration::from_millis(10);
        loop {
            let config = ClientConfig::new(self.addr, token)
                .with_trust(self.trust.clone())
                .with_device_id(device)
                .with_connect_timeout(Duration::from_secs(2))
                .with_request_timeout(Duration::from_secs(10));
            match Client::connect(config).await {
                Ok(client) => return Ok(client),
                Err(e @ ClientError::Refused { .. }) => return Err(e).context("the broker refused the session"),
                Err(e) if Instant::now() + backoff > deadline => {
                    return Err(e).with_context(|| format!("connecting to {} for {CONNECT_DEADLINE:?}", self.addr));
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
            }
        }
    }
}

/// The `herald-broker` binary cargo built next to this test's `deps` directory (run with
/// `cargo test --workspace`, adding `--test cli` when selecting tests).
pub fn broker_binary() -> Result<PathBuf> {
    let test_exe = std::env::current_exe()?;
    let target_dir = test_exe.parent().and_then(Path::parent).context("the test binary is not in target/*/deps")?;
    let binary = target_dir.join(format!("herald-broker{}", std::env::consts::EXE_SUFFIX));
    ensure!(
        binary.is_file(),
        "{} does not exist: build it with `cargo test --workspace` (add `--test cli` when selecting tests)",
        binary.display()
    );
    Ok(binary)
}

/// A loopback address with a port nobody uses now.
pub fn unused_udp_address() -> Result<SocketAddr> {
    Ok(UdpSocket::bind(("127.0.0.1", 0))?.local_addr()?)
}

/// Mints a one-hour token per user with the binary's `token` command, signed by the data
/// directory's development key (which copies of the directory share).
pub async fn mint_tokens(binary: &Path, data_dir: &Path, users: Vec<String>) -> Result<HashMap<String, String>> {
    let mut tokens = HashMap::with_capacity(users.len());
    for user in users {
        let token = mint_token(binary, data_dir, &user, &[]).await?;
        tokens.insert(user, token);
    }
    Ok(tokens)
}

/// Mints a one-hour token for `user` with `roles`, as [`mint_tokens`] does.
pub async fn mint_token(binary: &Path, data_dir: &Path, user: &str, roles: &[&str]) -> Result<String> {
    let mut command = Command::new(binary);
    command.arg("--data-dir").arg(data_dir).args(["token", "--org", ORG, "--user", user, "--ttl", "1h"]);
    for role in roles {
        command.args(["--role", role]);
    }
    let user = user.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = command.output()?;
        ensure!(out.status.success(), "token for {user}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    })
    .await?
}

/// A setting from the environment, or its default when unset.
pub fn env_or<T>(name: &str, default: T) -> Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(value) => value.trim().parse().with_context(|| format!("{name}={value}")),
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(e).context(name.to_owned()),
    }
}
