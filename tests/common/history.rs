//! A history checker in the spirit of Jepsen's total-queue workload: tests record every send
//! (who, where, which client message id, what payload, and the sequence number the broker
//! acknowledged, if it did) and every recipient's received stream (the entries its SDK event
//! stream handed out); after the run the checker compares both against each conversation's log
//! as HISTORY reads it back.
//!
//! What the checker holds against the broker:
//! - `sequence`: a log's seqs are not exactly `1..=last_seq` (a gap or a repeat).
//! - `acked_lost`: an acknowledged message is not in the log at its acknowledged seq with its
//!   payload.
//! - `duplicates`: a message stored twice, or one seq handed to one recipient twice.
//! - `unexpected`: a stored message nobody sent or with a payload its sender did not send; a
//!   delivery that is not the log's entry at its seq.
//! - `order_violations`: a sender's messages logged out of its send order; a recipient's stream
//!   out of seq order within a conversation.
//! - `missing_delivered`: a logged entry never handed to a recipient that stayed a member and
//!   was reading ([`History::expect`]).
//!
//! An acknowledged message whose seq now holds its sender's tombstone was recalled or expired:
//! counted as `recalled`, not lost.
//!
//! `recovered` (sent, never acknowledged, but stored) is allowed: the ack was lost, not the
//! message. It is counted, not held against anyone. So are unacknowledged messages that are
//! absent: their sender was never told they were stored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use bytes::Bytes;
use herald_client::{Entry, EntryKind};

/// One message as its sender knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRecord {
    /// The sending user.
    pub sender: String,
    /// The conversation sent to.
    pub conversation: u64,
    /// The client message id (retries reuse it).
    pub client_msg_id: String,
    /// The payload, exactly as sent.
    pub payload: Bytes,
    /// The seq of the broker's acknowledgement, if one arrived.
    pub acked_seq: Option<u64>,
}

impl SendRecord {
    /// A message sent but not (yet) acknowledged.
    pub fn new(sender: &str, conversation: u64, client_msg_id: &str, payload: impl Into<Bytes>) -> Self {
        Self {
            sender: sender.to_owned(),
            conversation,
            client_msg_id: client_msg_id.to_owned(),
            payload: payload.into(),
            acked_seq: None,
        }
    }

    /// The same message, acknowledged at `seq`.
    pub fn acked(mut self, seq: u64) -> Self {
        self.acked_seq = Some(seq);
        self
    }
}

/// A conversation's log as HISTORY read it back after the run.
#[derive(Debug, Clone)]
pub struct Log {
    /// The conversation.
    pub conversation: u64,
    /// Every entry, in the order read.
    pub entries: Vec<Entry>,
    /// The broker's `last_seq` for it.
    pub last_seq: u64,
}

/// Everything a run recorded. Sends are kept in the order they were recorded, which must be
/// each sender's send order within a conversation.
#[derive(Debug, Default)]
pub struct History {
    sends: Vec<SendRecord>,
    /// Where each (sender, conversation, client message id) is in `sends`, so recording a
    /// send costs the same however many came before: an overload run records a few hundred
    /// thousand, and a scan per record made the check outlast the run by many minutes.
    positions: HashMap<SendKey, usize>,
    /// Per recipient, the entries its event stream handed out, in order.
    received: BTreeMap<String, Vec<Entry>>,
    /// Per recipient, the conversations it stayed a member of and read throughout, each with
    /// the seq after which it must have received every entry.
    expected: BTreeMap<String, Vec<(u64, u64)>>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a send; a second record of the same (sender, conversation, id), a retry, only
    /// updates its acknowledgement.
    pub fn sent(&mut self, record: SendRecord) {
        let key = (record.sender.clone(), record.conversation, record.client_msg_id.clone());
        match self.positions.get(&key).and_then(|&n| self.sends.get_mut(n)) {
            Some(earlier) => earlier.acked_seq = record.acked_seq.or(earlier.acked_seq),
            None => {
                self.positions.insert(key, self.sends.len());
                self.sends.push(record);
            }
        }
    }

    /// Records every send in `records`, in order.
    pub fn sent_all(&mut self, records: impl IntoIterator<Item = SendRecord>) {
        for record in records {
            self.sent(record);
        }
    }

    /// Records entries `recipient`'s event stream handed out, after those recorded before.
    pub fn received(&mut self, recipient: &str, entries: impl IntoIterator<Item = Entry>) {
        self.received.entry(recipient.to_owned()).or_default().extend(entries);
    }

    /// Declares that `recipient` stayed a member of `conversation` and read its events from
    /// when the log's last seq was `after_seq`: it must have received every later entry.
    pub fn expect(&mut self, recipient: &str, conversation: u64, after_seq: u64) {
        self.expected.entry(recipient.to_owned()).or_default().push((conversation, after_seq));
    }

    /// The sends recorded so far.
    pub fn sends(&self) -> &[SendRecord] {
        &self.sends
    }

    /// Checks everything recorded against `logs`. Conversations without a log are not checked.
    pub fn check(&self, logs: &[Log]) -> Findings {
        let mut findings = Findings::default();
        for log in logs {
            findings.check_sequence(log);
            findings.check_log_against_sends(log, &self.sends);
        }
        let indexed: HashMap<u64, HashMap<u64, Vec<&Entry>>> =
            logs.iter().map(|log| (log.conversation, by_seq(log))).collect();
        let logs: HashMap<u64, &Log> = logs.iter().map(|log| (log.conversation, log)).collect();
        for (recipient, stream) in &self.received {
            findings.counts.deliveries += stream.len();
            findings.check_stream(recipient, stream, &indexed);
        }
        for (recipient, expected) in &self.expected {
            let stream = self.received.get(recipient).map(Vec::as_slice).unwrap_or_default();
            for &(conversation, after_seq) in expected {
                if let Some(log) = logs.get(&conversation) {
                    findings.check_complete(recipient, stream, log, after_seq);
                }
            }
        }
        findings.counts.sends = self.sends.len();
        findings.counts.acked = self.sends.iter().filter(|s| s.acked_seq.is_some()).count();
        findings.counts.log_entries = logs.values().map(|log| log.entries.len()).sum();
        findings.counts.recipients = self.received.len();
        findings.sort();
        findings
    }
}

/// Totals over a checked history, for reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Distinct messages sent.
    pub sends: usize,
    /// Of those, acknowledged.
    pub acked: usize,
    /// Unacknowledged but stored (the ack was lost).
    pub recovered: usize,
    /// Unacknowledged and not stored (allowed: the sender was never told otherwise).
    pub unacked_absent: usize,
    /// Acknowledged, and a tombstone at their seq now: recalled or expired, not lost.
    pub recalled: usize,
    /// Entries in the logs read back.
    pub log_entries: usize,
    /// Entries handed to recipients, all recipients together.
    pub deliveries: usize,
    /// Recipients whose streams were recorded.
    pub recipients: usize,
}

/// What the checker found: a list of problems per kind (the text names the message), and the
/// recovered messages, which are not problems.
#[derive(Debug, Default)]
pub struct Findings {
    pub sequence: Vec<String>,
    pub acked_lost: Vec<String>,
    pub duplicates: Vec<String>,
    pub unexpected: Vec<String>,
    pub order_violations: Vec<String>,
    pub missing_delivered: Vec<String>,
    pub recovered: Vec<String>,
    pub counts: Counts,
}

/// A message's identity, as the broker deduplicates: sender and client message id.
type MessageKey<'a> = (&'a str, &'a str);

/// A recorded send's identity: sender, conversation and client message id.
type SendKey = (String, u64, String);

/// A log's entries by seq (a broken log may hold a seq twice), so checking each send or
/// delivery against the log is one lookup rather than a scan of the whole log.
fn by_seq(log: &Log) -> HashMap<u64, Vec<&Entry>> {
    let mut index: HashMap<u64, Vec<&Entry>> = HashMap::new();
    for entry in &log.entries {
        index.entry(entry.seq).or_default().push(entry);
    }
    index
}

impl Findings {
    /// No problem of any kind (recovered messages are not problems).
    pub fn is_clean(&self) -> bool {
        self.problems().iter().all(|(_, problems)| problems.is_empty())
    }

    /// Each kind of problem, by its name.
    pub fn problems(&self) -> [(&'static str, &[String]); 6] {
        [
            ("sequence", &self.sequence),
            ("acked_lost", &self.acked_lost),
            ("duplicates", &self.duplicates),
            ("unexpected", &self.unexpected),
            ("order_violations", &self.order_violations),
            ("missing_delivered", &self.missing_delivered),
        ]
    }

    /// One line with every count, for test output.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let problems: Vec<String> = self.problems().iter().map(|(name, p)| format!("{name} {}", p.len())).collect();
        format!(
            "{} sends ({} acked, {} recalled, {} recovered, {} unacked and absent), {} log entries, {} \
             deliveries to {} recipients; {}",
            c.sends,
            c.acked,
            c.recalled,
            c.recovered,
            c.unacked_absent,
            c.log_entries,
            c.deliveries,
            c.recipients,
            problems.join(", ")
        )
    }

    fn sort(&mut self) {
        for problems in [
            &mut self.sequence,
            &mut self.acked_lost,
            &mut self.duplicates,
            &mut self.unexpected,
            &mut self.order_violations,
            &mut self.missing_delivered,
            &mut self.recovered,
        ] {
            problems.sort();
        }
    }

    /// The seqs must be exactly `1..=last_seq`: no gap, no repeat.
    fn check_sequence(&mut self, log: &Log) {
        let c = log.conversation;
        if let Some((expected, entry)) = (1u64..).zip(&log.entries).find(|(expected, e)| e.seq != *expected) {
            self.sequence.push(format!("conv {c}: seq {expected} expected, found {} (a gap or a repeat)", entry.seq));
        }
        if log.entries.len() as u64 != log.last_seq {
            self.sequence.push(format!(
                "conv {c}: {} entries read, but the broker reports last_seq {}",
                log.entries.len(),
                log.last_seq
            ));
        }
    }

    /// Stored messages against sent ones: lost acks, duplicates, strangers, send order.
    fn check_log_against_sends(&mut self, log: &Log, sends: &[SendRecord]) {
        let c = log.conversation;
        let mut stored: HashMap<MessageKey<'_>, Vec<(u64, &Bytes)>> = HashMap::new();
        for entry in &log.entries {
            if let EntryKind::Message { client_msg_id, payload } = &entry.kind {
                stored
                    .entry((entry.sender_user.as_str(), client_msg_id.as_str()))
                    .or_default()
                    .push((entry.seq, payload));
            }
        }
        let entries = by_seq(log);
        let sent: Vec<&SendRecord> = sends.iter().filter(|s| s.conversation == c).collect();
        let by_key: HashMap<MessageKey<'_>, &SendRecord> =
            sent.iter().map(|s| ((s.sender.as_str(), s.client_msg_id.as_str()), *s)).collect();

        for (&(user, id), copies) in &stored {
            let seqs: Vec<u64> = copies.iter().map(|&(seq, _)| seq).collect();
            if copies.len() > 1 {
                self.duplicates.push(format!("conv {c}: {user}/{id} stored at seqs {seqs:?}"));
            }
            match by_key.get(&(user, id)) {
                None => self.unexpected.push(format!("conv {c}: {user}/{id} at seqs {seqs:?} was never sent")),
                Some(s) if copies.iter().any(|&(_, payload)| *payload != s.payload) => {
                    self.unexpected.push(format!("conv {c}: {user}/{id} at seqs {seqs:?} has another payload"));
                }
                Some(_) => {}
            }
        }
        for s in &sent {
            let copies = stored.get(&(s.sender.as_str(), s.client_msg_id.as_str())).map(Vec::as_slice);
            let copies = copies.unwrap_or_default();
            let seqs: Vec<u64> = copies.iter().map(|&(seq, _)| seq).collect();
            match s.acked_seq {
                Some(acked) if is_tombstone_of(&entries, acked, &s.sender) => self.counts.recalled += 1,
                Some(acked) if !copies.iter().any(|&(seq, payload)| seq == acked && *payload == s.payload) => {
                    self.acked_lost.push(format!(
                        "conv {c}: {}/{} acked at seq {acked}, the log has it at {seqs:?}",
                        s.sender, s.client_msg_id
                    ));
                }
                Some(_) => {}
                None if copies.is_empty() => self.counts.unacked_absent += 1,
                None => {
                    self.counts.recovered += 1;
                    self.recovered
                        .push(format!("conv {c}: {}/{} unacked, stored at {seqs:?}", s.sender, s.client_msg_id));
                }
            }
        }
        let senders: HashSet<&str> = sent.iter().map(|s| s.sender.as_str()).collect();
        for sender in senders {
            self.check_send_order(log, sender, &sent);
        }
    }

    /// A sender's messages must be logged in the order it sent them.
    fn check_send_order(&mut self, log: &Log, sender: &str, sent: &[&SendRecord]) {
        let position: HashMap<&str, usize> = sent
            .iter()
            .filter(|s| s.sender == sender)
            .enumerate()
            .map(|(n, s)| (s.client_msg_id.as_str(), n))
            .collect();
        let order: Vec<(usize, &str)> = log
            .entries
            .iter()
            .filter(|entry| entry.sender_user == sender)
            .filter_map(|entry| match &entry.kind {
                EntryKind::Message { client_msg_id, .. } => {
                    position.get(client_msg_id.as_str()).map(|&n| (n, client_msg_id.as_str()))
                }
                _ => None,
            })
            .collect();
        let misplaced = order.windows(2).find_map(|pair| match *pair {
            [earlier, later] if earlier.0 >= later.0 => Some((earlier.1, later.1)),
            _ => None,
        });
        if let Some((earlier, later)) = misplaced {
            self.order_violations.push(format!(
                "conv {}: {sender}'s {later} is logged after {earlier}, which it sent later",
                log.conversation
            ));
        }
    }

    /// A recipient's stream: each entry once, in seq order per conversation, equal to the log's.
    fn check_stream(&mut self, recipient: &str, stream: &[Entry], logs: &HashMap<u64, HashMap<u64, Vec<&Entry>>>) {
        let mut seen: HashSet<(u64, u64)> = HashSet::new();
        let mut newest: HashMap<u64, u64> = HashMap::new();
        for entry in stream {
            let (c, seq) = (entry.conversation_id, entry.seq);
            if !seen.insert((c, seq)) {
                self.duplicates.push(format!("{recipient}: conv {c} seq {seq} delivered twice"));
            }
            match newest.get(&c) {
                Some(&before) if seq <= before => {
                    self.order_violations.push(format!("{recipient}: conv {c} seq {seq} delivered after seq {before}"));
                }
                _ => {}
            }
            let newest = newest.entry(c).or_default();
            *newest = (*newest).max(seq);
            let Some(entries) = logs.get(&c) else { continue };
            match entries.get(&seq).and_then(|at| at.first()) {
                None => self.unexpected.push(format!("{recipient}: conv {c} seq {seq} delivered, not in the log")),
                Some(logged) if !delivery_matches(entry, logged) => {
                    self.unexpected.push(format!("{recipient}: conv {c} seq {seq} delivered differs from the log"));
                }
                Some(_) => {}
            }
        }
    }

    /// Every entry after `after_seq` must have reached `recipient`.
    fn check_complete(&mut self, recipient: &str, stream: &[Entry], log: &Log, after_seq: u64) {
        let c = log.conversation;
        let got: HashSet<u64> = stream.iter().filter(|e| e.conversation_id == c).map(|e| e.seq).collect();
        for entry in log.entries.iter().filter(|e| e.seq > after_seq && !got.contains(&e.seq)) {
            self.missing_delivered.push(format!("{recipient}: conv {c} seq {} never delivered", entry.seq));
        }
    }
}

/// Whether the log holds a tombstone of `sender`'s at `seq`: a recalled or expired message,
/// whose id and payload the broker deleted on purpose.
fn is_tombstone_of(entries: &HashMap<u64, Vec<&Entry>>, seq: u64, sender: &str) -> bool {
    entries
        .get(&seq)
        .is_some_and(|at| at.iter().any(|e| e.sender_user == sender && matches!(e.kind, EntryKind::Tombstone { .. })))
}

/// Whether a delivered entry is the logged one. A message recalled since is a tombstone in the
/// log, so then any delivery at its seq is allowed.
fn delivery_matches(delivered: &Entry, logged: &Entry) -> bool {
    match (&delivered.kind, &logged.kind) {
        (_, EntryKind::Tombstone { .. }) => true,
        (EntryKind::Message { .. }, _) => delivered.sender_user == logged.sender_user && delivered.kind == logged.kind,
        (_, EntryKind::Message { .. }) => false,
        _ => true,
    }
}

impl fmt::Display for Findings {
    /// Each kind of problem with its count and its first few instances.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 10;
        writeln!(f, "{}", self.summary())?;
        for (name, problems) in self.problems().into_iter().filter(|(_, problems)| !problems.is_empty()) {
            writeln!(f, "{name}: {}", problems.len())?;
            for problem in problems.iter().take(SHOWN) {
                writeln!(f, "  {problem}")?;
            }
            if problems.len() > SHOWN {
                writeln!(f, "  ... and {} more", problems.len() - SHOWN)?;
            }
        }
        Ok(())
    }
}
