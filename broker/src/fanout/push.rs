//! A session's push queue, bounded in bytes rather than in items.
//!
//! Producers (shards fanning out) never block and never allocate per item beyond the channel's
//! node: a frame is a `Bytes` shared by every recipient. When a session's queued bytes would pass
//! its budget, the queue is marked overflowed and further frames are dropped; the session's writer
//! then discards what is queued and tells the client to resync from the log. Memory per session
//! is bounded by the budget, however slowly its client reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

#[derive(Debug)]
struct Shared {
    queued_bytes: AtomicUsize,
    budget: usize,
    overflowed: AtomicBool,
    dropped_bytes: AtomicU64,
}

/// The producing end of a push queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PushQueue {
    tx: mpsc::UnboundedSender<Bytes>,
    shared: Arc<Shared>,
}

/// The consuming end, owned by the session's push-stream writer.
#[derive(Debug)]
pub struct PushReceiver {
    rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
}

/// A push queue holding at most `budget_bytes` of frames.
pub fn push_queue(budget_bytes: usize) -> (PushQueue, PushReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued_bytes: AtomicUsize::new(0),
        budget: budget_bytes,
        overflowed: AtomicBool::new(false),
        dropped_bytes: AtomicU64::new(0),
    });
    (PushQueue { tx, shared: shared.clone() }, PushReceiver { rx, shared })
}

impl PushQueue {
    /// Queues a frame. Returns `false` if it was dropped (over budget, or the session is gone).
    pub fn push(&self, frame: &Bytes) -> bool {
        let shared = &self.shared;
        if shared.overflowed.load(Ordering::Acquire) {
            shared.dropped_bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
            return false;
        }
        let before = shared.queued_bytes.fetch_add(frame.len(), Ordering::AcqRel);
        if before + frame.len() > shared.budget {
            shared.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
            shared.dropped_bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
            shared.overflowed.store(true, Ordering::Release);
            // Wake the writer even if nothing else is queued, so it sends RESYNC.
            let _ = self.tx.send(Bytes::new());
            return false;
        }
        if self.tx.send(frame.clone()).is_err() {
            shared.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// What the writer should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum PushBatch {
    /// Write these frames, in order, in one go.
    Frames(Vec<Bytes>),
    /// The queue overflowed: everything queued was discarded; send RESYNC with this many bytes.
    Resync { dropped_bytes: u64 },
}

impl PushReceiver {
    /// Waits for frames and takes everything queued (up to `max_bytes`), or reports an overflow.
    /// `None` once every producer is gone.
    ///
    /// # Cancel safety
    /// Cancel-safe: nothing is taken from the queue until the first frame is received.
    pub async fn next_batch(&mut self, max_bytes: usize) -> Option<PushBatch> {
        let first = self.rx.recv().await?;
        let mut frames = vec![first];
        let mut bytes = frames.iter().map(Bytes::len).sum::<usize>();
        while bytes < max_bytes {
            match self.rx.try_recv() {
                Ok(frame) => {
                    bytes += frame.len();
                    frames.push(frame);
                }
                Err(_) => break,
            }
        }
        self.shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        if self.shared.overflowed.load(Ordering::Acquire) {
            return Some(self.discard_all(bytes));
        }
        frames.retain(|f| !f.is_empty());
        Some(PushBatch::Frames(frames))
    }

    /// Takes everything queued without waiting; returns how many frames. For benchmarks and
    /// tests that stand in for the writer.
    pub fn drain_now(&mut self) -> usize {
        let mut frames = 0;
        while let Ok(frame) = self.rx.try_recv() {
            self.shared.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
            frames += 1;
        }
        frames
    }

    fn discard_all(&mut self, already_taken: usize) -> PushBatch {
        let mut dropped = already_taken as u64;
        while let Ok(frame) = self.rx.try_recv() {
            self.shared.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
            dropped += frame.len() as u64;
        }
        dropped += self.shared.dropped_bytes.swap(0, Ordering::AcqRel);
        self.shared.overflowed.store(false, Ordering::Release);
        PushBatch::Resync { dropped_bytes: dropped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![7; n])
    }

    #[tokio::test]
    async fn frames_come_out_in_order_in_one_batch() {
        let (queue, mut rx) = push_queue(1000);
        for n in 1..=3 {
            assert!(queue.push(&frame(n)));
        }
        assert_eq!(rx.next_batch(1 << 20).await, Some(PushBatch::Frames(vec![frame(1), frame(2), frame(3)])));
    }

    #[tokio::test]
    async fn overflow_drops_everything_and_asks_for_resync_then_recovers() {
        let (queue, mut rx) = push_queue(100);
        assert!(queue.push(&frame(60)));
        assert!(!queue.push(&frame(60)), "over budget");
        assert!(!queue.push(&frame(10)), "dropped while overflowed");
        assert_eq!(rx.next_batch(1 << 20).await, Some(PushBatch::Resync { dropped_bytes: 130 }));
        assert!(queue.push(&frame(50)), "accepted again after the resync");
        assert_eq!(rx.next_batch(1 << 20).await, Some(PushBatch::Frames(vec![frame(50)])));
    }

    #[tokio::test]
    async fn the_queue_never_holds_more_than_its_budget() {
        let (queue, _rx) = push_queue(1000);
        let accepted = (0..100).filter(|_| queue.push(&frame(64))).count();
        assert_eq!(accepted, 1000 / 64);
        assert!(queue.shared.queued_bytes.load(Ordering::Relaxed) <= 1000);
    }
}
