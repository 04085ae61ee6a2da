//! Disk faults: the real `herald-broker` binary restarted on a damaged copy of its data
//! directory must either bring back every acknowledged message or refuse to start with an error
//! that names the damage. A broker that starts and has silently lost acknowledged data fails.
//!
//! Two baselines are made once: senders send acknowledged messages into a group, then the broker
//! is killed with SIGKILL (so the newest WAL holds every acknowledged batch; nothing was flushed)
//! or stopped with SIGTERM (the shutdown flushes the memtables into SST files). Each case damages
//! a fresh copy of one baseline, restarts the broker on it and reads the log back:
//! - `wal-truncate`: the newest WAL (`db/*.log`) cut at a seeded random offset (killed baseline);
//! - `wal-bitflip`: one seeded random bit of the newest WAL flipped (killed baseline);
//! - `sst-bitflip`: one seeded random bit of the largest SST flipped (stopped baseline);
//! - `sst-delete`: the newest SST deleted (stopped baseline).
//!
//! Acceptable outcomes: the history checker (tests/common/history.rs) finds the log read back
//! clean (every acknowledged message at its seq with its payload); or the broker exits non-zero
//! and its stderr names the corruption; or it starts but answers the read of the damaged data
//! with an error that names the corruption (a checksum failure in an SST data block is found
//! when the block is read, not at open). Anything else fails, with the seed.
//!
//! Environment: `HERALD_DISK_SEED` (default [`DEFAULT_SEED`]), `HERALD_DISK_ROUNDS` (damaged
//! copies per case, default [`DEFAULT_ROUNDS`]), `HERALD_DISK_MESSAGES` (per sender, default
//! [`DEFAULT_MESSAGES`]).

#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use common::child_broker::{ChildBroker, Connector, Started, broker_binary, env_or, mint_tokens, unused_udp_address};
use common::history::{History, Log, SendRecord};
use common::rng::SplitMix64;

const DEFAULT_SEED: u64 = 0x4449_534b; // "DISK"
const DEFAULT_ROUNDS: u32 = 3;
const DEFAULT_MESSAGES: usize = 40;
const OWNER: &str = "owner";
const SENDERS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_recover_every_acked_message_or_refuse_to_start() -> Result<()> {
    let seed = env_or("HERALD_DISK_SEED", DEFAULT_SEED)?;
    let rounds = env_or("HERALD_DISK_ROUNDS", DEFAULT_ROUNDS)?;
    let messages = env_or("HERALD_DISK_MESSAGES", DEFAULT_MESSAGES)?;
    println!("disk faults: HERALD_DISK_SEED={seed} HERALD_DISK_ROUNDS={rounds} HERALD_DISK_MESSAGES={messages}");
    disk_faults(seed, rounds, messages)
        .await
        .with_context(|| format!("disk faults failed with HERALD_DISK_SEED={seed}"))
}

async fn disk_faults(seed: u64, rounds: u32, messages: usize) -> Result<()> {
    let binary = broker_binary()?;
    let killed = Baseline::make(&binary, End::Kill, messages).await?;
    let stopped = Baseline::make(&binary, End::Stop, messages).await?;
    let mut rng = SplitMix64(seed);
    let mut tally = Vec::new();
    let mut failures = Vec::new();
    for fault in Fault::ALL {
        let baseline = if fault.needs_wal() { &killed } else { &stopped };
        for round in 1..=rounds {
            let copy = baseline.copy(&format!("{}-{round}", fault.name()))?;
            let damage = fault.apply(&copy.join("db"), &mut rng)?;
            let outcome = baseline.restart_on(&binary, &copy).await?;
            println!("{:<12} round {round}: {damage}: {outcome}", fault.name());
            if let Err(e) = outcome.judge() {
                failures.push(format!("{} round {round} ({damage}): {e:#}", fault.name()));
            }
            tally.push((fault.name(), outcome.kind()));
        }
    }
    println!("disk faults, HERALD_DISK_SEED={seed}: {} acked messages in each baseline", killed.sends.len());
    for fault in Fault::ALL {
        let kinds: Vec<&str> = tally.iter().filter(|(f, _)| *f == fault.name()).map(|(_, k)| *k).collect();
        println!("  {:<12} {}", fault.name(), kinds.join(", "));
    }
    ensure!(failures.is_empty(), "{} of {} restarts went wrong:\n{}", failures.len(), tally.len(), failures.join("\n"));
    Ok(())
}

/// How the baseline broker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// SIGKILL: acknowledged batches are only in the WAL.
    Kill,
    /// SIGTERM: the shutdown flushed them into SST files.
    Stop,
}

/// A data directory holding acknowledged messages, and what the senders were told.
struct Baseline {
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    conv: u64,
    owner_token: String,
    sends: Vec<SendRecord>,
}

impl Baseline {
    async fn make(binary: &Path, end: End, messages: usize) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().join("herald-data");
        let listen = unused_udp_address()?;
        let broker = ChildBroker::start(binary, &data_dir, listen, &[]).await?;
        let connector = Connector::new(listen, &data_dir)?;
        let users: Vec<String> = std::iter::once(OWNER.to_owned()).chain((1..=SENDERS).map(sender)).collect();
        let mut tokens = mint_tokens(binary, &data_dir, users).await?;
        let owner_token = tokens.remove(OWNER).context("owner token")?;
        let owner = connector.connect(&owner_token, "owner").await?;
        let members: Vec<String> = (1..=SENDERS).map(sender).collect();
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        let conv = owner.create_group("disk-faults", &members).await?.conversation_id;
        owner.close().await;

        let mut tasks = Vec::new();
        for i in 1..=SENDERS {
            let token = tokens.remove(&sender(i)).context("sender token")?;
            let connector = connector.clone();
            tasks.push(tokio::spawn(async move { send_all(&connector, &token, &sender(i), conv, messages).await }));
        }
        let mut sends = Vec::new();
        for task in tasks {
            sends.extend(task.await??);
        }
        match end {
            End::Kill => broker.kill()?,
            End::Stop => broker.stop()?,
        }
        Ok(Self { dir, data_dir, conv, owner_token, sends })
    }

    /// A fresh copy of the data directory, beside the original.
    fn copy(&self, name: &str) -> Result<PathBuf> {
        let to = self.dir.path().join(name);
        copy_dir(&self.data_dir, &to)?;
        Ok(to)
    }

    /// Starts the broker on `data_dir` and, if it starts, reads the log back and checks it.
    async fn restart_on(&self, binary: &Path, data_dir: &Path) -> Result<Outcome> {
        let listen = unused_udp_address()?;
        let broker = match ChildBroker::try_start(binary, data_dir, listen, &[]).await? {
            Started::Exited { status, stderr } => return Ok(Outcome::Refused { status: status.to_string(), stderr }),
            Started::Running(broker) => broker,
        };
        let connector = Connector::new(listen, data_dir)?;
        let reader = connector.connect(&self.owner_token, "reader").await?;
        let read = async {
            let entries = reader.catch_up(self.conv, 0).await?;
            let last_seq = reader.history(self.conv, 0, true, 1).await?.last_seq;
            Ok::<_, herald_client::ClientError>((entries, last_seq))
        };
        let outcome = match read.await {
            Ok((entries, last_seq)) => {
                let mut history = History::new();
                history.sent_all(self.sends.iter().cloned());
                let findings = history.check(&[Log { conversation: self.conv, entries, last_seq }]);
                Outcome::Started { clean: findings.is_clean(), report: findings.to_string() }
            }
            Err(e) => Outcome::ReadRefused(e.to_string()),
        };
        reader.close().await;
        drop(broker);
        Ok(outcome)
    }
}

/// One sender: `messages` sends, each waiting for its ack; every one must be acknowledged.
async fn send_all(
    connector: &Connector,
    token: &str,
    user: &str,
    conv: u64,
    messages: usize,
) -> Result<Vec<SendRecord>> {
    let client = connector.connect(token, user).await?;
    let mut sends = Vec::with_capacity(messages);
    for n in 0..messages {
        let id = format!("{user}-{n}");
        let payload = Bytes::from(format!("message {n} from {user}"));
        let ack = client.send_with_id(conv, &id, payload.clone()).await.with_context(|| format!("sending {id}"))?;
        sends.push(SendRecord::new(user, conv, &id, payload).acked(ack.seq));
    }
    client.close().await;
    Ok(sends)
}

fn sender(i: usize) -> String {
    format!("sender-{i}")
}

/// What became of a restart on a damaged copy.
#[derive(Debug)]
enum Outcome {
    /// The broker exited before listening.
    Refused { status: String, stderr: String },
    /// It started and the log was read back; the checker's verdict.
    Started { clean: bool, report: String },
    /// It started but refused to read the log.
    ReadRefused(String),
}

impl Outcome {
    fn kind(&self) -> &'static str {
        match self {
            Outcome::Refused { .. } => "refused to start",
            Outcome::Started { clean: true, .. } => "recovered all",
            Outcome::Started { clean: false, .. } => "SILENT LOSS",
            Outcome::ReadRefused(_) => "read refused",
        }
    }

    /// Fails unless every acknowledged message came back or the damage was named.
    fn judge(&self) -> Result<()> {
        match self {
            Outcome::Refused { status, stderr } => {
                ensure!(!status.contains("exit status: 0"), "the broker exited successfully without serving");
                ensure!(names_corruption(stderr), "the broker refused to start without naming the damage:\n{stderr}");
            }
            Outcome::Started { clean: true, .. } => {}
            Outcome::Started { clean: false, report } => {
                bail!("the broker started and has lost acknowledged data:\n{report}")
            }
            Outcome::ReadRefused(error) => {
                ensure!(names_corruption(error), "the read failed without naming the damage: {error}")
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Refused { status, stderr } => {
                let named = stderr.lines().find(|l| names_corruption(l)).or_else(|| stderr.lines().next());
                write!(f, "refused to start ({status}): {}", named.unwrap_or("").trim())
            }
            Outcome::Started { clean: true, report } | Outcome::Started { clean: false, report } => {
                write!(f, "{}: {}", self.kind(), report.lines().next().unwrap_or(""))
            }
            Outcome::ReadRefused(error) => write!(f, "read refused: {error}"),
        }
    }
}

/// Whether an error text names corruption (RocksDB's `Corruption:` status, a checksum, or the
/// broker's own WAL check).
fn names_corruption(text: &str) -> bool {
    let text = text.to_lowercase();
    ["corrupt", "checksum", "truncated"].iter().any(|word| text.contains(word))
}

/// The damage each case does to a copy of the database directory.
#[derive(Debug, Clone, Copy)]
enum Fault {
    TruncateWal,
    FlipWalBit,
    FlipSstBit,
    DeleteNewestSst,
}

impl Fault {
    const ALL: [Fault; 4] = [Fault::TruncateWal, Fault::FlipWalBit, Fault::FlipSstBit, Fault::DeleteNewestSst];

    fn name(self) -> &'static str {
        match self {
            Fault::TruncateWal => "wal-truncate",
            Fault::FlipWalBit => "wal-bitflip",
            Fault::FlipSstBit => "sst-bitflip",
            Fault::DeleteNewestSst => "sst-delete",
        }
    }

    /// WAL cases damage the killed baseline, whose WAL holds the acknowledged batches.
    fn needs_wal(self) -> bool {
        matches!(self, Fault::TruncateWal | Fault::FlipWalBit)
    }

    /// Damages `db` and says how.
    fn apply(self, db: &Path, rng: &mut SplitMix64) -> Result<String> {
        match self {
            Fault::TruncateWal => {
                let wal = newest(db, "log")?;
                let len = std::fs::metadata(&wal)?.len();
                ensure!(len > 0, "{} is empty: the killed baseline's WAL should hold its batches", wal.display());
                let at = rng.in_range(0..=len - 1);
                std::fs::OpenOptions::new().write(true).open(&wal)?.set_len(at)?;
                Ok(format!("{} cut from {len} to {at} bytes", file_name(&wal)))
            }
            Fault::FlipWalBit => flip_bit(&newest(db, "log")?, rng),
            Fault::FlipSstBit => flip_bit(&largest(db, "sst")?, rng),
            Fault::DeleteNewestSst => {
                let sst = newest(db, "sst")?;
                std::fs::remove_file(&sst)?;
                Ok(format!("{} deleted", file_name(&sst)))
            }
        }
    }
}

fn flip_bit(path: &Path, rng: &mut SplitMix64) -> Result<String> {
    let mut bytes = std::fs::read(path)?;
    ensure!(!bytes.is_empty(), "{} is empty", path.display());
    let at = rng.in_range(0..=bytes.len() as u64 - 1) as usize;
    let bit = rng.in_range(0..=7) as u8;
    let byte = bytes.get_mut(at).context("offset in range")?;
    *byte ^= 1 << bit;
    std::fs::write(path, &bytes)?;
    Ok(format!("{} bit {bit} of byte {at} (of {}) flipped", file_name(path), bytes.len()))
}

/// RocksDB's numbered files with `extension` (`000012.log`, `000015.sst`), with their numbers.
fn numbered(db: &Path, extension: &str) -> Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(db)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == extension)
            && let Some(n) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok())
        {
            files.push((n, path));
        }
    }
    Ok(files)
}

fn newest(db: &Path, extension: &str) -> Result<PathBuf> {
    let files = numbered(db, extension)?;
    files.into_iter().max_by_key(|(n, _)| *n).map(|(_, p)| p).with_context(|| format!("no .{extension} file"))
}

fn largest(db: &Path, extension: &str) -> Result<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    for (_, path) in numbered(db, extension)? {
        let len = std::fs::metadata(&path)?.len();
        if best.as_ref().is_none_or(|(l, _)| len > *l) {
            best = Some((len, path));
        }
    }
    best.map(|(_, p)| p).with_context(|| format!("no .{extension} file"))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
