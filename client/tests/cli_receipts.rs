//! The `herald` receipts, recall, expiry, scheduling and settings subcommands against a real
//! in-process broker.
//!
//! They assert only what the .proto rules fix: where the rules leave a choice
//! open (whether the sender's own read counts, how many devices a recall reaches), they compare
//! before and after instead of fixing a number.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use common::{Fixture, PATIENCE};
use serde_json::{Value, json};

/// A running `herald listen` and the lines it has printed so far.
struct Listener {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Listener {
    /// Starts `herald listen` as `user` and waits until it reports that it is listening.
    fn start(fx: &Fixture, user: &str) -> Result<Self> {
        Self::start_with(fx, user, &["listen"])
    }

    /// Starts `herald ARGS` (a listen) as `user` and waits until it reports that it is listening.
    fn start_with(fx: &Fixture, user: &str, args: &[&str]) -> Result<Self> {
        let mut child = fx.command(user, args)?.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let mut stderr = BufReader::new(child.stderr.take().context("stderr")?);
        let mut line = String::new();
        while !line.contains("listening as") {
            line.clear();
            if stderr.read_line(&mut line)? == 0 {
                let status = child.wait()?;
                bail!("listener exited ({status}) before listening:\n{line}");
            }
        }
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Listener { child, lines, seen: Vec::new() })
    }

    /// Waits for a printed line that satisfies `wanted` (lines before it are kept in `seen`).
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> Result<String> {
        if let Some(line) = self.seen.iter().find(|l| wanted(l)) {
            return Ok(line.clone());
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    bail!("no {what} from herald listen within {PATIENCE:?}; it printed:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// Waits for a printed JSON object with these fields (each line must be one object).
    fn wait_for_json(&mut self, what: &str, fields: &Value) -> Result<Value> {
        let fields = fields.as_object().context("fields to match")?;
        let matches = |line: &str| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| json!({"unparsable": e.to_string()}));
            fields.iter().all(|(k, v)| value.get(k) == Some(v))
        };
        let line = self.wait_for(what, matches)?;
        ensure!(self.seen.iter().all(|l| serde_json::from_str::<Value>(l).is_ok()), "not all JSON: {:?}", self.seen);
        Ok(serde_json::from_str(&line)?)
    }

    /// Waits for the exact line.
    fn wait_for_line(&mut self, expected: &str) -> Result<()> {
        self.wait_for(expected, |l| l == expected).map(drop)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `key=value` pairs of a line such as `receipts conv=1 seq=2 read=0`.
fn fields(line: &str) -> HashMap<&str, &str> {
    line.split_whitespace().filter_map(|pair| pair.split_once('=')).collect()
}

/// A numeric field of a line.
fn number(line: &str, key: &str) -> Result<u64> {
    fields(line).get(key).with_context(|| format!("no {key}= in {line:?}"))?.parse().context(key.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_moves_counts_and_lists_and_the_sender_hears_of_it() -> Result<()> {
    let fx = Fixture::start().await?;
    tokio::task::block_in_place(|| -> Result<()> {
        let conv = fx.group(&["bob", "carol"])?;
        let id = conv.to_string();
        let mut alice = Listener::start(&fx, "alice")?;
        assert_eq!(fx.ok("alice", &["send", &id, "hello"])?.trim(), "sent seq=2");

        let before = fx.ok("alice", &["receipts", &id, "2"])?;
        let prefix = format!("receipts conv={conv} seq=2 ");
        ensure!(before.trim().starts_with(&prefix) && before.trim().ends_with(" members=3"), "{before}");
        let (read, delivered) = (number(&before, "read")?, number(&before, "delivered")?);

        assert_eq!(fx.ok("bob", &["read", &id, "2"])?.trim(), format!("read conv={conv} read_seq=2 delivered_seq=2"));
        let after = fx.ok("alice", &["receipts", &id, "2"])?;
        let expected = format!("{prefix}read={} delivered={} members=3", read + 1, delivered + 1);
        assert_eq!(after.trim(), expected);
        // The sender's sessions are told, coalesced, without asking.
        alice.wait_for_line(&expected)?;

        let readers = fx.ok("alice", &["receipts", &id, "2", "--read"])?;
        let lines: Vec<&str> = readers.lines().collect();
        assert_eq!(lines.first().copied(), Some(expected.as_str()), "{readers}");
        assert!(lines.contains(&"read bob") && !lines.contains(&"read carol"), "{readers}");
        let unread = fx.ok("alice", &["receipts", &id, "2", "--unread"])?;
        let lines: Vec<&str> = unread.lines().collect();
        assert!(lines.contains(&"unread carol") && !lines.contains(&"unread bob"), "{unread}");
        let one = fx.ok("alice", &["receipts", &id, "2", "--unread", "--limit", "1"])?;
        assert_eq!(one.lines().count(), 2, "{one}");

        // Cursors only move forward, and only as far as the log goes.
        fx.fails("bob", &["read", &id, "1"], "STALE_CURSOR")?;
        fx.fails("bob", &["read", &id, "99"], "OUT_OF_RANGE")?;
        // Counts are for any member; lists for the sender and the group's owner and admins.
        assert_eq!(fx.ok("carol", &["receipts", &id, "2"])?.trim(), expected);
        fx.fails("carol", &["receipts", &id, "2", "--read"], "FORBIDDEN")?;
        fx.fails("mallory", &["receipts", &id, "2"], "NOT_FOUND")?;
        Ok(())
    })?;
    fx.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recall_leaves_a_tombstone_and_reaches_listeners_at_once() -> Result<()> {
    let fx = Fixture::start().await?;
    tokio::task::block_in_place(|| -> Result<()> {
        let conv = fx.group(&["bob"])?;
        let id = conv.to_string();
        assert_eq!(fx.ok("alice", &["send", &id, "oops"])?.trim(), "sent seq=2");
        let mut bob = Listener::start(&fx, "bob")?;
        let mut alice = Listener::start(&fx, "alice")?;

        assert_eq!(fx.ok("alice", &["recall", &id, "2"])?.trim(), "recalled seq=2 event_seq=3");
        bob.wait_for_line(&format!("recalled conv={conv} seq=2 event_seq=3 reason=recalled by=alice"))?;
        bob.wait_for_line(&format!("conv={conv} seq=3 from=alice/cli [recalled seq=2]"))?;

        let history = fx.ok("bob", &["history", &id])?;
        let tombstone = format!("conv={conv} seq=2 from=alice/cli [tombstone reason=recalled by=alice event_seq=3]");
        assert!(history.lines().any(|l| l == tombstone), "{history}");
        assert!(!history.contains("oops"), "{history}");

        // Once bob's device has taken in the recall event, alice hears how far it got.
        fx.ok("bob", &["read", &id, "3"])?;
        let progress = format!("recall-progress conv={conv} seq=2 event_seq=3 ");
        let line = alice.wait_for("recall progress", |l| l.starts_with(&progress))?;
        ensure!(number(&line, "applied")? >= 1 && number(&line, "devices")? >= number(&line, "applied")?, "{line}");

        fx.fails("alice", &["recall", &id, "2"], "ALREADY_RECALLED")?;
        fx.fails("alice", &["recall", &id, "1"], "INVALID_ARGUMENT")?;
        fx.fails("alice", &["recall", &id, "99"], "NOT_FOUND")?;
        assert_eq!(fx.ok("alice", &["send", &id, "mine"])?.trim(), "sent seq=4");
        fx.fails("bob", &["recall", &id, "4"], "FORBIDDEN")?;
        fx.fails("mallory", &["recall", &id, "4"], "NOT_FOUND")?;
        Ok(())
    })?;
    fx.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_recall_window_only_the_owner_may_recall() -> Result<()> {
    let fx = Fixture::start_with(|config| config.limits.recall_window = Duration::from_secs(1)).await?;
    tokio::task::block_in_place(|| -> Result<()> {
        let conv = fx.group(&["bob"])?;
        let id = conv.to_string();
        assert_eq!(fx.ok("bob", &["send", &id, "said too much"])?.trim(), "sent seq=2");
        std::thread::sleep(Duration::from_millis(1_500));
        fx.fails("bob", &["recall", &id, "2"], "RECALL_WINDOW_CLOSED")?;
        assert_eq!(fx.ok("alice", &["recall", &id, "2"])?.trim(), "recalled seq=2 event_seq=3");
        let history = fx.ok("bob", &["history", &id])?;
        let tombstone = format!("conv={conv} seq=2 from=bob/cli [tombstone reason=recalled by=alice event_seq=3]");
        assert!(history.lines().any(|l| l == tombstone), "{history}");
        Ok(())
    })?;
    fx.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_arrive_on_time_and_can_be_moved_or_cancelled() -> Result<()> {
    let fx = Fixture::start().await?;
    tokio::task::block_in_place(|| -> Result<()> {
        let conv = fx.group(&["bob"])?;
        let id = conv.to_string();
        let mut bob = Listener::start(&fx, "bob")?;

        let sent_at = SystemTime::now();
        let scheduled = fx.ok("alice", &["send", &id, "later", "--at", "+5s", "--id", "later-1"])?;
        let deliver_at = scheduled
            .trim()
            .strip_prefix("scheduled id=later-1 deliver_at=")
            .with_context(|| format!("not a schedule: {scheduled}"))?;
        let deliver_at = humantime::parse_rfc3339(deliver_at)?;
        let ahead = deliver_at.duration_since(sent_at)?;
        ensure!(ahead > Duration::from_secs(4) && ahead < Duration::from_secs(7), "{scheduled}");
        // Held, not sequenced: the log still ends at `created`.
        let listing = fx.ok("alice", &["conversations"])?;
        ensure!(listing.contains(&format!("conv={conv} kind=group members=2 last_seq=1 ")), "{listing}");

        fx.ok("alice", &["send", &id, "never", "--at", "+1h", "--id", "later-2"])?;
        assert_eq!(fx.ok("alice", &["reschedule", &id, "later-2", "--cancel"])?.trim(), "cancelled id=later-2");
        fx.fails("alice", &["reschedule", &id, "later-2", "--cancel"], "NOT_FOUND")?;

        fx.ok("alice", &["send", &id, "moved", "--at", "+1h", "--id", "later-3"])?;
        let moved = fx.ok("alice", &["reschedule", &id, "later-3", "+1s"])?;
        ensure!(moved.trim().starts_with("scheduled id=later-3 deliver_at="), "{moved}");

        bob.wait_for("the moved message", |l| {
            l.starts_with(&format!("conv={conv} ")) && l.ends_with(" from=alice/cli moved")
        })?;
        let later = bob.wait_for("the scheduled message", |l| l.ends_with(" from=alice/cli later"))?;
        ensure!(SystemTime::now() >= deliver_at, "delivered before its time: {later}");
        let history = fx.ok("bob", &["history", &id])?;
        assert!(!history.contains("never"), "{history}");
        // The scheduled id is spent once sequenced.
        fx.fails("alice", &["reschedule", &id, "later-1", "+1h"], "NOT_FOUND")?;

        fx.fails("alice", &["send", &id, "too late", "--at", "2020-01-01T00:00:00Z"], "OUT_OF_RANGE")?;
        fx.fails("alice", &["send", &id, "too early", "--at", "+400d"], "OUT_OF_RANGE")?;
        fx.fails("alice", &["send", &id, "stale", "--expire-in", "400d"], "OUT_OF_RANGE")?;
        Ok(())
    })?;
    fx.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_messages_become_tombstones_and_listeners_are_told() -> Result<()> {
    let fx = Fixture::start().await?;
    tokio::task::block_in_place(|| -> Result<()> {
        let conv = fx.group(&["bob"])?;
        let id = conv.to_string();
        let mut bob = Listener::start(&fx, "bob")?;

        assert_eq!(fx.ok("alice", &["send", &id, "fleeting", "--expire-in", "2s"])?.trim(), "sent seq=2");
        let notice = bob.wait_for("the expiry notice", |l| l.starts_with(&format!("recalled conv={conv} seq=2 ")))?;
        ensure!(notice.ends_with(" reason=expired") && !notice.contains(" by="), "{notice}");
        let event_seq = number(&notice, "event_seq")?;
        let tombstone = format!("conv={conv} seq=2 from=alice/cli [tombstone reason=expired event_seq={event_seq}]");
        fx.history_until("bob", conv, &tombstone)?;

        let sent = fx.ok("alice", &["send", &id, "read once", "--expire-after-read", "1s"])?;
        let seq = number(sent.trim(), "seq")?;
        let history = fx.ok("bob", &["history", &id])?;
        assert!(history.contains(&format!("seq={seq} from=alice/cli read once")), "{history}");
        fx.ok("bob", &["read", &id, &seq.to_string()])?;
        // Whether the sender must read its own message is the broker's call; reading it too
        // satisfies either rule (STALE_CURSOR if its cursor already stands there).
        let out = fx.run("alice", &["read", &id, &seq.to_string()])?;
        ensure!(out.status.success() || String::from_utf8_lossy(&out.stderr).contains("STALE_CURSOR"));
        fx.history_until("bob", conv, &format!("conv={conv} seq={seq} from=alice/cli [tombstone reason=expired "))?;
        Ok(())
    })?;
    fx.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_turn_receipts_off_and_retention_expires_new_messages() -> Result<()> {
    let fx = Fixture::start().await?;
    tokio::task::block_in_place(|| -> Result<()> {
        let conv = fx.group(&["bob"])?;
        let id = conv.to_string();
        assert_eq!(fx.ok("bob", &["settings", &id])?.trim(), format!("conv={conv} receipts=on retention=off"));
        fx.fails("bob", &["settings", &id, "--receipts", "off"], "FORBIDDEN")?;

        assert_eq!(fx.ok("alice", &["settings", &id, "--receipts", "off"])?.trim(), "updated seq=2");
        assert_eq!(fx.ok("bob", &["settings", &id])?.trim(), format!("conv={conv} receipts=off retention=off"));
        assert_eq!(fx.ok("alice", &["send", &id, "kept"])?.trim(), "sent seq=3");
        fx.fails("alice", &["receipts", &id, "3"], "RECEIPTS_DISABLED")?;
        // Cursors are still kept with receipts off.
        assert_eq!(fx.ok("bob", &["read", &id, "3"])?.trim(), format!("read conv={conv} read_seq=3 delivered_seq=3"));

        assert_eq!(fx.ok("alice", &["settings", &id, "--retention", "2s"])?.trim(), "updated seq=4");
        assert_eq!(fx.ok("bob", &["settings", &id])?.trim(), format!("conv={conv} receipts=off retention=2s"));
        assert_eq!(fx.ok("alice", &["send", &id, "short-lived"])?.trim(), "sent seq=5");
        let history =
            fx.history_until("bob", conv, &format!("conv={conv} seq=5 from=alice/cli [tombstone reason=expired "))?;
        let lines: Vec<&str> = history.lines().collect();
        assert!(
            lines.contains(
                &format!("conv={conv} seq=2 from=alice/cli [settings read_receipts=false retention_secs=0]").as_str()
            ),
            "{history}"
        );
        assert!(
            lines.contains(
                &format!("conv={conv} seq=4 from=alice/cli [settings read_receipts=false retention_secs=2]").as_str()
            ),
            "{history}"
        );
        // Retention applies to messages sent after it was set.
        assert!(lines.contains(&format!("conv={conv} seq=3 from=alice/cli kept").as_str()), "{history}");

        let seq: u64 = fx
            .ok("alice", &["settings", &id, "--receipts", "on", "--retention", "off"])?
            .trim()
            .strip_prefix("updated seq=")
            .context("updated")?
            .parse()?;
        ensure!(seq > 5);
        assert_eq!(fx.ok("alice", &["settings", &id])?.trim(), format!("conv={conv} receipts=on retention=off"));
        Ok(())
    })?;
    fx.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_recalls_settings_and_schedules_as_json() -> Result<()> {
    let fx = Fixture::start().await?;
    tokio::task::block_in_place(|| -> Result<()> {
        let conv = fx.group(&["bob", "carol"])?;
        let id = conv.to_string();
        let mut alice = Listener::start_with(&fx, "alice", &["--json", "listen"])?;
        let seq = fx.json("alice", &["send", &id, "hello"])?["seq"].as_u64().context("a seq")?;
        let before = fx.json("alice", &["receipts", &id, &seq.to_string()])?;
        let read_before = before["read"].as_u64().context("a read count")?;
        assert_eq!((&before["list"], &before["users"], &before["members"]), (&Value::Null, &Value::Null, &json!(3)));

        let cursors = fx.json("bob", &["read", &id, &seq.to_string()])?;
        assert_eq!(cursors, json!({"conversation_id": conv, "read_seq": seq, "delivered_seq": seq}));
        let pushed = alice.wait_for_json(
            "receipts after bob read",
            &json!({"type": "receipts", "conversation_id": conv, "seq": seq, "read": read_before + 1}),
        )?;
        assert_eq!(pushed["members"], 3);
        let unread = fx.json("alice", &["receipts", &id, &seq.to_string(), "--unread"])?;
        assert_eq!(
            (&unread["read"], &unread["list"], &unread["more"]),
            (&json!(read_before + 1), &json!("unread"), &json!(false))
        );
        let users = unread["users"].as_array().with_context(|| format!("no users in {unread}"))?;
        assert!(users.contains(&json!("carol")) && !users.contains(&json!("bob")), "{unread}");
        let (code, _) = fx.json_error("bob", &["read", &id, "1"])?;
        assert_eq!(code, "STALE_CURSOR");

        let recalled = fx.json("alice", &["recall", &id, &seq.to_string()])?;
        let event_seq = recalled["event_seq"].as_u64().context("an event_seq")?;
        assert_eq!(recalled, json!({"conversation_id": conv, "seq": seq, "event_seq": event_seq}));
        let notice = alice.wait_for_json("the recall notice", &json!({"type": "recalled", "seq": seq}))?;
        let expected = json!({"type": "recalled", "conversation_id": conv, "seq": seq, "event_seq": event_seq,
            "reason": "recalled", "recalled_by": "alice"});
        assert_eq!(notice, expected);
        let history = fx.json("bob", &["history", &id])?;
        let entries = history["entries"].as_array().context("entries")?;
        let tombstone = entries.iter().find(|e| e["seq"] == seq).context("the tombstone")?;
        assert_eq!(
            (&tombstone["kind"], &tombstone["reason"], &tombstone["recalled_by"]),
            (&json!("tombstone"), &json!("recalled"), &json!("alice"))
        );
        assert_eq!(tombstone["event_seq"], event_seq);
        let event = entries.iter().find(|e| e["seq"] == event_seq).context("the recalled event")?;
        assert_eq!(
            event["event"],
            json!({"type": "recalled", "seq": seq, "recalled_by": "alice", "reason": "recalled"})
        );

        let settings = fx.json("alice", &["settings", &id])?;
        assert_eq!(
            settings,
            json!({"conversation_id": conv, "read_receipts": true, "retention_secs": 0, "archived": false})
        );
        let updated = fx.json("alice", &["settings", &id, "--retention", "7d"])?;
        assert_eq!(updated["conversation_id"], conv);
        ensure!(updated["seq"].as_u64() > Some(event_seq), "{updated}");
        assert_eq!(fx.json("alice", &["settings", &id])?["retention_secs"], 7 * 86_400);

        let now_ms = u64::try_from(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_millis())?;
        let scheduled = fx.json("alice", &["send", &id, "later", "--at", "+1h", "--id", "later-1"])?;
        assert_eq!((&scheduled["status"], &scheduled["client_msg_id"]), (&json!("scheduled"), &json!("later-1")));
        let at_ms = scheduled["deliver_at_ms"].as_u64().context("deliver_at_ms")?;
        ensure!(at_ms > now_ms + 3_500_000 && at_ms < now_ms + 3_700_000, "{scheduled}");
        let at = humantime::parse_rfc3339(scheduled["deliver_at"].as_str().context("deliver_at")?)?;
        assert_eq!(u64::try_from(at.duration_since(SystemTime::UNIX_EPOCH)?.as_millis())?, at_ms);
        let cancelled = fx.json("alice", &["reschedule", &id, "later-1", "--cancel"])?;
        assert_eq!(cancelled, json!({"status": "cancelled", "conversation_id": conv, "client_msg_id": "later-1"}));
        Ok(())
    })?;
    fx.shutdown().await
}
