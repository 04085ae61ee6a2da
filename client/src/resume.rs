//! The event pump: every event the app reads passes here, so the stream has no gaps and no
//! duplicates in any conversation, across reconnects and across deliveries the broker dropped
//! for a slow reader. It remembers the newest sequence number handed out per conversation; an
//! entry that would skip ahead is preceded by the missing ones from the log, one already handed
//! out is dropped, and after a reconnect or a RESYNC every conversation is brought up to date
//! with SYNC and HISTORY before anything newer is passed on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_protocol::pb;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::call::RingsSeen;
use crate::client::Requests;
use crate::encrypted::Inbound;
use crate::event::ConnectionState;
use crate::{CallEvent, ClientError, CursorStore, Entry, Event};

/// What the pump is fed.
#[derive(Debug)]
pub(crate) enum Input {
    /// An event read from one of the broker's streams.
    Event(Event),
    /// A session opened; `resumed` after a reconnect.
    Online { resumed: bool },
    /// The connection's state changed.
    State(ConnectionState),
}

/// What to do with a delivered entry, given what was handed out before.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Next in order (or the first seen of its conversation): hand it out.
    Next,
    /// Handed out before.
    Duplicate,
    /// Entries after `after` are missing before it.
    Gap { after: u64 },
}

/// The newest sequence number handed out per conversation.
#[derive(Debug, Default)]
pub(crate) struct Cursors {
    newest: HashMap<u64, u64>,
}

impl Cursors {
    /// The cursors `store` saved, or none (a store that cannot be read is reported and the
    /// client starts afresh: it then hands out only what arrives from now on).
    fn loaded_from(store: Option<&dyn CursorStore>) -> Self {
        let Some(store) = store else { return Self::default() };
        match store.load() {
            Ok(saved) => Self { newest: saved.into_iter().collect() },
            Err(e) => {
                warn!(error = %e, "cannot load saved cursors; starting without them");
                Self::default()
            }
        }
    }

    pub(crate) fn judge(&self, conversation_id: u64, seq: u64) -> Verdict {
        match self.newest.get(&conversation_id) {
            None => Verdict::Next,
            Some(&newest) if seq <= newest => Verdict::Duplicate,
            Some(&newest) if seq == newest + 1 => Verdict::Next,
            Some(&newest) => Verdict::Gap { after: newest },
        }
    }

    pub(crate) fn advance(&mut self, conversation_id: u64, seq: u64) {
        let newest = self.newest.entry(conversation_id).or_default();
        *newest = (*newest).max(seq);
    }

    pub(crate) fn all(&self) -> Vec<(u64, u64)> {
        self.newest.iter().map(|(&c, &s)| (c, s)).collect()
    }
}

/// How often, at most, the cursors are saved while entries are being handed out.
const SAVE_INTERVAL: Duration = Duration::from_millis(250);
/// How often held end-to-end messages are checked against their deadline.
const HOLD_CHECK: Duration = Duration::from_secs(1);

/// Runs the pump until its input ends or the app drops the event stream. With a cursor store,
/// it starts from the saved cursors and first hands out what came while the app was away.
pub(crate) async fn pump(
    mut input: mpsc::Receiver<Input>,
    out: mpsc::Sender<Event>,
    requests: Requests,
    store: Option<Arc<dyn CursorStore>>,
    inbound: Option<Inbound>,
) {
    let cursors = Cursors::loaded_from(store.as_deref());
    let mut pump = Pump {
        cursors,
        out,
        requests,
        store,
        saved_at: Instant::now(),
        dirty: false,
        rings: RingsSeen::default(),
        inbound,
    };
    let mut hold_check = tokio::time::interval(HOLD_CHECK);
    let mut alive = pump.open_mailbox().await && pump.catch_up_all().await;
    while alive {
        let next = tokio::select! {
            next = input.recv() => next,
            _ = hold_check.tick(), if pump.inbound.is_some() => {
                alive = pump.expire_held().await;
                continue;
            }
        };
        let Some(next) = next else { break };
        alive = match next {
            Input::Event(Event::Delivery(entry)) => pump.deliver(entry).await,
            Input::Event(Event::Resync { dropped_bytes }) => {
                pump.catch_up_all().await && pump.emit(Event::Resync { dropped_bytes }).await
            }
            Input::Event(Event::Call(CallEvent::Ring(ring))) if !pump.rings.first(&ring) => true,
            Input::Event(Event::Envelope(envelope)) if pump.inbound.is_some() => pump.open_envelope(envelope).await,
            Input::Event(Event::KeysChanged(notice)) if pump.inbound.is_some() => pump.keys_changed(notice).await,
            Input::Event(event) => pump.emit(event).await,
            Input::Online { resumed } => {
                pump.emit(Event::Connection(ConnectionState::Online { resumed })).await
                    && (!resumed || (pump.open_mailbox().await && pump.catch_up_all().await))
            }
            Input::State(state) => pump.emit(Event::Connection(state)).await,
        };
        pump.save(false);
    }
    pump.save(true);
}

struct Pump {
    cursors: Cursors,
    out: mpsc::Sender<Event>,
    requests: Requests,
    store: Option<Arc<dyn CursorStore>>,
    saved_at: Instant,
    /// Cursors moved since the last save.
    dirty: bool,
    /// Rings shown, so the datagram copy of a ring (or its stream copy) is dropped.
    rings: RingsSeen,
    /// The end-to-end layer, when configured: entries pass through it on their way out.
    inbound: Option<Inbound>,
}

impl Pump {
    /// Saves the cursors if they moved, at most every [`SAVE_INTERVAL`] unless `now`.
    /// Saves the cursors and the end-to-end engine if they moved, at most every
    /// [`SAVE_INTERVAL`] unless `now`: the engine's state is a whole blob, too costly to write
    /// per message.
    fn save(&mut self, now: bool) {
        let engine_moved = self.inbound.as_ref().is_some_and(Inbound::is_dirty);
        let cursors_moved = self.dirty && self.store.is_some();
        if !(engine_moved || cursors_moved) || (!now && self.saved_at.elapsed() < SAVE_INTERVAL) {
            return;
        }
        // The cursors first. A crash between the two writes then leaves the engine behind the
        // cursors: the messages it had decrypted are not delivered again, and their chain steps
        // are redone as skipped keys. The other way round, a message would come again after the
        // restart with its key already used, and show as replayed.
        if let Some(store) = &self.store
            && self.dirty
        {
            match store.save(&self.cursors.all()) {
                Ok(()) => self.dirty = false,
                Err(e) => warn!(error = %e, "cannot save cursors; retrying later"),
            }
        }
        if let Some(inbound) = &mut self.inbound {
            inbound.save();
        }
        self.saved_at = Instant::now();
    }

    fn advance(&mut self, conversation_id: u64, seq: u64) {
        self.cursors.advance(conversation_id, seq);
        self.dirty = true;
    }

    /// Hands out `event`; `false` once the app has dropped the stream.
    async fn emit(&mut self, event: Event) -> bool {
        self.out.send(event).await.is_ok()
    }

    /// Hands out each of `events` in order; `false` once the app has dropped the stream.
    async fn emit_all(&mut self, events: Vec<Event>) -> bool {
        for event in events {
            if !self.emit(event).await {
                return false;
            }
        }
        true
    }

    /// Hands out an entry that is next in its conversation: as it is, or through the
    /// end-to-end layer (decrypted, held for its key, or reported undecryptable).
    async fn hand_out(&mut self, entry: Entry) -> bool {
        match &mut self.inbound {
            Some(inbound) => {
                let events = inbound.entry(&self.requests, entry).await;
                self.emit_all(events).await
            }
            None => self.emit(Event::Delivery(entry)).await,
        }
    }

    /// Opens the envelopes waiting in this device's mailbox (end-to-end only).
    async fn open_mailbox(&mut self) -> bool {
        let Some(inbound) = &mut self.inbound else { return true };
        let events = inbound.drain_mailbox(&self.requests).await;
        self.emit_all(events).await
    }

    async fn open_envelope(&mut self, envelope: pb::Envelope) -> bool {
        let Some(inbound) = &mut self.inbound else { return true };
        let events = inbound.envelope(&self.requests, envelope).await;
        self.emit_all(events).await
    }

    /// Passes a key change on, with a warning for each known device whose keys changed.
    async fn keys_changed(&mut self, notice: pb::KeysChanged) -> bool {
        let Some(inbound) = &mut self.inbound else { return true };
        let warnings = inbound.keys_changed(&self.requests, &notice).await;
        self.emit(Event::KeysChanged(notice)).await && self.emit_all(warnings).await
    }

    async fn expire_held(&mut self) -> bool {
        let Some(inbound) = &mut self.inbound else { return true };
        let events = inbound.expire();
        self.emit_all(events).await
    }

    async fn deliver(&mut self, entry: Entry) -> bool {
        match self.cursors.judge(entry.conversation_id, entry.seq) {
            Verdict::Duplicate => true,
            Verdict::Next => {
                self.advance(entry.conversation_id, entry.seq);
                self.hand_out(entry).await
            }
            Verdict::Gap { after } => match self.fill(entry.conversation_id, after).await {
                // The fetch brought this entry too, or it is next now.
                Ok(true) => Box::pin(self.deliver(entry)).await,
                Ok(false) => false,
                // Offline again: the catch-up after reconnecting brings it, in order.
                Err(e) if is_connection_loss(&e) => true,
                Err(e) => {
                    warn!(error = %e, conversation = entry.conversation_id, "cannot fetch a gap; passing the entry on");
                    self.advance(entry.conversation_id, entry.seq);
                    self.hand_out(entry).await
                }
            },
        }
    }

    /// Hands out every entry of `conversation_id` after `after`; `Ok(false)` if the app left.
    async fn fill(&mut self, conversation_id: u64, after: u64) -> Result<bool, ClientError> {
        let mut next = after + 1;
        loop {
            let page: pb::HistoryPage = self
                .requests
                .call(pb::History { conversation_id, from_seq: next, backward: false, limit: 1000 })
                .await?;
            let Some(last) = page.entries.last().map(|e| e.seq) else { return Ok(true) };
            for entry in page.entries {
                let entry = Entry::from(entry);
                if self.cursors.judge(entry.conversation_id, entry.seq) == Verdict::Duplicate {
                    continue;
                }
                self.advance(entry.conversation_id, entry.seq);
                if !self.hand_out(entry).await {
                    return Ok(false);
                }
            }
            if last >= page.last_seq {
                return Ok(true);
            }
            next = last + 1;
        }
    }

    /// Brings every conversation seen so far up to date; `false` once the app left.
    async fn catch_up_all(&mut self) -> bool {
        let cursors = self.cursors.all();
        if cursors.is_empty() {
            return true;
        }
        let sync = pb::Sync {
            cursors: cursors.iter().map(|&(conversation_id, seq)| pb::Cursor { conversation_id, seq }).collect(),
        };
        let changed: pb::SyncState = match self.requests.call(sync).await {
            Ok(state) => state,
            Err(e) => {
                debug!(error = %e, "catch-up SYNC failed; the next reconnect tries again");
                return true;
            }
        };
        for conversation in changed.changed {
            let after = self.cursors.newest.get(&conversation.conversation_id).copied().unwrap_or(0);
            match self.fill(conversation.conversation_id, after).await {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => debug!(error = %e, "catch-up HISTORY failed; the next reconnect tries again"),
            }
        }
        true
    }
}

fn is_connection_loss(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Connection(_) | ClientError::Closed { .. } | ClientError::Timeout(_) | ClientError::ClientClosed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_pass_the_next_drop_repeats_and_find_gaps() {
        let mut cursors = Cursors::default();
        assert_eq!(cursors.judge(1, 40), Verdict::Next, "the first entry seen starts the conversation");
        cursors.advance(1, 40);
        assert_eq!(cursors.judge(1, 41), Verdict::Next);
        assert_eq!(cursors.judge(1, 40), Verdict::Duplicate);
        assert_eq!(cursors.judge(1, 12), Verdict::Duplicate);
        assert_eq!(cursors.judge(1, 45), Verdict::Gap { after: 40 });
        assert_eq!(cursors.judge(2, 7), Verdict::Next, "conversations are independent");
        cursors.advance(1, 39);
        assert_eq!(cursors.judge(1, 41), Verdict::Next, "a cursor never moves back");
        assert_eq!(cursors.all(), vec![(1, 40)]);
    }
}
