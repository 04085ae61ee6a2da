//! Invariants of a shard's committed state, shared by the deterministic simulation and the
//! shard fuzz harness. Both drive the real shard loop over the in-memory store, and both must
//! judge what it left behind by the same rules: a log gapless `1..=last_seq` under a summary
//! that agrees, and a loaded conversation (summary, members, receipt cursors, DINGs) and the
//! shard's timers equal to what the store holds, so nothing in memory ran ahead of a commit.
//!
//! Every check answers `Err` with what is wrong; the caller adds how to reproduce it and panics.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use herald_protocol::{Frame, FrameCodec, OrgId, UserId, pb};
use prost::Message;

use super::machine::ShardMachine;
use crate::conversation::ConvKey;
use crate::fanout::{FanOut, Lane};
use crate::store::{ConversationSummary, LogStore};

/// A broken invariant, in words.
pub(super) type Violation = String;

/// The fan-out of a driven shard: records every delivery for the driver to hand out.
#[derive(Debug, Default)]
pub(super) struct Recorder(Mutex<Vec<(Vec<UserId>, Bytes, Lane)>>);

impl Recorder {
    /// Every delivery since the last call: recipients, the encoded frame and its lane.
    pub(super) fn take(&self) -> Vec<(Vec<UserId>, Bytes, Lane)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl FanOut for Recorder {
    fn fan_out(&self, _org: &OrgId, recipients: &[UserId], frame: &Bytes, lane: Lane) -> (usize, usize) {
        let mut queued = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        queued.push((recipients.to_vec(), frame.clone(), lane));
        (recipients.len(), 0)
    }
}

/// One whole frame, as the shard encoded it for fan-out.
pub(super) fn decode_frame(bytes: &Bytes) -> Result<Frame, Violation> {
    let mut buf = BytesMut::from(&bytes[..]);
    match FrameCodec::default().decode(&mut buf) {
        Ok(Some(frame)) if buf.is_empty() => Ok(frame),
        other => Err(format!("a pushed frame does not decode as one whole frame: {other:?}")),
    }
}

/// The conversation's whole committed log, checked: every entry decodes, carries its
/// conversation and its seq, the seqs run `1..=last_seq` without a gap, and the summary's
/// `last_seq` is the last one. `None` if the conversation does not exist (then no entry may).
pub(super) fn committed_log(store: &dyn LogStore, conv: &ConvKey) -> Result<Option<Vec<pb::LogEntry>>, Violation> {
    let summary = store.conversation_summary(conv).map_err(|e| format!("summary of {}: {e}", conv.id))?;
    let raw = store.read_log(conv, 1, false, usize::MAX).map_err(|e| format!("log of {}: {e}", conv.id))?;
    let Some(summary) = summary else {
        return if raw.is_empty() { Ok(None) } else { Err(format!("{} has log entries but no summary", conv.id)) };
    };
    let mut log = Vec::with_capacity(raw.len());
    for (bytes, want) in raw.into_iter().zip(1..) {
        let entry = pb::LogEntry::decode(bytes).map_err(|e| format!("{} seq {want} does not decode: {e}", conv.id))?;
        if entry.seq != want || entry.conversation_id != conv.id.get() {
            return Err(format!(
                "{}'s log has {}/{} where seq {want} belongs",
                conv.id, entry.conversation_id, entry.seq
            ));
        }
        log.push(entry);
    }
    if summary.last_seq != log.len() as u64 {
        return Err(format!(
            "{}'s summary says last_seq {} but the log ends at {}",
            conv.id,
            summary.last_seq,
            log.len()
        ));
    }
    Ok(Some(log))
}

/// A conversation the machine holds in memory equals the stored one: summary, members,
/// every member's and device's receipt cursors, and its DINGs. Nothing in memory ran ahead of
/// the store (a failed commit must forget what it changed). A conversation not in memory passes.
pub(super) fn machine_matches_store(
    machine: &ShardMachine,
    store: &dyn LogStore,
    conv: &ConvKey,
) -> Result<(), Violation> {
    let Some(state) = machine.conversation(conv) else { return Ok(()) };
    let read = |e: crate::store::StoreError| format!("reading {}: {e}", conv.id);
    let stored = store.load_conversation(conv).map_err(read)?;
    let Some(stored) = stored else { return Err(format!("{} is in memory but not in the store", conv.id)) };
    if ConversationSummary::of(state) != ConversationSummary::of(&stored) || state.members() != stored.members() {
        return Err(format!("{} in memory {state:?} differs from the store's {stored:?}", conv.id));
    }
    if let Some(receipts) = machine.receipts.get(conv) {
        let cursors = store.load_cursors(conv).map_err(read)?;
        for (user, cursor) in &cursors.members {
            if receipts.book.member(user) != Some(cursor) {
                let memory = receipts.book.member(user);
                return Err(format!("{}'s cursor of {user}: {memory:?} in memory, {cursor:?} stored", conv.id));
            }
        }
        for (user, device, delivered) in &cursors.devices {
            if receipts.book.device(user, device) != Some(*delivered) {
                let memory = receipts.book.device(user, device);
                return Err(format!(
                    "{}'s {user}/{device} delivered {memory:?} in memory, {delivered} stored",
                    conv.id
                ));
            }
        }
        for user in state.members().keys() {
            if receipts.book.member(user).is_some() && !cursors.members.iter().any(|(u, _)| u == user) {
                return Err(format!("{}'s cursor of {user} is in memory only", conv.id));
            }
        }
    }
    let stored_dings: BTreeMap<u64, crate::ding::Ding> =
        store.load_dings(conv).map_err(read)?.into_iter().map(|d| (d.id, d)).collect();
    let empty = BTreeMap::new();
    let dings = machine.ding.dings.get(conv).unwrap_or(&empty);
    if *dings != stored_dings {
        return Err(format!("{}'s DINGs in memory {dings:?} differ from the store's {stored_dings:?}", conv.id));
    }
    Ok(())
}

/// The shard's pending timers are exactly the stored timers of the conversations it owns.
pub(super) fn timers_match_store(
    machine: &ShardMachine,
    store: &dyn LogStore,
    owns: impl Fn(&ConvKey) -> bool,
) -> Result<(), Violation> {
    let stored = store.load_timers().map_err(|e| format!("reading timers: {e}"))?;
    let mine: Vec<_> = stored.into_iter().filter(|(id, _)| owns(&id.conv)).collect();
    for (id, timer) in &mine {
        if machine.timers.get(id) != Some(timer) {
            return Err(format!("timer {id:?} is stored as {timer:?} but {:?} in memory", machine.timers.get(id)));
        }
    }
    if machine.timers.len() != mine.len() {
        return Err(format!("{} timers in memory, {} stored", machine.timers.len(), mine.len()));
    }
    Ok(())
}
