//! The `herald` messaging subcommands against a real in-process broker.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::Fixture;
use serde_json::{Value, json};

/// Starts `herald listen` as `user` and waits until it reports that it is listening.
fn spawn_listener(fx: &Fixture, user: &str, args: &[&str]) -> Result<(Child, BufReader<std::process::ChildStderr>)> {
    let mut child = fx.command(user, args)?.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut stderr = BufReader::new(child.stderr.take().context("stderr")?);
    let mut line = String::new();
    while stderr.read_line(&mut line)? > 0 {
        if line.contains("listening as") {
            return Ok((child, stderr));
        }
    }
    let status = child.wait()?;
    bail!("listener exited ({status}) before listening:\n{line}")
}

/// Waits for `child` to exit, killing it after `limit`; returns its exit status and stdout.
fn finish(mut child: Child, limit: Duration) -> Result<(std::process::ExitStatus, String)> {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            bail!("herald listen did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    child.stdout.take().context("stdout")?.read_to_string(&mut stdout)?;
    Ok((status, stdout))
}

/// The index of the first line of `text` that contains `needle`.
fn line_with(text: &str, needle: &str) -> Result<usize> {
    text.lines().position(|l| l.contains(needle)).with_context(|| format!("no line with {needle:?} in:\n{text}"))
}

fn create_group(fx: &Fixture) -> Result<u64> {
    fx.group(&["bob"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_reach_history_listeners_and_member_lists() -> Result<()> {
    let fx = Fixture::start().await?;
    tokio::task::block_in_place(|| -> Result<()> {
        let conv = create_group(&fx)?;
        let id = conv.to_string();
        assert_eq!(fx.ok("alice", &["send", &id, "hello bob"])?.trim(), "sent seq=2");
        assert_eq!(fx.ok("alice", &["send", &id, "second"])?.trim(), "sent seq=3");

        let history = fx.ok("bob", &["history", &id])?;
        let created =
            line_with(&history, &format!("conv={conv} seq=1 from=alice/cli [created alice(owner) bob(member)]"))?;
        let first = line_with(&history, &format!("conv={conv} seq=2 from=alice/cli hello bob"))?;
        let second = line_with(&history, &format!("conv={conv} seq=3 from=alice/cli second"))?;
        assert!(created < first && first < second, "{history}");
        let newest = fx.ok("bob", &["history", &id, "--backward", "--limit", "1"])?;
        assert_eq!(newest.trim(), format!("conv={conv} seq=3 from=alice/cli second"));

        let (listener, mut stderr) = spawn_listener(&fx, "bob", &["listen", "--count", "1"])?;
        assert_eq!(fx.ok("alice", &["send", &id, "live one"])?.trim(), "sent seq=4");
        let (status, stdout) = finish(listener, Duration::from_secs(30))?;
        let mut rest = String::new();
        stderr.read_to_string(&mut rest)?;
        assert!(status.success(), "{status}\n{stdout}\n{rest}");
        assert_eq!(stdout.trim(), format!("conv={conv} seq=4 from=alice/cli live one"));

        let members = fx.ok("alice", &["group", "members", &id])?;
        assert_eq!(members.lines().collect::<Vec<_>>(), ["alice owner", "bob member"]);
        Ok(())
    })?;
    fx.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_are_refused_with_not_found() -> Result<()> {
    let fx = Fixture::start().await?;
    tokio::task::block_in_place(|| -> Result<()> {
        let id = create_group(&fx)?.to_string();
        let out = fx.run("mallory", &["send", &id, "let me in"])?;
        let stderr = String::from_utf8(out.stderr)?;
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("NOT_FOUND"), "{stderr}");
        assert!(stderr.contains(&format!("sending to conversation {id}")), "{stderr}");
        let out = fx.run("mallory", &["group", "members", &id])?;
        assert!(!out.status.success());
        assert!(String::from_utf8(out.stderr)?.contains("NOT_FOUND"));
        Ok(())
    })?;
    fx.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_direct_sends_and_conversation_lists() -> Result<()> {
    let fx = Fixture::start().await?;
    tokio::task::block_in_place(|| -> Result<()> {
        let group = create_group(&fx)?;
        let id = group.to_string();
        assert_eq!(fx.ok("alice", &["group", "add", &id, "carol", "dave"])?.trim(), "updated seq=2");
        assert_eq!(fx.ok("alice", &["group", "remove", &id, "dave"])?.trim(), "updated seq=3");
        let history = fx.ok("carol", &["history", &id, "--from", "2"])?;
        let lines: Vec<&str> = history.lines().collect();
        assert_eq!(
            lines,
            [
                format!("conv={group} seq=2 from=alice/cli [added carol(member) dave(member)]"),
                format!("conv={group} seq=3 from=alice/cli [removed dave(member)]"),
            ]
        );

        let args = ["send", "--direct", "bob", "hi\nthere", "--id", "m-1"];
        assert_eq!(fx.ok("alice", &args)?.trim(), "sent seq=2");
        assert_eq!(fx.ok("alice", &args)?.trim(), "sent seq=2 (duplicate)");

        let listing = fx.ok("bob", &["conversations"])?;
        let group_line = format!("conv={group} kind=group members=3 last_seq=3 role=member name=\"Team\"");
        line_with(&listing, &group_line)?;
        let direct = line_with(&listing, "kind=direct members=2 last_seq=2 role=member name=\"\"")?;
        let direct_id = listing.lines().nth(direct).and_then(|l| l.strip_prefix("conv=")?.split(' ').next());
        let direct_id = direct_id.context("direct conversation id")?;
        let history = fx.ok("bob", &["history", direct_id])?;
        assert!(history.ends_with(&format!("conv={direct_id} seq=2 from=alice/cli hi\\nthere\n")), "{history}");
        Ok(())
    })?;
    fx.shutdown().await
}

/// The entry of `history`'s JSON at `seq`.
fn entry_at(history: &Value, seq: u64) -> Result<&Value> {
    let entries = history["entries"].as_array().with_context(|| format!("no entries in {history}"))?;
    entries.iter().find(|e| e["seq"] == seq).with_context(|| format!("no seq {seq} in {history}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_carries_the_same_facts_for_scripts() -> Result<()> {
    let fx = Fixture::start().await?;
    tokio::task::block_in_place(|| -> Result<()> {
        let created = fx.json("alice", &["group", "create", "Team", "bob"])?;
        let conv = created["conversation_id"].as_u64().with_context(|| format!("no conversation_id in {created}"))?;
        let id = conv.to_string();

        let sent = fx.json("alice", &["send", &id, "hello\nbob", "--id", "m-1"])?;
        assert_eq!((&sent["status"], &sent["conversation_id"]), (&json!("sent"), &json!(conv)), "{sent}");
        assert_eq!((&sent["client_msg_id"], &sent["duplicate"]), (&json!("m-1"), &json!(false)), "{sent}");
        let seq = sent["seq"].as_u64().with_context(|| format!("no seq in {sent}"))?;
        ensure!(seq >= 2 && sent["timestamp_ms"].as_u64() > Some(0), "{sent}");
        let again = fx.json("alice", &["send", &id, "hello\nbob", "--id", "m-1"])?;
        assert_eq!((&again["seq"], &again["duplicate"]), (&json!(seq), &json!(true)), "{again}");

        // The seq send returned is where history shows the message, text exact (newline kept).
        let history = fx.json("bob", &["history", &id])?;
        assert_eq!(history["conversation_id"], conv);
        let message = entry_at(&history, seq)?;
        let expected = json!({
            "type": "entry", "conversation_id": conv, "seq": seq, "sender_user": "alice", "sender_device": "cli",
            "kind": "message", "client_msg_id": "m-1", "text": "hello\nbob", "payload_hex": null, "expiry": null,
            "end_to_end": false,
        });
        let mut without_time = message.clone();
        without_time.as_object_mut().context("an entry is an object")?.remove("timestamp_ms");
        assert_eq!(without_time, expected);
        assert_eq!(message["timestamp_ms"], sent["timestamp_ms"]);
        let created_event = &entry_at(&history, 1)?["event"];
        let members = json!([{"user_id": "alice", "role": "owner"}, {"user_id": "bob", "role": "member"}]);
        assert_eq!(
            (&entry_at(&history, 1)?["kind"], created_event),
            (&json!("event"), &json!({"type": "created", "members": members}))
        );

        // A listener prints one object per line: the next entry, as history has it.
        let (listener, mut stderr) = spawn_listener(&fx, "bob", &["--json", "listen", "--count", "1"])?;
        let live = fx.json("alice", &["send", &id, "live one"])?;
        let (status, stdout) = finish(listener, Duration::from_secs(30))?;
        let mut rest = String::new();
        stderr.read_to_string(&mut rest)?;
        assert!(status.success(), "{status}\n{stdout}\n{rest}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{stdout}");
        let pushed: Value = serde_json::from_str(lines.first().context("a line")?)?;
        assert_eq!(
            (&pushed["type"], &pushed["kind"], &pushed["text"]),
            (&json!("entry"), &json!("message"), &json!("live one"))
        );
        assert_eq!((&pushed["seq"], &pushed["conversation_id"]), (&live["seq"], &json!(conv)));
        assert_eq!(&pushed, entry_at(&fx.json("bob", &["history", &id])?, seq + 1)?);

        assert_eq!(fx.json("alice", &["group", "members", &id])?["members"], members);
        let added = fx.json("alice", &["group", "add", &id, "carol"])?;
        assert_eq!(added, json!({"conversation_id": conv, "seq": seq + 2}));
        let listing = fx.json("bob", &["conversations"])?;
        let list = listing["conversations"].as_array().with_context(|| format!("no conversations in {listing}"))?;
        let group = list.iter().find(|c| c["conversation_id"] == conv).with_context(|| format!("{listing}"))?;
        assert_eq!(
            (&group["kind"], &group["name"], &group["role"]),
            (&json!("group"), &json!("Team"), &json!("member"))
        );
        assert_eq!((&group["member_count"], &group["last_seq"]), (&json!(3), &json!(seq + 2)));
        assert_eq!(group["settings"], json!({"read_receipts": true, "retention_secs": 0, "archived": false}));

        // Failures: one error object on stderr, the broker's code by name, nothing on stdout.
        let (code, message) = fx.json_error("mallory", &["send", &id, "let me in"])?;
        assert_eq!(code, "NOT_FOUND");
        assert!(message.contains(&format!("sending to conversation {id}")), "{message}");
        let out = fx.run("alice", &["--json", "send"])?;
        assert_eq!(out.status.code(), Some(2));
        let usage: Value = serde_json::from_slice(&out.stderr)?;
        assert_eq!(usage["error"]["code"], "USAGE", "{usage}");
        Ok(())
    })?;
    fx.shutdown().await
}

/// With `--e2e-keys` the same commands encrypt end to end: the broker stores ciphertext, and a
/// listener with its own keys prints the plaintext, marked `end_to_end`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_e2e_keys_the_same_commands_encrypt_end_to_end() -> Result<()> {
    let fx = Fixture::start().await?;
    let keys = tempfile::tempdir()?;
    let alice_keys = keys.path().join("alice").display().to_string();
    let bob_keys = keys.path().join("bob").display().to_string();
    tokio::task::block_in_place(|| -> Result<()> {
        fx.ok("bob", &["--e2e-keys", &bob_keys, "ping", "--count", "1"])?;
        let created = fx.json("alice", &["--e2e-keys", &alice_keys, "group", "create", "board", "bob"])?;
        let id = created["conversation_id"].to_string();

        let listen = ["--e2e-keys", bob_keys.as_str(), "--json", "listen", "--count", "1"];
        let (listener, mut stderr) = spawn_listener(&fx, "bob", &listen)?;
        let sent = fx.json("alice", &["--e2e-keys", &alice_keys, "send", &id, "the numbers are good"])?;
        let (status, stdout) = finish(listener, Duration::from_secs(30))?;
        let mut rest = String::new();
        stderr.read_to_string(&mut rest)?;
        ensure!(status.success(), "{status}\n{stdout}\n{rest}");
        let pushed: Value = serde_json::from_str(stdout.lines().next().context("a line")?)?;
        assert_eq!(
            (&pushed["kind"], &pushed["text"], &pushed["end_to_end"]),
            (&json!("message"), &json!("the numbers are good"), &json!(true)),
            "{stdout}"
        );

        // What the broker holds is ciphertext: history without keys shows no plaintext.
        let seq = sent["seq"].as_u64().context("a seq")?;
        let history = fx.json("bob", &["history", &id])?;
        let stored = entry_at(&history, seq)?;
        ensure!(stored["end_to_end"] == json!(false), "history is not decrypted: {stored}");
        ensure!(!stored.to_string().contains("numbers"), "the broker stored plaintext: {stored}");
        Ok(())
    })?;
    fx.shutdown().await
}
