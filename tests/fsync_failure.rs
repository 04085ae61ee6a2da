//! A failed fsync poisons the store (issue 11, item 3): once the disk reports that a synced write
//! did not reach it, the broker must refuse every later write with a clear error instead of
//! carrying on (after a failed fsync the kernel may already have dropped the dirty pages, so
//! retrying the sync can "succeed" over lost data), keep serving reads, and lose nothing it
//! acknowledged.
//!
//! The real `herald-broker` binary runs under a small `LD_PRELOAD` shim, compiled here with `cc`,
//! that makes `fsync` and `fdatasync` fail with EIO while a marker file exists. Senders send
//! acknowledged messages; the marker appears; the next send's synced commit fails and every send
//! after it is refused, even once the disk works again, until the broker restarts; the restarted
//! broker (without the shim) holds every acknowledged message (history checker) and writes again.

#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use common::child_broker::{ChildBroker, Connector, broker_binary, mint_token, unused_udp_address};
use common::history::{History, Log, SendRecord};
use herald_client::{Client, ClientError};
use herald_protocol::ErrorCode;

const DEVICE: &str = "disk-test";
const ACKED_BEFORE: usize = 40;
const REFUSED_AFTER: usize = 5;

/// `fsync` and `fdatasync` that fail with EIO while the file named by HERALD_FAIL_SYNC_FILE exists.
const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void) {
    const char *marker = getenv("HERALD_FAIL_SYNC_FILE");
    return marker != NULL && access(marker, F_OK) == 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (failing()) { errno = EIO; return -1; }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (failing()) { errno = EIO; return -1; }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
"#;

fn build_shim(dir: &Path) -> Result<std::path::PathBuf> {
    let source = dir.join("failsync.c");
    let library = dir.join("libfailsync.so");
    std::fs::write(&source, SHIM)?;
    let out =
        Command::new("cc").args(["-shared", "-fPIC", "-O2", "-o"]).arg(&library).arg(&source).arg("-ldl").output()?;
    ensure!(out.status.success(), "cc failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(library)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_poisons_the_store_and_loses_nothing_acknowledged() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let shim = build_shim(dir.path())?;
    let marker = dir.path().join("fail-sync");
    let data_dir = dir.path().join("herald-data");
    let binary = broker_binary()?;
    let listen = unused_udp_address()?;
    let env = [("LD_PRELOAD", shim.as_path()), ("HERALD_FAIL_SYNC_FILE", marker.as_path())];
    let broker = ChildBroker::start_with_env(&binary, &data_dir, listen, &[], &env).await?;
    let connector = Connector::new(listen, &data_dir)?;
    let token = mint_token(&binary, &data_dir, "alice", &[]).await?;
    let alice = connector.connect(&token, DEVICE).await?;
    let conv = alice.create_group("disk", &["bob"]).await?.conversation_id;

    let mut records = Vec::new();
    for n in 0..ACKED_BEFORE {
        let record = SendRecord::new("alice", conv, &format!("m{n}"), format!("message {n}").into_bytes());
        let seq = alice.send_with_id(conv, &record.client_msg_id, record.payload.to_vec()).await?.seq;
        records.push(record.acked(seq));
    }

    // The disk starts failing syncs: the next commit fails, and the store is poisoned.
    std::fs::write(&marker, b"")?;
    let first = refused_send(&alice, conv, "m-failed", &mut records).await?;
    std::fs::remove_file(&marker)?;
    // The disk works again, but the store does not pretend it does.
    let mut later = Vec::new();
    for n in 0..REFUSED_AFTER {
        later.push(refused_send(&alice, conv, &format!("m-after-{n}"), &mut records).await?);
    }
    ensure!(
        later.iter().all(|e| e.contains("refuses writes after a failed write")),
        "later writes are refused by the poisoned store: {later:?}"
    );
    let read = alice.history(conv, 0, true, 1).await.context("reads are still served")?;
    ensure!(read.last_seq > ACKED_BEFORE as u64, "the log reads back: last_seq {}", read.last_seq);
    drop(alice);
    broker.kill()?;

    // Restarted on a working disk: every acknowledged message is there, and writes work again.
    let broker = ChildBroker::start(&binary, &data_dir, listen, &[]).await?;
    let alice = connector.connect(&token, DEVICE).await?;
    let entries = alice.catch_up(conv, 0).await?;
    let last_seq = alice.history(conv, 0, true, 1).await?.last_seq;
    let mut history = History::new();
    history.sent_all(records);
    let findings = history.check(&[Log { conversation: conv, entries, last_seq }]);
    ensure!(findings.is_clean(), "after the restart the log disagrees with the acks:\n{findings}");
    alice.send_with_id(conv, "m-restarted", b"back".to_vec()).await.context("writes work after the restart")?;
    println!(
        "failed fsync: {ACKED_BEFORE} acked before; the failing commit answered \"{first}\"; {REFUSED_AFTER} later sends \
         refused while poisoned; after the restart: {}",
        findings.summary()
    );
    alice.close().await;
    broker.stop()?;
    Ok(())
}

/// Sends a message that must be refused with UNAVAILABLE; records it as unacknowledged (it may
/// or may not be stored: the checker accepts either) and returns the refusal's message.
async fn refused_send(client: &Client, conv: u64, id: &str, records: &mut Vec<SendRecord>) -> Result<String> {
    let payload = format!("refused {id}").into_bytes();
    records.push(SendRecord::new("alice", conv, id, payload.clone()));
    match client.send_with_id(conv, id, payload).await {
        Ok(ack) => anyhow::bail!("{id} was acknowledged at seq {} on a failing disk", ack.seq),
        Err(e @ ClientError::Request { .. }) if e.code() == Some(ErrorCode::UNAVAILABLE) => Ok(e.to_string()),
        Err(e) => Err(e).context(format!("{id}: refused with UNAVAILABLE")),
    }
}
