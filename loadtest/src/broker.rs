//! The broker under test: one the tool starts itself on a fresh data directory
//! (`--spawn-broker`), or an external one whose process it may watch (`--broker-pid`). Either
//! way its CPU time and memory over the run come from `/proc`, not from the tool's guesses.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// What the broker process spent over a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BrokerUsage {
    /// User plus system CPU time.
    pub(crate) cpu_seconds: f64,
    /// Wall time the CPU time was spent in.
    pub(crate) wall_seconds: f64,
    /// Resident memory at the end.
    pub(crate) rss_bytes: u64,
    /// The process's peak resident memory (since it started).
    pub(crate) peak_rss_bytes: u64,
    /// Resident memory sampled every [`RSS_SAMPLE_INTERVAL`] over the run, to show whether it
    /// stays flat under steady load.
    pub(crate) rss_samples_mib: Vec<f64>,
}

/// How often the probe samples the broker's resident memory.
pub(crate) const RSS_SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Watches a broker process on this machine.
#[derive(Debug)]
pub(crate) struct BrokerProbe {
    pid: u32,
    cpu_at_start: f64,
    started: Instant,
    sampler: tokio::task::JoinHandle<Vec<f64>>,
    stop_sampling: tokio::sync::oneshot::Sender<()>,
}

impl BrokerProbe {
    /// Starts measuring process `pid` from now.
    pub(crate) fn start(pid: u32) -> Result<Self> {
        let cpu_at_start = cpu_seconds(pid)?;
        let (stop_sampling, mut stop) = tokio::sync::oneshot::channel();
        let sampler = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut every = tokio::time::interval(RSS_SAMPLE_INTERVAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = &mut stop => return samples,
                }
                let Ok((rss, _)) = memory(pid) else { return samples };
                samples.push((rss as f64 / 1048576.0 * 10.0).round() / 10.0);
            }
        });
        Ok(Self { pid, cpu_at_start, started: Instant::now(), sampler, stop_sampling })
    }

    /// What the process spent since [`BrokerProbe::start`].
    pub(crate) async fn usage(self) -> Result<BrokerUsage> {
        let (rss_bytes, peak_rss_bytes) = memory(self.pid)?;
        let cpu = cpu_seconds(self.pid)? - self.cpu_at_start;
        let wall_seconds = self.started.elapsed().as_secs_f64();
        let _ = self.stop_sampling.send(());
        let rss_samples_mib = self.sampler.await.unwrap_or_default();
        Ok(BrokerUsage { cpu_seconds: cpu, wall_seconds, rss_bytes, peak_rss_bytes, rss_samples_mib })
    }
}

/// Linux reports process times in clock ticks of 1/100 s on every architecture it supports
/// (USER_HZ), whatever the kernel's internal tick.
const USER_HZ: f64 = 100.0;

/// User plus system CPU seconds of `pid`, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading process {pid}"))?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are
    // plain. utime and stime are fields 14 and 15 of the line, 12th and 13th after the name.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc stat")?;
    let mut fields = after_name.split_whitespace().skip(11);
    let mut ticks = || -> Result<f64> { Ok(fields.next().context("short /proc stat")?.parse::<u64>()? as f64) };
    Ok((ticks()? + ticks()?) / USER_HZ)
}

/// Resident and peak resident memory of `pid` in bytes, from `/proc/<pid>/status`.
fn memory(pid: u32) -> Result<(u64, u64)> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading process {pid}"))?;
    let kib = |key: &str| -> Result<u64> {
        let line = status.lines().find(|l| l.starts_with(key)).with_context(|| format!("no {key} in /proc status"))?;
        let value = line.trim_start_matches(key).trim().trim_end_matches("kB").trim();
        Ok(value.parse::<u64>()? * 1024)
    };
    Ok((kib("VmRSS:")?, kib("VmHWM:")?))
}

/// A broker started by the tool on a temporary data directory, stopped (gracefully) when done.
#[derive(Debug)]
pub(crate) struct SpawnedBroker {
    child: Child,
    dir: tempfile::TempDir,
    pub(crate) server: SocketAddr,
}

impl SpawnedBroker {
    /// Starts `bin` (or the `herald-broker` beside this executable, or on `PATH`) with its
    /// embedded defaults plus what a load test needs: no rate limits, no per-address connection
    /// cap, and `shards` shard threads (0 = one per core). Waits until it reports ready.
    pub(crate) fn start(bin: Option<&Path>, shards: usize) -> Result<Self> {
        let bin = bin.map_or_else(default_broker_bin, Path::to_path_buf);
        let dir = tempfile::Builder::new().prefix("herald-load-").tempdir()?;
        let server = SocketAddr::from(([127, 0, 0, 1], free_udp_port()?));
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()?));
        let config = dir.path().join("broker.toml");
        std::fs::write(&config, load_config(dir.path(), server, metrics, shards))?;
        let log = std::fs::File::create(dir.path().join("broker.log"))?;
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("HERALD_LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it with `cargo build --release -p herald-broker`, or pass --broker-bin)",
                    bin.display()
                )
            })?;
        let mut broker = Self { child, dir, server };
        broker.wait_ready(metrics, Duration::from_secs(60))?;
        Ok(broker)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The generated certificate to trust.
    pub(crate) fn cert(&self) -> PathBuf {
        self.dir.path().join("data").join("tls").join("cert.pem")
    }

    /// The development key tokens are minted with.
    pub(crate) fn token_key(&self) -> PathBuf {
        self.dir.path().join("data").join("token-signing-key.pem")
    }

    fn wait_ready(&mut self, metrics: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("the broker exited ({status}) while starting:\n{}", self.log_tail());
            }
            if ready(metrics) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the broker was not ready within {timeout:?}:\n{}", self.log_tail())
    }

    /// The end of the broker's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines.iter().skip(lines.len().saturating_sub(20)).copied().collect::<Vec<_>>().join("\n")
    }

    /// Asks the broker to shut down gracefully (SIGTERM) and waits for it; kills it after 20 s.
    pub(crate) fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "the broker exited with {status}:\n{}", self.log_tail());
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the broker did not stop within 20 s of SIGTERM")
    }
}

impl Drop for SpawnedBroker {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The broker configuration for a load run: defaults except the limits a load test would trip
/// on purpose-free (thousands of sessions from one address, senders far above a person's rate).
fn load_config(dir: &Path, server: SocketAddr, metrics: SocketAddr, shards: usize) -> String {
    format!(
        "listen = \"{server}\"\ndata_dir = \"{data}\"\n\n[storage]\nshards = {shards}\n\n\
         [limits]\nmax_connections_per_ip = 1000000\nmax_devices_per_user = 1000\n\n\
         [rate_limits]\nenabled = false\n\n[metrics]\nlisten = \"{metrics}\"\n",
        data = dir.join("data").display()
    )
}

/// Whether the broker's `/readyz` answers 200.
fn ready(metrics: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&metrics, Duration::from_millis(200)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// `herald-broker` beside this executable (as cargo lays out a target directory), or else the
/// one on `PATH`.
fn default_broker_bin() -> PathBuf {
    let name = format!("herald-broker{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&name)))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_tcp_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
